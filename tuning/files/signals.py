"""The signals that stop a run, and holding them back while a step that must not be cut in half runs.

A terminal or a CI runner stops a job with SIGINT (Ctrl-C), SIGTERM (a cancelled job), SIGHUP (a closed
terminal or SSH session) or SIGQUIT (Ctrl-\\). All four are handled the same way: they raise
``KeyboardInterrupt`` named after the signal, so every ``finally`` and every staged output's clean-up
runs, and the CLI reports one line and exit 130.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

INTERRUPT_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    """The handler of every interrupt signal: KeyboardInterrupt, not an Exception, which INC's fit() swallows."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def stop_on_interrupt_signals() -> None:
    """Make every signal of :data:`INTERRUPT_SIGNALS` raise KeyboardInterrupt (main thread only)."""
    for signum in INTERRUPT_SIGNALS:
        signal.signal(signum, raise_keyboard_interrupt)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[list[int]]:
    """Hold every interrupt signal until the block is done, then act on the first one as usual.

    Yields the list of signals received so far, so a block can tell whether one came while it ran.
    Python runs signal handlers in the main thread between bytecodes, so replacing the handlers
    is what defers them (pthread_sigmask would not: the kernel may deliver to another thread).
    Elsewhere than the main thread this does nothing: signals never interrupt other threads.
    """
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    previous = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    for signum in previous:
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received[:1]:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            raise KeyboardInterrupt(signal.Signals(signum).name)
