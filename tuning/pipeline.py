"""The path of a tuning run, top to bottom: fetch, data, quantize, save, summarise."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Callable

import onnx

import tuning
from tuning.config.enums import Objective
from tuning.config.schema import PipelineConfig
from tuning.data import datasets
from tuning.errors import ConfigError, InputError, TuningError
from tuning.files import fetch, onnx_io
from tuning.files.atomic import (
    atomic_outputs,
    prepare_output_dir,
    prepare_scratch_dir,
    remove_stale_temporaries,
    write_text_atomic,
)
from tuning.graph import rewrite
from tuning.inc import distributed
from tuning.inc.containment import route_inc_logs
from tuning.measure import runtimes
from tuning.measure.benchmark import Spread
from tuning.measure.evaluate import (
    AccuracyEvaluator,
    check_classifier,
    verify_batch_copy,
)
from tuning.measure.figures import ratio
from tuning.measure.runtimes import SessionSettings
from tuning.search.accuracy import quantize
from tuning.search.latency import quantize_for_latency
from tuning.search.trials import Trial


@dataclass(frozen=True)
class TuningSummary:
    source_model: str
    source_sha256: str
    output_model: str
    fp32_top1_accuracy: float
    int8_top1_accuracy: float
    trials: list[Trial]
    source_bytes: int
    output_bytes: int
    seconds: float
    config_sha256: str
    summary_path: str
    objective: str
    chosen_trial: int | None  # index into trials of the emitted model
    reason: str | None  # why it was chosen
    session_options: dict[str, Any]  # what every evaluation and measurement used; also in the model's metadata
    latency_measurement: dict[str, Any] | None  # objective latency: how the candidates were timed
    output_sha256: str  # of the emitted model file, so a report can tell whether this summary describes it
    warning: str | None  # objective latency: why int8 does not pay on this machine, when it does not
    deployment_runtime: str  # config deployment.runtime: where the model must load (and, objective latency, was timed)
    distributed: dict[str, Any] | None = None  # under MPI: {"ranks": N, "trial_order": ...}; None in one process
    # Objective latency: which search ran, its budget, its stages and what it cut (tuning/search/budget.py).
    search: dict[str, Any] | None = None
    # Where the run's time went, in seconds per stage, in order (docs/pipeline.md, "Where the time goes").
    stage_seconds: dict[str, float] | None = None

    @property
    def int8_trials(self) -> int:
        return len(self.trials) - 1


def run_tuning(
    config: PipelineConfig, verbose: bool = False, progress: Callable[[str], None] | None = None
) -> TuningSummary | None:
    """One tuning run; under MPI, every rank runs it and only rank 0 gets the summary (workers: None).

    ``progress`` receives one line as each stage starts (rank 0 only), for a console.
    """
    started = time.perf_counter()
    stages = Stages(started)
    world = distributed.world()
    say = progress if progress is not None and world.rank == 0 else (lambda _line: None)
    distributed.check_config(config, world.size)
    unavailable = runtimes.unavailable_reason(config.deployment.runtime)
    if unavailable:
        raise ConfigError(f"deployment.runtime: {config.deployment.runtime.value}: {unavailable}")
    source_file, output_model, output_dir = (config.path(key) for key in ("model.path", "output.model", "output.dir"))
    workspace = output_dir / "nc_workspace"
    # Objective latency: rank 0 alone runs INC (the other ranks only score), in the usual workspace.
    inc_on_this_rank = world.rank == 0 or config.tuning.objective is Objective.ACCURACY
    if world.distributed and config.tuning.objective is Objective.ACCURACY:
        # INC's onnxruntime adaptor writes <workspace>/Optimized_model.onnx and reads it back: ranks sharing
        # one workspace read each other's. Each rank gets its own, with its own inc.log.
        workspace = workspace / f"rank{world.rank}"
    summary_path = output_dir / "tuning_summary.json"
    say(f"tune: reading {source_file}")
    source_path = fetch.ensure_file(
        source_file,
        config.model.url,
        config.model.sha256,
        max_bytes=config.model.max_bytes,
        deadline_s=config.model.download_timeout_s,
    )
    source_sha256 = fetch.sha256_of(source_path, config.model.max_bytes)
    model = onnx_io.load_model(source_path, max_bytes=config.model.max_bytes)
    spec = onnx_io.describe(model, source_path)

    stages.lap("read_model")
    say(f"tune: loading {config.dataset.name} from {datasets.describe_root(config.dataset)}")
    calibration = datasets.calibration_images(config.dataset, config.calibration, spec.sample_shape)
    evaluation = datasets.evaluation_images(config.dataset, config.evaluation.split, spec.sample_shape)
    check_classifier(model, spec, evaluation, len(datasets.class_names(config.dataset)), source_path)
    if config.tuning.objective is Objective.LATENCY:  # candidates are timed at the largest batch size
        spec.require_batch_fits(
            max(config.benchmark.batch_sizes), config.benchmark.max_batch_bytes, "benchmark.batch_sizes", source_path
        )
    session = SessionSettings.of(config)
    evaluator = AccuracyEvaluator(evaluation, config.evaluation.batch_size, session)

    # INC quantizes a batch-capable copy (checked to give the original's outputs), so the emitted model
    # runs at any batch size, and the fp32 baseline and every candidate are scored at evaluation.batch_size.
    batch_model = rewrite.batch_capable_copy(model, source_path)
    verify_batch_copy(model, batch_model, evaluation.images, source_path)

    # The run folder gets INC's workspace only now: a missing or bad input leaves no folder beside the model.
    # Only rank 0 writes outputs; a worker writes nothing but INC's scratch in its workspace.
    if world.rank == 0:
        prepare_output_dir(output_model.parent)
        for output in (output_model, summary_path):  # what a run killed while writing them left
            remove_stale_temporaries(output)
    stages.lap("load_data")
    if inc_on_this_rank:
        prepare_scratch_dir(workspace)
        route_inc_logs(workspace / "inc.log", echo_to_console=verbose and world.rank == 0)  # imports INC
    stages.lap("import_inc")

    say(
        f"tune: quantizing with INC, objective {config.tuning.objective.value}: {len(calibration)} calibration "
        f"images, each candidate evaluated on {len(evaluation):,} images (INC's log: {workspace / 'inc.log'})"
    )
    if config.tuning.objective is Objective.LATENCY:
        outcome = quantize_for_latency(
            batch_model, calibration, evaluator, evaluation.images, config, workspace, source_path, say
        )
    else:
        outcome = quantize(batch_model, calibration, evaluator, config, workspace)
        if outcome is not None:
            _require_loadable(outcome.model, config, session)
    if outcome is None:  # a worker rank: its trials are on rank 0, which writes the model and the summary
        return None
    if outcome.measurement is not None:
        stages.split("search", outcome.measurement["seconds"])
    else:
        stages.lap("inc_tuning")

    session_options = session.describe()
    # The model and its summary are replaced together or not at all (a summary that cannot be written
    # must not leave a new model described by an old summary).
    with atomic_outputs():
        payload = onnx_io.save_model(
            outcome.model,
            output_model,
            metadata={
                "preprocessing": config.preprocessing,
                "source_sha256": source_sha256,
                "config_sha256": config.quantization_sha256(),
                "fp32_top1_accuracy": outcome.fp32_accuracy,
                "int8_top1_accuracy": outcome.int8_accuracy,
                "evaluation_split": f"{config.dataset.name}/{config.evaluation.split.value}",
                # Where it is meant to run: objective latency chose it by its speed there.
                "deployment_runtime": config.deployment.runtime.value,
                # The onnxruntime session options every number above (and the tuning's timing) was measured with.
                "session_options": session_options,
            },
        )
        summary = TuningSummary(
            source_model=str(source_path),
            source_sha256=source_sha256,
            output_model=str(output_model),
            fp32_top1_accuracy=outcome.fp32_accuracy,
            int8_top1_accuracy=outcome.int8_accuracy,
            trials=outcome.trials,
            source_bytes=source_path.stat().st_size,
            output_bytes=len(payload),
            seconds=time.perf_counter() - started,
            stage_seconds=stages.lap("write_model"),
            config_sha256=config.quantization_sha256(),
            summary_path=str(summary_path),
            objective=outcome.objective.value,
            chosen_trial=outcome.chosen_index,
            reason=outcome.reason,
            session_options=session_options,
            latency_measurement=outcome.measurement,
            output_sha256=hashlib.sha256(payload).hexdigest(),
            warning=outcome.warning,
            deployment_runtime=config.deployment.runtime.value,
            distributed=(
                {"ranks": world.size, "trial_order": _TRIAL_ORDER[outcome.objective]} if world.distributed else None
            ),
            search=outcome.search,
        )
        write_text_atomic(summary_path, json.dumps(asdict(summary), indent=2) + "\n")
    return summary


# Under MPI: objective accuracy lists INC's trials as the ranks finished them; objective latency, as rank 0 made them.
_TRIAL_ORDER = {Objective.ACCURACY: "evaluation finished", Objective.LATENCY: "made"}


class Stages:
    """Seconds per stage of a run, from the package's import (:data:`tuning.STARTED`) on."""

    def __init__(self, started: float) -> None:
        self._mark = started
        self.seconds: dict[str, float] = {"start_up": round(started - tuning.STARTED, 3)}

    def lap(self, name: str) -> dict[str, float]:
        """Close stage ``name`` now; returns every stage so far."""
        now = time.perf_counter()
        self.seconds[name] = round(now - self._mark, 3)
        self._mark = now
        return dict(self.seconds)

    def split(self, name: str, parts: dict[str, float]) -> None:
        """Close stage ``name`` now, as the parts its own clock measured (in order; the rest goes to the first)."""
        now = time.perf_counter()
        total, rest = now - self._mark, list(parts)[1:]
        self.seconds |= {name: round(total - sum(parts[key] for key in rest), 3)} | {key: round(parts[key], 3) for key in rest}
        self._mark = now


