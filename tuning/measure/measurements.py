"""Models timed together with a reference, over several measurements: a comparison too close to call is timed
again, and its ratio reads every measurement both models ran in.

A measurement (one call of :func:`tuning.measure.benchmark.measure` at batch 1) times its models in turns with the
reference (fp32) and the reference's A/A twin, in session sets; within it the ``t``-th calls of two models are a pair. A
model timed again runs in a later measurement with the reference and whichever other models are timed again
with it. So a ratio between two models pairs their calls only in the measurements that timed both, and is
widened by the reference's A/A pair in those same measurements: adding a measurement never changes the interval
of a pair it did not time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tuning.measure.benchmark import Performance
from tuning.measure.statistics import Interval, paired_time_ratio, set_ratios
from tuning.measure.timings import Timing

REFERENCE = "fp32"


@dataclass(frozen=True)
class Measurements:
    """Batch-1 timings by model name, per measurement, oldest first; every measurement timed :data:`REFERENCE` with
    its A/A twin, all of its models in the same turns (one runtime)."""

    measurements: tuple[Mapping[str, Performance], ...] = ()

    def added(self, performances: Mapping[str, Performance]) -> Measurements:
        """These measurements and ``performances``, one more measurement of the models in it, each timed at batch 1."""
        reference = performances.get(REFERENCE)
        if reference is None or reference.second_session is None:
            raise ValueError(f"a measurement must time {REFERENCE} and its second session")
        timings = [_latency(performance) for performance in (*performances.values(), reference.second_session)]
        if len({timing.turns for timing in timings}) > 1:
            raise ValueError("a measurement's models must take turns together: their calls are paired")
        return Measurements(self.measurements + (dict(performances),))

    def session_sets(self, *names: str) -> int:
        """Session sets that timed every one of ``names`` (none: every session set)."""
        return sum(len(_latency(measured[REFERENCE]).rounds_ms) for measured in self._timing(*names))

    def time_ratio(self, mine: str, theirs: str) -> Interval:
        """``time(mine) / time(theirs)`` at batch 1 (below 1: ``mine`` is faster), paired over the session sets of
        the measurements that timed both, widened by the reference's A/A pair over the same sets."""
        shared = self._shared(mine, theirs)
        return paired_time_ratio(_sets(shared, mine), _sets(shared, theirs), _noise_floor(shared))

    def set_ratios(self, mine: str, theirs: str) -> list[float]:
        """The per-session-set ratios behind :meth:`time_ratio`, in the order the sets ran."""
        shared = self._shared(mine, theirs)
        return set_ratios(_sets(shared, mine), _sets(shared, theirs))

    def noise_floor(self, *names: str) -> Interval:
        """The reference's A/A pair (time of the second session over the first) over the session sets that timed
        every one of ``names`` (none: every set): the widening of those models' ratios."""
        return _noise_floor(self._shared(*names))

    def p50_ms(self, name: str) -> float:
        """``name``'s batch-1 p50, pooling every call it made in every measurement."""
        return float(np.percentile(np.concatenate(_sets(self._shared(name), name)), 50))

    def _timing(self, *names: str) -> list[Mapping[str, Performance]]:
        return [measured for measured in self.measurements if all(name in measured for name in names)]

    def _shared(self, *names: str) -> list[Mapping[str, Performance]]:
        shared = self._timing(*names)
        if not shared:
            raise ValueError(f"{' and '.join(names) or REFERENCE} {'were' if len(names) > 1 else 'was'} never timed"
                             f"{' together' if len(names) > 1 else ''}")  # fmt: skip
        return shared


def _latency(performance: Performance | None) -> Timing:
    if performance is None or performance.latency is None:
        raise ValueError("a measurement without batch-1 latency")
    return performance.latency


def _sets(measurements: Sequence[Mapping[str, Performance]], name: str) -> list[np.ndarray]:
    """``name``'s per-call durations of every session set of ``measurements``, in order."""
    return [durations for measured in measurements for durations in _latency(measured[name]).rounds_ms]


def _noise_floor(measurements: Sequence[Mapping[str, Performance]]) -> Interval:
    twin = [durations for measured in measurements for durations in _latency(measured[REFERENCE].second_session).rounds_ms]
    return paired_time_ratio(twin, _sets(measurements, REFERENCE))
