"""The gate's baseline: accepted numbers written by ``gate --write-baseline`` and read back by later gates.

Format: docs/gate.md. The checks against a baseline are evaluated with the others in :mod:`tuning.gate.checks`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuning.config.enums import Runtime
from tuning.gate.report_file import (
    Invalid,
    describe,
    latency_ratio,
    load_validated,
    model_of,
    optional_ratio,
    inference_precision,
    require,
    require_fraction,
    require_string,
    require_version,
    throughput_ratios,
    top1,
)

BASELINE_SCHEMA_VERSION = 2


def load_baseline(path: Path) -> dict[str, Any]:
    """Read a baseline written by ``gate --write-baseline`` (format: docs/gate.md)."""
    return load_validated(Path(path), "baseline", _validate_baseline)


def _validate_baseline(data: Any) -> None:
    require_version(data, "baseline", BASELINE_SCHEMA_VERSION)
    require_string(data, "runtime", "$")
    precision = require(data, "inference_precision", "$")
    if precision is not None and not isinstance(precision, str):
        raise Invalid(f"$.inference_precision: expected a string or null, got {describe(precision)}")
    require_fraction(data, "int8_top1_accuracy", "$")
    optional_ratio(require(data, "latency_p50_ratio", "$"), "$.latency_p50_ratio")
    throughput = require(data, "throughput_ratio", "$")
    optional_ratio(throughput, "$.throughput_ratio")
    if throughput is not None:
        batch = require(data, "throughput_batch_size", "$")
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise Invalid(f"$.throughput_batch_size: expected a positive integer, got {describe(batch)}")


def baseline_json(report: dict[str, Any], runtime: Runtime) -> str:
    """The report's numbers on ``runtime`` in the baseline format, for ``gate --write-baseline``."""
    throughput = throughput_ratios(report, runtime)
    batch = max(throughput, default=None)
    baseline = {
        "schema_version": BASELINE_SCHEMA_VERSION,
        "runtime": runtime.value,
        "inference_precision": inference_precision(report, runtime),
        "int8_top1_accuracy": top1(model_of(report, "int8"), runtime),
        "latency_p50_ratio": latency_ratio(report, runtime),
        "throughput_ratio": throughput[batch] if batch is not None else None,
        "throughput_batch_size": batch,
    }
    return json.dumps(baseline, indent=2) + "\n"
