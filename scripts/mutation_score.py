"""Mutation score per module from ``mutmut results --all true`` (stdin), less the equivalent mutants.

Equivalent mutants (no test can kill them: the program behaves the same) are listed with their reason
in docs/mutation.md, and so are the few mutants of import-time code that mutmut cannot switch on, with
the test that fails when each is applied by hand; the score is killed / (mutants - equivalent).
Usage: see scripts/mutation.sh.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "mutation.md"
CHOICE = re.compile(r"^tuning\.search\.candidates\.x_score_fastest_first__mutmut_\d+$")
# The latency search's group leaves out plan.py's timing decision (_significantly_faster_alone) and, of latency.py,
# takes the pool placement only (scripts/mutation.sh).
SEARCH = re.compile(
    r"^tuning\.search\.(plan\.x_(?!_significantly_faster_alone__)\w+|latency\.x__pool_placement)__mutmut_\d+$"
)
# The label a module's mutants are scored under; idx is scored with the datasets it reads, the config's
# loading with its schema, the latency search's scoring order with the choice rule.
LABEL_OF_MODULE = {
    "config.schema": "config", "config.loading": "config", "files.fetch": "fetch", "files.atomic": "atomic",
    "data.datasets": "data", "data.idx": "data", "graph.nodes": "graph", "gate.checks": "gate",
    "search.choice": "choice", "graph.rewrite": "rewrite",
    "measure.statistics": "measure", "measure.paired": "measure", "measure.verdict": "measure",
    "measure.benchmark": "measure", "measure.timings": "measure", "measure.figures": "measure",
    "measure.environment": "measure", "measure.runtimes": "runtimes", "measure.evaluate": "runtimes",
    "search.trials": "criterion", "inc.mapping": "criterion", "search.timing": "search", "search.budget": "search",
    "measure.measurements": "search", "search.finalists": "search",
    "report.numbers": "report", "report.answer": "report", "report.speed": "report", "report.accuracy": "report",
}


def module_of(mutant: str) -> str | None:
    if CHOICE.match(mutant):
        return "choice"
    if SEARCH.match(mutant):
        return "search"
    parts = mutant.split(".")
    if len(parts) == 3 and parts[1] == "pipeline":  # tuning/pipeline.py, the one top-level module scored
        return "pipeline"
    if len(parts) < 4:
        return None
    return LABEL_OF_MODULE.get(f"{parts[1]}.{parts[2]}")


def listed_mutants(heading: str) -> set[str]:
    """Mutant names in the first column of the table under ``heading`` in docs/mutation.md."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `(tuning\.[^`]+__mutmut_\d+)` \|", section, re.M))


def main(modules: list[str]) -> int:
    equivalent = listed_mutants("Equivalent mutants")
    # Code that runs at import, before mutmut switches a mutant on: applied by hand, each fails a test.
    killed_by_hand = listed_mutants("Mutants mutmut cannot switch on")
    # A native library aborting the tests' interpreter (mutmut: "suspicious"), checked by hand.
    crashing = listed_mutants("Mutants that crash the test process")
    counts: dict[str, Counter[str]] = {module: Counter() for module in modules}
    survivors: list[str] = []
    for line in sys.stdin:
        name, sep, status = line.strip().partition(": ")
        module = module_of(name)
        if not sep or module not in counts:
            continue
        if name in equivalent:
            status = "equivalent"
        elif name in killed_by_hand and status == "survived" or name in crashing and status == "suspicious":
            status = "killed"
        elif status not in ("killed", "timeout", "caught by type check"):
            survivors.append(f"{name}: {status}")
        counts[module][status] += 1
    print(f"{'module':<9} {'mutants':>7} {'killed':>6} {'equiv.':>6} {'other':>5}  score (killed / non-equivalent)")
    for module, count in counts.items():
        total = sum(count.values())
        killed = count["killed"] + count["timeout"] + count["caught by type check"]
        scored = total - count["equivalent"]
        score = f"{100 * killed / scored:.1f} %" if scored else "-"
        print(f"{module:<9} {total:>7} {killed:>6} {count['equivalent']:>6} {scored - killed:>5}  {score}")
    if survivors:
        print("\nnot killed (mutmut show NAME for the diff):")
        print("\n".join(f"  {line}" for line in sorted(survivors)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
