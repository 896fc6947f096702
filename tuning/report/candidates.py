"""The tuning run behind the int8 model: its candidates, read from the run's summary for the report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


TUNING_SUMMARY = "tuning_summary.json"  # written by the tune command into output.dir

# Keys of each trial in tuning_summary.json copied into report.json's tuning.candidates (tuning.search.trials.Trial).
_CANDIDATE_KEYS = (
    "index", "accuracy", "meets_criterion", "int8_nodes", "fp32_nodes", "quant_format", "calibration_algorithm",
    "fp32_fallback", "fp32_compute_nodes", "source_precisions", "rewrites", "same_model_as", "same_graph_as",
    "screening_ratio",
    "latency_p50_ms", "latency_ratio", "latency_ratio_rounds", "throughput_images_per_s", "throughput_ratio",
    "throughput_ratio_rounds", "chosen", "reason", "model_sha256", "unloadable",
)


def tuning_candidates(summary_path: Path, int8_sha256: str) -> tuple[dict[str, Any] | None, str | None]:
    """The candidates of the tuning run that made the int8 model, or None and why they are left out.

    They are taken only from a summary whose ``output_sha256`` is the int8 model's: a summary of
    another run (or another model) would describe a different model.
    """
    if not summary_path.is_file():
        return None, None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        if summary.get("output_sha256") != int8_sha256:
            return None, (
                f"`{summary_path}` describes another model (sha256 {str(summary.get('output_sha256'))[:16]}…), "
                "not this int8 model; its candidates are not listed."
            )
        candidates = [{key: trial.get(key) for key in _CANDIDATE_KEYS} for trial in summary["trials"]]
        section = {
            "summary_path": str(summary_path),
            "objective": summary["objective"],
            "chosen_trial": summary["chosen_trial"],
            "reason": summary["reason"],
            "latency_measurement": summary["latency_measurement"],
            "candidates": candidates,
        }
    # ValueError: JSON errors, and integers past Python's digit limit; RecursionError: nesting past the stack.
    except (OSError, ValueError, RecursionError, KeyError, TypeError, AttributeError) as exc:
        return None, f"`{summary_path}` could not be read ({exc.__class__.__name__}); no tuning candidates listed."
    return section, None
