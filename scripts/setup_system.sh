#!/usr/bin/env bash
# The Debian packages some tests need beside Python, installed in one explicit step (as root or with sudo):
#   chromium, chromium-driver   the HTML report rendered in a real headless browser (tests/test_report.py)
#   dataset-fashion-mnist       FashionMNIST for the any-classifier tests (data/README.md)
#   openmpi-bin, libopenmpi-dev mpirun for the distributed profile and its 3-rank test (docs/distributed.md)
# .ci/run calls it; the test command never installs system packages. Without them those tests skip, naming
# this script. Usage: bash scripts/setup_system.sh
set -euo pipefail

packages=(chromium chromium-driver dataset-fashion-mnist openmpi-bin libopenmpi-dev)
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "System packages for the tests: all installed (${packages[*]})." >&2
  exit 0
fi
if [[ $EUID -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo)
else
  echo "error: installing ${missing[*]} needs root or sudo; run: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "Installing with apt-get, for the tests: ${missing[*]}" >&2
"${sudo[@]}" apt-get update -qq >&2
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
