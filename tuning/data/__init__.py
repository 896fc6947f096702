"""Data: labelled images for calibration and evaluation, read from IDX files.

Owns: reading and verifying IDX files (``idx``), the datasets, their preprocessing and batch loaders
(``datasets``), and the one place torchvision is imported (``torchvision_shim``).

May import: ``tuning.errors``, ``tuning.files`` and ``tuning.config``.
"""
