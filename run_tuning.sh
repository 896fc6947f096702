#!/usr/bin/env bash
# INC-example-style entry point:
#   bash run_tuning.sh --input_model=models/mnist-12.onnx --config=configs/mnist.yaml --output_model=models/mnist-12-int8.onnx
# Sets up .venv on first use, then runs `python -m tuning tune` with the same flags.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh" -m tuning tune "$@"
