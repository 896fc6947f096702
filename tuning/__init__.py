"""Accuracy-driven INC quantization of ONNX classifiers."""

import time

# When the package began importing: a tuning summary counts its start-up (interpreter, CLI, config) from here.
STARTED = time.perf_counter()
