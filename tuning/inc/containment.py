"""One INC call, contained: nothing INC does outlives or escapes it.

INC's ``quantization.fit`` swallows exceptions and Ctrl-C, prints tracebacks on stderr, starts timer threads
it may never stop, and imports mpi4py (which starts MPI) in a plain process. :func:`contained_inc_call`
undoes each of these; :func:`route_inc_logs` sends INC's verbose log to a file in the run's folder.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tuning.errors import OUTPUT_ERRNOS, OutputError, PipelineError, TuningError
from tuning.files.signals import INTERRUPT_SIGNALS, interrupts_deferred
from tuning.inc import distributed
from tuning.inc.loading import import_inc


@contextlib.contextmanager
def interrupts_survive_inc(timeout_s: float = 0) -> Iterator[None]:
    """Let Ctrl-C and SIGTERM during ``quantization.fit`` stop the run.

    INC's fit() catches KeyboardInterrupt (``except KeyboardInterrupt: pass``) and returns its
    best model so far, or None, which would look like a finished or failed tuning. While the
    block runs, both signals are recorded as well as raised; once fit has returned, a recorded
    signal is raised again. INC enforces ``timeout_s`` with the same simulated SIGINT
    (``_thread.interrupt_main``); one arriving once that time is up is INC's and is not recorded.
    Only the main thread can handle signals; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    started = time.monotonic()

    def handler(signum: int, _frame: object) -> None:
        inc_timeout = signum == signal.SIGINT and 0 < timeout_s <= time.monotonic() - started
        if not inc_timeout:
            seen.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {signum: signal.getsignal(signum) for signum in INTERRUPT_SIGNALS}
    for signum in previous:
        signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, restored in previous.items():
            signal.signal(signum, restored)
    if seen:
        raise KeyboardInterrupt(signal.Signals(seen[0]).name)


@dataclass
class IncCall:
    """What a contained INC call left behind: the first exception INC caught and only logged."""

    log_path: Path
    started: float = field(default_factory=time.time)
    swallowed: BaseException | None = None

    def failure(self, what: str, model_bytes: int) -> PipelineError | None:
        """The error to report for an INC call that returned no model, if INC swallowed one.

        The project's own errors raised inside INC (by the evaluation function) keep their exit
        code. A full disk is an output error: onnxruntime writes INC's ``Optimized_model.onnx``
        from C++ and says nothing when the write is cut short, so INC fails later reading it back
        (InvalidProtobuf); a failed INC call is therefore followed by a probe writing
        ``model_bytes`` into the workspace. Anything else is INC failing.
        """
        exc = self.swallowed
        if exc is None:
            return None
        if isinstance(exc, PipelineError):
            return exc
        workspace = self.log_path.parent
        write_error = exc if isinstance(exc, OSError) and exc.errno in OUTPUT_ERRNOS else _write_probe(workspace, model_bytes)
        if write_error is not None:
            self._remove_partial_files()
            return OutputError(
                f"{workspace}: INC's workspace cannot take a {model_bytes}-byte model ({write_error.strerror}) "
                f"{what}; INC's log: {self.log_path}"
            )
        detail = f"{exc.__class__.__name__}: {exc}".strip().splitlines()[0]
        return TuningError(f"INC failed {what} ({detail}); INC's log: {self.log_path}")

    def _remove_partial_files(self) -> None:
        # What INC wrote during this call was cut short; only the log is worth keeping.
        for path in self.log_path.parent.iterdir():
            with contextlib.suppress(OSError):
                if path != self.log_path and path.is_file() and path.stat().st_mtime >= self.started - 1:
                    path.unlink()


