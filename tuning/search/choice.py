"""The choice rule of objective latency: which timed candidate is written, and whether int8 pays at all."""

from __future__ import annotations

from collections.abc import Sequence

from tuning.search.trials import Trial

CHOICE_RULE = (
    "the fastest passing candidate (lowest median batch-1 p50 ratio), unless an earlier passing candidate is not "
    "beaten by it in every round by more than {margin}: then the earliest such candidate, so that noise does not "
    "change the model"
)


def beats(trial: Trial, other: Trial, tie_margin: float) -> bool:
    """Whether ``trial`` is measurably faster than ``other`` at batch 1: faster by more than ``tie_margin``
    in every round.

    The two are compared round by round: in each round both ran interleaved, so their ratio
    ``p50(trial) / p50(other)`` (= the ratio of their per-round ratios to fp32) is free of the load
    that moves whole rounds. Requiring every round, rather than the median, keeps a noisy round from
    deciding; a margin, rather than the ratio's own range, keeps a large real difference (whose
    per-round ratios spread widely on a loaded machine) from counting as a tie.
    """
    ratios = [mine / theirs for mine, theirs in zip(trial.latency_ratio_rounds, other.latency_ratio_rounds)]
    return max(ratios) < 1 - tie_margin


def choose_fastest(trials: Sequence[Trial], tie_margin: float) -> tuple[int, str]:
    """The emitted candidate and why: the fastest passing one, up to noise (:data:`CHOICE_RULE`).

    Candidates screened out (:func:`screen`) take no part. The fastest is the passing candidate with
    the lowest median p50 latency ratio (then higher
    accuracy, then earlier). It is chosen unless it fails to :func:`beat <beats>` an earlier passing
    candidate; then the earliest such candidate is: which of two candidates within noise of each
    other measures faster changes from run to run, the candidate order does not.
    """
    passing = [t for t in trials[1:] if t.meets_criterion and t.same_model_as is None and t.latency_ratio is not None]
    fastest = min(passing, key=lambda t: (t.latency_ratio, -t.accuracy, t.index))
    chosen = next(t for t in passing if t is fastest or not beats(fastest, t, tie_margin))
    summary = f"{len(passing)} passing candidate{'s' if len(passing) != 1 else ''}"
    if chosen is fastest:
        reason = f"fastest of {summary}: p50 {fastest.latency_ratio:.2f}x fp32"
        beaten = [t.index for t in passing if t.index < fastest.index]
        if beaten:
            reason += f", measurably faster than the earlier trials {', '.join(map(str, beaten))}"
    else:
        reason = (
            f"p50 {chosen.latency_ratio:.2f}x fp32; the fastest of {summary} (trial {fastest.index}, "
            f"p50 {fastest.latency_ratio:.2f}x fp32) does not beat it by more than {tie_margin:.0%} in every "
            "round, and it is the earliest passing candidate in the candidate order that the fastest does not beat"
        )
    return chosen.index, reason


def slower_than_fp32(trials: Sequence[Trial], batch_size: int) -> str | None:
    """Why int8 does not pay, or None: no passing candidate is faster than fp32 at batch 1 or at ``batch_size``."""
    passing = [t for t in trials[1:] if t.meets_criterion and t.latency_ratio is not None]
    best_latency = min(t.latency_ratio for t in passing)
    best_throughput = max(t.throughput_ratio for t in passing)
    problems = []
    if best_latency >= 1:
        problems.append(f"at batch 1 (best p50 {best_latency:.2f}x fp32)")
    if best_throughput <= 1:
        problems.append(f"at batch {batch_size} (best throughput {best_throughput:.2f}x fp32)")
    if not problems:
        return None
    return f"int8 does not pay on this machine: no passing candidate is faster than fp32 {' or '.join(problems)}"
