"""Distributed tuning over MPI: which rank this process is, and the little the project adds around INC.

Objective latency spreads only its accuracy scoring over the ranks, with the project's own messages
(tuning/search/scoring.py); rank 0 alone runs INC and times. Objective accuracy's engine is INC's own:
with mpi4py importable and more than two MPI ranks, a tuning strategy's ``traverse`` switches to
``distributed_traverse`` by itself. Every rank builds the tuning space and
evaluates the fp32 baseline; then, stage by stage, rank 0 (the master) hands candidate ids to the
worker ranks, which quantize and evaluate them with their own ``eval_func`` and send back
``(accuracy, [seconds])``; rank 0 keeps the lowest id of the stage meeting the criterion and
quantizes it again itself. Only ``tuning.strategy: basic`` implements it (:func:`check_config`).
docs/distributed.md describes how to run it and what scales.

This module answers what the project needs around that engine:

- :func:`world`: rank and size. mpi4py is imported only under an MPI launcher, so a default run
  never imports it (INC's own ``traverse`` still tries to, and finds a world of one).
- :func:`check_config`: the configurations a distributed run can run.
- :func:`collect`: rank 0 never sees the workers' candidates in its ``eval_func``, so each worker
  sends its trial records to rank 0 after ``quantization.fit``.
- :func:`abort_unless_settled`: a rank that fails would leave the others waiting in a receive
  forever; until the records are collected (objective latency: until scoring is over, :func:`settle`),
  a failure stops every rank (``MPI_Abort``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from tuning.config.enums import Objective, Strategy
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError

# Set by mpirun/mpiexec (Open MPI: OMPI_*, MPICH and Intel MPI: PMI_*, PMIx launchers such as srun: PMIX_*).
LAUNCHER_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE")
LAUNCHER_VARS = (*LAUNCHER_SIZE_VARS, "PMIX_RANK")
TRIALS_TAG = 7  # on the project's own duplicate of COMM_WORLD, so INC's messages cannot match it
# How long rank 0, left without a model, waits for the workers' records before stopping them (see collect).
NO_MODEL_PATIENCE_S = 60.0


class RefusedConfig(ConfigError):
    """A config distributed tuning cannot run. Every rank reads the same config and raises this
    before any work, so no rank waits for another: rank 0 reports it, every rank exits 2."""


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    comm: Any = None  # a duplicate of MPI.COMM_WORLD for the project's messages; None in one process

    @property
    def distributed(self) -> bool:
        return self.size > 1


_world: World | None = None
_settled = False  # the workers' records reached rank 0: every rank is past INC's traversal


def world() -> World:
    """This process's place in the MPI job; ``World()`` (rank 0 of 1) outside one. Detected once."""
    global _world
    if _world is None:
        _world = _detect()
    return _world


def current() -> World | None:
    """The world if :func:`world` has been called (the tune command), else None; never imports mpi4py."""
    return _world


def _detect() -> World:
    if not any(var in os.environ for var in LAUNCHER_VARS):
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        sizes = [int(os.environ[var]) for var in LAUNCHER_SIZE_VARS if os.environ.get(var, "").isdigit()]
        if sizes and sizes[0] > 1:
            # Without mpi4py every rank would tune alone and all of them would write the same output.
            raise ConfigError(
                f"started as one of {sizes[0]} MPI ranks, but mpi4py is not installed: set up the distributed "
                "profile first (bash scripts/setup_env.sh distributed; docs/distributed.md)"
            ) from None
        return World()
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return World()
    return World(rank=comm.Get_rank(), size=comm.Get_size(), comm=comm.Dup())


def check_config(config: PipelineConfig, size: int) -> None:
    """Refuse what a distributed run cannot run, before any rank starts working.

    Objective latency runs with any number of ranks (rank 0 searches and times, the others score).
    Objective accuracy is INC's distributed traversal, with its limits. Every rank reads the same
    config, so every rank raises the same RefusedConfig.
    """
    tuning = config.tuning
    if size <= 1 or tuning.objective is Objective.LATENCY:
        return
    if size == 2:
        raise RefusedConfig(
            "2 MPI ranks: INC's distributed tuning (tuning.objective accuracy) needs at least 3 (rank 0 hands out "
            "candidates, the others evaluate them); with 2, INC lets each rank tune alone. Run one process, "
            "3 or more ranks, or tuning.objective latency"
        )
    if tuning.strategy is not Strategy.BASIC:
        raise RefusedConfig(
            f"tuning.strategy: distributed tuning needs basic, the only INC strategy with a distributed "
            f"traversal, got {tuning.strategy.value} (set --set tuning.strategy=basic)"
        )
    if tuning.timeout_s:
        raise RefusedConfig(
            "tuning.timeout_s: distributed tuning needs 0; INC's timer stops each rank on its own, "
            f"leaving the others waiting, got {tuning.timeout_s}"
        )


def collect(world: World, records: list, model_found: bool) -> dict[int, list] | None:
    """Bring every rank's trial records to rank 0; return them by rank there, None on a worker.

    A worker sends its records and is done. Rank 0 waits for all of them when it has a model: INC's
    master found it and told every worker to stop, so each is at most one evaluation away. Without a
    model, rank 0 waits at most NO_MODEL_PATIENCE_S: when INC's master stops at ``tuning.max_trials``
    it tells the workers only that this stage ended, and they wait for the next stage forever (INC
    3.7.1). Rank 0 then returns the records it has (the missing ranks are absent) and the caller
    stops the job.
    """
    global _settled
    if world.rank != 0:
        world.comm.send(records, dest=0, tag=TRIALS_TAG)
        _settled = True
        return None
    received = {0: records}
    pending = set(range(1, world.size))
    deadline = None if model_found else time.monotonic() + NO_MODEL_PATIENCE_S
    while pending:
        for rank in sorted(pending):
            if world.comm.iprobe(source=rank, tag=TRIALS_TAG):
                received[rank] = world.comm.recv(source=rank, tag=TRIALS_TAG)
                pending.discard(rank)
        if pending:
            if deadline is not None and time.monotonic() > deadline:
                return received
            time.sleep(0.05)
    _settled = True
    return received


def settle() -> None:
    """Objective latency: scoring is over (rank 0 said so, or heard it), so no rank waits for another."""
    global _settled
    _settled = True


def abort_unless_settled(exit_code: int) -> None:
    """Stop every rank of the job with ``exit_code`` (mpirun's exit code) if this one fails before
    the records are collected: the others would otherwise wait for it forever. No-op outside MPI."""
    if _world is None or not _world.distributed or _settled:
        return
    from mpi4py import MPI

    MPI.COMM_WORLD.Abort(exit_code)


def error_prefix() -> str:
    """``rank N: `` on a worker rank, so a user of a multi-host job sees which rank failed."""
    return f"rank {_world.rank}: " if _world is not None and _world.rank != 0 else ""
