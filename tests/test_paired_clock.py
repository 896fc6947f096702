"""tuning.measure.paired.time_in_turns against a clock the test moves: every call lasts exactly the time the
test gives it, so where the turns end is a known state (the boundary included), whatever the machine's load.

The clock is injected by replacing the module's ``time`` with an object whose ``perf_counter_ns`` reads it;
each call moves it by its chosen duration. The contract checked: every model gets the same number of timed
calls, at least the minimum count and the minimum time each, in an order shuffled from the fixed seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import pytest

from tuning.measure import paired
from tuning.measure.paired import MIN_CALLS, TURN_ORDER_SEED, time_in_turns

pytestmark = pytest.mark.fast


class Clock:
    """A nanosecond clock that moves only when a call says it took time."""

    def __init__(self) -> None:
        self.now = 1_000_000_007  # not zero: a duration read as a time would show

    def perf_counter_ns(self) -> int:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(paired, "time", SimpleNamespace(perf_counter_ns=fake.perf_counter_ns))
    return fake


def _calls(clock: Clock, durations: dict[str, Callable[[int], int]], log: list[str]) -> dict[str, Callable]:
    """Calls that take ``durations[name](k)`` ns on their k-th call (warm-up calls included), logging their name."""
    counts = dict.fromkeys(durations, 0)

    def call_of(name: str) -> Callable:
        def call(_feed: object) -> None:
            log.append(name)
            clock.now += durations[name](counts[name])
            counts[name] += 1

        return call

    return {name: call_of(name) for name in durations}


def test_each_duration_is_what_the_call_took_in_ms(clock: Clock) -> None:
    log: list[str] = []
    calls = _calls(clock, {"a": lambda k: 1_000_000 * (k + 1), "b": lambda k: 250_000}, log)
    durations = time_in_turns(calls, {"a": [0], "b": [0]}, 0, MIN_CALLS, 0.0)
    assert np.array_equal(durations["a"], np.arange(1, MIN_CALLS + 1, dtype=np.float64))
    assert np.array_equal(durations["b"], np.full(MIN_CALLS, 0.25))
    assert durations["a"].dtype == np.float64


def test_warm_up_calls_are_not_timed(clock: Clock) -> None:
    log: list[str] = []
    # Warm-up calls take 1 s each, timed calls 1 ms: none of the warm-up time shows.
    calls = _calls(clock, {"a": lambda k: 1_000_000_000 if k < 3 else 1_000_000}, log)
    durations = time_in_turns(calls, {"a": [0]}, 3, 1, 0.0)
    assert log == ["a"] * (3 + MIN_CALLS)
    assert np.array_equal(durations["a"], np.ones(MIN_CALLS))


@pytest.mark.parametrize("turns", [MIN_CALLS + 5, 40])
def test_the_turns_end_exactly_when_the_least_timed_model_reaches_min_seconds(clock: Clock, turns: int) -> None:
    # min_seconds 1 s is 10^9 ns exactly; 'quick' takes 10^9 / turns ns a call (exact for these counts), 'slow'
    # 1 ms more: quick, the least timed model, reaches 1 s on its turns-th call, not one turn earlier or later.
    step = 1_000_000_000 // turns
    assert step * turns == 1_000_000_000
    log: list[str] = []
    calls = _calls(clock, {"slow": lambda k: step + 1_000_000, "quick": lambda k: step}, log)
    durations = time_in_turns(calls, {"slow": [0], "quick": [0]}, 0, 1, 1.0)
    assert {name: len(runs) for name, runs in durations.items()} == {"slow": turns, "quick": turns}
    assert len(log) == 2 * turns


def test_one_nanosecond_short_of_min_seconds_takes_one_more_turn(clock: Clock) -> None:
    # After 25 turns 'a' has run 10^9 - 1 ns: one nanosecond short of 1 s.
    log: list[str] = []
    calls = _calls(clock, {"a": lambda k: 40_000_000 - (k == 0)}, log)
    durations = time_in_turns(calls, {"a": [0]}, 0, 1, 1.0)
    assert len(durations["a"]) == 26


def test_the_model_that_reached_min_seconds_first_waits_for_the_other(clock: Clock) -> None:
    log: list[str] = []
    calls = _calls(clock, {"a": lambda k: 100_000_000, "b": lambda k: 10_000_000}, log)
    durations = time_in_turns(calls, {"a": [0], "b": [0]}, 0, 1, 0.5)
    # a has 0.5 s after 5 calls, b after 50; both run 50.
    assert {name: len(runs) for name, runs in durations.items()} == {"a": 50, "b": 50}


def test_min_calls_ends_the_turns_when_the_time_is_already_there(clock: Clock) -> None:
    log: list[str] = []
    calls = _calls(clock, {"a": lambda k: 1_000_000_000, "b": lambda k: 1_000_000_000}, log)
    durations = time_in_turns(calls, {"a": [0], "b": [0]}, 0, MIN_CALLS + 3, 0.5)
    assert {len(runs) for runs in durations.values()} == {MIN_CALLS + 3}


def test_the_order_of_each_turn_is_drawn_from_the_fixed_seed(clock: Clock) -> None:
    log: list[str] = []
    names = ["a", "b", "c", "d", "e"]
    calls = _calls(clock, dict.fromkeys(names, lambda k: 1), log)
    time_in_turns(calls, dict.fromkeys(names, [0]), 0, MIN_CALLS, 0.0)
    shuffler, order, expected = random.Random(TURN_ORDER_SEED), list(names), []
    for _ in range(MIN_CALLS):
        shuffler.shuffle(order)
        expected += order
    assert log == expected
    assert TURN_ORDER_SEED == 0  # documented: the same sequence in every run


def test_each_model_cycles_through_its_own_feeds(clock: Clock) -> None:
    seen: dict[str, list[object]] = {"a": [], "b": []}

    def call_of(name: str) -> Callable:
        def call(feed: object) -> None:
            seen[name].append(feed)
            clock.now += 1

        return call

    feeds = {"a": ["a0", "a1", "a2"], "b": ["b0", "b1"]}
    time_in_turns({name: call_of(name) for name in feeds}, feeds, 4, MIN_CALLS, 0.0)
    assert seen["a"] == [f"a{k % 3}" for k in range(4)] + [f"a{k % 3}" for k in range(MIN_CALLS)]
    assert seen["b"] == [f"b{k % 2}" for k in range(4)] + [f"b{k % 2}" for k in range(MIN_CALLS)]
