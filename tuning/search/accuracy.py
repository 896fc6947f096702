"""Post-training quantization with Intel Neural Compressor (onnxruntime backend).

INC 3.x reads no YAML: ``inc_config`` maps this project's config onto INC's 2.x-API objects.
``quantize`` is objective accuracy: ``quantization.fit`` runs INC's own strategy with an
evaluation function and stops at the first candidate meeting the accuracy criterion; every
candidate INC evaluated is recorded as a :class:`Trial` (on every MPI rank, gathered on rank 0).
Objective latency builds on the same pieces: tuning/search/latency.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tuning.config.schema import (
    Approach,
    CalibrationAlgorithm,
    CriterionKind,
    Objective,
    PipelineConfig,
    QuantFormat,
    Strategy,
)
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import (
    OUTPUT_ERRNOS,
    ConfigError,
    InputError,
    OutputError,
    PipelineError,
    TuningError,
)
from tuning.files.signals import interrupts_deferred
from tuning.graph.nodes import (
    COMPUTE_OP_TYPES,
    Precision,
    SourcePrecision,
    derived_node_names,
    node_precisions,
    source_precisions,
)
from tuning.graph.rewrite import pool_before_activation
from tuning.inc import distributed

FP32_ONLY = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}


@dataclass(frozen=True)
class Trial:
    """One candidate; trial 0 is the fp32 baseline.

    ``quant_format`` to ``same_model_as`` say how an objective-latency candidate was made; the
    latency and throughput fields are its share of one interleaved measurement with the fp32 model
    (None under objective accuracy, which does not time candidates). ``chosen`` marks the emitted model.
    """

    index: int
    accuracy: float | None  # None: not scored (objective latency: screened out as too slow to win)
    meets_criterion: bool | None
    int8_nodes: tuple[str, ...]
    fp32_nodes: tuple[str, ...]
    quant_format: str | None = None
    calibration_algorithm: str | None = None
    fp32_fallback: tuple[str, ...] = ()  # compute nodes this candidate asked INC to keep in fp32
    # What each node of the fp32 graph became (int8, fp32, folded), read from the candidate's graph, and the
    # Conv/MatMul/Gemm nodes among them that compute in fp32: what the graph holds, not what was asked.
    source_precisions: dict[str, str] = field(default_factory=dict)
    fp32_compute_nodes: tuple[str, ...] = ()
    rewrites: tuple[str, ...] = ()  # exact graph rewrites applied to INC's output (tuning/graph/rewrite.py)
    same_model_as: int | None = None  # the same bytes as this earlier trial
    screening_ratio: float | None = None  # objective latency: batch-1 p50 / fp32's in the screening round
    latency_p50_ms: float | None = None  # batch 1
    latency_ratio: float | None = None  # median over the rounds of p50 / fp32 p50 in the round
    latency_ratio_rounds: tuple[float, ...] = ()  # p50 / fp32 p50 in each round of the measurement
    throughput_images_per_s: float | None = None  # at the largest benchmark batch size, all rounds
    throughput_ratio: float | None = None  # median over the rounds of images/s / fp32 images/s in the round
    throughput_ratio_rounds: tuple[float, ...] = ()  # images/s / fp32 images/s in each round
    chosen: bool = False
    reason: str | None = None
    rank: int | None = None  # distributed tuning: the MPI rank that evaluated it; None in one process
    model_sha256: str | None = None  # of the candidate's graph as scored (before the output's metadata is added)
    # Objective latency: why deployment.runtime cannot load the candidate; such a candidate is neither scored nor timed.
    unloadable: str | None = None

    @property
    def description(self) -> str:
        """``fp32 baseline`` or e.g. ``QOperator, minmax, fp32: Convolution28``: the compute nodes the graph
        really keeps in fp32 (a superset of ``fp32_fallback``, which is checked), not the request."""
        if self.index == 0:
            return "fp32 baseline"
        fp32 = "fp32: " + (", ".join(self.fp32_compute_nodes) or "none")
        if self.quant_format is None:
            return f"INC trial, {fp32}"
        return ", ".join([self.quant_format, self.calibration_algorithm or "no calibration", fp32])

    @property
    def node_counts(self) -> dict[str, int]:
        """How many nodes of the fp32 graph became int8, stayed fp32, or were folded into a neighbour."""
        counts = {precision.value: 0 for precision in SourcePrecision}
        for precision in self.source_precisions.values():
            counts[precision] += 1
        return counts


@dataclass
class TuningOutcome:
    model: onnx.ModelProto
    fp32_accuracy: float
    int8_accuracy: float
    trials: list[Trial] = field(default_factory=list)
    objective: Objective = Objective.ACCURACY
    chosen_index: int | None = None
    reason: str | None = None
    measurement: dict[str, Any] | None = None  # objective latency: how the candidates were timed
    warning: str | None = None  # objective latency: why int8 does not pay on this machine, if it does not


@dataclass(frozen=True)
class CandidateSpec:
    """One point of the latency grid: what INC is asked to make."""

    quant_format: QuantFormat
    calibration_algorithm: CalibrationAlgorithm
    fp32_fallback: tuple[str, ...]

    @property
    def description(self) -> str:
        fallback = ", ".join(self.fp32_fallback) or "none"
        return f"{self.quant_format.value}, {self.calibration_algorithm.value}, fp32: {fallback}"


def meets_criterion(accuracy: float, fp32_accuracy: float, config: PipelineConfig) -> bool:
    """INC's acceptance rule: relative loss ``(fp32 - int8) / fp32`` or absolute loss ``fp32 - int8``."""
    criterion = config.tuning.accuracy_criterion
    loss = fp32_accuracy - accuracy
    if criterion.kind is CriterionKind.RELATIVE:
        if fp32_accuracy == 0:
            raise InputError(
                "the float model classifies no evaluation image correctly (top-1 accuracy 0), so a relative "
                "accuracy criterion means nothing; check the model, dataset.pixel_scale, mean and std"
            )
        loss /= fp32_accuracy
    return loss <= criterion.tolerance


