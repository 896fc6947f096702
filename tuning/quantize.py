"""Accuracy-driven post-training quantization with Intel Neural Compressor (onnxruntime backend).

INC 3.x reads no YAML: ``inc_config`` maps this project's config onto INC's 2.x-API
objects. ``quantize`` runs ``quantization.fit`` and records every candidate INC evaluated.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from tuning.config import Approach, CriterionKind, PipelineConfig, QuantFormat, Strategy
from tuning.data import BatchLoader, LabelledImages
from tuning.errors import TuningError
from tuning.graph import Precision, node_precisions


@dataclass(frozen=True)
class Trial:
    """One candidate INC evaluated; trial 0 is the fp32 baseline."""

    index: int
    accuracy: float
    meets_criterion: bool
    int8_nodes: tuple[str, ...]
    fp32_nodes: tuple[str, ...]


@dataclass
class TuningOutcome:
    model: onnx.ModelProto
    fp32_accuracy: float
    int8_accuracy: float
    trials: list[Trial] = field(default_factory=list)


def meets_criterion(accuracy: float, fp32_accuracy: float, config: PipelineConfig) -> bool:
    """INC's acceptance rule: relative loss ``(fp32 - int8) / fp32`` or absolute loss ``fp32 - int8``."""
    criterion = config.tuning.accuracy_criterion
    loss = fp32_accuracy - accuracy
    if criterion.kind is CriterionKind.RELATIVE:
        loss /= fp32_accuracy
    return loss <= criterion.tolerance


def inc_config(config: PipelineConfig):  # -> neural_compressor.config.PostTrainingQuantConfig
    from neural_compressor.config import AccuracyCriterion, PostTrainingQuantConfig, TuningCriterion

    quant = config.quantization
    tuning = config.tuning
    fp32_only = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}
    # INC matches op_type_dict keys as regular expressions; ".*" sets the algorithm for every op type.
    op_type_dict: dict = {}
    if quant.approach is Approach.STATIC:
        op_type_dict[".*"] = {"activation": {"algorithm": [quant.calibration_algorithm.value]}}
    op_type_dict.update({op_type: fp32_only for op_type in quant.fp32_op_types})
    strategy_is_auto = tuning.strategy is Strategy.AUTO
    return PostTrainingQuantConfig(
        device="cpu",
        backend="default",
        approach=quant.approach.value,
        quant_format=quant.format.value,
        calibration_sampling_size=[config.calibration.sampling_size],
        op_type_dict=op_type_dict or None,
        op_name_dict={name: fp32_only for name in quant.fp32_op_names} or None,
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


def quantize(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    config: PipelineConfig,
    workspace: Path,
) -> TuningOutcome:
    """Run INC's tuning loop; raise TuningError when it yields no model meeting the criterion."""
    from neural_compressor import quantization, set_random_seed, set_workspace

    workspace.mkdir(parents=True, exist_ok=True)
    set_workspace(str(workspace))
    set_random_seed(config.tuning.seed)
    trials: list[Trial] = []

    def eval_func(candidate):
        accuracy = evaluate(candidate)
        trials.append(_trial(len(trials), accuracy, candidate, trials, config))
        return accuracy

    calibration_loader = (
        BatchLoader(calibration, config.calibration.batch_size)
        if config.quantization.approach is Approach.STATIC
        else None
    )
    try:
        result = quantization.fit(
            model, inc_config(config), calib_dataloader=calibration_loader, eval_func=eval_func
        )
    except Exception as exc:  # INC raises bare Exceptions of many kinds from deep inside its adaptors
        raise TuningError(f"INC failed during tuning: {exc.__class__.__name__}: {exc}") from None
    if result is None:
        raise TuningError(_no_model_message(trials, workspace / "inc.log"))
    # The emitted model is measured again rather than matched to a trial: the number reported is its own.
    return TuningOutcome(
        model=result.model,
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=evaluate(result.model),
        trials=trials,
    )


def _no_model_message(trials: list[Trial], log_path: Path) -> str:
    if len(trials) < 2:
        return f"INC returned no model before evaluating any int8 candidate; see {log_path}"
    best = max(trial.accuracy for trial in trials[1:])
    return (
        f"INC found no int8 model meeting the accuracy criterion in {len(trials) - 1} trials "
        f"(best {best:.4%} against fp32 {trials[0].accuracy:.4%}); loosen tuning.accuracy_criterion "
        f"or raise tuning.max_trials (INC's log: {log_path})"
    )


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
    log_path.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_path, mode="w")
    file_handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
    log.addHandler(file_handler)
    log.setLevel(logging.INFO)


def _trial(index: int, accuracy: float, candidate, previous: list[Trial], config: PipelineConfig) -> Trial:
    proto = candidate if isinstance(candidate, onnx.ModelProto) else candidate.model
    precisions = node_precisions(proto)
    fp32_accuracy = previous[0].accuracy if previous else accuracy
    return Trial(
        index=index,
        accuracy=accuracy,
        meets_criterion=meets_criterion(accuracy, fp32_accuracy, config),
        int8_nodes=tuple(name for name, p in precisions.items() if p is Precision.INT8),
        fp32_nodes=tuple(name for name, p in precisions.items() if p is Precision.FP32),
    )
