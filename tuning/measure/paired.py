"""The timing loop: compared models take turns, a short block of consecutive calls each, so that the
``t``-th timed call of every model forms a pair.

A turn gives each model at least TURN_IMAGES images: at batch 1 a block of 64 calls (a few milliseconds),
at batch 64 and above one call of a millisecond or more. A drift of the machine slower than one turn hits
every model of the turn alike and cancels in the paired ratio (tuning/measure/statistics.py).

Why blocks and not one call per model per turn: a user's process calls its one model again and again, so
every call finds that model's weights and buffers in the caches. A call right after another model's finds
them evicted, and the cost is not the same for every model: on mnist-12 at batch 1, alternating call by
call timed the int8 model at 0.86-0.92x fp32's time, where plain sessions timed one at a time (or in blocks
of 10-100 calls) give 0.97-1.03x. So the first call of a block runs untimed, as the re-warming a user never
pays; at batch sizes where a turn is a single call, the eviction is a fraction of a percent of the call.

The order of the models is shuffled every turn, from a fixed seed, so no model keeps running right after
the same other one (whose runtime may leave threads spinning). A rotation kept most predecessors fixed: in a
report with OpenVINO beside onnxruntime, fp32's second onnxruntime session came out 0.89-0.93x the first's
time in every run (a fixed bias, on a quiet machine too); shuffled, 0.99x [0.98-1.01].
"""

from __future__ import annotations

import contextlib
import gc
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

# Every model runs at least this many timed calls per session set and batch size, whatever the config
# says: a median of fewer paired ratios is itself noise (a batch-256 round of ~0.03 s was 6 calls).
MIN_CALLS = 20

# Each model runs at least this many images per turn, in consecutive calls (the module's docstring says why).
TURN_IMAGES = 64

# The turn orders are drawn from this seed: the same sequence in every run, whatever the machine's speed.
TURN_ORDER_SEED = 0

Feed = Any  # what a runner's ``infer`` takes: one batch of inputs, prepared by the runner


def calls_per_turn(batch_size: int) -> int:
    """Consecutive timed calls of one model per turn at ``batch_size``: TURN_IMAGES images, at least one call."""
    return max(1, math.ceil(TURN_IMAGES / batch_size))


def time_in_turns(
    calls: Mapping[str, Callable[[Feed], Any]],
    feeds: Mapping[str, Sequence[Feed]],
    warmup_calls: int,
    min_calls: int,
    min_seconds: float,
    block: int = 1,
) -> dict[str, np.ndarray]:
    """Per-call durations in ms of every model, the same number for each; the ``t``-th of each ran in the
    same turn, at the same place in its block.

    Each model first runs ``warmup_calls`` untimed calls. Then, in every turn, each model in turn runs
    ``block`` timed calls, preceded by one untimed call when ``block`` is above 1 (the re-warming after
    another model ran, :mod:`tuning.measure.paired`); turns go on until every model has run at least
    ``max(min_calls, MIN_CALLS)`` timed calls and ``min_seconds`` of timed work. Inputs cycle through
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
        timed_calls = 0
        order = list(names)
        shuffler = random.Random(TURN_ORDER_SEED)
        while timed_calls < least or min(timed_ns.values()) < min_ns:
            shuffler.shuffle(order)
            for name in order:
                model_feeds = feeds[name]
                if block > 1:
                    calls[name](model_feeds[(timed_calls - 1) % len(model_feeds)])
                for call in range(timed_calls, timed_calls + block):
                    feed = model_feeds[call % len(model_feeds)]
                    began = time.perf_counter_ns()
                    calls[name](feed)
                    took = time.perf_counter_ns() - began
                    durations[name].append(took)
                    timed_ns[name] += took
            timed_calls += block
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
