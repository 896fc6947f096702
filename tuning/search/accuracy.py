"""Objective accuracy: INC's own accuracy-driven search.

``quantization.fit`` runs INC's strategy with an evaluation function and stops at the first candidate meeting
the accuracy criterion; every candidate INC evaluated is recorded as a :class:`Trial` (on every MPI rank,
gathered on rank 0). Objective latency builds on the same pieces: tuning/search/latency.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import onnx

from tuning.config.enums import Approach, Objective
from tuning.config.schema import PipelineConfig
from tuning.data.datasets import BatchLoader, LabelledImages
from tuning.errors import TuningError
from tuning.graph.rewrite import deployment_rewrites
from tuning.inc import distributed
from tuning.inc.fit import fit
from tuning.inc.mapping import check_kept_in_fp32, fp32_requests, inc_config
from tuning.search.trials import (
    Trial,
    TuningOutcome,
    meets_criterion,
    no_model_message,
    record_trial,
)


def quantize(
    model: onnx.ModelProto,
    calibration: LabelledImages,
    evaluate: Callable[[onnx.ModelProto], float],
    config: PipelineConfig,
    workspace: Path,
) -> TuningOutcome | None:
    """Run INC's tuning loop; raise TuningError when it yields no model meeting the criterion.

    Under MPI (tuning/inc/distributed.py) every rank calls this; INC distributes the candidates. A
    worker rank returns None once its trials are on rank 0; rank 0 returns the outcome with every
    rank's trials.
    """
    world = distributed.world()
    requested = fp32_requests(model, config, config.model.path)
    source = onnx.ModelProto()  # INC's fit may rewrite the model it is given; precisions are read against this copy
    source.CopyFrom(model)
    trials: list[Trial] = []
    # Distributed only, per trial: when its evaluation finished and its model's sha256, to merge the
    # ranks' trials in time order on rank 0 and find the one INC chose.
    stamps: list[tuple[float, str] | None] = []

    def eval_func(candidate):
        accuracy = evaluate(candidate)
        rank = world.rank if world.distributed else None
        trials.append(record_trial(len(trials), accuracy, candidate, trials, config, source, rank))
        stamps.append((time.time(), _digest(candidate)) if world.distributed else None)
        return accuracy

    calibration_loader = (
        BatchLoader(calibration, config.calibration.batch_size)
        if config.quantization.approach is Approach.STATIC
        else None
    )
    result = fit(
        model,
        inc_config(config, requested),
        workspace,
        seed=config.tuning.seed,
        timeout_s=config.tuning.timeout_s,
        what="during tuning",
        calibration_loader=calibration_loader,
        eval_func=eval_func,
        over_ranks=world.distributed,
    )
    if world.distributed:
        if world.rank != 0:
            _send_trials_to_rank0(world, result, trials, stamps, workspace / "inc.log")
            return None
        trials, digests = _trials_of_all_ranks(world, result, trials, stamps, config, workspace / "inc.log")
    if result is None:
        raise TuningError(no_model_message(trials, workspace / "inc.log"))
    check_kept_in_fp32(source, result.model, requested, "the int8 model INC chose")
    # The same exact rewrite as objective latency's candidates get: the emitted model runs fast as written.
    emitted, _ = deployment_rewrites(result.model, config.deployment.runtime)
    # The emitted model is measured again rather than matched to a trial: the number reported is its own.
    int8_accuracy = evaluate(emitted)
    outcome = TuningOutcome(
        model=emitted,
        fp32_accuracy=trials[0].accuracy,
        int8_accuracy=int8_accuracy,
        trials=trials,
        objective=Objective.ACCURACY,
    )
    if world.distributed:
        # Workers evaluate in parallel, so the chosen candidate need not be the last to finish: it is the
        # trial whose model rank 0 quantized again (same bytes), INC's first of its stage meeting the criterion.
        chosen_digest = _digest(result.model)
        match = next((t for t, d in zip(trials, digests) if d == chosen_digest and t.meets_criterion), None)
        if match is not None:
            outcome.chosen_index = match.index
            outcome.reason = (
                "objective accuracy, distributed: INC keeps the candidate meeting the accuracy criterion that "
                "comes first in its stage's candidate list"
            )
            trials[match.index] = dataclasses.replace(match, chosen=True, reason=outcome.reason)
        return outcome
    # INC stops at the first candidate meeting the criterion: the last trial, when its accuracy is the model's.
    last = trials[-1]
    if len(trials) > 1 and last.meets_criterion and last.accuracy == int8_accuracy:
        outcome.chosen_index = last.index
        outcome.reason = (
            "objective accuracy: INC's tuning stops at its first candidate meeting the accuracy criterion"
        )
        trials[-1] = dataclasses.replace(last, chosen=True, reason=outcome.reason)
    return outcome


def _digest(candidate) -> str:
    proto = candidate if isinstance(candidate, onnx.ModelProto) else candidate.model
    return hashlib.sha256(proto.SerializeToString(deterministic=True)).hexdigest()


def _send_trials_to_rank0(world, result, trials: list[Trial], stamps: list, log_path: Path) -> None:
    """A worker rank: hand its evaluated candidates to rank 0, which writes every output.

    INC returns a stand-in (``FakerModel``) on a worker whose traversal ended normally, None when
    it failed there (INC's fit logs and swallows exceptions, including this project's errors).
    Each rank evaluated the fp32 baseline for itself; rank 0 reports its own.
    """
    if result is None:
        raise TuningError(f"INC's distributed tuning failed on this rank; see {log_path}")
    distributed.collect(world, list(zip(trials[1:], stamps[1:])), model_found=False)


def _trials_of_all_ranks(
    world, result, trials: list[Trial], stamps: list, config: PipelineConfig, log_path: Path
) -> tuple[list[Trial], list[str | None]]:
    """Rank 0: its fp32 baseline, then every rank's candidates, numbered in the order their evaluations
    finished (INC's candidate ids restart at each stage and never reach eval_func), and their digests.

    The order compares the ranks' clocks: exact on one host, as good as the hosts' clock sync on several.
    """
    received = distributed.collect(world, list(zip(trials[1:], stamps[1:])), model_found=result is not None)
    records = sorted(
        (record for rank_records in received.values() for record in rank_records),
        key=lambda record: (record[1][0], record[0].rank),
    )
    baseline = trials[0]
    merged = [baseline] + [
        dataclasses.replace(
            trial, index=index, meets_criterion=meets_criterion(trial.accuracy, baseline.accuracy, config)
        )
        for index, (trial, _) in enumerate(records, start=1)
    ]
    missing = sorted(set(range(world.size)) - set(received))
    if missing:
        raise TuningError(
            f"INC found no int8 model meeting the accuracy criterion, and ranks {', '.join(map(str, missing))} did "
            "not report their trials: INC's master stopped (at tuning.max_trials) while its workers wait for a "
            "next stage; they are stopped. Loosen tuning.accuracy_criterion or raise tuning.max_trials "
            f"(INC's logs: {log_path.parent.parent}/rank*/inc.log)"
        )
    return merged, [None] + [digest for _, (_, digest) in records]
