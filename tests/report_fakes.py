"""Reports made of chosen numbers, for tests of what the plots and pages draw: no model is run, nothing is timed.

Every round of a timing is a constant array, so its per-round p50 (and every ratio made of them) is the number
given here, exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuning.config.enums import PixelScale, Runtime
from tuning.config.loading import load_config
from tuning.graph.nodes import Precision
from tuning.measure.benchmark import Performance, Timing
from tuning.measure.environment import Environment
from tuning.report.accuracy import Accuracy
from tuning.report.numbers import ModelEntry, ModelResult, Report, Role, RuntimeResult

ROOT = Path(__file__).resolve().parent.parent
CPU_MODEL = "Example CPU 9000 @ 3.0GHz"
RUNS_PER_ROUND = 40
CANNOT_LOAD = "the runtime cannot convert QLinearConv (test)"


def timing(batch_size: int, round_p50s_ms: Sequence[float]) -> Timing:
    """A timing whose rounds have exactly these p50s (each round's runs all take its p50)."""
    return Timing(batch_size, 0, tuple(np.full(RUNS_PER_ROUND, p50) for p50 in round_p50s_ms))


def performance(name: str, latency_runs_ms: np.ndarray, batch_round_p50s_ms: Mapping[int, Sequence[float]]) -> Performance:
    """Batch-1 latency of the given runs (one round), throughput at each batch size from its per-round p50s."""
    latency = Timing(1, 0, (np.asarray(latency_runs_ms, dtype=float),))
    return Performance(name, latency, tuple(timing(b, p50s) for b, p50s in sorted(batch_round_p50s_ms.items())))


def _conditions(runtime: Runtime) -> dict[str, Any]:
    """What a runner of ``runtime`` reads back, as tables and the Conditions section quote it."""
    if runtime is Runtime.ONNXRUNTIME:
        return {"runtime": "onnxruntime", "version": "1.2.3", "config_entries": {}, "intra_op_num_threads": 1}
    return {"runtime": "openvino", "version": "2026.4.1-test", "requested": {}, "inference_precision": "bf16",
            "inference_num_threads": 1, "num_streams": 1, "performance_hint": "LATENCY"}  # fmt: skip


def _accuracy() -> Accuracy:
    return Accuracy(PixelScale.UNIT, np.eye(10, dtype=np.int64) * 100, 1.0, 0, 0, 0)


def fake_report(
    timings: Mapping[str, Mapping[Runtime, Performance]],
    batch_sizes: Sequence[int],
    unavailable: Mapping[Runtime, str] | None = None,
) -> Report:
    """A report of the models in ``timings`` (the first is fp32, the second int8, any further ones references),
    each timed on the runtimes given and unable to load on the other measured ones; ``unavailable`` runtimes
    are configured but not installed."""
    unavailable = dict(unavailable or {})
    measured = list(dict.fromkeys(runtime for by_runtime in timings.values() for runtime in by_runtime))
    config = load_config(
        ROOT / "configs" / "mnist.yaml",
        {
            "benchmark.batch_sizes": list(batch_sizes),
            "benchmark.runtimes": [runtime.value for runtime in [*measured, *unavailable]],
            "benchmark.rounds": 3,
        },
    )
    roles = [Role.FLOAT, Role.INT8] + [Role.REFERENCE] * (len(timings) - 2)
    models = [
        ModelResult(
            entry=ModelEntry(name, role, Path(f"{name}.onnx")),
            sha256="0" * 64,
            size_bytes=1000,
            op_types={},
            precisions={kind.value: [] for kind in Precision},
            declared_preprocessing=None,
            accuracy=_accuracy(),
            accuracy_other_scale=_accuracy(),
            runtimes={
                runtime: RuntimeResult(
                    runtime,
                    top1_accuracy=1.0,
                    images=1000,
                    conditions=_conditions(runtime),
                    performance=by_runtime[runtime],
                )
                if runtime in by_runtime
                else RuntimeResult(runtime, error=CANNOT_LOAD)
                for runtime in measured
            },
        )
        for (name, by_runtime), role in zip(timings.items(), roles)
    ]
    environment = Environment(
        cpu_model=CPU_MODEL,
        cpu_flags={"avx512_vnni": True},
        cpu_count=8,
        usable_cpus=8,
        system="Linux-test",
        machine="x86_64",
        python="3.11",
        versions={"onnxruntime": "1.2.3", "openvino": None},
    )
    return Report(
        config=config,
        evaluation_images=1000,
        environment=environment,
        models=models,
        created_utc="2026-01-01T00:00:00+00:00",
        unavailable_runtimes=unavailable,
    )
