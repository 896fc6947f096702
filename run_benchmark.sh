#!/usr/bin/env bash
# INC-example-style entry point:
#   bash run_benchmark.sh --input_model=models/mnist-12-int8.onnx --config=configs/mnist.yaml --mode=performance
#   bash run_benchmark.sh --input_model=models/mnist-12-int8.onnx --config=configs/mnist.yaml --mode=accuracy
# Sets up .venv on first use, then runs `python -m tuning benchmark` with the same flags.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/scripts/python.sh" -m tuning benchmark "$@"
