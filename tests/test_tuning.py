"""Real INC tuning runs on the real model and MNIST: accuracy, metadata, determinism, fp32 fallback.

The shipped config's objective is latency (tests/test_latency_tuning.py checks its candidates);
the tests of INC's own accuracy-driven loop set objective accuracy.
"""

from __future__ import annotations

import json
import re
import signal
import time

import onnx
import pytest
from conftest import project_config

from tuning.config.enums import Split
from tuning.data.datasets import evaluation_images
from tuning.errors import TuningError
from tuning.files import onnx_io
from tuning.files.fetch import sha256_of
from tuning.graph.nodes import Precision, node_precisions
from tuning.inc import containment
from tuning.measure.evaluate import predict, top1_accuracy
from tuning.measure.runtimes import SessionSettings, open_runner
from tuning.pipeline import run_tuning
from tuning.search import accuracy as accuracy_search
from tuning.search.trials import meets_criterion


def test_int8_error_within_a_tenth_of_a_point_of_fp32(default_run):
    config, summary = default_run
    model = onnx_io.load_model(config.output.model)
    spec = onnx_io.describe(model)
    test_set = evaluation_images(config.dataset, Split.TEST, spec.sample_shape)
    int8_accuracy = top1_accuracy(predict(open_runner(config.output.model), test_set, 1), test_set.labels)
    fp32_accuracy = top1_accuracy(predict(open_runner(config.model.path), test_set, 1), test_set.labels)
    assert len(test_set) == 10000
    assert abs(int8_accuracy - fp32_accuracy) <= 0.001
    assert summary.int8_top1_accuracy == pytest.approx(int8_accuracy)
    assert summary.fp32_top1_accuracy == pytest.approx(fp32_accuracy)


def test_output_is_quantized_and_carries_its_provenance(default_run):
    config, summary = default_run
    model = onnx.load(str(config.output.model))
    onnx.checker.check_model(model)
    precisions = node_precisions(model)
    assert Precision.INT8 in precisions.values()
    # Plain strings, read back as the README shows: no JSON decoding.
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert props["tuning.preprocessing.pixel_scale"] == "unit"
    assert float(props["tuning.preprocessing.mean"]) == 0.0 and float(props["tuning.preprocessing.std"]) == 1.0
    assert props["tuning.source_sha256"] == sha256_of(config.model.path) == config.model.sha256
    assert props["tuning.config_sha256"] == config.quantization_sha256()
    assert float(props["tuning.int8_top1_accuracy"]) == summary.int8_top1_accuracy
    assert float(props["tuning.fp32_top1_accuracy"]) == summary.fp32_top1_accuracy
    assert props["tuning.evaluation_split"] == "MNIST/test"
    options = SessionSettings(config.benchmark.intra_op_threads).describe()
    assert props["tuning.session_options.graph_optimization_level"] == options["graph_optimization_level"]
    assert props["tuning.session_options.providers"] == ",".join(options["providers"])
    assert not [value for value in props.values() if value.startswith(('"', "{", "["))]
    assert onnx_io.declared_preprocessing(model) == config.preprocessing


def test_summary_file_lists_the_trials(default_run):
    config, summary = default_run
    written = json.loads((config.output.dir / "tuning_summary.json").read_text())
    assert written["int8_top1_accuracy"] == summary.int8_top1_accuracy
    assert len(written["trials"]) == len(summary.trials) >= 2
    assert written["trials"][0]["index"] == 0
    chosen = [trial for trial in written["trials"] if trial["chosen"]]
    assert len(chosen) == 1 and chosen[0]["meets_criterion"] is True and chosen[0]["reason"]
    assert written["chosen_trial"] == chosen[0]["index"]
    assert written["output_sha256"] == sha256_of(config.output.model)
    assert (config.output.dir / "nc_workspace" / "inc.log").stat().st_size > 0


def test_same_config_and_seed_give_the_same_candidates_and_bytes(default_run, tmp_path):
    """Objective latency: the candidates are the same bytes; which one is fastest is measured, so the choice can
    differ only between candidates the rule calls a tie on one run and not on the other. For the same choice
    the output is the same file, byte for byte."""
    config, summary = default_run
    again = project_config(tmp_path)
    rerun = run_tuning(again)
    assert [t.model_sha256 for t in rerun.trials] == [t.model_sha256 for t in summary.trials]
    assert all(t.model_sha256 for t in summary.trials)
    if rerun.chosen_trial == summary.chosen_trial:
        assert again.output.model.read_bytes() == config.output.model.read_bytes()


