"""Command line: thin click commands over the pipeline, the report, the benchmark and the gate.

Owns: the command group, exit codes and the one-line error format (``main``); the options every command shares
and the console (``options``); one module per command (``fetch``, ``tune``, ``benchmark``, ``report``, ``gate``);
the JSON documents of ``--json`` (``documents``).

May import: anything in ``tuning``; nothing imports it.
"""
