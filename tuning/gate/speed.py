"""The gate's speed checks: a ratio's confidence interval against a threshold, in three states.

A speed check never judges a point estimate: on a shared machine a point moves by more than the margins
CI cares about. It reads the interval the report wrote beside the ratio (tuning/measure/statistics.py:
the paired median over session sets, its order-statistic interval widened by the A/A pair) and says

- PASS when the whole interval is within the threshold,
- FAIL only when the whole interval is worse than the threshold,
- INCONCLUSIVE when the interval straddles it: the measurement cannot tell at this noise. Policy
  ``gates.if_speed_inconclusive``: ``warn`` (default: the check passes and says so, noise never fails CI)
  or ``fail``.

Directions (docs/gate.md): ``max_latency_ratio`` bounds the time ratio int8/float at batch 1 (lower is
better); ``min_throughput_ratio`` bounds the images/s ratio int8/float at the largest batch (higher is better).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from tuning.config.enums import SpeedInconclusive
from tuning.errors import InputError

# A bound equal to its threshold in every printed digit is within it (float noise from JSON round trips).
_SLACK = 1e-9


class SpeedState(str, Enum):
    PASS = "PASS"
    FAIL = "FAIL"
    INCONCLUSIVE = "INCONCLUSIVE"


@dataclass(frozen=True)
class RatioInterval:
    """A ratio as the report wrote it: the median and its interval."""

    value: float
    low: float
    high: float


def read_interval(value: float, document: Any, where: str) -> RatioInterval:
    """The interval ``document`` (``{"value", "min", "max"}`` of report.json) around ``value``; a report that
    wrote no interval (schema before intervals) gives the point itself, judged as exact."""
    if document is None:
        return RatioInterval(value, value, value)
    bounds = [document.get(key) if isinstance(document, dict) else None for key in ("min", "max")]
    if not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) and b > 0 for b in bounds):
        raise InputError(f"{where}: expected positive numbers min and max, got {document!r}")
    low, high = bounds
    if not low - _SLACK <= value <= high + _SLACK:
        raise InputError(f"{where}: the interval [{low}, {high}] does not hold its median {value}")
    return RatioInterval(value, low, high)


def speed_state(interval: RatioInterval, threshold: float, comparison: str) -> SpeedState:
    """``comparison`` is what passing requires: ``<=`` (a time ratio, lower is better) or ``>=`` (a throughput
    ratio, higher is better)."""
    if comparison == "<=":
        if interval.high <= threshold + _SLACK:
            return SpeedState.PASS
        return SpeedState.FAIL if interval.low > threshold + _SLACK else SpeedState.INCONCLUSIVE
    if interval.low >= threshold - _SLACK:
        return SpeedState.PASS
    return SpeedState.FAIL if interval.high < threshold - _SLACK else SpeedState.INCONCLUSIVE


@dataclass(frozen=True)
class SpeedJudgement:
    state: SpeedState
    passed: bool  # after the inconclusive policy
    message: str


def judge(
    name: str,
    interval: RatioInterval,
    threshold: float,
    comparison: str,
    policy: SpeedInconclusive,
    note: str = "",
) -> SpeedJudgement:
    """The check's state, whether it passes under ``policy``, and its one-line message."""
    state = speed_state(interval, threshold, comparison)
    measured = f"{interval.value:.3f}x [{interval.low:.3f}-{interval.high:.3f}]"
    bound = f"{'at most' if comparison == '<=' else 'at least'} {threshold:g}x"
    if state is SpeedState.PASS:
        passed, outcome = True, f"whole interval within {bound}"
    elif state is SpeedState.FAIL:
        passed, outcome = False, f"whole interval worse than {bound}"
    else:
        passed = policy is SpeedInconclusive.WARN
        outcome = (
            f"INCONCLUSIVE: the interval straddles {bound}, cannot tell at this noise "
            f"(gates.if_speed_inconclusive: {policy.value}, so it {'passes with this warning' if passed else 'fails'})"
        )
    message = f"{name}: {measured} {outcome}" + (f" {note}" if note else "")
    return SpeedJudgement(state, passed, message)
