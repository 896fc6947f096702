"""Trials: the record of every candidate a search made, and the accuracy criterion that judges them.

Both searches (tuning/search/accuracy.py, tuning/search/latency.py) record their candidates as
:class:`Trial` s; the summary, the run folder's JSON and the report read them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from tuning.config.enums import CriterionKind, Objective
from tuning.config.schema import PipelineConfig
from tuning.errors import InputError
from tuning.graph.nodes import (
    COMPUTE_OP_TYPES,
    Precision,
    SourcePrecision,
    node_precisions,
    source_precisions,
)


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
    # The same graph as this earlier distinct trial, with other constants (another calibration's scales): the same
    # kernels on the same shapes, so it shares that trial's speed (screened and timed once, tuning/search/candidates.py).
    same_graph_as: int | None = None
    screening_ratio: float | None = None  # objective latency: batch-1 p50 / fp32's in the screening round
    latency_p50_ms: float | None = None  # batch 1
    # Time ratio int8/fp32 at batch 1 (below 1: faster): the median over session sets of the paired ratios,
    # its confidence interval (tuning/measure/statistics.py), and each session set's median.
    latency_ratio: float | None = None
    latency_ratio_interval: tuple[float, float] | None = None
    latency_ratio_rounds: tuple[float, ...] = ()
    throughput_images_per_s: float | None = None  # at the largest benchmark batch size, all session sets
    # Images/s ratio int8/fp32 (above 1: faster) at that batch size, likewise.
    throughput_ratio: float | None = None
    throughput_ratio_interval: tuple[float, float] | None = None
    throughput_ratio_rounds: tuple[float, ...] = ()
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
    # Objective latency: which search ran, its budget, its stages, what the budget cut (tuning/search/budget.py)
    # and how many models were made, screened, scored and timed.
    search: dict[str, Any] | None = None


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


def no_model_message(trials: list[Trial], log_path: Path) -> str:
    if len(trials) < 2:
        return f"INC returned no model before evaluating any int8 candidate; see {log_path}"
    best = max(trial.accuracy for trial in trials[1:] if trial.accuracy is not None)
    return (
        f"INC found no int8 model meeting the accuracy criterion in {len(trials) - 1} trials "
        f"(best {best:.4%} against fp32 {trials[0].accuracy:.4%}); loosen tuning.accuracy_criterion "
        f"or raise tuning.max_trials (INC's log: {log_path})"
    )
