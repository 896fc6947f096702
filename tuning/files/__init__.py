"""Files: everything that reads or writes bytes on disk or over HTTP, bounded and atomic.

Owns: the one check of every path a user gives (``paths``), bounded reads of user-given files (``inputs``), the
checksum-verified model download (``fetch``), loading and saving ONNX models with their metadata (``onnx_io``),
outputs replaced together or not at all (``atomic``), one run per output and the temporaries it made (``locks``),
and the interrupt signals, deferred around a commit (``signals``).

May import: ``tuning.errors`` only. Nothing here knows the config schema, INC or a runtime.
"""
