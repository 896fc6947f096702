"""Speed decisions on made-up numbers: intervals, the choice rule, the verdict and the gate's three states.

No timing here: every interval is given, so each rule is pinned at its boundaries, and so is every ratio's
direction (time int8/fp32: below 1 is faster; images/s int8/fp32: above 1 is faster).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CONFIG
from test_gate import make_report, mnist_gates

from tuning.config.enums import SpeedInconclusive
from tuning.config.loading import load_config
from tuning.gate import speed
from tuning.gate.checks import evaluate_gates
from tuning.measure.statistics import Interval, median_interval, order_statistic_rank, paired_time_ratio
from tuning.measure.verdict import Pays, Verdict, throughput_ratio_pays, time_ratio_pays
from tuning.search.choice import choose_fastest, preference, significantly_faster
from tuning.search.trials import Trial

pytestmark = pytest.mark.fast

# --- statistics ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "count, rank, coverage",
    [(1, 1, 0.0), (5, 1, 0.9375), (6, 1, 0.96875), (8, 1, 0.9921875), (9, 2, 0.9609375), (10, 2, 0.978515625)],
)
def test_order_statistic_interval_is_the_narrowest_reaching_95_percent(count, rank, coverage):
    assert order_statistic_rank(count) == (rank, pytest.approx(coverage))


def test_median_interval_of_ten_drops_the_extremes():
    interval = median_interval([1.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7, 0.1])
    assert (interval.low, interval.high) == (1.0, 1.7)
    assert interval.value == pytest.approx(np.sqrt(1.3 * 1.4))  # even count: geometric mean of the middle two


def test_paired_ratio_is_model_time_over_reference_time_and_pairs_call_by_call():
    reference = [np.array([1.0, 2.0, 4.0])] * 6  # the machine drifts 4x within a set; pairs cancel it
    model = [np.array([2.0, 4.0, 8.0])] * 6
    ratio = paired_time_ratio(model, reference)
    assert (ratio.value, ratio.low, ratio.high) == (2.0, 2.0, 2.0)  # twice the time: slower
    assert ratio.inverse().value == 0.5  # the throughput ratio of the same pair


def test_the_noise_floor_widens_an_interval_by_its_excursion_from_1():
    floor = Interval(1.0, 0.97, 1.01)  # reaches furthest below 1: a factor 1 / 0.97
    assert floor.excursion() == pytest.approx(1 / 0.97 - 1)
    widened = Interval(0.8, 0.78, 0.82).widened(floor)
    assert (widened.low, widened.high) == pytest.approx((0.78 * 0.97, 0.82 / 0.97))
    assert Interval(0.8, 0.78, 0.82).widened(Interval(1.0, 0.99, 1.05)).high == pytest.approx(0.82 * 1.05)
    assert Interval(0.8, 0.78, 0.82).widened(None) == Interval(0.8, 0.78, 0.82)


@pytest.mark.parametrize("floor", [Interval(1.0, 0.45, 1.1), Interval(1.0, 0.9, 2.6), Interval(1.0, 0.3, 3.0)])
def test_a_noise_floor_of_more_than_100_percent_keeps_the_interval_positive_and_around_its_value(floor):
    # A loaded machine once gave an A/A pair past 2x: subtracting its excursion made the low end negative,
    # the throughput interval (its inverse) ended below its own value, and report's speed-up plot crashed.
    ratio = Interval(0.9, 0.85, 0.95)
    widened = ratio.widened(floor)
    assert 0 < widened.low < ratio.low <= ratio.value <= ratio.high < widened.high
    throughput = widened.inverse()
    assert throughput.low < throughput.value < throughput.high
    inverse_widened = ratio.inverse().widened(floor)
    assert (inverse_widened.low, inverse_widened.high) == pytest.approx((throughput.low, throughput.high))


def test_the_inverse_of_an_interval_swaps_its_bounds():
    assert Interval(0.8, 0.5, 1.0).inverse() == Interval(1.25, 1.0, 2.0)


# --- the choice rule ---------------------------------------------------------------------------------


def _trial(index: int, fp32_nodes: int = 1, quant_format: str = "QDQ", meets: bool = True, **extra) -> Trial:
    return Trial(
        index=index,
        accuracy=0.99,
        meets_criterion=meets,
        int8_nodes=("n",),
        fp32_nodes=(),
        quant_format=quant_format,
        calibration_algorithm="minmax",
        fp32_compute_nodes=tuple(f"conv{k}" for k in range(fp32_nodes)),
        latency_ratio=extra.pop("latency_ratio", 0.9),
        **extra,
    )


FP32 = Trial(0, 0.99, True, (), (), latency_ratio=1.0)
SAME = Interval(1.0, 0.95, 1.05)  # indistinguishable


def _ratios(faster: dict[tuple[int, int], Interval]):
    """time(a) / time(b) for the pairs given (and their inverses); every other pair indistinguishable."""

    def time_ratio(a: int, b: int) -> Interval:
        if (a, b) in faster:
            return faster[a, b]
        if (b, a) in faster:
            return faster[b, a].inverse()
        return SAME

    return time_ratio


def test_significantly_faster_needs_the_whole_interval_beyond_the_margin():
    assert significantly_faster(Interval(0.85, 0.80, 0.8999), tie_margin=0.1)
    assert not significantly_faster(Interval(0.85, 0.80, 0.90), tie_margin=0.1)  # touching the margin: a tie
    assert not significantly_faster(Interval(0.5, 0.1, 0.95), tie_margin=0.1)  # a low median is not enough


def test_indistinguishable_candidates_go_to_the_preferred_one_whatever_their_medians():
    trials = [FP32, _trial(1, 2, latency_ratio=0.80), _trial(2, 1, "QOperator", latency_ratio=0.79), _trial(3, 1)]
    index, reason = choose_fastest(trials, _ratios({}), {1: 100, 2: 100, 3: 100}, tie_margin=0.1)
    assert index == 3  # QDQ with one fp32 node, though both others measured faster
    assert "indistinguishable within the 10% margin at this noise from trials 1, 2" in reason
    assert "chosen over them by preference" in reason


def test_preference_order_is_format_then_fp32_nodes_then_file_size_then_trial():
    assert preference(_trial(5, 3), 999) < preference(_trial(1, 0, "QOperator"), 1)
    assert preference(_trial(5, 1), 999) < preference(_trial(1, 2), 1)
    assert preference(_trial(5, 1), 10) < preference(_trial(1, 1), 11)
    assert preference(_trial(1, 1), 10) < preference(_trial(2, 1), 10)


def test_a_significantly_faster_candidate_displaces_the_preferred_one():
    trials = [FP32, _trial(1, 1), _trial(2, 2, latency_ratio=0.7)]
    faster = {(2, 1): Interval(0.8, 0.75, 0.85)}
    index, reason = choose_fastest(trials, _ratios(faster), {1: 10, 2: 10}, tie_margin=0.1)
    assert index == 2
    assert "the preferred trial 1 is significantly slower than trial 2" in reason
    assert "significantly faster than trial 1" in reason
    # The same medians with an interval reaching the margin: the preferred one stays.
    tie = {(2, 1): Interval(0.8, 0.75, 0.90)}
    assert choose_fastest(trials, _ratios(tie), {1: 10, 2: 10}, tie_margin=0.1)[0] == 1


def test_failing_duplicate_and_untimed_candidates_are_never_chosen():
    trials = [
        FP32,
        _trial(1, 0, meets=False),
        _trial(2, 0, same_model_as=3),
        _trial(3, 2),
        _trial(4, 0, latency_ratio=None),
    ]
    assert choose_fastest(trials, _ratios({}), {3: 1}, tie_margin=0.1)[0] == 3


PREFERENCE_TEXT = "QDQ before QOperator, then fewer fp32 compute nodes, then the smaller file, then the earlier trial"


def test_the_reason_names_the_tied_and_the_beaten_apart_in_whole_sentences():
    # trial 1 is preferred; trial 2 is indistinguishable from it; trial 3 is significantly slower than it.
    trials = [FP32, _trial(1, 1, latency_ratio=0.82), _trial(2, 2, latency_ratio=0.8), _trial(3, 2, latency_ratio=0.95)]
    slower = {(1, 3): Interval(0.8, 0.75, 0.85)}
    index, reason = choose_fastest(trials, _ratios(slower), {1: 10, 2: 10, 3: 10}, tie_margin=0.1)
    assert (index, reason) == (1, "p50 0.82x fp32 at batch 1; indistinguishable within the 10% margin at this noise from "
                                  f"trial 2; chosen over it by preference ({PREFERENCE_TEXT}); significantly faster than trial 3")
    # Alone among the passing ones: nothing is indistinguishable from it.
    assert choose_fastest([FP32, _trial(1, 1, latency_ratio=0.5)], _ratios({}), {1: 10}, tie_margin=0.1) == (
        1, "p50 0.50x fp32 at batch 1; no other passing candidate is indistinguishable from it"
    )


def test_a_smaller_file_is_preferred_among_candidates_alike_in_format_and_fp32_nodes():
    trials = [FP32, _trial(1, 1), _trial(2, 1)]
    assert choose_fastest(trials, _ratios({}), {1: 200, 2: 100}, tie_margin=0.1)[0] == 2
    assert choose_fastest(trials, _ratios({}), {1: 100, 2: 200}, tie_margin=0.1)[0] == 1


def test_when_every_candidate_is_beaten_the_lowest_median_is_chosen_and_the_reason_says_so():
    # A cycle no consistent measurement gives (1 beats 2, 2 beats 3, 3 beats 1): possible only with intervals too
    # narrow for the noise, and then the lowest median is written rather than none.
    beats = Interval(0.8, 0.75, 0.85)
    trials = [FP32, _trial(1, 1, latency_ratio=0.9), _trial(2, 1, latency_ratio=0.7), _trial(3, 1, latency_ratio=0.8)]
    index, reason = choose_fastest(trials, _ratios({(1, 2): beats, (2, 3): beats, (3, 1): beats}), {1: 1, 2: 1, 3: 1}, 0.1)
    assert index == 2
    assert reason.startswith("p50 0.70x fp32 at batch 1; every passing candidate is significantly beaten by another; "
                             "this one has the lowest median; the preferred trial 1 is significantly slower than trial 3")


def test_nothing_to_choose_from_is_refused_by_name():
    with pytest.raises(ValueError) as refused:
        choose_fastest([FP32, _trial(1, 1, meets=False)], _ratios({}), {1: 1}, tie_margin=0.1)
    assert str(refused.value) == "no timed passing candidate to choose from"


# --- the verdict -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, expected",
    [
        (0.8, 0.999, Pays.PAYS),
        (0.8, 1.0, Pays.CANNOT_TELL),  # touching 1: not wholly faster
        (0.99, 1.01, Pays.CANNOT_TELL),
        (1.0, 1.2, Pays.CANNOT_TELL),
        (1.001, 1.2, Pays.DOES_NOT_PAY),
    ],
)
def test_time_ratio_states_at_their_boundaries(low, high, expected):
    assert time_ratio_pays(Interval((low + high) / 2, low, high)) is expected


def test_throughput_ratio_pays_above_1():
    assert throughput_ratio_pays(Interval(1.4, 1.2, 1.6)) is Pays.PAYS
    assert throughput_ratio_pays(Interval(0.8, 0.7, 0.9)) is Pays.DOES_NOT_PAY


def test_the_verdict_line_names_both_states_the_noise_floor_and_the_cpu():
    verdict = Verdict(Interval(0.87, 0.83, 0.95), Interval(1.35, 1.14, 1.56), 256, Interval(1.0, 0.99, 1.0), "CPU X")
    assert verdict.line() == (
        "int8 vs fp32: batch 1 pays, 0.87x the time [0.83-0.95]; batch 256 pays, 1.35x the throughput [1.14-1.56]; "
        "noise floor (fp32 vs a second fp32 session) 1.00x [0.99-1.00]; 95% intervals; on CPU X"
    )
    assert not verdict.slower_than_fp32


def test_the_verdict_in_json_carries_both_ratios_their_states_and_the_floor():
    latency, throughput, floor = Interval(1.2, 1.1, 1.3, 0.9375), Interval(1.35, 1.14, 1.56), Interval(1.0, 0.98, 1.03)
    document = Verdict(latency, throughput, 64, floor, "CPU Y").to_json()
    assert document == {
        "line": Verdict(latency, throughput, 64, floor, "CPU Y").line(),
        "batch_1": "does not pay",
        "latency_time_ratio_int8_over_fp32": {"value": 1.2, "min": 1.1, "max": 1.3, "coverage": 0.9375},
        "throughput_batch_size": 64,
        "throughput_batch": "pays",
        "throughput_ratio_int8_over_fp32": {"value": 1.35, "min": 1.14, "max": 1.56, "coverage": 0.95},
        "noise_floor_time_ratio": {"value": 1.0, "min": 0.98, "max": 1.03, "coverage": 0.95},
        "cpu": "CPU Y",
    }
    without_floor = Verdict(latency, throughput, 64, None, "CPU Y")
    assert without_floor.to_json()["noise_floor_time_ratio"] is None
    assert without_floor.line() == (
        "int8 vs fp32: batch 1 does not pay, 1.20x the time [1.10-1.30]; batch 64 pays, 1.35x the throughput "
        "[1.14-1.56]; 94% intervals; on CPU Y"
    )


@pytest.mark.parametrize(
    "latency, throughput, slower",
    [
        (Interval(1.1, 1.05, 1.2), Interval(1.3, 1.2, 1.4), True),  # slower at batch 1 only
        (Interval(0.9, 0.85, 0.95), Interval(0.8, 0.7, 0.9), True),  # slower at the throughput batch only
        (Interval(1.0, 0.9, 1.1), Interval(1.0, 0.9, 1.1), False),  # cannot tell is not slower
    ],
)
def test_slower_than_fp32_means_significantly_slower_at_either_batch(latency, throughput, slower):
    assert Verdict(latency, throughput, 256, None, "CPU").slower_than_fp32 is slower


# --- the gate's speed checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, comparison, state",
    [
        (0.9, 1.3, "<=", speed.SpeedState.PASS),  # high exactly at the maximum: within
        (0.9, 1.31, "<=", speed.SpeedState.INCONCLUSIVE),
        (1.3, 1.5, "<=", speed.SpeedState.INCONCLUSIVE),  # low exactly at the maximum: not wholly worse
        (1.31, 1.5, "<=", speed.SpeedState.FAIL),
        (0.75, 1.2, ">=", speed.SpeedState.PASS),  # low exactly at the minimum: within
        (0.74, 1.2, ">=", speed.SpeedState.INCONCLUSIVE),
        (0.5, 0.75, ">=", speed.SpeedState.INCONCLUSIVE),
        (0.5, 0.74, ">=", speed.SpeedState.FAIL),
    ],
)
def test_speed_states_at_their_boundaries(low, high, comparison, state):
    threshold = 1.3 if comparison == "<=" else 0.75
    assert speed.speed_state(speed.RatioInterval((low + high) / 2, low, high), threshold, comparison) is state


def _report(latency: tuple[float, float, float], throughput: tuple[float, float, float]) -> dict:
    report = make_report(latency_p50=latency[0], throughput={"256": throughput[0]})
    ratios = report["ratios_vs_float"]["onnxruntime"]["int8"]
    ratios["latency_p50_rounds"] = dict(zip(("value", "min", "max"), latency))
    ratios["throughput_rounds"] = {"256": dict(zip(("value", "min", "max"), throughput))}
    return report


@pytest.mark.parametrize("policy, passed", [(SpeedInconclusive.WARN, True), (SpeedInconclusive.FAIL, False)])
def test_an_inconclusive_speed_check_follows_the_policy(policy, passed):
    report = _report((1.2, 1.0, 1.4), (1.0, 0.9, 1.1))
    checks = {c.name: c for c in evaluate_gates(report, mnist_gates(max_latency_ratio=1.3, min_throughput_ratio=0.75, if_speed_inconclusive=policy), None)}
    latency = checks["latency ratio int8/float"]
    assert latency.status == "INCONCLUSIVE" and latency.passed is passed
    assert latency.message.startswith("latency ratio int8/float: 1.200x [1.000-1.400] INCONCLUSIVE")
    assert checks["throughput ratio int8/float"].status == "PASS"


def test_the_shipped_gates_fail_only_a_wholly_slower_model_and_read_directions_right():
    gates = load_config(CONFIG).gates  # configs/mnist.yaml: time int8/float <= 1.3, images/s int8/float >= 0.75
    assert (gates.max_latency_ratio, gates.min_throughput_ratio) == (1.3, 0.75)
    slowed = {c.name: c for c in evaluate_gates(_report((1.5, 1.4, 1.6), (0.6, 0.5, 0.7)), gates, None)}
    assert slowed["latency ratio int8/float"].status == "FAIL"
    assert slowed["throughput ratio int8/float"].status == "FAIL"
    # A faster int8 model has a time ratio below 1 and a throughput ratio above 1: both pass.
    faster = evaluate_gates(_report((0.8, 0.75, 0.85), (1.4, 1.3, 1.5)), gates, None)
    assert [c.status for c in faster] == ["PASS"] * 4


def test_an_interval_that_does_not_hold_its_median_is_refused():
    with pytest.raises(Exception, match="does not hold its median"):
        speed.read_interval(1.5, {"value": 1.5, "min": 0.9, "max": 1.1}, "latency")
