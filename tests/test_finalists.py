"""The finalists are timed again while noise hides the choice, and a ratio reads every measurement both models ran in.

No real timing here: the measurements are made up (a cost per model, noise drawn from a seed), so the tests can
say which candidate is faster and by how much, and check that noise changes how long the choice takes, not
what it chooses. The expected ratios are computed here from the drawn durations with numpy, not read from
the module.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tuning.measure.benchmark import SECOND_SESSION, Performance
from tuning.measure.measurements import Measurements
from tuning.measure.statistics import Interval, order_statistic_rank
from tuning.measure.timings import Timing
from tuning.search import finalists as finalists_module
from tuning.search.choice import undecided, undecided_rivals
from tuning.search.finalists import choose_finalist
from tuning.search.timing import MAX_TIMINGS
from tuning.search.trials import Trial

pytestmark = pytest.mark.fast

CALLS = 30
ROUNDS = 6
MARGIN = 0.1


def timing(rounds: list[np.ndarray]) -> Timing:
    return Timing(1, 0, tuple(rounds), "onnxruntime")


def measurement(durations: dict[str, list[np.ndarray]], twin: list[np.ndarray]) -> dict[str, Performance]:
    """A measurement's performances: ``durations`` per model and session set, fp32's A/A twin ``twin``."""
    performances = {name: Performance(name, timing(rounds), ()) for name, rounds in durations.items()}
    second = Performance(SECOND_SESSION.format(name="fp32"), timing(twin), ())
    performances["fp32"] = dataclasses.replace(performances["fp32"], second_session=second)
    return performances


def drawn(draw: np.random.Generator, ms: float, sets: int = ROUNDS, noise: float = 0.0) -> list[np.ndarray]:
    """``sets`` session sets of CALLS calls of ``ms``: each session slower or faster by a factor within 1 +- noise,
    each call by one within 1 +- noise / 2 besides."""
    return [ms * draw.uniform(1 - noise, 1 + noise) * draw.uniform(1 - noise / 2, 1 + noise / 2, CALLS) for _ in range(sets)]


def expected_interval(mine: list[np.ndarray], theirs: list[np.ndarray], twin: list[np.ndarray], fp32: list[np.ndarray]):
    """The paired ratio's interval computed from the durations: per set the median of the call ratios; the
    order-statistic interval of their median; widened by the A/A pair's excursion over the same sets."""

    def per_set(a: list[np.ndarray], b: list[np.ndarray]) -> list[float]:
        return sorted(float(np.median(x / y)) for x, y in zip(a, b))

    def interval(ratios: list[float]) -> tuple[float, float]:
        rank, _ = order_statistic_rank(len(ratios))
        return ratios[rank - 1], ratios[-rank]

    low, high = interval(per_set(mine, theirs))
    aa_low, aa_high = interval(per_set(twin, fp32))
    factor = max(aa_high, 1.0 / aa_low, 1.0)
    return low / factor, high * factor


# --- Measurements ---------------------------------------------------------------------------------


def test_a_ratio_reads_the_measurements_both_models_ran_in_and_no_other():
    draw = np.random.default_rng(7)
    first = {name: drawn(draw, ms, noise=0.05) for name, ms in [("fp32", 1.0), ("trial 1", 0.9), ("trial 2", 0.8), ("trial 3", 0.7)]}
    first_twin = drawn(draw, 1.0, noise=0.05)
    second = {name: drawn(draw, ms, noise=0.05) for name, ms in [("fp32", 1.0), ("trial 1", 0.9), ("trial 2", 0.8)]}
    second_twin = drawn(draw, 1.0, noise=0.05)
    once = Measurements().added(measurement(first, first_twin))
    twice = once.added(measurement(second, second_twin))

    # trial 1 against trial 2: both measurements, their sets paired in the order they ran.
    ratio = twice.time_ratio("trial 1", "trial 2")
    low, high = expected_interval(first["trial 1"] + second["trial 1"], first["trial 2"] + second["trial 2"],
                                  first_twin + second_twin, first["fp32"] + second["fp32"])  # fmt: skip
    assert (ratio.low, ratio.high) == pytest.approx((low, high))
    assert twice.session_sets("trial 1", "trial 2") == 2 * ROUNDS
    # trial 3 was not timed again: its ratio against trial 1, and that ratio's interval, do not move.
    assert twice.time_ratio("trial 3", "trial 1") == once.time_ratio("trial 3", "trial 1")
    low, high = expected_interval(first["trial 3"], first["trial 1"], first_twin, first["fp32"])
    assert (once.time_ratio("trial 3", "trial 1").low, once.time_ratio("trial 3", "trial 1").high) == pytest.approx((low, high))
    assert twice.session_sets("trial 3") == ROUNDS and twice.session_sets() == 2 * ROUNDS
    # More sets narrow the interval of the pair timed again (rank 1 of 6 sets against rank 3 of 12).
    assert ratio.high - ratio.low < once.time_ratio("trial 1", "trial 2").high - once.time_ratio("trial 1", "trial 2").low


