"""Measure: running models and turning runs into figures.

Owns: sessions on each runtime (``runtimes``), predictions and top-1 accuracy (``evaluate``), interleaved
timing and its spreads (``benchmark``), the CPU and library versions a figure was measured with
(``environment``), and the one formatter per kind of figure (``figures``). A new runtime goes in ``runtimes``.

May import: ``tuning.errors``, ``tuning.files``, ``tuning.config``, ``tuning.data`` and ``tuning.graph``.
"""
