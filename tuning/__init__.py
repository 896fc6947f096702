"""Accuracy-driven INC quantization of ONNX classifiers."""
