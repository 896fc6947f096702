#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) from the pinned lock files, once.
# Usage: scripts/setup_env.sh [runtime|dev]
# An already activated virtual environment is used as is; nothing is installed into it.
set -euo pipefail

project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-runtime}"
case "$profile" in
  runtime) lock="$project_root/requirements.lock" ;;
  dev) lock="$project_root/requirements-dev.lock" ;;
  *) echo "error: setup_env.sh takes 'runtime' or 'dev', got '$profile'" >&2; exit 2 ;;
esac

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  exit 0
fi

venv="$project_root/.venv"
python="${PYTHON:-python3}"
# The stamp records which lock files the environment was built from, so a changed pin rebuilds it.
stamp="$venv/.installed-$profile"
wanted="$(cat "$project_root/requirements.lock" "$lock" "$project_root/pyproject.toml" | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
  exit 0
fi

echo "Setting up $venv ($profile dependencies from $(basename "$lock")); this runs once." >&2
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$lock"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$project_root"
echo "$wanted" > "$stamp"
