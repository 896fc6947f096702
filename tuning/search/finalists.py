"""The finalists' choice, timed again while noise hides it: which passing candidate objective latency writes.

The finalists are timed with fp32 at batch 1 in session sets, and the choice rule (tuning/search/choice.py) picks
the most preferred one that no other is significantly faster than. Noise cannot make a candidate significantly
faster, but it can hide a real lead: on an Intel Xeon (AMX class) mnist-12's trial 11 measured 0.83x fp32 at
batch 1 against trial 3's 0.99x; quiet, six session sets showed that lead, under load they did not, the
preference chose trial 3, and the written file changed with the load. So while a candidate's interval against the
chosen one holds ``1 - tie_margin`` (tuning/search/choice.py: ``undecided_rivals``), the two are timed again in as
many fresh session sets and their ratio reads all of them (tuning/measure/measurements.py), up to
MAX_TIMINGS (tuning/search/timing.py) timings; a pair still undecided then is left to the preference, and the reason says so.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from tuning.measure.benchmark import Performance
from tuning.measure.measurements import Measurements
from tuning.measure.statistics import Interval
from tuning.search.choice import choose_fastest, trials_phrase, undecided_rivals
from tuning.search.timing import MAX_TIMINGS, with_performance
from tuning.search.trials import Trial

# Times these finalists (trial indices) with fp32 and its A/A twin at batch 1 in fresh session sets.
TimeFinalists = Callable[[Sequence[int]], Mapping[str, Performance]]


@dataclass(frozen=True)
class FinalChoice:
    """The chosen trial, why, the trials with their batch-1 figures, and every measurement they read."""

    chosen: int
    reason: str
    trials: list[Trial]
    measurements: Measurements
    timings: int  # how many times finalists were timed: 1, or more where noise hid the choice


def choose_finalist(
    trials: list[Trial],
    finalists: Sequence[int],
    time_finalists: TimeFinalists,
    file_bytes: Mapping[int, int],
    tie_margin: float,
    say: Callable[[str], None] = lambda _line: None,
) -> FinalChoice:
    """Time ``finalists`` with fp32, choose by the choice rule, and time the chosen one and its undecided rivals
    again until none is left or MAX_TIMINGS timings are spent (module docstring)."""
    measurements = Measurements().added(time_finalists(finalists))
    timings = 1
    while True:
        # Each pass reads every measurement so far: the ratios of the pairs timed again move, no other.
        def time_ratio(mine: int, theirs: int, measured: Measurements = measurements) -> Interval:
            return measured.time_ratio(f"trial {mine}", f"trial {theirs}")

        trials = with_performance(trials, measurements)
        chosen, reason = choose_fastest(trials, time_ratio, file_bytes, tie_margin)
        rivals = undecided_rivals(trials, chosen, time_ratio, tie_margin)
        if not rivals or timings == MAX_TIMINGS:
            break
        say(f"tune: trial {chosen} against {trials_phrase(rivals)}: not decided at this noise; timing "
            f"{'them' if len(rivals) > 1 else 'it'} again with trial {chosen} and fp32")  # fmt: skip
        measurements = measurements.added(time_finalists([chosen, *rivals]))
        timings += 1
    if rivals:
        sets = min(measurements.session_sets(f"trial {chosen}", f"trial {rival}") for rival in rivals)
        reason += f"; against {trials_phrase(rivals)} not decided after {sets} session sets, left to the preference"
    elif timings > 1:
        reason += f"; decided after {timings} timings of {_rounds(measurements)} session sets"
    return FinalChoice(chosen, reason, trials, measurements, timings)


def _rounds(measurements: Measurements) -> int:
    """Session sets per timing (every timing has the same settings)."""
    return measurements.session_sets() // len(measurements.measurements)