def _require_loadable(model: onnx.ModelProto, config: PipelineConfig, session: SessionSettings) -> None:
    """Objective accuracy keeps INC's first passing candidate, which the deployment's runtime may refuse
    (OpenVINO cannot convert per-channel QOperator graphs); objective latency only keeps loadable ones."""
    runtime = config.deployment.runtime
    try:
        runtimes.open_runner(model, runtime, session, "the int8 model INC chose")
    except InputError as exc:
        raise TuningError(
            f"{exc}; nothing written. deployment.runtime is {runtime.value}: set quantization.format: QDQ, "
            "or tuning.objective: latency, which keeps only candidates the runtime loads"
        ) from None


def summary_lines(summary: TuningSummary) -> list[str]:
    """The run's summary as printed at the end of ``tune``: errors, sizes, every candidate, the choice."""
    lines: list[str] = []
    fp32_error = 1 - summary.fp32_top1_accuracy
    int8_error = 1 - summary.int8_top1_accuracy
    lines.append(
        f"Tuned {summary.source_model} -> {summary.output_model} in {summary.seconds:.1f} s "
        f"({summary.int8_trials} INC trial{'s' if summary.int8_trials != 1 else ''}, objective {summary.objective}"
        + (f", {summary.distributed['ranks']} MPI ranks" if summary.distributed else "")
        + ")"
    )
    if summary.deployment_runtime != "onnxruntime":
        # INC's evaluation runs on onnxruntime whatever the deployment; report shows each runtime's accuracy.
        lines.append(f"  top-1 error scored on onnxruntime; deployment.runtime {summary.deployment_runtime}")
    lines.append(f"  {'model':<6}{'top-1 error':>13}{'size':>12}")
    lines.append(f"  {'fp32':<6}{fp32_error:>13.2%}{summary.source_bytes:>10,} B")
    lines.append(f"  {'int8':<6}{int8_error:>13.2%}{summary.output_bytes:>10,} B")
    lines.append(f"  error change: {100 * (int8_error - fp32_error):+.2f} percentage points")
    measurement = summary.latency_measurement
    if measurement is not None:
        lines.append(
            f"Candidates meeting the criterion: timed with fp32 and its A/A twin, in turns, in "
            f"{measurement['rounds']} fresh session sets, on {runtimes.conditions_phrase(measurement['runtime_conditions'])}; "
            f"time ratio int8/fp32 at batch 1 (below 1: faster), throughput ratio int8/fp32 at batch "
            f"{measurement['throughput_batch_size']} (above 1: faster; timed for the chosen one only): paired median [interval]"
        )
        lines.append(f"Choice rule: {measurement['choice_rule']}")
    if summary.search is not None:
        lines.append(search_line(summary.search))
    if summary.distributed and summary.objective == Objective.LATENCY.value:
        lines.append(
            f"Candidates: made, screened and timed by rank 0, scored by ranks 0-{summary.distributed['ranks'] - 1}, "
            "listed in the order they were made"
        )
    elif summary.distributed:
        lines.append(
            f"Candidates: evaluated by ranks 1-{summary.distributed['ranks'] - 1} (rank 0 hands them out), "
            f"listed in the order their evaluations finished"
        )
    lines += [f"  {line}" for line in candidate_table(summary.trials, measurement)]
    chosen = next((trial for trial in summary.trials if trial.chosen), None)
    if chosen is not None:
        lines.append(f"Chosen: trial {chosen.index} ({chosen.description}): {chosen.reason}")
        lines.extend(f"  rewrite: {rewrite}" for rewrite in chosen.rewrites)
    if summary.warning:
        lines.append(f"warning: {summary.warning}")
    if summary.search is not None and summary.search["cut"]:
        lines.append(f"warning: {summary.search['cut']}")
    if summary.stage_seconds:
        lines.append("Time by stage: " + ", ".join(f"{name.replace('_', ' ')} {seconds:.1f} s" for name, seconds in summary.stage_seconds.items()))
    lines.append(f"Summary (every trial): {summary.summary_path}")
    # The answer last, where a terminal leaves the eye: accuracy change, then whether int8 pays here.
    accuracy = (
        f"top-1 error int8 {100 * int8_error:.2f} % vs fp32 {100 * fp32_error:.2f} % "
        f"({100 * (int8_error - fp32_error):+.2f} pp)"
    )
    speed = f"; {measurement['verdict']['line']}" if measurement is not None else " (objective accuracy: not timed)"
    lines.append(f"Answer: {accuracy}{speed}")
    return lines


