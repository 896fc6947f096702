"""The path of a tuning run, top to bottom: fetch, data, quantize, save, summarise."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tuning import data, fetch, onnx_io
from tuning.atomic import write_text_atomic
from tuning.config import PipelineConfig
from tuning.evaluate import AccuracyEvaluator
from tuning.quantize import Trial, quantize, route_inc_logs


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

    @property
    def int8_trials(self) -> int:
        return len(self.trials) - 1


def run_tuning(config: PipelineConfig, verbose: bool = False) -> TuningSummary:
    started = time.perf_counter()
    workspace = config.output.dir / "nc_workspace"
    route_inc_logs(workspace / "inc.log", echo_to_console=verbose)

    source_path = fetch.ensure_file(config.model.path, config.model.url, config.model.sha256)
    source_sha256 = fetch.sha256_of(source_path)
    model = onnx_io.load_model(source_path)
    spec = onnx_io.describe(model, source_path)

    calibration = data.calibration_images(config.dataset, config.calibration, spec.sample_shape)
    evaluation = data.evaluation_images(config.dataset, config.evaluation.split, spec.sample_shape)
    evaluator = AccuracyEvaluator(evaluation, batch_size=config.evaluation.batch_size)

    outcome = quantize(model, calibration, evaluator, config, workspace)

    onnx_io.save_model(
        outcome.model,
        config.output.model,
        metadata={
            "preprocessing": config.preprocessing,
            "source_sha256": source_sha256,
            "config_sha256": config.quantization_sha256(),
            "fp32_top1_accuracy": outcome.fp32_accuracy,
            "int8_top1_accuracy": outcome.int8_accuracy,
            "evaluation_split": f"{config.dataset.name}/{config.evaluation.split.value}",
        },
    )
    summary_path = config.output.dir / "tuning_summary.json"
    summary = TuningSummary(
        source_model=str(source_path),
        source_sha256=source_sha256,
        output_model=str(config.output.model),
        fp32_top1_accuracy=outcome.fp32_accuracy,
        int8_top1_accuracy=outcome.int8_accuracy,
        trials=outcome.trials,
        source_bytes=source_path.stat().st_size,
        output_bytes=Path(config.output.model).stat().st_size,
        seconds=time.perf_counter() - started,
        config_sha256=config.quantization_sha256(),
        summary_path=str(summary_path),
    )
    write_text_atomic(summary_path, json.dumps(asdict(summary), indent=2) + "\n")
    return summary
