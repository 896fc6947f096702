#!/usr/bin/env bash
# Mutation testing of the modules that decide correctness (docs/mutation.md): mutmut changes one thing at a
# time in tuning/<module>.py and runs, for each such mutant, the tests of the fast subset (pytest -m fast)
# that call the mutated function; a mutant no test fails on is a behaviour no test pins.
# Usage: scripts/mutation.sh [config|fetch|data|graph|gate|atomic|choice|rewrite|measure|runtimes|criterion|report|pipeline|search|all]   (default: all, one after another)
# MUTATION_JOBS (default 1) mutants run in parallel. A development tool: .ci/run does not run it.
set -euo pipefail
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_root"

modules=(config fetch data graph gate atomic choice rewrite measure runtimes criterion report pipeline search)
target="${1:-all}"
if [[ "$target" == all ]]; then
  selected=("${modules[@]}")
elif [[ " ${modules[*]} " == *" $target "* ]]; then
  selected=("$target")
else
  echo "error: scripts/mutation.sh takes one of: ${modules[*]} all; got '$target'" >&2
  exit 2
fi

bash scripts/setup_env.sh mutation
if [[ -n "${VIRTUAL_ENV:-}" ]]; then bin="$VIRTUAL_ENV/bin"; else bin="$project_root/.venv/bin"; fi

# mutmut names a mutant <module path>.x_<function>__mutmut_<n> (methods: xǁClassǁmethod__mutmut_<n>).
patterns_of() {
  case "$1" in
    # The candidate choice of objective latency: tuning/search/choice.py and the scoring order of tuning/search/candidates.py
    # (which candidates are scored, and which passing one is emitted).
    choice) echo "tuning.search.choice.*" \
                 "tuning.search.candidates.x_score_fastest_first__mutmut_*" ;;
    # tuning/data/idx.py reads and verifies the IDX files for tuning/data/datasets.py.
    data) echo "tuning.data.datasets.* tuning.data.idx.*" ;;
    # The schema and the reading of a config file into it.
    config) echo "tuning.config.schema.* tuning.config.loading.*" ;;
    fetch | atomic) echo "tuning.files.$1.*" ;;
    graph) echo "tuning.graph.nodes.*" ;;
    rewrite) echo "tuning.graph.rewrite.*" ;;
    # Timing and its statistics: paired ratios, their intervals, the three-state verdict, the benchmark, the
    # figures read off a timing, their formats, and the environment printed beside them.
    measure) echo "tuning.measure.statistics.* tuning.measure.paired.* tuning.measure.verdict.* tuning.measure.benchmark.*" \
                  "tuning.measure.timings.* tuning.measure.figures.* tuning.measure.environment.*" ;;
    # Loading a model on a runtime with the configured settings, and scoring it (accuracy, batch-copy check).
    runtimes) echo "tuning.measure.runtimes.* tuning.measure.evaluate.*" ;;
    # The accuracy criterion and the trials it judges, and the mapping of the config onto INC's objects.
    criterion) echo "tuning.search.trials.* tuning.inc.mapping.*" ;;
    # The report's numbers: ratios, agreement, accuracy, the answer line.
    report) echo "tuning.report.numbers.* tuning.report.answer.* tuning.report.speed.* tuning.report.accuracy.*" ;;
    pipeline) echo "tuning.pipeline.*" ;;
    # The latency search: which candidates it plans (plan.py, but for the single fallbacks' timing decision), its
    # budget, how it times them (timing.py), the ratios over several measurements (measurements.py), the finalists
    # timed again while noise hides the choice (finalists.py), and the pool placement weighed for the chosen
    # OpenVINO candidate.
    search) echo "tuning.search.plan.x_compute_nodes__mutmut_* tuning.search.plan.x__reduction_size__mutmut_*" \
                 "tuning.search.plan.x__formats__mutmut_* tuning.search.plan.x__algorithms__mutmut_*" \
                 "tuning.search.plan.x_candidate_grid__mutmut_* tuning.search.plan.x_resolved_search__mutmut_*" \
                 "tuning.search.plan.x_grid_search__mutmut_* tuning.search.plan.x_greedy_upper_bound__mutmut_*" \
                 "tuning.search.plan.x_greedy_search__mutmut_* tuning.search.plan.x__run__mutmut_*" \
                 "tuning.search.plan.x__screened__mutmut_* tuning.search.plan.x__accuracy__mutmut_*" \
                 "tuning.search.timing.* tuning.search.budget.* tuning.search.latency.x__pool_placement__mutmut_*" \
                 "tuning.measure.measurements.* tuning.search.finalists.*" ;;
    *) echo "tuning.$1.*" ;;
  esac
}

started=$SECONDS
for module in "${selected[@]}"; do
  echo "== mutation testing: $module"
  read -r -a patterns <<< "$(patterns_of "$module")"
  "$bin/mutmut" run --max-children "${MUTATION_JOBS:-1}" "${patterns[@]}"
done
echo "== mutation testing took $((SECONDS - started)) s"
"$bin/mutmut" results --all true | "$bin/python" scripts/mutation_score.py "${selected[@]}"
