"""Command line: thin click commands over the pipeline, the report, the benchmark and the gate.

Owns: the command group, exit codes and the one-line error format (``main``); the flag vocabulary and every
option's environment variable (``flags``); user paths, the console and config building (``options``); one module per command (``fetch``, ``tune``, ``benchmark``, ``report``, ``gate``);
the JSON documents of ``--json`` (``documents``).

May import: anything in ``tuning``; nothing imports it.
"""

from __future__ import annotations

import sys

INTERRUPTED_EXIT_CODE = 130  # tuning.errors.Interrupted's, not imported: this runs before any import of ours


def run() -> None:
    """The console entry point (``mnist-tuning``, ``python -m tuning``).

    The interrupt signals are handled before the CLI's modules are imported (pydantic, click, onnx: a second or
    more), so an interrupt while they load ends in one line and exit 130 too, not a traceback.
    """
    try:
        from tuning.files.signals import stop_on_interrupt_signals

        stop_on_interrupt_signals()
        from tuning.cli.main import exit_flushed, main
    except KeyboardInterrupt as exc:
        try:
            print(f"error: interrupted ({exc or 'SIGINT'}) while starting; no output was replaced", file=sys.stderr)
        except (OSError, ValueError, AttributeError):
            pass  # no usable stderr: the exit code still says it
        sys.exit(INTERRUPTED_EXIT_CODE)
    main()
    exit_flushed(0)
