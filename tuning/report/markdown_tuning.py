"""report.md's tuning section: every candidate of the tuning run that made the int8 model."""

from __future__ import annotations

import json
from typing import Any

from tuning.measure.benchmark import Spread, threads_phrase
from tuning.measure.figures import count, error_pct, factor, ratio, us
from tuning.measure.runtimes import conditions_phrase
from tuning.report.candidates import TUNING_SUMMARY
from tuning.report.markdown_table import markdown_table
from tuning.report.numbers import Report


def tuning_section(report: Report) -> str:
    tuning = report.tuning
    if tuning is None:
        note = report.tuning_note or "No tuning summary (`<output.dir>/" + TUNING_SUMMARY + "`) found."
        return f"## Tuning candidates\n\n{note}"
    measurement = tuning["latency_measurement"]
    timed = measurement is not None
    largest = measurement["throughput_batch_size"] if timed else None
    header = ["trial", "candidate", "fp32-graph nodes int8 / fp32 / folded", "top-1 error", "criterion"]
    if timed:
        header += ["p50 (batch 1)", "p50 ratio (per round)", f"img/s @ {largest}", "throughput ratio"]
    header.append("chosen")
    rows = []
    for trial in tuning["candidates"]:
        row = [
            str(trial["index"]),
            _candidate_description(trial),
            " / ".join(str(list((trial["source_precisions"] or {}).values()).count(p)) for p in ("int8", "fp32", "folded")),
            error_pct(trial["accuracy"]),
            _verdict(trial),
        ]
        if timed and trial["latency_ratio"] is not None:
            row += [
                us(trial["latency_p50_ms"]),
                ratio(Spread.of_rounds(trial["latency_ratio_rounds"])),
            ]
            row += (
                [count(trial["throughput_images_per_s"]), ratio(Spread.of_rounds(trial["throughput_ratio_rounds"]))]
                if trial["throughput_ratio_rounds"]
                else ["—", "chosen model only"]
            )
        elif timed:
            screened = trial.get("screening_ratio")
            status = (
                f"{measurement.get('runtime')} cannot load it"
                if trial.get("unloadable")
                else f"same graph as trial {trial['same_graph_as']} ({factor(screened)})"
                if trial.get("same_graph_as") is not None and screened is not None
                else f"screened out at {factor(screened)}" if screened is not None else "not timed"
            )
            row += ["—", status, "—", "—"]
        row.append("**yes**" if trial["chosen"] else "")
        rows.append(row)
    lines = [
        "## Tuning candidates",
        "",
        f"Every candidate the tuning run tried (objective `{tuning['objective']}`, from `{tuning['summary_path']}`). "
        f"Chosen: trial {tuning['chosen_trial']}: {tuning['reason']}.",
        "",
        markdown_table(header, rows),
    ]
    if timed:
        entries = measurement["session_options"].get("config_entries", {})
        lines += [
            "",
            "Timed at tuning time, in another run than this report's tables (so absolute figures differ; compare "
            f"ratios): {measurement['models']}; {measurement['rounds']} rounds of at least "
            f"{measurement['iterations']} images and {measurement['min_time_s']:g} s per model at batch 1 and at "
            f"batch {largest}, {threads_phrase(measurement['intra_op_threads'])}, session config entries "
            f"`{json.dumps(entries, sort_keys=True)}`"
            + (f", on {conditions_phrase(measurement['runtime_conditions'])}" if "runtime_conditions" in measurement else "")
            + f". Choice rule: {measurement['choice_rule']}.",
        ]
    return "\n".join(lines)


def _verdict(trial: dict[str, Any]) -> str:
    if trial["index"] == 0:
        return "baseline"
    if trial["meets_criterion"] is None:
        return "not loadable" if trial.get("unloadable") else "not scored (screened out)"
    return "meets" if trial["meets_criterion"] else "misses"


def _candidate_description(trial: dict[str, Any]) -> str:
    if trial["index"] == 0:
        return "fp32 baseline"
    fp32 = ", ".join(trial["fp32_compute_nodes"] or []) or "none"  # what the graph holds, not what was asked
    if trial["quant_format"] is None:
        return f"INC trial, fp32: {fp32}"
    text = f"{trial['quant_format']}, {trial['calibration_algorithm'] or 'no calibration'}, fp32: {fp32}"
    return text + (f" (same model as trial {trial['same_model_as']})" if trial["same_model_as"] is not None else "")