def _write_probe(folder: Path, size: int) -> OSError | None:
    """Write and remove ``size`` bytes in ``folder``; the error if the disk (or RLIMIT_FSIZE) refuses them."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe.", suffix=".tmp") as probe:
            probe.write(bytes(size))
            probe.flush()
            os.fsync(probe.fileno())
    except OSError as exc:
        return exc if exc.errno in OUTPUT_ERRNOS else None
    return None


class _SwallowedExceptionRecorder(logging.Handler):
    # INC's fit() catches every Exception and logs it from inside its except clause, where
    # sys.exc_info() still holds the exception: this handler keeps it for IncCall.failure.
    def __init__(self, call: IncCall) -> None:
        super().__init__(level=logging.ERROR)
        self.call = call

    def emit(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if self.call.swallowed is None and exc is not None:
            self.call.swallowed = exc


@contextlib.contextmanager
def contained_inc_call(log_path: Path, timeout_s: int = 0, over_ranks: bool = False) -> Iterator[IncCall]:
    """Run one INC call so that nothing it does outlives or escapes it.

    - Ctrl-C and SIGTERM stop the run although INC swallows KeyboardInterrupt
      (:func:`interrupts_survive_inc`).
    - What INC prints to stderr goes to its log file: the tracebacks of the exceptions fit()
      swallows, and the one its ``LazyImport`` prints when an interrupt lands inside an import
      (its bare ``except:`` turns the KeyboardInterrupt into ``'NoneType' object has no attribute
      'loader'``).
    - The first exception INC swallowed is kept (:class:`IncCall`), so the run reports it with
      its own exit code rather than as "no model found".
    - Every ``threading.Timer`` INC started is cancelled and joined, however the call ends. INC's
      ``time_limit`` starts a non-daemon Timer (one year long when there is no timeout) and cancels
      it in a ``finally`` that an interrupt arriving just after ``timer.start()`` skips; the
      interpreter then waits for that thread at exit, for a year.
    - INC sees MPI only for its traversal over the ranks (``over_ranks``, objective accuracy under an MPI
      launch); otherwise it tunes in one process and never starts MPI (:func:`_mpi_hidden_unless`).
    """
    import_inc()
    from neural_compressor.utils import logger as inc_logger

    call = IncCall(log_path)
    recorder = _SwallowedExceptionRecorder(call)
    log = inc_logger.Logger().get_logger()
    threads_before = set(threading.enumerate())
    log.addHandler(recorder)
    try:
        with (
            open(log_path, "a", encoding="utf-8") as inc_stderr,
            contextlib.redirect_stderr(inc_stderr),
            _mpi_hidden_unless(over_ranks),
        ):
            try:
                with interrupts_survive_inc(timeout_s):
                    yield call
            finally:
                with interrupts_deferred():
                    _stop_timers_started_since(threads_before)
    finally:
        log.removeHandler(recorder)


@contextlib.contextmanager
def _mpi_hidden_unless(over_ranks: bool) -> Iterator[None]:
    """Make ``import mpi4py`` fail inside the block unless ``over_ranks`` and this process is a rank of an MPI launch.

    INC's strategies import mpi4py in every fit to look for ranks, and importing ``mpi4py.MPI``
    starts an MPI singleton (a PMIx server, shared-memory files) in a plain process too. That costs
    time, and where file sizes are limited it aborts the process outside any error handling. Hidden,
    INC tunes in one process, as it does where mpi4py is not installed. Objective latency's rank 0 calls INC
    under a launch too, to make one candidate: with MPI in sight, INC would start its traversal over the ranks.
    """
    world = distributed.current()
    if over_ranks and world is not None and world.distributed:
        yield
        return
    hidden = sys.modules.get("mpi4py", _ABSENT)
    sys.modules["mpi4py"] = None  # type: ignore[assignment]  # import raises ImportError while None
    try:
        yield
    finally:
        if hidden is _ABSENT:
            del sys.modules["mpi4py"]
        else:
            sys.modules["mpi4py"] = hidden


_ABSENT = object()


def _stop_timers_started_since(threads_before: set[threading.Thread]) -> None:
    for thread in threading.enumerate():
        if thread not in threads_before and isinstance(thread, threading.Timer):
            thread.cancel()  # a cancelled Timer returns from its wait at once, without calling its function
            thread.join(timeout=5)


class _LogFileHandler(logging.FileHandler):
    # A full disk must not print logging's own "--- Logging error ---" traceback on the console:
    # the failure that matters is reported by the write that needed the space.
    def handleError(self, record: logging.LogRecord) -> None:
        pass


def route_inc_logs(log_path: Path, echo_to_console: bool) -> None:
    """Send INC's verbose log to a file in the run's folder; the console gets the summary only."""
    import_inc()
    from neural_compressor.utils import logger as inc_logger

    log = inc_logger.Logger().get_logger()
    for handler in list(log.handlers):
        if echo_to_console and isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            continue
        log.removeHandler(handler)
        handler.close()
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_bytes(b"")  # a fresh log per run; appended to by the handler and by INC's stderr
        file_handler = _LogFileHandler(log_path, mode="a")
    except OSError as exc:
        raise OutputError(f"{log_path}: cannot write INC's log ({exc.strerror or exc})") from None
    file_handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    log.addHandler(file_handler)
    log.setLevel(logging.INFO)
