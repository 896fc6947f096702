"""Graph: reading an ONNX graph and every exact rewrite of it.

Owns: which nodes compute in int8, fp32 or convert (``nodes``); the batch-capable copy and the pool-before-
activation and pool-before-quantize rewrites (``rewrite``). A new rewrite goes in ``rewrite`` with a test that it is exact.

May import: ``tuning.errors`` and ``tuning.files``. Nothing here runs a model.
"""
