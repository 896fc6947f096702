#!/usr/bin/env bash
# The test command: sets up .venv with the test dependencies (once), then runs pytest.
#   bash scripts/test.sh [pytest args]      the fast subset (tests marked fast: no INC run, no subprocess)
#   bash scripts/test.sh all [pytest args]  the whole suite, real INC runs included, as .ci/run runs it
# "fast" may also be said explicitly; any other first argument goes to pytest, with the fast subset selected.
set -euo pipefail
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_root"
selection=(-m fast)
case "${1:-}" in
  all) selection=(); shift ;;
  fast) shift ;;
esac
TUNING_ENV_PROFILE=dev exec bash scripts/python.sh -m pytest "${selection[@]}" "$@"
