"""Objective latency under mpirun (docs/distributed.md): rank 0 makes, screens and times the candidates, the
accuracy scoring is spread over the ranks (tuning/search/scoring.py), and the written model is the one a single
process writes.

Real mpirun jobs on this machine (skipped, saying so, without Open MPI or mpi4py), real INC, real scoring on
real MNIST. The byte-for-byte comparison with one process uses the controlled timing of
tests/test_latency_search.py (tests/mpi_latency_search.py on every rank): with measured timing, two runs on a
shared machine screen differently and may rightly choose differently, whatever the number of ranks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, project_config
from test_distributed import LOOPBACK, MPI_ENV, _mpi_missing
from test_latency_search import LENET_INT8_MS, latency_config, search

from tuning.config.enums import Split
from tuning.data.datasets import evaluation_images
from tuning.files import onnx_io
from tuning.measure.evaluate import predict, top1_accuracy
from tuning.measure.runtimes import open_runner
from tuning.search.scoring import PATIENCE_MIN_S

pytestmark = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))

QUICK_TIMING = {"tuning.latency.rounds": 2, "tuning.latency.iterations": 40, "tuning.latency.warmup": 5}


def _environment() -> dict[str, str]:
    # The test interpreter's environment counts as activated, so run_tuning.sh on every rank uses it as is.
    return {
        **os.environ,
        **MPI_ENV,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }


def _tune_arguments(out: Path, **overrides: object) -> list[str]:
    """run_tuning.sh on mnist-12 with the shipped config (objective latency), every output under ``out``."""
    sets = {"dataset.root": ROOT / "data", "output.dir": out, **QUICK_TIMING, **overrides}
    arguments = ["bash", str(ROOT / "run_tuning.sh"), f"--config={ROOT / 'configs' / 'mnist.yaml'}"]
    arguments += [f"--input_model={ROOT / 'models' / 'mnist-12.onnx'}", f"--output_model={out / 'mnist-12-int8.onnx'}"]
    return arguments + [arg for key, value in sets.items() for arg in ("--set", f"{key}={value}")]


def _mpirun(*apps: tuple[int, list[str]], cwd: Path) -> subprocess.CompletedProcess[str]:
    """One job of several apps (``mpirun -np A app1 : -np B app2``), ranks numbered in order."""
    command = ["mpirun", "--oversubscribe", *LOOPBACK]
    for position, (ranks, arguments) in enumerate(apps):
        command += ([":"] if position else []) + ["-np", str(ranks), *arguments]
    return subprocess.run(command, cwd=cwd, env=_environment(), capture_output=True, text=True, timeout=600)


def test_three_ranks_write_the_model_one_process_writes(tmp_path, torch_model, dataset_roots):
    lenet = torch_model("lenet", "MNIST")
    (tmp_path / "single").mkdir()
    single_config = latency_config(tmp_path / "single", lenet, dataset_roots)
    single, _, _, _ = search(single_config, lenet, LENET_INT8_MS)

    (tmp_path / "mpi").mkdir()
    latency_config(tmp_path / "mpi", lenet, dataset_roots)
    config_path = tmp_path / "mpi" / "config.yaml"
    out = tmp_path / "mpi" / "written.onnx"
    driver = [sys.executable, str(ROOT / "tests" / "mpi_latency_search.py"), str(config_path), str(lenet), str(out)]
    result = _mpirun((3, driver), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    assert out.read_bytes() == single.model.SerializeToString(deterministic=True)
    record = json.loads(out.with_suffix(".json").read_text())
    spread = [dataclasses.replace(trial, rank=None) for trial in map(_trial, record["trials"])]
    assert spread == [dataclasses.replace(trial, rank=None) for trial in single.trials]
    # The search asked for the same scores; the split shows in which rank scored each and what was scored ahead.
    models = record["search"]["models"]
    assert {key: models[key] for key in single.search["models"]} == single.search["models"]
    scored = [trial for trial in record["trials"] if trial["same_model_as"] is None and trial["accuracy"] is not None]
    ranks = [trial["rank"] for trial in scored]
    assert ranks[0] == 0 and set(ranks) <= {0, 1, 2}
    # The first scoring round sent one candidate to each worker (the LeNet's search makes more than 3).
    assert sum(rank > 0 for rank in ranks) + models["scored_ahead_unused"] >= 2, (ranks, models)
    assert all(trial.rank is None for trial in single.trials) and "scored_ahead_unused" not in single.search["models"]


def _trial(fields: dict):
    from tuning.search.trials import Trial

    tuples = {name: tuple(value) for name, value in fields.items() if isinstance(value, list)}
    return Trial(**{**fields, **tuples})


def test_objective_latency_under_mpirun_only_rank_0_writes(tmp_path):
    out = tmp_path / "out"
    result = _mpirun((3, _tune_arguments(out)), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("Tuned ") == 1 and "3 MPI ranks" in result.stdout, result.stdout
    assert "scored by ranks 0-2" in result.stdout and "error" not in result.stderr, result.stdout + result.stderr

    # Rank 0 alone wrote outputs and ran INC (one workspace); the ranks ran in an empty folder that stays empty.
    assert sorted(path.name for path in out.iterdir()) == ["mnist-12-int8.onnx", "nc_workspace", "tuning_summary.json"]
    assert "inc.log" in {path.name for path in (out / "nc_workspace").iterdir()}
    assert not [path for path in (out / "nc_workspace").iterdir() if path.name.startswith("rank")]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]
    # INC made every candidate in one process on rank 0: it never started its traversal over the ranks.
    assert "Use distributed tuning" not in (out / "nc_workspace" / "inc.log").read_text()

    summary = json.loads((out / "tuning_summary.json").read_text())
    assert summary["distributed"] == {"ranks": 3, "trial_order": "made"}
    assert [trial["index"] for trial in summary["trials"]] == list(range(len(summary["trials"])))
    scored = [t for t in summary["trials"] if t["same_model_as"] is None and t["accuracy"] is not None]
    assert scored[0]["rank"] == 0 and {t["rank"] for t in scored} <= {0, 1, 2}
    unscored = [t for t in summary["trials"][1:] if t["accuracy"] is None]
    assert all(t["rank"] is None for t in unscored)
    models = summary["search"]["models"]
    assert sum(t["rank"] > 0 for t in scored) + models["scored_ahead_unused"] >= 2, (scored, models)

    # The written model's accuracy, measured here, is the one its trial was scored with, on whichever rank.
    chosen = summary["trials"][summary["chosen_trial"]]
    spec = onnx_io.describe(onnx_io.load_model(out / "mnist-12-int8.onnx"))
    config = project_config(tmp_path / "check")
    test_set = evaluation_images(config.dataset, Split.TEST, spec.sample_shape)
    measured = top1_accuracy(predict(open_runner(out / "mnist-12-int8.onnx"), test_set, 500), test_set.labels)
    assert measured == chosen["accuracy"] == summary["int8_top1_accuracy"]


def test_a_worker_failing_at_set_up_stops_the_job_with_its_one_error_line(tmp_path):
    out = tmp_path / "out"
    broken = _tune_arguments(out, **{"dataset.root": tmp_path / "no-data"})
    started = time.monotonic()
    result = _mpirun((1, _tune_arguments(out)), (1, broken), (1, _tune_arguments(out)), cwd=tmp_path)
    assert time.monotonic() - started < 300
    assert result.returncode == 3, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors[0].startswith("error: rank 1: dataset.root"), result.stderr
    assert "Traceback" not in result.stderr and "Tuned" not in result.stdout
    assert not (out / "mnist-12-int8.onnx").exists() and not (out / "tuning_summary.json").exists()


def test_a_stuck_worker_fails_the_job_after_a_bounded_wait(tmp_path):
    out = tmp_path / "out"
    # A rank that joins the job (and the project's communicator) and never answers.
    stuck = [sys.executable, "-c", "from mpi4py import MPI; import time; MPI.COMM_WORLD.Dup(); time.sleep(900)"]
    started = time.monotonic()
    result = _mpirun((1, _tune_arguments(out, **{"tuning.max_trials": 4})), (2, stuck), cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[0].startswith("error: rank 1 sent no accuracy for candidate"), result.stderr
    assert "stopping the job" in errors[0] and "Traceback" not in result.stderr
    assert PATIENCE_MIN_S < elapsed < 300
    assert not (out / "mnist-12-int8.onnx").exists() and not (out / "tuning_summary.json").exists()