def test_models_timed_again_in_different_measurements_are_paired_only_where_they_met():
    # trial 1 is timed again in the second measurement, trial 2 in the third: pairing their second sets by
    # position would pair calls that never ran in the same turns.
    draw = np.random.default_rng(3)
    runs = [{name: drawn(draw, ms, noise=0.05) for name, ms in models} for models in (
        [("fp32", 1.0), ("trial 1", 0.9), ("trial 2", 0.8)], [("fp32", 1.0), ("trial 1", 0.9)], [("fp32", 1.0), ("trial 2", 0.8)]
    )]  # fmt: skip
    twins = [drawn(draw, 1.0, noise=0.05) for _ in runs]
    timed = Measurements()
    for run, twin in zip(runs, twins):
        timed = timed.added(measurement(run, twin))
    assert timed.session_sets("trial 1", "trial 2") == ROUNDS
    low, high = expected_interval(runs[0]["trial 1"], runs[0]["trial 2"], twins[0], runs[0]["fp32"])
    ratio = timed.time_ratio("trial 1", "trial 2")
    assert (ratio.low, ratio.high) == pytest.approx((low, high))
    # Against fp32 each reads the measurements it ran in.
    low, high = expected_interval(runs[0]["trial 2"] + runs[2]["trial 2"], runs[0]["fp32"] + runs[2]["fp32"],
                                  twins[0] + twins[2], runs[0]["fp32"] + runs[2]["fp32"])  # fmt: skip
    assert (timed.time_ratio("trial 2", "fp32").low, timed.time_ratio("trial 2", "fp32").high) == pytest.approx((low, high))
    # The noise floor is the A/A pair over every set; p50 pools every call of the model.
    aa = sorted(float(np.median(t / f)) for run, twin in zip(runs, twins) for t, f in zip(twin, run["fp32"]))
    rank, _ = order_statistic_rank(len(aa))
    assert (timed.noise_floor().low, timed.noise_floor().high) == pytest.approx((aa[rank - 1], aa[-rank]))
    assert timed.p50_ms("trial 1") == pytest.approx(float(np.percentile(np.concatenate(runs[0]["trial 1"] + runs[1]["trial 1"]), 50)))


def test_a_measurement_must_time_fp32_with_its_twin_at_batch_1_in_the_same_turns():
    draw = np.random.default_rng(1)
    with pytest.raises(ValueError, match="fp32 and its second session"):
        Measurements().added({"trial 1": Performance("trial 1", timing(drawn(draw, 1.0)), ())})
    plain = {"fp32": Performance("fp32", timing(drawn(draw, 1.0)), ())}
    with pytest.raises(ValueError, match="fp32 and its second session"):
        Measurements().added(plain)
    throughput_only = measurement({"fp32": drawn(draw, 1.0), "trial 1": drawn(draw, 0.5)}, drawn(draw, 1.0))
    throughput_only = {
        name: dataclasses.replace(p, latency=None, second_session=p.second_session and dataclasses.replace(p.second_session, latency=None))
        for name, p in throughput_only.items()
    }
    with pytest.raises(ValueError, match="without batch-1 latency"):
        Measurements().added(throughput_only)
    with pytest.raises(ValueError, match="trial 1 and fp32 were never timed together"):
        Measurements().added(measurement({"fp32": drawn(draw, 1.0)}, drawn(draw, 1.0))).time_ratio("trial 1", "fp32")
    other_runtime = measurement({"fp32": drawn(draw, 1.0), "trial 1": drawn(draw, 0.5)}, drawn(draw, 1.0))
    other_runtime["trial 1"] = Performance("trial 1", Timing(1, 0, tuple(drawn(draw, 0.5)), "openvino"), ())
    with pytest.raises(ValueError, match="take turns together"):
        Measurements().added(other_runtime)


