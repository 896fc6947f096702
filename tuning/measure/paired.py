"""The timing loop: compared models take turns call by call, so that call ``t`` of every model forms a pair.

One call per model per turn is the finest grain there is: at batch 1 a call lasts tens of microseconds, at
batch 256 a few milliseconds (a short block), so a drift of the machine slower than one turn hits every
model of the turn alike and cancels in the paired ratio (tuning/measure/statistics.py). The order of the
models is shuffled every turn, from a fixed seed, so no model keeps running right after the same other one
(whose data it would find in, or evict from, the caches, and whose runtime may leave threads spinning).
A rotation kept most predecessors fixed: in a report with OpenVINO beside onnxruntime, fp32's second
onnxruntime session came out 0.89-0.93x the first's time in every run (a fixed bias, on a quiet machine too);
shuffled, 0.99x [0.98-1.01].
"""

from __future__ import annotations

import contextlib
import gc
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# Every model runs at least this many timed calls per session set and batch size, whatever the config
# says: a median of fewer paired ratios is itself noise (a batch-256 round of ~0.03 s was 6 calls).
MIN_CALLS = 20

# The turn orders are drawn from this seed: the same sequence in every run, whatever the machine's speed.
TURN_ORDER_SEED = 0

Feed = Any  # what a runner's ``infer`` takes: one batch of inputs, prepared by the runner


def time_in_turns(
    calls: Mapping[str, Callable[[Feed], Any]],
    feeds: Mapping[str, Sequence[Feed]],
    warmup_calls: int,
    min_calls: int,
    min_seconds: float,
) -> dict[str, np.ndarray]:
    """Per-call durations in ms of every model, the same number for each, call ``t`` of each in turn ``t``.

    Each model first runs ``warmup_calls`` untimed calls; then turns go on until every model has run at
    least ``max(min_calls, MIN_CALLS)`` calls and ``min_seconds`` of timed work. Inputs cycle through
    ``feeds[name]`` so no model is timed on one cached input. Garbage collection is off meanwhile: a
    collection would land on whichever model happens to be running.
    """
    names = list(calls)
    durations: dict[str, list[int]] = {name: [] for name in names}
    timed_ns = dict.fromkeys(names, 0)
    min_ns = int(min_seconds * 1e9)
    least = max(min_calls, MIN_CALLS)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for name in names:
            for call in range(warmup_calls):
                calls[name](feeds[name][call % len(feeds[name])])
        turn = 0
        order = list(names)
        shuffler = random.Random(TURN_ORDER_SEED)
        while turn < least or min(timed_ns.values()) < min_ns:
            shuffler.shuffle(order)
            for name in order:
                feed = feeds[name][turn % len(feeds[name])]
                began = time.perf_counter_ns()
                calls[name](feed)
                took = time.perf_counter_ns() - began
                durations[name].append(took)
                timed_ns[name] += took
            turn += 1
    finally:
        if gc_was_enabled:
            gc.enable()
    return {name: np.asarray(runs, dtype=np.float64) / 1e6 for name, runs in durations.items()}


@contextlib.contextmanager
def existing_objects_frozen() -> Iterator[None]:
    """Keep the cyclic garbage collector off the objects alive on entry while the block runs.

    They outlive the measurement (after a tuning run's imports, millions of them: a full collection of
    those took 0.2-0.5 s per session set); frozen, a collection between session sets scans only what they made.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
