"""What ``tune`` prints at the end (tuning/pipeline.py's summary_lines, search_line, candidate_table), line for line.

The expected lines are written out here from chosen trials and measurements: every figure is a value the test
set (an accuracy of 0.975 is a 2.50 % error, a p50 of 0.125 ms is 125.0 µs, and 125.1 if it were
multiplied by 1001), every table is aligned by the
rule the docstring states (columns as wide as their widest cell, two spaces apart).
"""

from __future__ import annotations

from typing import Any

import pytest

from tuning.measure.runtimes import conditions_phrase
from tuning.pipeline import TuningSummary, candidate_table, search_line, summary_lines
from tuning.search.trials import Trial

pytestmark = pytest.mark.fast

NODES = ("fc1", "fc2", "relu")


def _trial(index: int, accuracy: float | None, meets: bool | None, precisions: tuple[str, str, str], **fields) -> Trial:
    return Trial(index, accuracy, meets, (), (), source_precisions=dict(zip(NODES, precisions)), **fields)


def _timed(p50_ms: float, latency: tuple[float, float, float], images_per_s: float,
           throughput: tuple[float, float, float]) -> dict[str, Any]:
    return {"latency_p50_ms": p50_ms, "latency_ratio": latency[0], "latency_ratio_interval": latency[1:],
            "throughput_images_per_s": images_per_s, "throughput_ratio": throughput[0],
            "throughput_ratio_interval": throughput[1:]}


TRIALS = [
    _trial(0, 0.98, True, ("fp32", "fp32", "fp32"), **_timed(0.25, (1.0, 0.98, 1.02), 12345.6, (1.0, 0.97, 1.03))),
    _trial(1, 0.975, True, ("int8", "int8", "folded"), quant_format="QDQ", calibration_algorithm="minmax", rank=1,
           chosen=True, reason="the fastest meeting the criterion", rewrites=("MaxPool p moved above its activation",),
           **_timed(0.125, (0.65, 0.6, 0.7), 20000.4, (1.6, 1.5, 1.7))),
    _trial(2, None, None, ("int8", "fp32", "fp32"), quant_format="QOperator", fp32_compute_nodes=("fc2",),
           screening_ratio=1.234, rank=2),
    _trial(3, None, None, ("int8", "int8", "int8"), quant_format="QOperator", calibration_algorithm="kl",
           unloadable="refused", rank=1),
    _trial(4, 0.5, False, ("int8", "int8", "fp32")),
    _trial(5, 0.97, True, ("int8", "int8", "folded"), same_model_as=1, rank=2),
    _trial(6, 0.97, True, ("int8", "int8", "folded"), same_model_as=1, rank=1),
    _trial(7, None, None, ("int8", "fp32", "fp32"), same_model_as=2, rank=2),
]

CONDITIONS = {"runtime": "onnxruntime", "version": "1.2.3", "intra_op_num_threads": 1, "config_entries": {}}
MEASUREMENT = {"rounds": 5, "runtime_conditions": CONDITIONS, "throughput_batch_size": 64, "choice_rule": "the rule",
               "verdict": {"line": "int8 is 0.65x the time of fp32"}, "runtime": "openvino"}
SEARCH = {"name": "greedy", "seconds": 3.21, "budget": {"max_trials": 50, "timeout_s": 120},
          "models": {"made": 9, "distinct": 5, "screened": 4, "scored": 3, "timed": 2}, "finalist_timings": 1,
          "stages": [{"name": "grid", "made": 4, "planned": 4}, {"name": "greedy", "made": 5, "planned": 10}],
          "cut_by": "tuning.max_trials", "cut": "the budget cut 5 planned candidates"}


def _aligned(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]


TIMED_TABLE = [
    "7 int8 trials, 4 distinct models (* chosen); nodes: what each of the fp32 graph's 3 nodes became "
    "(folded: into a neighbour, e.g. a Relu into the int8 op before it)",
    *_aligned([
        ["trial", "candidate", "top-1", "criterion", "nodes int8/fp32/folded", "p50 µs", "time vs fp32 [interval]",
         "img/s @64", "img/s vs fp32 [interval]", "rank", "same model"],
        ["0", "fp32 baseline", "98.00%", "baseline", "0/3/0", "250.0", "1.00x (0.98-1.02)", "12,346", "1.00x (0.97-1.03)",
         "-", ""],
        ["1 *", "QDQ, minmax, fp32: none", "97.50%", "meets", "2/0/1", "125.0", "0.65x (0.60-0.70)", "20,000",
         "1.60x (1.50-1.70)", "1", "trials 5, 6"],
        ["2", "QOperator, no calibration, fp32: fc2", "-", "not scored", "1/2/0", "-", "screened out (1.23x)", "-", "-",
         "2", "trial 7"],
        ["3", "QOperator, kl, fp32: none", "-", "not loadable", "3/0/0", "-", "openvino cannot load it", "-", "-", "1", ""],
        ["4", "INC trial, fp32: none", "50.00%", "misses", "2/1/0", "-", "not timed", "-", "-", "-", ""],
    ]),
]


def test_the_table_of_timed_candidates_lists_each_distinct_model_with_its_figures() -> None:
    assert candidate_table(TRIALS, MEASUREMENT) == TIMED_TABLE