def test_the_noise_floor_of_a_model_reads_the_sets_it_ran_in():
    # The verdict widens the written model's ratio by the A/A pair of its own sets, and says that noise floor:
    # a rival's re-timing, with a noisier A/A pair, is not the written model's noise.
    draw = np.random.default_rng(11)
    quiet = {"fp32": drawn(draw, 1.0, noise=0.01), "trial 1": drawn(draw, 0.8, noise=0.01), "trial 2": drawn(draw, 0.9, noise=0.01)}
    quiet_twin = drawn(draw, 1.0, noise=0.01)
    busy = {"fp32": drawn(draw, 1.0, noise=0.2), "trial 2": drawn(draw, 0.9, noise=0.2)}
    busy_twin = drawn(draw, 1.0, noise=0.2)
    timed = Measurements().added(measurement(quiet, quiet_twin)).added(measurement(busy, busy_twin))
    aa = sorted(float(np.median(t / f)) for t, f in zip(quiet_twin, quiet["fp32"]))
    assert (timed.noise_floor("trial 1").low, timed.noise_floor("trial 1").high) == pytest.approx((aa[0], aa[-1]))
    every = sorted(float(np.median(t / f)) for t, f in zip(quiet_twin + busy_twin, quiet["fp32"] + busy["fp32"]))
    rank, _ = order_statistic_rank(len(every))
    assert (timed.noise_floor().low, timed.noise_floor().high) == pytest.approx((every[rank - 1], every[-rank]))
    assert timed.noise_floor("trial 1") != timed.noise_floor()
    with pytest.raises(ValueError, match="trial 3 was never timed"):
        timed.noise_floor("trial 3")


# --- which pairs the choice hangs on --------------------------------------------------------------


@pytest.mark.parametrize(
    "low, high, expected",
    [(0.80, 0.89, False), (0.80, 0.90, True), (0.85, 0.95, True), (0.90, 0.95, True), (0.91, 1.00, False)],
)
def test_a_ratio_is_undecided_exactly_while_its_interval_holds_the_bound(low, high, expected):
    # 1 - 0.1 is 0.9 in binary fractions; an interval touching it can tell neither way.
    assert undecided(Interval((low + high) / 2, low, high), MARGIN) is expected


def trial(index: int, fp32_nodes: int, passing: bool = True, **fields) -> Trial:
    fields = {"latency_ratio": 1.0} | fields
    return Trial(index, 0.99, passing, (), (), quant_format="QDQ", fp32_compute_nodes=tuple(f"n{k}" for k in range(fp32_nodes)),
                 **fields)  # fmt: skip


def test_undecided_rivals_are_the_timed_passing_candidates_whose_interval_against_the_chosen_holds_the_bound():
    trials = [trial(0, 3), trial(1, 1), trial(2, 2), trial(3, 2), trial(4, 2, passing=False), trial(5, 2, same_model_as=2),
              trial(6, 2, latency_ratio=None)]  # fmt: skip
    intervals = {2: Interval(0.85, 0.8, 0.95), 3: Interval(0.95, 0.91, 1.0), 4: Interval(0.85, 0.8, 0.95),
                 5: Interval(0.85, 0.8, 0.95), 6: Interval(0.85, 0.8, 0.95)}  # fmt: skip
    calls = []

    def time_ratio(mine: int, theirs: int) -> Interval:
        calls.append((mine, theirs))
        return intervals[mine]

    assert undecided_rivals(trials, 1, time_ratio, MARGIN) == [2]
    assert all(theirs == 1 for _, theirs in calls)  # each rival against the chosen one, in that direction


# --- the finalists' timing ------------------------------------------------------------------------


def controlled(ms: dict[int, float], noise: float, seed: int, log: list[list[int]]):
    """A stand-in for timing finalists: fp32 costs 1 ms, trial i ``ms[i]``, with the noise of :func:`drawn`."""
    draw = np.random.default_rng(seed)

    def time_finalists(indices) -> dict[str, Performance]:
        if len(log) > 2 * MAX_TIMINGS:
            raise AssertionError("the finalists are timed without end")
        log.append(list(indices))
        durations = {"fp32": drawn(draw, 1.0, noise=noise)} | {f"trial {i}": drawn(draw, ms[i], noise=noise) for i in indices}
        return measurement(durations, drawn(draw, 1.0, noise=noise))

    return time_finalists


