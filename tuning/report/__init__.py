"""Report: the benchmarking report people read and tools parse.

Owns: the numbers of a report (``numbers``, ``accuracy``), their Markdown, HTML and plots (``markdown``,
``html``, ``plots``), and writing the report's files together (``run``).

May import: ``errors``, ``files``, ``config``, ``data``, ``graph`` and ``measure``; never ``search``.
"""
