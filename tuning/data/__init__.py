"""Data: labelled images for calibration and evaluation, read from IDX files.

Owns: reading and verifying IDX files (``idx``), the datasets (torchvision's names, archives' md5 sums and
classes, declared here without importing torchvision), their preprocessing and batch loaders (``datasets``).

May import: ``tuning.errors``, ``tuning.files`` and ``tuning.config``.
"""
