"""The JSON documents the CLI prints on stdout with ``--json`` (schema: docs/cli.md).

Each is one object with ``schema_version`` and ``command``, so a tool reading several commands'
output can tell them apart. Hashes are full; numbers are plain JSON numbers in the units their
names say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tuning.config.enums import Runtime
from tuning.config.schema import PipelineConfig
from tuning.files.fetch import sha256_of
from tuning.gate.checks import Check
from tuning.measure.benchmark import BenchmarkRun
from tuning.measure.environment import capture_environment

SCHEMA_VERSION = 1


def benchmark_document(
    run: BenchmarkRun, model_path: Path, mode: str, runtime: Runtime, config: PipelineConfig
) -> dict[str, Any]:
    """What ``benchmark --json`` prints: the same numbers as the text lines, unrounded."""
    timing = run.timing
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "benchmark",
        "model": {"path": str(model_path), "sha256": sha256_of(Path(model_path))},
        "mode": mode,
        "batch_size": run.batch_size,
        "top1_accuracy": run.accuracy,
        "latency_ms_per_image": None if timing is None else timing.latency_per_image_ms,
        "throughput_images_per_s": None if timing is None else timing.images_per_s,
        "throughput_images_per_s_rounds": None if timing is None else timing.images_per_s_spread.to_json(),
        "batch_time_ms": None
        if timing is None
        else {
            "p50": timing.p50,
            "p90": timing.p90,
            "p99": timing.p99,
            "mean": timing.mean,
            "timed_batches": timing.runs,
            "warmup_batches": timing.warmup_runs,
            "rounds": len(timing.rounds_ms),
        },
        "preprocessing": config.preprocessing,
        "intra_op_threads": config.benchmark.intra_op_threads,
        "runtime": runtime.value,
        "runtime_conditions": run.runtime_conditions,
        "conditions": run.conditions,
        "warnings": list(run.warnings),
        "versions": capture_environment().versions,
    }


def gate_document(
    checks: list[Check], report_path: Path, runtime: Runtime, baseline_written: Path | None
) -> dict[str, Any]:
    """What ``gate --json`` prints: every check with its measured value and threshold, and the verdict."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "gate",
        "report": str(report_path),
        "runtime": runtime.value,
        "passed": all(check.passed for check in checks),
        "checks": [
            {
                "name": check.name,
                "status": check.status,
                "measured": check.measured,
                "comparison": check.comparison,
                "threshold": check.threshold,
                "message": check.message,
            }
            for check in checks
        ],
        "baseline_written": None if baseline_written is None else str(baseline_written),
    }
