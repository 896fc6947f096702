"""Distributed tuning over MPI (docs/distributed.md): a real 3-rank mpirun on this machine, and the refusals.

The MPI test needs Open MPI's mpirun and mpi4py (bash scripts/setup_env.sh distributed); it is skipped,
saying so, without them. Its ranks talk over TCP on the loopback interface, as ranks on several hosts would.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, project_config

from tuning.config.enums import Split
from tuning.data.datasets import evaluation_images
from tuning.errors import ConfigError
from tuning.files import onnx_io
from tuning.inc import distributed
from tuning.measure.evaluate import predict, top1_accuracy
from tuning.measure.runtimes import open_runner
from tuning.pipeline import run_tuning
from tuning.search.trials import meets_criterion

# A criterion no int8 model of mnist-12 meets at INC's first candidate: zero loss against fp32 (98.90 %),
# so INC has to search (in QOperator format; INC's first QDQ candidate keeps the bias Add in fp32 and is as
# accurate as fp32). INC's distributed tuning (objective accuracy) needs strategy basic.
TIGHT = {
    "quantization.format": "QOperator",
    "tuning.objective": "accuracy",
    "tuning.strategy": "basic",
    "tuning.accuracy_criterion.kind": "absolute",
    "tuning.accuracy_criterion.tolerance": 0.0,
}
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}  # CI containers run as root
LOOPBACK = ["--mca", "btl", "self,tcp", "--mca", "btl_tcp_if_include", "lo", "--mca", "oob_tcp_if_include", "lo"]


def _mpi_missing() -> str | None:
    if shutil.which("mpirun") is None:
        return "mpirun not found: install Open MPI (bash scripts/setup_system.sh), then bash scripts/setup_env.sh distributed"
    if importlib.util.find_spec("mpi4py") is None:
        return "mpi4py not installed: bash scripts/setup_env.sh distributed"
    return None


@pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))
def test_three_ranks_meet_the_criterion_of_one_process_and_only_rank_0_writes(tmp_path):
    out = tmp_path / "out"
    sets = [arg for key, value in TIGHT.items() for arg in ("--set", f"{key}={value}")]
    # The test interpreter's environment counts as activated, so run_tuning.sh on every rank uses it as is.
    # The ranks run in an empty folder, so anything a rank wrote outside output.dir would show.
    env = {
        **os.environ,
        **MPI_ENV,
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    command = ["mpirun", "--oversubscribe", "-np", "3", *LOOPBACK, "bash", str(ROOT / "run_tuning.sh")]
    command += [f"--config={ROOT / 'configs' / 'mnist.yaml'}", f"--input_model={ROOT / 'models' / 'mnist-12.onnx'}"]
    command += ["--set", f"dataset.root={ROOT / 'data'}", "--set", f"output.dir={out}", *sets]
    command += [f"--output_model={out / 'mnist-12-int8.onnx'}"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    # Rank 0 alone reports; the workers print nothing.
    assert result.stdout.count("Tuned ") == 1 and "3 MPI ranks" in result.stdout, result.stdout
    assert "error" not in result.stderr, result.stderr

    # Rank 0 wrote the model and the summary; every rank has its own INC workspace and nothing else.
    assert sorted(path.name for path in out.iterdir()) == ["mnist-12-int8.onnx", "nc_workspace", "tuning_summary.json"]
    assert sorted(path.name for path in (out / "nc_workspace").iterdir()) == ["rank0", "rank1", "rank2"]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]

    summary = json.loads((out / "tuning_summary.json").read_text())
    assert summary["distributed"] == {"ranks": 3, "trial_order": "evaluation finished"}
    baseline, candidates = summary["trials"][0], summary["trials"][1:]
    assert baseline["rank"] == 0 and baseline["index"] == 0
    assert len(candidates) >= 2, "the tight criterion takes INC more than one candidate"
    assert {trial["rank"] for trial in candidates} <= {1, 2}, "rank 0 hands out candidates, it evaluates none"
    assert [trial["index"] for trial in candidates] == list(range(1, len(candidates) + 1))
    chosen = [trial for trial in candidates if trial["chosen"]]
    assert len(chosen) == 1 and chosen[0]["meets_criterion"] and summary["chosen_trial"] == chosen[0]["index"]
    assert chosen[0]["accuracy"] == summary["int8_top1_accuracy"]

    # The written model meets the criterion, measured here on its own.
    config = project_config(tmp_path / "single", **TIGHT)
    spec = onnx_io.describe(onnx_io.load_model(out / "mnist-12-int8.onnx"))
    test_set = evaluation_images(config.dataset, Split.TEST, spec.sample_shape)
    int8 = top1_accuracy(predict(open_runner(out / "mnist-12-int8.onnx"), test_set, 1), test_set.labels)
    assert int8 == summary["int8_top1_accuracy"]
    assert meets_criterion(int8, summary["fp32_top1_accuracy"], config)

    # One process with the same config and seed meets the same criterion. Its model may differ: INC's
    # one-process basic strategy tries its recipes (fp32 fallbacks) as the second candidate, a step its
    # distributed traversal does not have, so the two searches stop at different candidates.
    single = run_tuning(config)
    assert single.distributed is None and all(trial.rank is None for trial in single.trials)
    assert single.fp32_top1_accuracy == summary["fp32_top1_accuracy"]
    assert meets_criterion(single.int8_top1_accuracy, single.fp32_top1_accuracy, config)


def test_distributed_tuning_refuses_what_inc_cannot_distribute(tmp_path):
    config = project_config(tmp_path, **TIGHT)
    distributed.check_config(config, 3)  # accepted
    distributed.check_config(project_config(tmp_path), 1)  # one process: anything goes
    for size in (2, 3, 8):  # objective latency (the shipped config's): rank 0 searches, every rank scores
        distributed.check_config(project_config(tmp_path), size)
    refusals = [
        ({"tuning.strategy": "auto"}, 3, "tuning.strategy: distributed tuning needs basic"),
        ({"tuning.strategy": "conservative"}, 8, "tuning.strategy: distributed tuning needs basic"),
        ({"tuning.timeout_s": 60}, 3, "tuning.timeout_s: distributed tuning needs 0"),
        ({}, 2, "needs at least 3"),
    ]
    for changes, size, fragment in refusals:
        with pytest.raises(ConfigError, match=fragment) as raised:
            distributed.check_config(project_config(tmp_path, **{**TIGHT, **changes}), size)
        assert raised.value.exit_code == 2


def test_a_run_without_a_launcher_never_imports_mpi4py():
    env = {key: value for key, value in os.environ.items() if key not in distributed.LAUNCHER_VARS}
    code = "import sys; from tuning.inc import distributed; print(distributed.world(), 'mpi4py' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "World(rank=0, size=1, comm=None) False", result.stderr
