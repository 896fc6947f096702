"""Report: the benchmarking report people read and tools parse.

Owns: the numbers of a report (``numbers``, ``accuracy``, ``candidates``), measuring and scoring the models for
it (``builder``), the views of its timings that tables and plots share (``speed``), report.json (``document``),
report.md by section (``markdown`` and ``markdown_*``), HTML and plots (``html``, ``plots``), and writing the
report's files together (``run``).

May import: ``errors``, ``files``, ``config``, ``data``, ``graph`` and ``measure``; never ``search``.
"""
