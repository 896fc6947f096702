"""INC: everything that knows Intel Neural Compressor.

Owns: mapping this project's config onto INC's config objects and node names (``mapping``, where INC's
Gemm split is known), the contained ``quantization.fit`` call (``fit``, ``containment``: timers, signals,
workspace, stderr, log routing, hiding mpi4py), INC's tuning over MPI ranks (``distributed``) and importing INC
without the parts of other frameworks an ONNX run never uses (``loading``).
Replacing INC by another quantizer means replacing this package.

May import: ``errors``, ``files``, ``config``, ``data``, ``graph``. Never a search or a measurement.
"""
