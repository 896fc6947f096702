"""Paired ratios and their confidence intervals: the statistics of every speed comparison, apart from the timing.

Direction: a *time ratio* is ``time(model) / time(reference)`` (below 1: the model is faster); a
*throughput ratio* is its inverse, ``images/s(model) / images/s(reference)`` (above 1: faster). Every
function here computes time ratios; :meth:`Interval.inverse` turns one into a throughput ratio.

How an interval is made (docs/measurement.md): the compared models ran in turns, a block of calls each, so
the ``t``-th timed call of each is a pair and ``time_a[t] / time_b[t]`` cancels what drifts slower than one turn. The
median of those paired ratios within one *session set* (fresh sessions of every model) is one
observation; the ratio is the median of the session sets' observations and its interval the
order-statistic interval of that median (distribution-free: where a session lands in memory moves a
ratio by several percent, so sessions, not calls, are the unit of repetition). The interval is then
widened by the noise floor, what two sessions of the same model (the A/A pair) measured apart.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A ratio (``value``, the median) and its confidence interval [``low``, ``high``].

    ``coverage`` is the interval's confidence before widening: the probability that an interval made
    this way holds the true median of the session sets' observations.
    """

    value: float
    low: float
    high: float
    coverage: float = CONFIDENCE

    def inverse(self) -> Interval:
        """The same comparison the other way round (a time ratio as a throughput ratio, or back)."""
        return Interval(1.0 / self.value, 1.0 / self.high, 1.0 / self.low, self.coverage)

    def excursion(self) -> float:
        """How far the interval reaches from 1, as a factor less 1, the same either way: 0.0309 for
        [0.97, 1.01] (1 / 0.97 = 1.0309); the spread of an A/A pair."""
        return max(self.high, 1.0 / self.low, 1.0) - 1.0

    def widened(self, noise_floor: Interval | None) -> Interval:
        """This interval widened on both sides by the factor ``1 + noise_floor.excursion()``.

        Ratios multiply, so the widening divides the low end and multiplies the high end: the bounds stay
        positive however noisy the A/A pair (subtracting a 100 % excursion once made a negative bound), and
        widening a ratio's inverse gives the inverse of the widened ratio."""
        if noise_floor is None:
            return self
        factor = 1.0 + noise_floor.excursion()
        return Interval(self.value, self.low / factor, self.high * factor, self.coverage)

    def below(self, bound: float) -> bool:
        """Wholly below ``bound``: every value the interval allows is smaller."""
        return self.high < bound

    def above(self, bound: float) -> bool:
        """Wholly above ``bound``."""
        return self.low > bound

    def to_json(self) -> dict[str, float]:
        return {"value": self.value, "min": self.low, "max": self.high, "coverage": self.coverage}

    @classmethod
    def from_json(cls, document: Mapping[str, float]) -> Interval:
        return cls(document["value"], document["min"], document["max"], document.get("coverage", CONFIDENCE))


def order_statistic_rank(count: int, confidence: float = CONFIDENCE) -> tuple[int, float]:
    """The rank ``k`` (1-based) such that [k-th smallest, k-th largest] of ``count`` observations is a
    confidence interval of their median at ``confidence`` or more, as narrow as that allows; and its coverage.

    The coverage of [x_(k), x_(n+1-k)] is ``1 - 2 P(Binomial(n, 1/2) <= k - 1)``. Below 6 observations no
    interval reaches 95 %: the range (k = 1) is returned with its lower coverage (5 sets: 93.75 %).
    """
    if count < 1:
        raise ValueError("an interval needs at least one observation")
    rank, coverage = 1, 1.0 - 2.0 * 0.5**count if count > 1 else 0.0
    for k in range(2, count // 2 + 1):
        tail = sum(math.comb(count, i) for i in range(k)) / 2.0**count
        if 1.0 - 2.0 * tail < confidence:
            break
        rank, coverage = k, 1.0 - 2.0 * tail
    return rank, coverage


def median_interval(observations: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The median of positive ``observations`` with its order-statistic confidence interval
    (:func:`order_statistic_rank`). Of an even count the median is the geometric mean of the middle two, so
    that the median of the inverses is the inverse of the median (a time ratio and its throughput ratio agree)."""
    ordered = sorted(float(x) for x in observations)
    rank, coverage = order_statistic_rank(len(ordered), confidence)
    return Interval(float(np.exp(np.median(np.log(ordered)))), ordered[rank - 1], ordered[-rank], coverage)


def set_ratios(
    model_sets: Sequence[np.ndarray], reference_sets: Sequence[np.ndarray], paired: bool = True
) -> list[float]:
    """Per session set, the median of the paired time ratios ``model[t] / reference[t]``; or, for models that
    did not take turns together (``paired`` false: on different runtimes), the ratio of the set's medians."""
    if len(model_sets) != len(reference_sets):
        raise ValueError("both models must have run in the same session sets")
    ratios = []
    for model, reference in zip(model_sets, reference_sets):
        if not len(model) or not len(reference):
            raise ValueError("a ratio needs calls of both models in every session set")
        if not paired:
            ratios.append(float(np.percentile(model, 50) / np.percentile(reference, 50)))
            continue
        if len(model) != len(reference):
            raise ValueError("paired runs need the same number of calls of both models")
        ratios.append(float(np.median(np.asarray(model) / np.asarray(reference))))
    return ratios


def paired_time_ratio(
    model_sets: Sequence[np.ndarray],
    reference_sets: Sequence[np.ndarray],
    noise_floor: Interval | None = None,
    paired: bool = True,
) -> Interval:
    """``time(model) / time(reference)``: the median over session sets of the per-set ratios (:func:`set_ratios`),
    with its interval widened by ``noise_floor`` (the A/A pair's interval; None: not widened)."""
    return median_interval(set_ratios(model_sets, reference_sets, paired)).widened(noise_floor)
