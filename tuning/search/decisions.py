"""The timing behind the greedy search's decisions: candidates timed together with fp32 in session sets, and the
paired ratio between two of them over the sets both ran in (tuning/search/plan.py decides on it)."""

from __future__ import annotations

import dataclasses

import numpy as np

from tuning.measure.statistics import Interval, paired_time_ratio

# Timed calls per model in each session set of the timing for a search's decisions, after MIN_CALLS warm-up calls:
# the greedy search times 2N + 2 models in up to 18 sets. With tuning.latency's 400 calls and 0.05 s per model and
# set, a 20-convolution CNN (46 models) was still in that timing after 8 minutes on a busy machine; with 20
# calls the per-set medians were so noisy that LeNet's first Conv, 0.56x [0.42-0.73] with 400, went undecided
# (0.80x [0.51-1.09], both at load 13-15 on 2 cores).
DECISION_CALLS = 100


@dataclasses.dataclass(frozen=True)
class SessionSets:
    """Batch-1 per-call durations (ms) of candidates timed together with fp32 and its A/A twin, per session set.

    Every candidate ran in the first sets; one timed again (:meth:`Candidates.time_together` with ``earlier``)
    ran in more: two candidates compare over the first sets they both ran in.
    """

    fp32: list[np.ndarray]
    twin: list[np.ndarray]
    candidates: dict[int, list[np.ndarray]]

    @property
    def count(self) -> int:
        return len(self.fp32)

    def extended(self, later: SessionSets) -> SessionSets:
        merged = {index: self.candidates.get(index, []) + sets for index, sets in later.candidates.items()}
        return SessionSets(self.fp32 + later.fp32, self.twin + later.twin, self.candidates | merged)

    def time_ratio(self, mine: int, theirs: int) -> Interval:
        """time(trial ``mine``) / time(trial ``theirs``) at batch 1 with its interval, over the sets both ran in,
        widened by fp32's A/A pair over every set (tuning/measure/statistics.py)."""
        a, b = self.candidates[mine], self.candidates[theirs]
        shared = min(len(a), len(b))
        return paired_time_ratio(a[:shared], b[:shared], paired_time_ratio(self.twin, self.fp32))
