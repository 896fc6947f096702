#!/usr/bin/env bash
# Runs the project's Python: the activated virtual environment if there is one, else .venv (set up on first use).
set -euo pipefail
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${TUNING_ENV_PROFILE:-runtime}"
bash "$project_root/scripts/setup_env.sh" "$profile"
# This checkout's code, also in the processes it starts: an environment set up from another clone of the project
# (whose editable install points there) must not run that clone's code instead.
export PYTHONPATH="$project_root${PYTHONPATH:+:$PYTHONPATH}"
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  exec python "$@"
fi
exec "$project_root/.venv/bin/python" "$@"
