"""The choice rule of objective latency: which timed candidate is written, decided on significant differences only.

A candidate is *significantly faster* than another when the whole interval of their paired batch-1 time
ratio ``time(candidate) / time(other)`` lies below ``1 - tie_margin`` (tuning/measure/statistics.py). Noise
cannot make a candidate significantly faster, so among candidates that nothing beats the written one is
picked by a fixed preference, not by which of them measured faster this time: the file does not change
with the machine's load.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from tuning.measure.statistics import Interval
from tuning.search.trials import Trial

PREFERENCE = "QDQ before QOperator, then fewer fp32 compute nodes, then the smaller file, then the earlier trial"
CHOICE_RULE = (
    "among the passing candidates that no other passing candidate is significantly faster than (the interval of "
    "their paired batch-1 time ratio wholly below 1 - {margin}), the first by preference: " + PREFERENCE
)

# time(a) / time(b) at batch 1 for trial indices a, b, with its interval (below 1: a is faster).
TimeRatio = Callable[[int, int], Interval]


def significantly_faster(time_ratio: Interval, tie_margin: float) -> bool:
    """Whether ``time_ratio`` (``time(a) / time(b)``) shows ``a`` faster than ``b`` by more than ``tie_margin``:
    its whole interval lies below ``1 - tie_margin``."""
    return time_ratio.below(1.0 - tie_margin)


def undecided(time_ratio: Interval, tie_margin: float) -> bool:
    """Whether ``time_ratio`` can tell neither way: its interval holds ``1 - tie_margin``, so more session sets could
    show ``a`` significantly faster than ``b``, or show that it is not."""
    return not time_ratio.below(1.0 - tie_margin) and not time_ratio.above(1.0 - tie_margin)


def undecided_rivals(trials: Sequence[Trial], chosen: int, time_ratio: TimeRatio, tie_margin: float) -> list[int]:
    """The timed passing candidates that could yet prove significantly faster than the ``chosen`` one: those whose
    interval against it holds ``1 - tie_margin`` (:func:`undecided`). The choice hangs on them alone: every
    candidate preferred to the chosen one is already significantly beaten by another, and a rival whose
    interval lies wholly above the bound cannot become significantly faster."""
    return [t.index for t in _timed_passing(trials) if t.index != chosen and undecided(time_ratio(t.index, chosen), tie_margin)]


def _timed_passing(trials: Sequence[Trial]) -> list[Trial]:
    """The distinct candidates (trials after fp32's, no duplicates) that meet the criterion and were timed."""
    return [t for t in trials[1:] if t.meets_criterion and t.same_model_as is None and t.latency_ratio is not None]


def preference(trial: Trial, file_bytes: int) -> tuple[bool, int, int, int]:
    """The sort key of :data:`PREFERENCE`: the portable QDQ format first (standard ONNX operators only), fewer
    fp32 compute nodes (more of the model in int8), the smaller file, the earlier trial."""
    return (trial.quant_format != "QDQ", len(trial.fp32_compute_nodes), file_bytes, trial.index)


def choose_fastest(
    trials: Sequence[Trial], time_ratio: TimeRatio, file_bytes: Mapping[int, int], tie_margin: float
) -> tuple[int, str]:
    """The written candidate's trial index and, in one sentence, why (:data:`CHOICE_RULE`).

    Only distinct passing candidates that were timed take part. The first of them by :func:`preference`
    that no other is significantly faster than is chosen. Should every one be beaten by another (possible
    only when intervals are too narrow for the noise), the one with the lowest median ratio is.
    """
    passing = sorted(_timed_passing(trials), key=lambda t: preference(t, file_bytes[t.index]))
    if not passing:
        raise ValueError("no timed passing candidate to choose from")
    beaten_by = {
        t.index: [o.index for o in passing if o is not t and significantly_faster(time_ratio(o.index, t.index), tie_margin)]
        for t in passing
    }
    chosen = next(
        (t for t in passing if not beaten_by[t.index]), min(passing, key=lambda t: (t.latency_ratio, t.index))
    )
    faster_than = [t.index for t in passing if chosen.index in beaten_by[t.index]]
    tied = [
        t.index
        for t in passing
        if t is not chosen and t.index not in faster_than and t.index not in beaten_by[chosen.index]
    ]
    preferred_but_beaten = [t.index for t in passing[: passing.index(chosen)]]
    parts = [f"p50 {chosen.latency_ratio:.2f}x fp32 at batch 1"]
    if beaten_by[chosen.index]:
        parts.append("every passing candidate is significantly beaten by another; this one has the lowest median")
    elif tied:
        parts.append(
            f"indistinguishable within the {tie_margin:.0%} margin at this noise from {trials_phrase(tied)}; chosen over {'them' if len(tied) > 1 else 'it'} by preference ({PREFERENCE})"
        )
    else:
        parts.append("no other passing candidate is indistinguishable from it")
    for index in preferred_but_beaten:
        parts.append(f"the preferred trial {index} is significantly slower than "
                     f"{trials_phrase(beaten_by[index])}")  # fmt: skip
    if faster_than:
        parts.append(f"significantly faster than {trials_phrase(faster_than)}")
    return chosen.index, "; ".join(parts)


def trials_phrase(indices: Sequence[int]) -> str:
    """``trial 3`` or ``trials 3, 11``, in ascending order."""
    return f"trial{'s' if len(indices) > 1 else ''} {', '.join(map(str, sorted(indices)))}"