# trial 1 (one fp32 compute node) is preferred to trial 2 (two), which is 0.8x its time: 20 % faster, beyond the
# 10 % margin. trial 3 is as fast as trial 1.
LEAD_MS = {1: 0.50, 2: 0.40, 3: 0.50}
FINALISTS = [trial(0, 3), trial(1, 1), trial(2, 2), trial(3, 2)]
BYTES = {1: 100, 2: 100, 3: 100}


def test_quiet_the_lead_is_decided_in_one_timing():
    log: list[list[int]] = []
    final = choose_finalist(FINALISTS, [1, 2, 3], controlled(LEAD_MS, 0.0, 0, log), BYTES, MARGIN)
    assert (final.chosen, final.timings, log) == (2, 1, [[1, 2, 3]])
    assert "decided after" not in final.reason and "left to the preference" not in final.reason


def test_noise_that_hides_the_lead_in_one_timing_costs_more_timings_not_another_choice(monkeypatch):
    hidden = []
    for seed in range(12):
        log: list[list[int]] = []
        lines: list[str] = []
        final = choose_finalist(FINALISTS, [1, 2, 3], controlled(LEAD_MS, 0.06, seed, log), BYTES, MARGIN, lines.append)
        assert final.chosen == 2, f"seed {seed}: {final.reason}"
        if final.timings > 1:
            hidden.append(seed)
            # Timed again: the chosen one of that timing and the rivals its choice hangs on (trial 3 only while its
            # interval against the chosen one holds the bound), always with fp32 (the stand-in adds it).
            assert all(sorted(again) in ([1, 2], [2, 3], [1, 2, 3]) and 2 in again for again in log[1:])
            assert lines and lines[0].startswith("tune: trial ") and "not decided at this noise" in lines[0]
            assert final.reason.endswith(f"; decided after {final.timings} timings of {ROUNDS} session sets")
    assert hidden, "the noise never hid the lead in one timing: the test no longer tells"
    # The same seeds with one timing only (the rule before): the preference writes trial 1 where noise hid the lead.
    monkeypatch.setattr(finalists_module, "MAX_TIMINGS", 1)
    firsts = [choose_finalist(FINALISTS, [1, 2, 3], controlled(LEAD_MS, 0.06, seed, []), BYTES, MARGIN).chosen for seed in hidden]
    assert 1 in firsts


def test_a_pair_at_the_margin_is_timed_the_most_times_then_left_to_the_preference():
    # trial 2 at exactly 0.9x trial 1: no number of sets can tell, and trial 1 is preferred.
    log: list[list[int]] = []
    lines: list[str] = []
    final = choose_finalist(FINALISTS[:3], [1, 2], controlled({1: 0.5, 2: 0.45}, 0.02, 5, log), BYTES, MARGIN, lines.append)
    assert lines == ["tune: trial 1 against trial 2: not decided at this noise; timing it again with trial 1 and fp32"] * 2
    assert final.reason.startswith("p50 ") and final.reason.count("; against trial 2 not decided") == 1
    assert final.measurements.session_sets() == MAX_TIMINGS * ROUNDS
    assert final.timings == MAX_TIMINGS == len(log)
    assert final.chosen == 1 and log[1:] == [[1, 2]] * (MAX_TIMINGS - 1)
    sets = MAX_TIMINGS * ROUNDS
    assert final.reason.endswith(f"against trial 2 not decided after {sets} session sets, left to the preference")
    # The trials carry the ratios over every set they ran in.
    assert len(final.trials[1].latency_ratio_rounds) == sets and len(final.trials[2].latency_ratio_rounds) == sets


def test_two_rivals_at_the_margin_are_timed_again_together_and_named_in_one_line():
    # Without noise a ratio is its value: exactly 0.9 holds the bound, so both rivals stay undecided.
    log: list[list[int]] = []
    lines: list[str] = []
    final = choose_finalist(FINALISTS, [1, 2, 3], controlled({1: 0.5, 2: 0.45, 3: 0.45}, 0.0, 0, log), BYTES, MARGIN,
                            lines.append)  # fmt: skip
    assert log == [[1, 2, 3], [1, 2, 3], [1, 2, 3]] and final.chosen == 1
    assert lines == ["tune: trial 1 against trials 2, 3: not decided at this noise; timing them again with trial 1 and fp32"] * 2
    assert final.reason.startswith("p50 0.50x fp32 at batch 1; indistinguishable within the 10% margin")
    assert final.reason.endswith(f"; against trials 2, 3 not decided after {MAX_TIMINGS * ROUNDS} session sets, left to the preference")


