#!/usr/bin/env bash
# The test command: sets up .venv with the test dependencies (once), then runs pytest.
set -euo pipefail
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$project_root"
TUNING_ENV_PROFILE=dev exec bash scripts/python.sh -m pytest "$@"