def inc_config(config: PipelineConfig, fp32_nodes: Sequence[str], candidate: CandidateSpec | None = None):
    """INC's PostTrainingQuantConfig for ``config``, or for one latency-grid ``candidate`` of it.

    ``fp32_nodes`` are the fp32 graph's nodes the config keeps in fp32 (:func:`fp32_requests`): INC
    gets them by name, since it matches ``op_type_dict`` against its own graph, where a Gemm is
    already a MatMul and an Add.
    """
    from neural_compressor.config import (
        AccuracyCriterion,
        PostTrainingQuantConfig,
        TuningCriterion,
    )

    quant = config.quantization
    tuning = config.tuning
    quant_format = candidate.quant_format if candidate else quant.format
    algorithm = candidate.calibration_algorithm if candidate else quant.calibration_algorithm
    # INC matches op_type_dict keys as regular expressions; ".*" sets the algorithm for every op type.
    op_type_dict: dict = {}
    if quant.approach is Approach.STATIC:
        op_type_dict[".*"] = {"activation": {"algorithm": [algorithm.value]}}
    op_type_dict.update({op_type: FP32_ONLY for op_type in quant.fp32_op_types})
    kept = [*fp32_nodes, *(candidate.fp32_fallback if candidate else ())]
    op_name_dict = {node_pattern(name): FP32_ONLY for name in kept}
    strategy_is_auto = tuning.strategy is Strategy.AUTO
    return PostTrainingQuantConfig(
        device="cpu",
        backend="default",
        approach=quant.approach.value,
        quant_format=quant_format.value,
        calibration_sampling_size=[config.calibration.sampling_size],
        op_type_dict=op_type_dict or None,
        op_name_dict=op_name_dict or None,
        # INC ignores the strategy unless quant_level is 1.
        quant_level="auto" if strategy_is_auto else 1,
        accuracy_criterion=AccuracyCriterion(
            higher_is_better=True,
            criterion=tuning.accuracy_criterion.kind.value,
            tolerable_loss=tuning.accuracy_criterion.tolerance,
        ),
        tuning_criterion=TuningCriterion(
            strategy="basic" if strategy_is_auto else tuning.strategy.value,
            timeout=tuning.timeout_s,
            max_trials=tuning.max_trials,
        ),
    )