def search_line(search: dict[str, Any]) -> str:
    """Which search ran, within which budget, and how many models it made, screened, scored and timed."""
    models = search["models"]
    budget = search["budget"]
    limits = f"tuning.max_trials {budget['max_trials']}" + (f", tuning.timeout_s {budget['timeout_s']}" if budget["timeout_s"] else "")
    stages = "; ".join(f"{stage['name']} {stage['made']}/{stage['planned']}" for stage in search["stages"])
    unused = models.get("scored_ahead_unused")  # under MPI only
    ahead = f" (and {unused} scored ahead on other ranks, unused)" if unused is not None else ""
    timings = f" ({search['finalist_timings']} timings: noise hid the choice)" if search["finalist_timings"] > 1 else ""
    return (
        f"Search: {search['name']} (tuning.latency.search) in {search['seconds']:.1f} s, budget {limits}: "
        f"{models['made']} candidates made ({models['distinct']} distinct), {models['screened']} screened, "
        f"{models['scored']} scored{ahead}, {models['timed']} timed in full{timings}; stages made/planned: {stages}"
        + ("; cut by " + search["cut_by"] if search["cut_by"] else "; nothing cut")
    )


def candidate_table(trials: Sequence[Trial], measurement: dict[str, Any] | None) -> list[str]:
    """The distinct models among the trials, one row each, as an aligned text table.

    A trial that made the same bytes as an earlier one was neither evaluated nor timed again; it is
    named in its original's row ("same model"), so a 100-candidate grid prints one row per model.
    Node counts are over the fp32 graph's nodes (what each became), so every row adds up to the same total.
    """
    duplicates: dict[int, list[int]] = {}
    for trial in trials:
        if trial.same_model_as is not None:
            duplicates.setdefault(trial.same_model_as, []).append(trial.index)
    distinct = [trial for trial in trials if trial.same_model_as is None]
    timed = measurement is not None
    batch = measurement["throughput_batch_size"] if timed else None
    header = ["trial", "candidate", "top-1", "criterion", "nodes int8/fp32/folded"]
    if timed:
        header += ["p50 µs", "time vs fp32 [interval]", f"img/s @{batch}", "img/s vs fp32 [interval]"]
    if any(trial.rank is not None for trial in trials):
        header.append("rank")
    header.append("same model")
    rows = []
    for trial in distinct:
        counts = trial.node_counts
        row = [
            f"{trial.index}{' *' if trial.chosen else ''}",
            trial.description,
            "-" if trial.accuracy is None else f"{trial.accuracy:.2%}",
            _verdict(trial),
            f"{counts['int8']}/{counts['fp32']}/{counts['folded']}",
        ]
        if timed and trial.latency_ratio is not None:
            row += [
                f"{1000 * trial.latency_p50_ms:.1f}",
                ratio(Spread(trial.latency_ratio, *trial.latency_ratio_interval), plain=True),
            ]
            row += (
                [f"{trial.throughput_images_per_s:,.0f}", ratio(Spread(trial.throughput_ratio, *trial.throughput_ratio_interval), plain=True)]
                if trial.throughput_ratio is not None
                else ["-", "chosen one only"]
            )
        elif timed:
            screened = trial.screening_ratio
            status = (
                f"{measurement['runtime']} cannot load it"
                if trial.unloadable
                else f"same graph as trial {trial.same_graph_as} ({screened:.2f}x)"
                if trial.same_graph_as is not None and screened is not None
                else f"screened out ({screened:.2f}x)" if screened is not None else "not timed"
            )
            row += ["-", status, "-", "-"]
        if "rank" in header:
            row.append("-" if trial.rank is None else str(trial.rank))
        same = duplicates.get(trial.index, [])
        row.append(f"trial{'s' if len(same) > 1 else ''} {', '.join(map(str, same))}" if same else "")
        rows.append(row)
    widths = [max(len(cells[column]) for cells in [header, *rows]) for column in range(len(header))]
    total = len(trials[0].source_precisions) if trials else 0
    return [
        f"{len(trials) - 1} int8 trials, {len(distinct) - 1} distinct models (* chosen); nodes: what each of the "
        f"fp32 graph's {total} nodes became (folded: into a neighbour, e.g. a Relu into the int8 op before it)",
        *("  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip() for cells in [header, *rows]),
    ]


def _verdict(trial: Trial) -> str:
    if trial.index == 0:
        return "baseline"
    if trial.meets_criterion is None:
        return "not loadable" if trial.unloadable else "not scored"
    return "meets" if trial.meets_criterion else "misses"

