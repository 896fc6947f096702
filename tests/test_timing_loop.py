"""tuning.measure.paired.time_in_turns and tuning.measure.benchmark's Timing arithmetic, with calls that record
what they were given: which model ran when, on which feed, how many warm-up calls, and when the turns end.

The calls are plain Python functions that log their feed and, where the test needs a known duration, busy-wait
for it; no assertion depends on how fast the machine is (a busy-wait lasts *at least* its time).
"""

from __future__ import annotations

import dataclasses
import random
import time
from collections import Counter

import numpy as np
import pytest

from tuning.measure.benchmark import Performance, Spread, Timing
from tuning.measure.paired import MIN_CALLS, TURN_IMAGES, TURN_ORDER_SEED, calls_per_turn, time_in_turns
from tuning.measure.statistics import Interval, median_interval

pytestmark = pytest.mark.fast


def _logging_calls(names: list[str], log: list[tuple[str, object]], busy_ns: dict[str, int] | None = None):
    def call_of(name: str):
        def call(feed: object) -> None:
            log.append((name, feed))
            if busy_ns and busy_ns.get(name):
                end = time.perf_counter_ns() + busy_ns[name]
                while time.perf_counter_ns() < end:
                    pass

        return call

    return {name: call_of(name) for name in names}


def test_warm_up_calls_come_first_per_model_cycling_its_feeds_and_are_not_timed() -> None:
    log: list[tuple[str, object]] = []
    names = ["a", "b", "c"]
    feeds = {name: [f"{name}{k}" for k in range(4)] for name in names}
    durations = time_in_turns(_logging_calls(names, log), feeds, warmup_calls=6, min_calls=MIN_CALLS, min_seconds=0)
    warmup = [(name, f"{name}{k % 4}") for name in names for k in range(6)]
    assert log[: len(warmup)] == warmup
    timed = log[len(warmup) :]
    assert {name: len(runs) for name, runs in durations.items()} == dict.fromkeys(names, MIN_CALLS)
    assert len(timed) == 3 * MIN_CALLS
    # Turn t runs every model once, on its feed t mod 4, in an order drawn from the fixed seed.
    shuffler = random.Random(TURN_ORDER_SEED)
    order = list(names)
    for turn in range(MIN_CALLS):
        shuffler.shuffle(order)
        assert timed[3 * turn : 3 * turn + 3] == [(name, f"{name}{turn % 4}") for name in order]


