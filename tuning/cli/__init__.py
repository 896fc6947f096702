"""Command line: thin click commands over the pipeline, the report, the benchmark and the gate.

Owns: flags, environment variables, exit codes and the one-line error format (``main``), and the JSON
documents of ``--json`` (``documents``).

May import: anything in ``tuning``; nothing imports it.
"""