def test_objective_accuracy_gives_the_same_bytes_every_time(tmp_path):
    outputs = []
    for run in ("first", "second"):
        config = project_config(tmp_path / run, **{"tuning.objective": "accuracy"})
        run_tuning(config)
        outputs.append(config.output.model.read_bytes())
    assert outputs[0] == outputs[1]


def test_tight_criterion_makes_inc_fall_back_ops_to_fp32(tmp_path):
    config = project_config(
        tmp_path,
        # QOperator: INC's first candidate quantizes every op (QDQ leaves the bias Add in fp32 and is as accurate).
        **{"tuning.objective": "accuracy", "tuning.accuracy_criterion.tolerance": 0.0, "tuning.max_trials": 10,
           "quantization.format": "QOperator"},
    )
    summary = run_tuning(config)
    first, chosen = summary.trials[1], summary.trials[-1]
    assert not first.fp32_nodes, "INC's first candidate quantizes every op"
    assert not first.meets_criterion
    assert chosen.meets_criterion and chosen.fp32_nodes
    assert chosen.chosen and summary.chosen_trial == chosen.index and summary.objective == "accuracy"
    assert not any(trial.chosen for trial in summary.trials[:-1])
    assert summary.latency_measurement is None and chosen.latency_ratio is None
    precisions = node_precisions(onnx.load(str(config.output.model)))
    assert Precision.FP32 in precisions.values()
    assert summary.int8_top1_accuracy >= summary.fp32_top1_accuracy


@pytest.mark.parametrize("objective", ["accuracy", "latency"])
def test_unreachable_criterion_is_an_error_and_writes_no_model(tmp_path, objective):
    # Premise: INC's first candidate (every op int8) is less accurate than fp32, so a zero tolerance cannot
    # be met in one trial; the error's own numbers show it held (they are not copied into the test).
    config = project_config(
        tmp_path,
        **{
            "tuning.objective": objective,
            "tuning.accuracy_criterion.tolerance": 0.0,
            "tuning.max_trials": 1,
            "tuning.strategy": "basic",
            "quantization.format": "QOperator",
        },
    )
    with pytest.raises(TuningError, match="no int8 model meeting the accuracy criterion in 1 trials") as caught:
        run_tuning(config)
    best, fp32 = map(float, re.search(r"best ([\d.]+)% against fp32 ([\d.]+)%", str(caught.value)).groups())
    assert best < fp32
    assert not config.output.model.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]


class _Clock:
    """Stands in for the ``time`` module in tuning/inc/containment.py: real time, plus what the test adds."""

    def __init__(self) -> None:
        self.added = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.added

    def time(self) -> float:
        return time.time() + self.added


def test_inc_timeout_ends_tuning_normally(tmp_path, monkeypatch):
    """INC enforces ``timeout_s`` with a timer that simulates Ctrl-C (``_thread.interrupt_main``); that SIGINT must
    not be taken for the user's: INC's fit() returns its best model so far and the run ends normally.

    Nothing here depends on the machine's speed: INC's own one-hour timer never fires; the SIGINT is raised at the
    moment it means something (INC has already kept a candidate meeting the criterion and is evaluating another),
    and the clock the containment reads says the hour has passed.
    """
    timeout_s = 3600
    config = project_config(
        tmp_path,
        **{
            "tuning.objective": "accuracy",
            "tuning.strategy": "basic",
            "tuning.accuracy_criterion.tolerance": 0.0,
            "tuning.timeout_s": timeout_s,  # with a timeout, INC searches on after a passing candidate
            "quantization.format": "QOperator",  # its first candidate misses the criterion, so INC searches on
        },
    )
    clock = _Clock()
    monkeypatch.setattr(containment, "time", clock)
    accuracies: list[float] = []
    real_fit = accuracy_search.fit

    def fit_timing_out(*args, eval_func, **kwargs):
        def evaluate(candidate):
            fp32, *candidates = accuracies or [None]
            if any(meets_criterion(accuracy, fp32, config) for accuracy in candidates):
                clock.added = timeout_s  # INC's timer fires once timeout_s has passed: now
                signal.raise_signal(signal.SIGINT)
            accuracies.append(eval_func(candidate))
            return accuracies[-1]

        return real_fit(*args, eval_func=evaluate, **kwargs)

    monkeypatch.setattr(accuracy_search, "fit", fit_timing_out)
    summary = run_tuning(config)
    assert clock.added == timeout_s, "INC kept searching after its first passing candidate: the timer fired"
    assert config.output.model.is_file()
    assert summary.int8_top1_accuracy >= summary.fp32_top1_accuracy
    # The run stopped at the interrupted evaluation: its candidate was never recorded.
    assert [trial.accuracy for trial in summary.trials] == accuracies
    assert summary.trials[-1].meets_criterion and not any(trial.meets_criterion for trial in summary.trials[1:-1])
