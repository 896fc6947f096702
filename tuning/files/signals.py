"""Holding Ctrl-C and SIGTERM back while a step that must not be cut in half runs."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then act on the first one as usual.

    Python runs signal handlers in the main thread between bytecodes, so replacing the handlers
    is what defers them (pthread_sigmask would not: the kernel may deliver to another thread).
    Elsewhere than the main thread this does nothing: signals never interrupt other threads.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum in previous:
        signal.signal(signum, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    for signum in received[:1]:
        handler = previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler == signal.SIG_DFL:
            raise KeyboardInterrupt(signal.Signals(signum).name)
