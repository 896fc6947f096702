"""This project's config in INC's terms: ``PostTrainingQuantConfig`` and INC's names for the graph's nodes.

INC 3.x reads no YAML: :func:`inc_config` maps the config (or one latency-search candidate of it) onto INC's
2.x-API objects. INC addresses nodes by name in the graph it has already rewritten, so the names a user gives
are turned into INC's patterns here (:func:`node_pattern`), and what INC made is checked against what was
asked (:func:`check_kept_in_fp32`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnx

from tuning.config.enums import Approach, CalibrationAlgorithm, QuantFormat, Strategy
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError, TuningError
from tuning.graph.nodes import (
    COMPUTE_OP_TYPES,
    SourcePrecision,
    derived_node_names,
    source_precisions,
)
from tuning.inc.loading import import_inc

FP32_ONLY = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}


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


def inc_config(config: PipelineConfig, fp32_nodes: Sequence[str], candidate: CandidateSpec | None = None):
    """INC's PostTrainingQuantConfig for ``config``, or for one latency-grid ``candidate`` of it.

    ``fp32_nodes`` are the fp32 graph's nodes the config keeps in fp32 (:func:`fp32_requests`): INC
    gets them by name, since it matches ``op_type_dict`` against its own graph, where a Gemm is
    already a MatMul and an Add.
    """
    import_inc()
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
    # INC chooses its strategy by quant_level: "auto" runs conservative then basic, 0 is conservative (which
    # TuningCriterion does not accept by name), 1 is the strategy named in TuningCriterion.
    quant_level = {Strategy.AUTO: "auto", Strategy.CONSERVATIVE: 0}.get(tuning.strategy, 1)
    named_strategy = "basic" if quant_level != 1 else tuning.strategy.value
    return PostTrainingQuantConfig(
        device="cpu",
        backend="default",
        approach=quant.approach.value,
        quant_format=quant_format.value,
        calibration_sampling_size=[config.calibration.sampling_size],
        op_type_dict=op_type_dict or None,
        op_name_dict=op_name_dict or None,
        quant_level=quant_level,
        accuracy_criterion=AccuracyCriterion(
            higher_is_better=True,
            criterion=tuning.accuracy_criterion.kind.value,
            tolerable_loss=tuning.accuracy_criterion.tolerance,
        ),
        tuning_criterion=TuningCriterion(
            strategy=named_strategy,
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
