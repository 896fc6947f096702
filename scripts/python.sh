#!/usr/bin/env bash
# Runs the project's Python: the activated virtual environment if there is one, else .venv (set up on first use).
set -euo pipefail
project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${TUNING_ENV_PROFILE:-runtime}"
bash "$project_root/scripts/setup_env.sh" "$profile"
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  exec python "$@"
fi
exec "$project_root/.venv/bin/python" "$@"