def test_a_turn_is_one_untimed_call_then_a_block_of_timed_consecutive_calls_per_model() -> None:
    """With a block of 5, every model's turn is 6 calls in a row: the first re-warms it after another model ran
    and is not timed, the next 5 are, on consecutive feeds; the timed counts are whole turns."""
    log: list[tuple[str, object]] = []
    names = ["a", "b", "c"]
    feeds = {name: [f"{name}{k}" for k in range(7)] for name in names}
    durations = time_in_turns(_logging_calls(names, log), feeds, warmup_calls=0, min_calls=MIN_CALLS + 1, min_seconds=0, block=5)
    turns = -(-(MIN_CALLS + 1) // 5)
    assert {name: len(runs) for name, runs in durations.items()} == dict.fromkeys(names, 5 * turns)
    assert len(log) == 3 * 6 * turns
    shuffler = random.Random(TURN_ORDER_SEED)
    order = list(names)
    position = 0
    for turn in range(turns):
        shuffler.shuffle(order)
        for name in order:
            run = log[position : position + 6]
            assert {model for model, _feed in run} == {name}, f"turn {turn}: {name}'s calls are consecutive"
            timed_feeds = [feed for _model, feed in run[1:]]
            assert timed_feeds == [f"{name}{k % 7}" for k in range(5 * turn, 5 * turn + 5)]
            assert run[0][1] not in timed_feeds, "the untimed call re-warms on another input"
            position += 6


def test_a_block_of_one_call_has_no_untimed_call() -> None:
    # At batch sizes where a turn is a single call, an untimed call would double the cost of the measurement.
    log: list[tuple[str, object]] = []
    durations = time_in_turns(_logging_calls(["a", "b"], log), dict.fromkeys("ab", [0]), 0, MIN_CALLS, 0.0, block=1)
    assert len(log) == 2 * MIN_CALLS == sum(len(runs) for runs in durations.values())


@pytest.mark.parametrize("batch_size", [1, 2, 3, 16, 63, 64, 65, 256])
def test_a_turn_holds_at_least_turn_images_in_as_few_calls_as_that_takes(batch_size: int) -> None:
    calls = calls_per_turn(batch_size)
    assert calls >= 1 and calls * batch_size >= TURN_IMAGES
    assert calls == 1 or (calls - 1) * batch_size < TURN_IMAGES


def test_no_model_keeps_running_right_after_the_same_other_one() -> None:
    # A rotation (turn t starting at model t mod n) puts b right after a in 3 of 4 turns with four models;
    # whatever a leaves behind (caches, spinning threads) then biases b against the others.
    log: list[tuple[str, object]] = []
    names = ["a", "b", "c", "d"]
    time_in_turns(_logging_calls(names, log), dict.fromkeys(names, [0]), 0, 2 * MIN_CALLS, 0.0)
    sequence = [name for name, _feed in log]
    for name in names:
        predecessors = Counter(before for before, after in zip(sequence, sequence[1:]) if after == name)
        assert set(predecessors) == set(names) - {name} or set(predecessors) == set(names)
        assert max(predecessors.values()) <= 0.5 * sum(predecessors.values()), (name, predecessors)


def test_the_turn_orders_are_the_same_in_every_run() -> None:
    logs: list[list[tuple[str, object]]] = [[], []]
    for log in logs:
        time_in_turns(_logging_calls(["a", "b", "c"], log), dict.fromkeys("abc", [0]), 0, MIN_CALLS, 0.0)
    assert logs[0] == logs[1]


@pytest.mark.parametrize("min_calls, expected", [(MIN_CALLS - 1, MIN_CALLS), (MIN_CALLS + 7, MIN_CALLS + 7)])
def test_the_calls_are_at_least_min_calls_and_never_fewer_than_the_floor(min_calls: int, expected: int) -> None:
    log: list[tuple[str, object]] = []
    durations = time_in_turns(_logging_calls(["a", "b"], log), {"a": [0], "b": [0]}, 0, min_calls, 0.0)
    assert {len(runs) for runs in durations.values()} == {expected}
    assert len(log) == 2 * expected


def test_the_turns_end_when_the_least_timed_model_reached_min_seconds() -> None:
    """``slow`` busy-waits 2 ms per call, ``quick`` nothing: the turns go on until ``quick`` too has 20 ms of
    timed work, which takes it far more calls than ``slow`` needs (durations in ms, each at least what was waited)."""
    log: list[tuple[str, object]] = []
    calls = _logging_calls(["slow", "quick"], log, {"slow": 2_000_000, "quick": 200_000})
    durations = time_in_turns(calls, {"slow": [0], "quick": [0]}, 0, 1, 0.02)
    assert np.all(durations["slow"] >= 2.0) and np.all(durations["quick"] >= 0.2)
    assert durations["quick"].sum() >= 20.0 and durations["slow"].sum() >= 20.0
    calls = len(durations["quick"])
    assert len(durations["slow"]) == calls >= MIN_CALLS
    # The turns ended at the first turn where both minimums held: one turn fewer missed one of them (on a quiet
    # machine the time, after ~100 turns; on a loaded one a preempted busy-wait can reach it within MIN_CALLS).
    assert calls - 1 < MIN_CALLS or min(runs[:-1].sum() for runs in durations.values()) < 20.0


def test_garbage_collection_is_off_while_timing_and_restored_after() -> None:
    import gc

    seen = []
    time_in_turns({"a": lambda _feed: seen.append(gc.isenabled())}, {"a": [0]}, 2, 1, 0.0)
    assert gc.isenabled() and seen and not any(seen)
    gc.disable()
    try:
        time_in_turns({"a": lambda _feed: None}, {"a": [0]}, 0, 1, 0.0)
        assert not gc.isenabled()  # left as it was found
    finally:
        gc.enable()


def _timing(batch: int, *rounds: list[float]) -> Timing:
    return Timing(batch, 3, tuple(np.asarray(r, dtype=np.float64) for r in rounds))


def test_a_timing_pools_its_rounds_and_spreads_over_the_rounds_medians() -> None:
    timing = _timing(4, [1.0, 2.0, 3.0], [10.0, 20.0, 30.0, 40.0])
    pooled = [1.0, 2.0, 3.0, 10.0, 20.0, 30.0, 40.0]
    assert timing.runs == 7 and timing.p50 == 10.0 and timing.mean == pytest.approx(sum(pooled) / 7)
    assert timing.p90 == pytest.approx(float(np.percentile(pooled, 90)))
    assert timing.p99 == pytest.approx(float(np.percentile(pooled, 99)))
    assert timing.round_p50s == (2.0, 25.0)
    assert timing.p50_spread == Spread(10.0, 2.0, 25.0)
    # Images/s is batch / p50 (ms): 4 images in 10 ms are 400 per second; per round 2000 and 160.
    assert timing.images_per_s == pytest.approx(400.0)
    assert timing.latency_per_image_ms == pytest.approx(2.5)
    spread = timing.images_per_s_spread
    assert (spread.value, spread.low, spread.high) == pytest.approx((400.0, 160.0, 2000.0))
    assert Spread.of_rounds([3.0, 1.0, 2.0, 10.0]) == Spread(2.5, 1.0, 10.0)
    assert Spread.from_json(Spread(1.0, 0.5, 2.0).to_json()) == Spread(1.0, 0.5, 2.0)


def test_models_that_did_not_take_turns_together_compare_by_their_session_sets_medians() -> None:
    """Two runtimes' models ran in separate turns, with different call counts: their ratio per set is the ratio of
    the set's medians (p50 3 over 2 and 8 over 4), while models of the same turns pair call by call."""
    ort = Timing(1, 0, (np.array([1.0, 2.0, 3.0]), np.array([4.0, 4.0, 4.0])), "onnxruntime")
    ov = Timing(1, 0, (np.array([3.0, 3.0, 9.0, 1.0, 3.0]), np.array([8.0, 8.0])), "openvino")
    across = ov.time_ratio(ort)
    assert across.value == pytest.approx(np.sqrt(1.5 * 2.0)) and (across.low, across.high) == (1.5, 2.0)
    assert ort.time_ratio(ov).value == pytest.approx(1 / across.value)
    same_turns = Timing(1, 0, (np.array([2.0, 2.0, 6.0]), np.array([8.0, 4.0, 4.0])), "onnxruntime")
    # Paired: per-call ratios [2, 1, 2] and [2, 1, 1] have medians 2 and 1; the sets' medians would give 1 and 1.
    within = same_turns.time_ratio(ort)
    assert (within.low, within.high) == (1.0, 2.0)
    with pytest.raises(ValueError, match="same number of calls"):
        Timing(1, 0, (np.array([1.0, 2.0]),), "onnxruntime").time_ratio(Timing(1, 0, (np.array([1.0]),), "onnxruntime"))


def _performance(name: str, latency_rounds, throughput_rounds, twin: Performance | None = None) -> Performance:
    return Performance(name, _timing(1, *latency_rounds), (_timing(8, *throughput_rounds),), {}, twin)


def test_ratios_are_model_over_reference_in_time_and_the_inverse_in_images_per_second() -> None:
    """Five session sets of an int8 model half as slow as fp32 (time ratio 2 at batch 1) and twice as fast at
    batch 8 (throughput ratio 2); fp32's second session sets the noise floor."""
    fp32_rounds = [[10.0] * 4] * 5
    twin = _performance("fp32 (second session)", [[10.0] * 4, [11.0] * 4, [10.0] * 4, [9.5] * 4, [10.0] * 4],
                        [[8.0] * 4, [8.0] * 4, [8.4] * 4, [8.0] * 4, [7.6] * 4])
    fp32 = _performance("fp32", fp32_rounds, [[8.0] * 4] * 5, twin)
    int8 = _performance("int8", [[20.0] * 4] * 5, [[4.0] * 4] * 5)
    floor = fp32.noise_floor()
    assert floor == median_interval([1.0, 1.1, 1.0, 0.95, 1.0])  # second session over the first
    assert fp32.noise_floor(8) == median_interval([1.0, 1.0, 1.05, 1.0, 0.95])
    assert int8.noise_floor() is None
    latency = int8.latency_ratio(fp32)
    assert latency.value == pytest.approx(2.0)
    assert (latency.low, latency.high) == pytest.approx((2.0 / 1.1, 2.0 * 1.1))  # widened by the factor 1.1
    throughput = int8.throughput_ratio(fp32, 8)  # widened by the batch-8 floor [0.95, 1.05] (factor 1/0.95), inverted
    assert (throughput.value, throughput.low, throughput.high) == pytest.approx((2.0, 2.0 * 0.95, 2.0 / 0.95))
    with pytest.raises(AssertionError):  # a model timed without batch-1 latency has no latency ratio
        dataclasses.replace(int8, latency=None).latency_ratio(fp32)
    assert fp32.throughput_at(8).batch_size == 8
    assert int8.latency_ratio(fp32).inverse().value == pytest.approx(fp32.latency_ratio(int8).value)


def test_the_a_a_floor_at_a_batch_size_reads_that_batch_size() -> None:
    twin = Performance("twin", _timing(1, [10.0]), (_timing(8, [12.0]), _timing(16, [10.0])), {}, None)
    fp32 = Performance("fp32", _timing(1, [10.0]), (_timing(8, [10.0]), _timing(16, [10.0])), {}, twin)
    assert fp32.noise_floor(8).value == pytest.approx(1.2)
    assert fp32.noise_floor(16).value == pytest.approx(1.0)
    assert fp32.noise_floor().value == pytest.approx(1.0)
    assert Interval(1.2, 1.2, 1.2).excursion() == pytest.approx(0.2)
    assert Interval(2.0, 1.0, 4.0, 0.9375).inverse() == Interval(0.5, 0.25, 1.0, 0.9375)  # the coverage stays
