"""Objective latency's accuracy scoring: in one process on demand, or spread over MPI ranks.

Under ``mpirun`` rank 0 runs the whole search (tuning/search/latency.py): it makes every candidate with INC,
screens and times them, and decides. Only the accuracy scoring is spread: the other ranks (:func:`serve`)
score the candidates rank 0 sends them, and time nothing, so every timing stays on rank 0's machine, the
deployment's, with the other ranks idle while it runs.

A search asks for one candidate's accuracy at a time, and whether it asks for the next depends on the answer
(scoring stops once the finalists are known: tuning/search/candidates.py). To score in parallel anyway, the
search says which candidates it may ask for next, in order (:meth:`Scorer.ahead`). When it asks for one not
yet scored, rank 0 scores it itself and sends each worker one of the next ones on that list; the answers are
kept, and a candidate scored ahead that the search later asks for is not scored again. Nothing scored ahead
reaches the search unless it asks: it makes the same decisions as in one process, and writes the same model
(scoring is deterministic; rank 0's own timings decide as they would alone). What was scored ahead and never
asked for is the price, counted in the summary.

Models cross as serialized bytes (a few kB to MB), so a worker needs neither INC nor the calibration data.
Every wait is bounded where a rank can be stuck: rank 0 gives a worker :data:`PATIENCE_FACTOR` times its
own scoring time of the same round (at least :data:`PATIENCE_MIN_S`) and then fails the job with one line.
A worker waits for rank 0 without a bound: rank 0 failing stops the whole job (tuning/inc/distributed.py),
and its own work runs within the search's budget.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import onnx

from tuning.errors import PipelineError, TuningError
from tuning.inc import distributed
from tuning.inc.distributed import World

SCORE_TAG = 8  # on the project's duplicate of COMM_WORLD, like distributed.TRIALS_TAG
PATIENCE_MIN_S = 30.0
PATIENCE_FACTOR = 20.0
# Waits poll rather than block: a blocked MPI receive spins a core, which on a small machine would slow
# the timing on rank 0 that the waiting ranks are there to leave alone.
POLL_S = 0.01

Evaluate = Callable[[onnx.ModelProto], float]


class Scorer:
    """Each candidate's accuracy by trial index, scored once, on rank 0 or, ahead of need, on a worker.

    In one process (``world`` of size 1) it scores what it is asked, when it is asked.
    """

    def __init__(self, evaluate: Evaluate, world: World = World()) -> None:
        self._evaluate = evaluate
        self._world = world
        self._upcoming: list[tuple[int, onnx.ModelProto]] = []
        self._done: dict[int, tuple[float | PipelineError, int]] = {}  # index -> (accuracy or error, rank)
        self._asked: set[int] = set()
        self._closed = False

    @contextlib.contextmanager
    def ahead(self, upcoming: Sequence[tuple[int, onnx.ModelProto]]) -> Iterator[None]:
        """While the block runs, the candidates (index, model) the search may ask for next, in its order."""
        self._upcoming = list(upcoming)
        try:
            yield
        finally:
            self._upcoming = []

    def accuracy(self, index: int, model: onnx.ModelProto) -> float:
        """Candidate ``index``'s accuracy; the evaluation's own error when it failed (on whichever rank)."""
        self._asked.add(index)
        if index not in self._done:
            self._score_round(index, model)
        result = self._done[index][0]
        if isinstance(result, PipelineError):
            raise result
        return result

    def rank_of(self, index: int) -> int | None:
        """The rank that scored trial ``index`` for the search (0 for the fp32 baseline); None in one process,
        and for a candidate the search never asked for (scored ahead or not at all)."""
        if not self._world.distributed:
            return None
        return 0 if index == 0 else self._done[index][1] if index in self._asked else None

    def unused(self) -> int:
        """How many candidates were scored ahead and never asked for."""
        return len(self._done.keys() - self._asked)

    def close(self) -> None:
        """Tell every worker that scoring is over; they leave :func:`serve`. Rank 0 goes on alone."""
        if self._world.distributed and not self._closed:
            for rank in range(1, self._world.size):
                self._world.comm.send(None, dest=rank, tag=SCORE_TAG)
            distributed.settle()
        self._closed = True

    def _score_round(self, index: int, model: onnx.ModelProto) -> None:
        """Score ``index`` here and, on each worker, one of the next candidates not scored yet."""
        comm = self._world.comm
        upcoming = [(i, m) for i, m in self._upcoming if i != index and i not in self._done]
        sent = upcoming[: self._world.size - 1] if self._world.distributed else []
        for rank, (i, candidate) in enumerate(sent, start=1):
            comm.send((i, candidate.SerializeToString()), dest=rank, tag=SCORE_TAG)
        started = time.monotonic()
        self._done[index] = (self._evaluate(model), 0)
        patience = max(PATIENCE_MIN_S, PATIENCE_FACTOR * (time.monotonic() - started))
        deadline = time.monotonic() + patience
        for rank, (i, _) in enumerate(sent, start=1):
            if not _wait(comm, rank, deadline):
                raise TuningError(
                    f"rank {rank} sent no accuracy for candidate {i} within {patience:.0f} s (the longer of "
                    f"{PATIENCE_MIN_S:.0f} s and {PATIENCE_FACTOR:.0f} times rank 0's scoring of the same round): "
                    "a rank is stuck or far slower; stopping the job"
                )
            scored, result = comm.recv(source=rank, tag=SCORE_TAG)
            self._done[scored] = (result, rank)


def serve(world: World, evaluate: Evaluate) -> None:
    """A worker's part of objective latency: score what rank 0 sends until it says scoring is over.

    An evaluation's error (a PipelineError) goes back to rank 0, which raises it only if the search asks
    for that candidate, as one process would; any other failure stops the job (tuning/cli/main.py).
    """
    while True:
        _wait(world.comm, 0, deadline=None)
        job = world.comm.recv(source=0, tag=SCORE_TAG)
        if job is None:
            distributed.settle()
            return
        index, payload = job
        try:
            result: float | PipelineError = evaluate(onnx.load_from_string(payload))
        except PipelineError as exc:
            result = exc
        world.comm.send((index, result), dest=0, tag=SCORE_TAG)


def _wait(comm: Any, source: int, deadline: float | None) -> bool:
    """Whether a scoring message from ``source`` arrived before ``deadline`` (None: wait as long as it takes)."""
    while not comm.iprobe(source=source, tag=SCORE_TAG):
        if deadline is not None and time.monotonic() > deadline:
            return False
        time.sleep(POLL_S)
    return True