def node_pattern(name: str) -> str:
    """INC's op_name_dict key for a node of the fp32 graph.

    INC matches the keys as regular expressions (fullmatch) against the graph it quantizes, which
    onnxruntime has already fused and INC has rewritten: a fused node is named ``<original>/<Fusion>``
    and INC splits a Gemm into ``<name>_MatMul`` and ``<name>_Add`` (mnist-12's ``Times212`` MatMul
    and its bias Add become ``Times212/MatMulAddFusion_MatMul`` and ``..._Add``; a torch Linear's
    ``/fc/Gemm`` becomes ``/fc/Gemm_MatMul`` and ``/fc/Gemm_Add``). The pattern matches every one of them.
    """
    return re.escape(name) + r"(/.*|_MatMul|_Add)?"


def fp32_requests(model: onnx.ModelProto, config: PipelineConfig, source: Path | str) -> tuple[str, ...]:
    """Names of the nodes of ``model`` the config keeps in fp32: ``fp32_op_names`` and every node whose
    op type matches an ``fp32_op_types`` pattern (fullmatch, as INC matches them). A name not in the
    graph, or an unnamed node of a listed type (INC addresses nodes by name), is a ConfigError."""
    quant = config.quantization
    names = [node.name for node in model.graph.node]
    for name in quant.fp32_op_names:
        if name not in names:
            compute = [node.name for node in model.graph.node if node.op_type in COMPUTE_OP_TYPES]
            raise ConfigError(
                f"quantization.fp32_op_names: no node named {name!r} in {source} "
                f"(its Conv/MatMul/Gemm nodes: {', '.join(compute) or 'none'})"
            )
    typed = [node for node in model.graph.node if any(re.fullmatch(p, node.op_type) for p in quant.fp32_op_types)]
    unnamed = [node.op_type for node in typed if not node.name]
    if unnamed:
        raise ConfigError(
            f"quantization.fp32_op_types: {source} has an unnamed {unnamed[0]} node, which INC cannot keep in fp32 "
            "(it addresses nodes by name); name the model's nodes"
        )
    return tuple(dict.fromkeys([*quant.fp32_op_names, *(node.name for node in typed)]))


def check_kept_in_fp32(source: onnx.ModelProto, quantized: onnx.ModelProto, requested: Sequence[str], what: str) -> None:
    """Raise TuningError unless every ``requested`` node of ``source`` computes in fp32 in ``quantized``."""
    precisions = source_precisions(source, quantized)
    for name in requested:
        if precisions[name] is SourcePrecision.FP32:
            continue
        if precisions[name] is SourcePrecision.INT8:
            made = ", ".join(repr(n) for n in derived_node_names(name, quantized))
            problem = f"INC quantized it anyway ({made})"
        else:
            problem = "no node of the quantized graph carries its name, so its precision cannot be confirmed"
        raise TuningError(f"{what}: node {name!r} was to stay fp32, but {problem}")


