"""tuning.measure.statistics at its boundaries, each expected value computed a second way.

The order-statistic coverage is recomputed from the binomial distribution written out by hand (Pascal's
triangle, not ``math.comb``); comparisons with a tolerance or a bound are tested at equality with binary
fractions, which floating point holds exactly; every median is chosen so that a mean would differ.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from tuning.measure.statistics import (
    CONFIDENCE,
    Interval,
    median_interval,
    order_statistic_rank,
    paired_time_ratio,
    set_ratios,
)

pytestmark = pytest.mark.fast


def _coverage(count: int, rank: int) -> Fraction:
    """P(x_(rank) <= median <= x_(count+1-rank)) = 1 - 2 P(Binomial(count, 1/2) <= rank - 1), by Pascal's triangle."""
    row = [1]
    for _ in range(count):
        row = [a + b for a, b in zip([0, *row], [*row, 0])]
    return 1 - 2 * Fraction(sum(row[:rank]), 2**count)


def _narrowest(count: int, confidence: float) -> tuple[int, float]:
    """The largest rank up to count // 2 whose coverage still reaches ``confidence`` (rank 1 always allowed)."""
    best = 1
    for rank in range(2, count // 2 + 1):
        if _coverage(count, rank) >= Fraction(confidence):
            best = rank
        else:
            break
    return best, float(_coverage(count, best)) if count > 1 else 0.0


@pytest.mark.parametrize("count", range(1, 26))
def test_the_rank_and_coverage_are_the_binomial_ones(count: int) -> None:
    assert order_statistic_rank(count) == _narrowest(count, CONFIDENCE)


@pytest.mark.parametrize("count, rank, coverage", [(2, 1, 0.5), (3, 1, 0.75), (4, 1, 0.875), (7, 1, 0.984375)])
def test_the_range_of_a_few_observations_has_its_lower_coverage(count: int, rank: int, coverage: float) -> None:
    assert order_statistic_rank(count) == (rank, coverage)


def test_a_coverage_equal_to_the_confidence_is_enough() -> None:
    # 9 observations, rank 2: 1 - 2 * (1 + 9) / 512 = 0.9609375 exactly.
    assert _coverage(9, 2) == Fraction(9609375, 10**7)
    assert order_statistic_rank(9, 0.9609375) == (2, 0.9609375)
    assert order_statistic_rank(9, 0.9609376) == (1, float(_coverage(9, 1)))


@pytest.mark.parametrize("count", [9, 10, 11])
def test_with_no_confidence_asked_the_rank_goes_up_to_the_middle_and_no_further(count: int) -> None:
    # Every rank up to count // 2 reaches confidence 0; rank count // 2 + 1 of an odd count (the median
    # itself, coverage 0) would too, but it is not an interval around the median.
    assert order_statistic_rank(count, 0.0) == (count // 2, float(_coverage(count, count // 2)))


def test_no_observation_is_refused() -> None:
    with pytest.raises(ValueError, match=r"^an interval needs at least one observation$"):
        order_statistic_rank(0)
    with pytest.raises(ValueError, match=r"^an interval needs at least one observation$"):
        median_interval([])


def test_the_median_interval_takes_the_confidence_it_is_given() -> None:
    observations = [5.0, 1.0, 9.0, 3.0, 7.0, 2.0, 8.0, 4.0, 6.0]  # 1 ... 9 shuffled
    interval = median_interval(observations)
    assert interval.value == pytest.approx(5.0)
    assert (interval.low, interval.high, interval.coverage) == (2.0, 8.0, 0.9609375)
    rank, coverage = order_statistic_rank(9, 0.5)
    assert rank == 3
    interval = median_interval(observations, 0.5)
    assert (interval.low, interval.high, interval.coverage) == (3.0, 7.0, coverage)


def test_the_median_of_an_odd_count_is_the_middle_one_whatever_the_order() -> None:
    interval = median_interval([4.0, 1.0, 1000.0])
    assert interval.value == pytest.approx(4.0)  # the mean would be 335
    assert (interval.low, interval.high, interval.coverage) == (1.0, 1000.0, 0.75)


def test_the_median_of_an_even_count_is_the_geometric_mean_of_the_middle_two() -> None:
    interval = median_interval([1.0, 4.0, 1.0, 16.0])
    assert interval.value == pytest.approx(2.0)  # sqrt(1 * 4); the arithmetic mean of the two would be 2.5
    assert (interval.low, interval.high, interval.coverage) == (1.0, 16.0, 0.875)
    inverse = median_interval([1 / x for x in [1.0, 4.0, 1.0, 16.0]])
    assert inverse.value == pytest.approx(1 / interval.value)


def test_set_ratios_are_per_set_medians_of_model_over_reference() -> None:
    model = [np.array([2.0, 3.0, 30.0]), np.array([1.0, 1.0])]
    reference = [np.array([1.0, 1.0, 1.0]), np.array([4.0, 2.0])]
    # Set 1: ratios 2, 3, 30, median 3 (mean 11.67); set 2: 0.25 and 0.5, median 0.375.
    assert set_ratios(model, reference) == [3.0, 0.375]
    assert set_ratios(reference, model) == [pytest.approx(1 / 3), 3.0]  # median of 0.5, 1/3, 1/30; of 4 and 2


@pytest.mark.parametrize(
    "model, reference, message",
    [
        ([np.ones(3)], [np.ones(3), np.ones(3)], r"^both models must have run in the same session sets$"),
        ([np.ones(3), np.ones(3)], [np.ones(3)], r"^both models must have run in the same session sets$"),
        ([np.ones(3)], [np.ones(4)], r"^paired runs need the same number of calls of both models$"),
        ([np.ones(2), np.ones(0)], [np.ones(2), np.ones(0)], r"^a ratio needs calls of both models in every session set$"),
        ([np.ones(0)], [np.ones(1)], r"^a ratio needs calls of both models in every session set$"),
    ],
)
def test_unpaired_runs_are_refused(model, reference, message) -> None:
    with pytest.raises(ValueError, match=message):
        set_ratios(model, reference)


@pytest.mark.parametrize(
    "model, reference, message",
    [
        ([np.ones(3)], [np.ones(3), np.ones(3)], r"^both models must have run in the same session sets$"),
        ([np.ones(2), np.ones(0)], [np.ones(2), np.ones(5)], r"^a ratio needs calls of both models in every session set$"),
        ([np.ones(3)], [np.ones(0)], r"^a ratio needs calls of both models in every session set$"),
    ],
)
def test_runs_of_separate_turns_are_refused_only_when_a_set_is_missing_or_empty(model, reference, message) -> None:
    with pytest.raises(ValueError, match=message):
        set_ratios(model, reference, paired=False)


def test_runs_of_separate_turns_compare_by_their_sets_medians_whatever_their_counts() -> None:
    # Set 1: medians 3 (of 1, 3, 30) and 1.5 (of 1, 2); set 2: 0.5 and 4: a mean would give 11.33 / 1.5.
    model = [np.array([1.0, 3.0, 30.0]), np.array([0.5])]
    reference = [np.array([1.0, 2.0]), np.array([2.0, 4.0, 6.0, 4.0])]
    assert set_ratios(model, reference, paired=False) == [2.0, 0.125]
    assert set_ratios(reference, model, paired=False) == [0.5, 8.0]


def test_a_paired_ratio_is_the_median_over_sets_widened_by_the_floor() -> None:
    model = [np.array([2.0] * 3), np.array([4.0] * 3), np.array([8.0] * 3), np.array([1.0] * 3), np.array([16.0] * 3)]
    reference = [np.ones(3)] * 5
    plain = paired_time_ratio(model, reference)
    assert plain.value == pytest.approx(4.0)
    assert (plain.low, plain.high, plain.coverage) == (1.0, 16.0, 0.9375)
    floor = Interval(1.0, 0.5, 1.25)  # reaches furthest below 1: a factor 2
    widened = paired_time_ratio(model, reference, floor)
    assert (widened.value, widened.low, widened.high, widened.coverage) == (plain.value, 0.5, 32.0, 0.9375)
    assert paired_time_ratio(model, reference, None) == plain


def test_below_and_above_are_strict() -> None:
    interval = Interval(1.0, 0.5, 2.0)
    assert not interval.below(2.0) and interval.below(2.0 + 2**-20)
    assert not interval.above(0.5) and interval.above(0.5 - 2**-20)


def test_the_excursion_is_how_far_the_interval_reaches_from_1_either_way() -> None:
    assert Interval(1.0, 0.5, 1.25).excursion() == 1.0  # 1 / 0.5 - 1
    assert Interval(1.0, 0.8, 1.5).excursion() == 0.5  # 1.5 - 1 beats 1 / 0.8 - 1 = 0.25
    assert Interval(2.0, 1.5, 3.0).excursion() == 2.0  # wholly above 1
    assert Interval(0.5, 0.25, 0.5).excursion() == 3.0  # wholly below 1


def test_widening_divides_the_low_end_and_multiplies_the_high_end_by_one_plus_the_excursion() -> None:
    floor = Interval(1.0, 0.5, 1.25)  # excursion 1: factor 2
    assert Interval(1.0, 0.75, 1.5, 0.9375).widened(floor) == Interval(1.0, 0.375, 3.0, 0.9375)
    assert Interval(1.0, 0.75, 1.5).widened(Interval(1.0, 1.0, 1.0)) == Interval(1.0, 0.75, 1.5)


def test_an_interval_is_written_with_min_and_max() -> None:
    assert Interval(0.9, 0.8, 1.1, 0.9375).to_json() == {"value": 0.9, "min": 0.8, "max": 1.1, "coverage": 0.9375}
    assert Interval(0.9, 0.8, 1.1).coverage == 0.95 == CONFIDENCE
