#!/usr/bin/env bash
# Creates the project's virtual environment (.venv) from the pinned lock files, once.
# Usage: scripts/setup_env.sh [runtime|dev|distributed|openvino|nncf|mutation]
#   mutation: dev + mutmut for scripts/mutation.sh (docs/mutation.md); a development tool, not used by .ci/run.
#   openvino: runtime + OpenVINO, the optional second runtime (README, "Runtimes").
#   nncf: openvino + NNCF, for report's NNCF reference row (benchmark.nncf_reference, docs/openvino-nncf.md).
#   distributed: runtime + mpi4py for tuning over MPI (docs/distributed.md); needs Open MPI's mpirun
#   (scripts/setup_system.sh installs it).
#   dev: runtime + test tools. It installs no system package: scripts/setup_system.sh does, in one explicit step.
# An already activated virtual environment is used as is; nothing is installed into it.
set -euo pipefail

project_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
profile="${1:-runtime}"
case "$profile" in
  runtime) lock="$project_root/requirements.lock" ;;
  dev) lock="$project_root/requirements-dev.lock" ;;
  distributed) lock="$project_root/requirements-distributed.lock" ;;
  openvino) lock="$project_root/requirements-openvino.lock" ;;
  nncf) lock="$project_root/requirements-nncf.lock" ;;
  mutation) lock="$project_root/requirements-mutation.lock" ;;
  *) echo "error: setup_env.sh takes 'runtime', 'dev', 'distributed', 'openvino', 'nncf' or 'mutation', got '$profile'" >&2; exit 2 ;;
esac

if [[ -n "${VIRTUAL_ENV:-}" ]]; then
  exit 0
fi

# mpi4py's wheel runs on the system's MPI library: Open MPI's, installed by scripts/setup_system.sh.
if [[ "$profile" == distributed ]] && ! command -v mpirun >/dev/null 2>&1; then
  echo "error: the distributed profile needs Open MPI's mpirun: bash scripts/setup_system.sh (root or sudo)," \
    "or apt-get install openmpi-bin libopenmpi-dev" >&2
  exit 1
fi

venv="$project_root/.venv"
python="${PYTHON:-python3}"
# A stamp records the lock files an environment was built from, so a changed pin reinstalls.
# The dev, distributed, openvino, nncf and mutation environments are supersets of the runtime one, so their stamps
# satisfy it too; the mutation one is a superset of dev, the nncf one of openvino.
lock_hash() { cat "$project_root/requirements.lock" "$1" "$project_root/pyproject.toml" | sha256sum | cut -d' ' -f1; }
is_current() { [[ -f "$venv/.installed-$1" && "$(cat "$venv/.installed-$1")" == "$(lock_hash "$2")" ]]; }
if is_current "$profile" "$lock"; then
  exit 0
fi
if [[ "$profile" == runtime ]] && { is_current dev "$project_root/requirements-dev.lock" \
    || is_current distributed "$project_root/requirements-distributed.lock" \
    || is_current openvino "$project_root/requirements-openvino.lock" \
    || is_current nncf "$project_root/requirements-nncf.lock" \
    || is_current mutation "$project_root/requirements-mutation.lock"; }; then
  exit 0
fi
if [[ "$profile" == dev ]] && is_current mutation "$project_root/requirements-mutation.lock"; then
  exit 0
fi
if [[ "$profile" == openvino ]] && is_current nncf "$project_root/requirements-nncf.lock"; then
  exit 0
fi

stamp="$venv/.installed-$profile"
wanted="$(lock_hash "$lock")"

echo "Setting up $venv ($profile dependencies from $(basename "$lock")); this runs once." >&2
if [[ ! -x "$venv/bin/python" ]]; then
  "$python" -m venv "$venv"
fi
# Some machines list local index folders that do not hold every package; pip warns once per package.
pip_install() {
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; } >&2
  return "${PIPESTATUS[0]}"
}
# CPU builds of torch and torchvision: PyPI's torch for Linux is the CUDA build (GBs of nvidia packages this
# project never uses). The PyTorch CPU wheel index serves torch==X as X+cpu, which pip prefers to PyPI's X.
# TUNING_TORCH_INDEX_URL overrides the index; empty turns it off. An index this machine cannot reach is left
# out after a 3 s probe, so pip takes torch from what it can reach (here: the local CPU wheel) without
# spending its retries on it.
torch_index="${TUNING_TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}"
index_args=()
if [[ -n "$torch_index" ]]; then
  if "$venv/bin/python" - "$torch_index" <<'PROBE'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=3).close()
except Exception as exc:
    print(f"PyTorch CPU wheel index {sys.argv[1]} not reachable ({exc.__class__.__name__}); "
          "installing torch from pip's configured indexes", file=sys.stderr)
    sys.exit(1)
PROBE
  then
    index_args=(--extra-index-url "$torch_index")
  fi
fi
pip_install "${index_args[@]}" -r "$lock"
pip_install --no-deps --no-build-isolation -e "$project_root"
echo "$wanted" > "$stamp"
