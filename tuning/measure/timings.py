"""Per-call durations of one model at one batch size and the figures read off them: p50, throughput, spreads.

:func:`tuning.measure.benchmark.measure` fills a :class:`Timing` per model and batch size; a ratio between two
timings is a paired ratio (:mod:`tuning.measure.statistics`). Re-exported by :mod:`tuning.measure.benchmark`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from tuning.measure.statistics import Interval, paired_time_ratio


@dataclass(frozen=True)
class Spread:
    """An absolute figure (a p50, images/s) and the range of its per-session-set values."""

    value: float
    low: float
    high: float

    @classmethod
    def of_rounds(cls, values: Sequence[float]) -> Spread:
        return cls(float(np.median(values)), float(min(values)), float(max(values)))

    @classmethod
    def from_json(cls, document: Mapping[str, float]) -> Spread:
        return cls(document["value"], document["min"], document["max"])

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "min": self.low, "max": self.high}


@dataclass(frozen=True)
class Timing:
    """Per-call durations of one model at one batch size, per session set; the ``t``-th call of every model
    that took turns with it (the same ``turns``) ran in the same turn."""

    batch_size: int
    warmup_runs: int  # untimed batches in each session set
    rounds_ms: tuple[np.ndarray, ...] = field(repr=False, compare=False)
    turns: str = ""  # the group of models it took turns with (a runtime's): only those pair call by call

    @property
    def durations_ms(self) -> np.ndarray:
        return np.concatenate(self.rounds_ms)

    @property
    def runs(self) -> int:
        return sum(len(durations) for durations in self.rounds_ms)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.durations_ms, q))

    @property
    def p50(self) -> float:
        return self.percentile(50)

    @property
    def p90(self) -> float:
        return self.percentile(90)

    @property
    def p99(self) -> float:
        return self.percentile(99)

    @property
    def mean(self) -> float:
        return float(np.mean(self.durations_ms))

    @property
    def images_per_s(self) -> float:
        return self.batch_size * 1000.0 / self.p50

    @property
    def latency_per_image_ms(self) -> float:
        return self.p50 / self.batch_size

    @property
    def round_p50s(self) -> tuple[float, ...]:
        # The same reduction as the pooled p50: np.median and np.percentile(50) can differ in the last bit,
        # which would put a figure outside its own range (and make matplotlib refuse its error bar).
        return tuple(float(np.percentile(durations, 50)) for durations in self.rounds_ms)

    @property
    def p50_spread(self) -> Spread:
        return Spread(self.p50, min(self.round_p50s), max(self.round_p50s))

    @property
    def images_per_s_spread(self) -> Spread:
        per_round = [self.batch_size * 1000.0 / p50 for p50 in self.round_p50s]
        return Spread(self.images_per_s, min(per_round), max(per_round))

    def time_ratio(self, reference: Timing, noise_floor: Interval | None = None) -> Interval:
        """``time(self) / time(reference)`` (below 1: this model is faster): paired call by call when both took
        turns together, else the ratio of each session set's medians (models on different runtimes)."""
        return paired_time_ratio(self.rounds_ms, reference.rounds_ms, noise_floor, paired=self.turns == reference.turns)