def quantize(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    config: PipelineConfig,
    workspace: Path,
) -> TuningOutcome | None:
    """Run INC's tuning loop; raise TuningError when it yields no model meeting the criterion.

    Under MPI (tuning/inc/distributed.py) every rank calls this; INC distributes the candidates. A
    worker rank returns None once its trials are on rank 0; rank 0 returns the outcome with every
    rank's trials.
    """
    from neural_compressor import quantization, set_random_seed, set_workspace

    world = distributed.world()
    requested = fp32_requests(model, config, config.model.path)
    source = onnx.ModelProto()  # INC's fit may rewrite the model it is given; precisions are read against this copy
    source.CopyFrom(model)
    workspace.mkdir(parents=True, exist_ok=True)
    set_workspace(str(workspace))
    set_random_seed(config.tuning.seed)
    trials: list[Trial] = []
    # Distributed only, per trial: when its evaluation finished and its model's sha256, to merge the
    # ranks' trials in time order on rank 0 and find the one INC chose.
    stamps: list[tuple[float, str] | None] = []

    def eval_func(candidate):
        accuracy = evaluate(candidate)
        rank = world.rank if world.distributed else None
        trials.append(record_trial(len(trials), accuracy, candidate, trials, config, source, rank))
        stamps.append((time.time(), _digest(candidate)) if world.distributed else None)
        return accuracy

    calibration_loader = (
        BatchLoader(calibration, config.calibration.batch_size)
        if config.quantization.approach is Approach.STATIC
        else None
    )
    log_path = workspace / "inc.log"
    try:
        with contained_inc_call(log_path, config.tuning.timeout_s) as inc_call:
            result = quantization.fit(
                model, inc_config(config, requested), calib_dataloader=calibration_loader, eval_func=eval_func
            )
    except Exception as exc:  # INC raises bare Exceptions of many kinds from deep inside its adaptors
        raise TuningError(f"INC failed during tuning: {exc.__class__.__name__}: {exc}; INC's log: {log_path}") from None
    if result is None and (failure := inc_call.failure("during tuning", model.ByteSize())) is not None:
        raise failure
    if world.distributed:
        if world.rank != 0:
            _send_trials_to_rank0(world, result, trials, stamps, workspace / "inc.log")
            return None
        trials, digests = _trials_of_all_ranks(world, result, trials, stamps, config, workspace / "inc.log")
    if result is None:
        raise TuningError(no_model_message(trials, workspace / "inc.log"))
    check_kept_in_fp32(source, result.model, requested, "the int8 model INC chose")
    # The same exact rewrite as objective latency's candidates get: the emitted model runs fast as written.
    emitted, _ = pool_before_activation(result.model)
    # The emitted model is measured again rather than matched to a trial: the number reported is its own.
    int8_accuracy = evaluate(emitted)
    outcome = TuningOutcome(
        model=emitted,
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=int8_accuracy,
        trials=trials,
        objective=Objective.ACCURACY,
    )
    if world.distributed:
        # Workers evaluate in parallel, so the chosen candidate need not be the last to finish: it is the
        # trial whose model rank 0 quantized again (same bytes), INC's first of its stage meeting the criterion.
        chosen_digest = _digest(result.model)
        match = next((t for t, d in zip(trials, digests) if d == chosen_digest and t.meets_criterion), None)
        if match is not None:
            outcome.chosen_index = match.index
            outcome.reason = (
                "objective accuracy, distributed: INC keeps the candidate meeting the accuracy criterion that "
                "comes first in its stage's candidate list"
            )
            trials[match.index] = dataclasses.replace(match, chosen=True, reason=outcome.reason)
        return outcome
    # INC stops at the first candidate meeting the criterion: the last trial, when its accuracy is the model's.
    last = trials[-1]
    if len(trials) > 1 and last.meets_criterion and last.accuracy == int8_accuracy:
        outcome.chosen_index = last.index
        outcome.reason = (
            "objective accuracy: INC's tuning stops at its first candidate meeting the accuracy criterion"
        )
        trials[-1] = dataclasses.replace(last, chosen=True, reason=outcome.reason)
    return outcome


def _digest(candidate) -> str:
    proto = candidate if isinstance(candidate, onnx.ModelProto) else candidate.model
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def _send_trials_to_rank0(world, result, trials: list[Trial], stamps: list, log_path: Path) -> None:
    """A worker rank: hand its evaluated candidates to rank 0, which writes every output.

    INC returns a stand-in (``FakerModel``) on a worker whose traversal ended normally, None when
    it failed there (INC's fit logs and swallows exceptions, including this project's errors).
    Each rank evaluated the fp32 baseline for itself; rank 0 reports its own.
    """
    if result is None:
        raise TuningError(f"INC's distributed tuning failed on this rank; see {log_path}")
    distributed.collect(world, list(zip(trials[1:], stamps[1:])), model_found=False)