def test_a_lead_shown_in_the_second_timing_says_so_after_the_choice_rule_s_reason():
    # trial 2 against trial 1, per session set: 0.80-0.88 and one set at 0.95 in the first timing (the interval of six
    # sets is their range, which holds 0.9), 0.5 in each set of the second: of twelve, the 3rd-highest is 0.86.
    first = [0.80, 0.82, 0.84, 0.86, 0.88, 0.95]
    log: list[list[int]] = []

    def time_finalists(indices) -> dict[str, Performance]:
        log.append(list(indices))
        factors = first if len(log) == 1 else [0.5] * ROUNDS
        flat = [np.full(CALLS, 1.0) for _ in range(ROUNDS)]
        durations = {"fp32": flat, "trial 1": [np.full(CALLS, 0.5)] * ROUNDS, "trial 2": [np.full(CALLS, 0.5 * f) for f in factors]}
        return measurement(durations, flat)

    final = choose_finalist(FINALISTS[:3], [1, 2], time_finalists, BYTES, MARGIN)
    assert (final.chosen, final.timings, log) == (2, 2, [[1, 2], [1, 2]])
    assert final.reason.startswith("p50 ") and final.reason.endswith(f"; decided after 2 timings of {ROUNDS} session sets")
    assert final.measurements.session_sets("trial 1", "trial 2") == 2 * ROUNDS


def scripted(timings: list[dict[int, list[float]]], log: list[list[int]]):
    """A stand-in timing its k-th call as ``timings[k]`` says: per trial, its time per session set (fp32 and its
    twin take 1.0 in every set, so no A/A excursion widens an interval and a ratio per set is the value given)."""

    def time_finalists(indices) -> dict[str, Performance]:
        times = timings[len(log)]
        log.append(sorted(indices))
        assert sorted(times) == sorted(indices), (times, indices)
        flat = [np.full(CALLS, 1.0) for _ in range(ROUNDS)]
        durations = {"fp32": flat} | {f"trial {i}": [np.full(CALLS, t) for t in sets] for i, sets in times.items()}
        return measurement(durations, flat)

    return time_finalists


HELD = [0.80, 0.82, 0.84, 0.86, 0.88, 0.95]  # six sets whose range holds 0.9
OPEN = [0.7, 0.7, 0.7, 1.2, 1.2, 1.2]  # with HELD, twelve sets whose 3rd-lowest and 3rd-highest still hold it


@pytest.mark.parametrize(
    "timings, expected_log",
    [
        # trial 2 shows its lead over trial 1 in the second timing, and the choice moves to it; its own rival, trial 3,
        # was timed in the first timing and the third only: 12 session sets with trial 2 of its 18.
        ([{1: [1.0] * 6, 2: [0.80, 0.82, 0.84, 0.86, 0.88, 1.2], 3: [0.95] * 5 + [1.0]}, {1: [1.0] * 6, 2: [0.5] * 6},
          {2: [0.5] * 6, 3: [0.5 * r for r in OPEN]}], [[1, 2, 3], [1, 2], [2, 3]]),
        # trial 3 shows its lead over trial 1 in the second timing, and the choice moves to trial 2, which trial 3 was
        # not timed with then: again 12 sets of the pair, while trial 3 ran in 18.
        ([{1: [1.0] * 6, 2: [1.0] * 6, 3: HELD}, {1: [1.0] * 6, 3: [0.5] * 6}, {2: [1.0] * 6, 3: OPEN}],
         [[1, 2, 3], [1, 3], [2, 3]]),
    ],
)
def test_when_the_choice_moves_the_undecided_pair_is_counted_over_the_sets_it_shared(timings, expected_log):
    log: list[list[int]] = []
    final = choose_finalist(FINALISTS, [1, 2, 3], scripted(timings, log), BYTES, MARGIN)
    assert log == expected_log and final.chosen == 2
    assert final.reason.endswith(f"; against trial 3 not decided after {2 * ROUNDS} session sets, left to the preference")