def test_the_table_of_an_accuracy_run_has_no_timing_and_no_rank_columns() -> None:
    trials = [_trial(0, 0.98, True, ("fp32", "fp32", "fp32")), _trial(1, 0.96, False, ("int8", "int8", "folded")),
              _trial(2, 0.975, True, ("int8", "fp32", "folded"), chosen=True)]
    assert candidate_table(trials, None)[1:] == _aligned([
        ["trial", "candidate", "top-1", "criterion", "nodes int8/fp32/folded", "same model"],
        ["0", "fp32 baseline", "98.00%", "baseline", "0/3/0", ""],
        ["1", "INC trial, fp32: none", "96.00%", "misses", "2/0/1", ""],
        ["2 *", "INC trial, fp32: none", "97.50%", "meets", "1/1/1", ""],
    ])
    assert candidate_table([], None)[0].startswith("-1 int8 trials, -1 distinct models (* chosen); nodes: what each of "
                                                   "the fp32 graph's 0 nodes became")


def test_the_search_line_names_the_search_its_budget_its_stages_and_what_cut_it() -> None:
    assert search_line(SEARCH) == (
        "Search: greedy (tuning.latency.search) in 3.2 s, budget tuning.max_trials 50, tuning.timeout_s 120: "
        "9 candidates made (5 distinct), 4 screened, 3 scored, 2 timed in full; stages made/planned: grid 4/4; "
        "greedy 5/10; cut by tuning.max_trials"
    )
    uncut = {**SEARCH, "budget": {"max_trials": 50, "timeout_s": None}, "cut_by": None, "stages": SEARCH["stages"][:1]}
    assert search_line(uncut) == (
        "Search: greedy (tuning.latency.search) in 3.2 s, budget tuning.max_trials 50: 9 candidates made (5 distinct), "
        "4 screened, 3 scored, 2 timed in full; stages made/planned: grid 4/4; nothing cut"
    )
    # Timed again where noise hid the choice: the line says how many timings it took.
    assert "2 timed in full (3 timings: noise hid the choice); stages" in search_line({**SEARCH, "finalist_timings": 3})
    assert "2 timed in full (2 timings: noise hid the choice); stages" in search_line({**SEARCH, "finalist_timings": 2})


def _summary(**fields) -> TuningSummary:
    values: dict[str, Any] = dict(
        source_model="m.onnx", source_sha256="a" * 64, output_model="m-int8.onnx", fp32_top1_accuracy=0.98,
        int8_top1_accuracy=0.975, trials=TRIALS, source_bytes=26143, output_bytes=10969, seconds=12.34,
        config_sha256="b" * 64, summary_path="run/tuning_summary.json", objective="latency", chosen_trial=1,
        reason="the fastest meeting the criterion", session_options={}, latency_measurement=MEASUREMENT,
        output_sha256="c" * 64, warning="int8 does not pay for every batch size", deployment_runtime="openvino",
        distributed={"ranks": 3, "trial_order": "made"}, search=SEARCH,
    )
    return TuningSummary(**(values | fields))


def test_a_distributed_latency_run_on_openvino_prints_every_part_in_order() -> None:
    assert summary_lines(_summary()) == [
        "Tuned m.onnx -> m-int8.onnx in 12.3 s (7 INC trials, objective latency, 3 MPI ranks)",
        "  top-1 error scored on onnxruntime; deployment.runtime openvino",
        "  model   top-1 error        size",
        "  fp32          2.00%    26,143 B",
        "  int8          2.50%    10,969 B",
        "  error change: +0.50 percentage points",
        "Candidates meeting the criterion: timed with fp32 and its A/A twin, in turns, in 5 fresh session sets, "
        f"on {conditions_phrase(CONDITIONS)}; time ratio int8/fp32 at batch 1 (below 1: faster), throughput ratio "
        "int8/fp32 at batch 64 (above 1: faster; timed for the chosen one only): paired median [interval]",
        "Choice rule: the rule",
        search_line(SEARCH),
        "Candidates: made, screened and timed by rank 0, scored by ranks 0-2, listed in the order they were made",
        *(f"  {line}" for line in TIMED_TABLE),
        "Chosen: trial 1 (QDQ, minmax, fp32: none): the fastest meeting the criterion",
        "  rewrite: MaxPool p moved above its activation",
        "warning: int8 does not pay for every batch size",
        "warning: the budget cut 5 planned candidates",
        "Summary (every trial): run/tuning_summary.json",
        "Answer: top-1 error int8 2.50 % vs fp32 2.00 % (+0.50 pp); int8 is 0.65x the time of fp32",
    ]


def test_a_plain_accuracy_run_prints_no_timing_search_ranks_or_warnings() -> None:
    trials = [_trial(0, 0.5, True, ("fp32", "fp32", "fp32")), _trial(1, 0.75, True, ("int8", "int8", "folded"))]
    summary = _summary(trials=trials, fp32_top1_accuracy=0.5, int8_top1_accuracy=0.75, objective="accuracy",
                       latency_measurement=None, warning=None, deployment_runtime="onnxruntime", distributed=None,
                       search=None, seconds=0.05)
    assert summary_lines(summary) == [
        "Tuned m.onnx -> m-int8.onnx in 0.1 s (1 INC trial, objective accuracy)",
        "  model   top-1 error        size",
        "  fp32         50.00%    26,143 B",
        "  int8         25.00%    10,969 B",
        "  error change: -25.00 percentage points",
        *(f"  {line}" for line in candidate_table(trials, None)),
        "Summary (every trial): run/tuning_summary.json",
        "Answer: top-1 error int8 25.00 % vs fp32 50.00 % (-25.00 pp) (objective accuracy: not timed)",
    ]
    cut_free = summary_lines(_summary(search={**SEARCH, "cut": None}, warning=None))
    assert not any(line.startswith("warning:") for line in cut_free)