def _trials_of_all_ranks(
    world, result, trials: list[Trial], stamps: list, config: PipelineConfig, log_path: Path
) -> tuple[list[Trial], list[str | None]]:
    """Rank 0: its fp32 baseline, then every rank's candidates, numbered in the order their evaluations
    finished (INC's candidate ids restart at each stage and never reach eval_func), and their digests.

    The order compares the ranks' clocks: exact on one host, as good as the hosts' clock sync on several.
    """
    received = distributed.collect(world, list(zip(trials[1:], stamps[1:])), model_found=result is not None)
    records = sorted(
        (record for rank_records in received.values() for record in rank_records),
        key=lambda record: (record[1][0], record[0].rank),
    )
    baseline = trials[0]
    merged = [baseline] + [
        dataclasses.replace(
            trial, index=index, meets_criterion=meets_criterion(trial.accuracy, baseline.accuracy, config)
        )
        for index, (trial, _) in enumerate(records, start=1)
    ]
    missing = sorted(set(range(world.size)) - set(received))
    if missing:
        raise TuningError(
            f"INC found no int8 model meeting the accuracy criterion, and ranks {', '.join(map(str, missing))} did "
            "not report their trials: INC's master stopped (at tuning.max_trials) while its workers wait for a "
            "next stage; they are stopped. Loosen tuning.accuracy_criterion or raise tuning.max_trials "
            f"(INC's logs: {log_path.parent.parent}/rank*/inc.log)"
        )
    return merged, [None] + [digest for _, (_, digest) in records]


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

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
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
def contained_inc_call(log_path: Path, timeout_s: int = 0) -> Iterator[IncCall]:
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
    - Outside an MPI launch INC does not start MPI (:func:`_mpi_hidden_unless_launched`).
    """
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
            _mpi_hidden_unless_launched(),
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
def _mpi_hidden_unless_launched() -> Iterator[None]:
    """Make ``import mpi4py`` fail inside the block unless this process is a rank of an MPI launch.

    INC's strategies import mpi4py in every fit to look for ranks, and importing ``mpi4py.MPI``
    starts an MPI singleton (a PMIx server, shared-memory files) in a plain process too. That costs
    time, and where file sizes are limited it aborts the process outside any error handling. Hidden,
    INC tunes in one process, as it does where mpi4py is not installed.
    """
    world = distributed.current()
    if world is not None and world.distributed:
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


def no_model_message(trials: list[Trial], log_path: Path) -> str:
    if len(trials) < 2:
        return f"INC returned no model before evaluating any int8 candidate; see {log_path}"
    best = max(trial.accuracy for trial in trials[1:] if trial.accuracy is not None)
    return (
        f"INC found no int8 model meeting the accuracy criterion in {len(trials) - 1} trials "
        f"(best {best:.4%} against fp32 {trials[0].accuracy:.4%}); loosen tuning.accuracy_criterion "
        f"or raise tuning.max_trials (INC's log: {log_path})"
    )


class _LogFileHandler(logging.FileHandler):
    # A full disk must not print logging's own "--- Logging error ---" traceback on the console:
    # the failure that matters is reported by the write that needed the space.
    def handleError(self, record: logging.LogRecord) -> None:
        pass


def route_inc_logs(log_path: Path, echo_to_console: bool) -> None:
    """Send INC's verbose log to a file in the run's folder; the console gets the summary only."""
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


def record_trial(
    index: int,
    accuracy: float | None,
    candidate,
    previous: list[Trial],
    config: PipelineConfig,
    source: onnx.ModelProto,
    rank: int | None = None,
) -> Trial:
    """One trial, its precisions read from the candidate's graph; ``source`` is the fp32 graph INC quantized."""
    proto = candidate if isinstance(candidate, onnx.ModelProto) else candidate.model
    precisions = node_precisions(proto)
    by_source = source_precisions(source, proto)
    compute = {node.name for node in source.graph.node if node.op_type in COMPUTE_OP_TYPES}
    fp32_accuracy = previous[0].accuracy if previous else accuracy
    return Trial(
        index=index,
        accuracy=accuracy,
        meets_criterion=None if accuracy is None else meets_criterion(accuracy, fp32_accuracy, config),
        int8_nodes=tuple(name for name, p in precisions.items() if p is Precision.INT8),
        fp32_nodes=tuple(name for name, p in precisions.items() if p is Precision.FP32),
        source_precisions={name: p.value for name, p in by_source.items()},
        fp32_compute_nodes=tuple(
            name for name, p in by_source.items() if p is SourcePrecision.FP32 and name in compute
        ),
        model_sha256=hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest(),
        rank=rank,
    )
