"""Objective latency: the candidate grid, the record of every candidate, the choice, the emitted model.

The real run is the shipped config's (``default_run``: objective latency, real INC, real MNIST,
real timing). No assertion depends on how fast anything was: the choice is checked against the
documented rule applied to the recorded numbers, and the rule itself on made-up numbers.
"""

from __future__ import annotations

import json
import re
import signal

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import project_config
from test_rewrite import uint8_nchw_max_pools

from tuning.config.enums import Runtime, Split
from tuning.data.datasets import evaluation_images
from tuning.errors import ConfigError, InputError
from tuning.files import onnx_io
from tuning.graph.rewrite import batch_capable_copy
from tuning.inc.containment import interrupts_survive_inc
from tuning.inc.mapping import node_pattern
from tuning.measure import benchmark
from tuning.measure.evaluate import AccuracyEvaluator
from tuning.measure.runtimes import SessionSettings, make_session, open_runner
from tuning.pipeline import run_tuning
from tuning.search.choice import PREFERENCE, preference
from tuning.search.plan import candidate_grid, compute_nodes
from tuning.search.timing import MAX_FINALISTS, MAX_TIMINGS, SCREEN_FACTOR

# --- the grid --------------------------------------------------------------------------------------


def test_compute_nodes_come_from_the_graph_fewest_multiply_adds_first(default_run):
    config, _ = default_run
    model = onnx.load(str(config.model.path))
    # Reduction sizes: Convolution28 1x5x5 = 25, Convolution110 8x5x5 = 200, Times212 256.
    assert compute_nodes(model, config) == ["Convolution28", "Convolution110", "Times212"]
    kept = config.model_copy(
        update={"quantization": config.quantization.model_copy(update={"fp32_op_names": ("Convolution110",)})}
    )
    assert compute_nodes(model, kept) == ["Convolution28", "Times212"]


def test_candidate_grid_order_and_size(default_run):
    config, _ = default_run
    grid = candidate_grid(onnx.load(str(config.model.path)), config)
    assert len(grid) == 3 * 7 * 2  # algorithms x (none, 3 singles, 3 pairs) x formats
    assert [g.calibration_algorithm.value for g in grid[:14]] == ["minmax"] * 14
    # The configured format (configs/mnist.yaml: QDQ, portable) first, so it wins every tie.
    assert [(g.quant_format.value, g.fp32_fallback) for g in grid[:6]] == [
        ("QDQ", ()), ("QOperator", ()),
        ("QDQ", ("Convolution28",)), ("QOperator", ("Convolution28",)),
        ("QDQ", ("Convolution110",)), ("QOperator", ("Convolution110",)),
    ]
    assert grid[8].fp32_fallback == ("Convolution28", "Convolution110")


@pytest.mark.fast
def test_node_pattern_covers_nodes_fused_from_the_original():
    pattern = node_pattern("Times212")
    assert re.fullmatch(pattern, "Times212")
    assert re.fullmatch(pattern, "Times212/MatMulAddFusion_MatMul")
    assert not re.fullmatch(pattern, "Times2120")
    # INC splits a Gemm into <name>_MatMul and <name>_Add; torch names a second Gemm in one scope <name>_1.
    assert re.fullmatch(node_pattern("/fc/Gemm"), "/fc/Gemm_MatMul") and re.fullmatch(node_pattern("/fc/Gemm"), "/fc/Gemm_Add")
    assert not re.fullmatch(node_pattern("/fc/Gemm"), "/fc/Gemm_1")
    assert not re.fullmatch(node_pattern("a.b"), "axb")


# --- the record of the real run ----------------------------------------------------------------------


def test_every_candidate_is_recorded(default_run):
    config, summary = default_run
    assert summary.objective == "latency"
    trials = summary.trials
    search = summary.search
    # auto: mnist-12's grid (7 fallback sets x 2 formats x 3 calibration algorithms) fits in the shipped
    # max_trials, so the grid runs, and makes the same candidates on a quiet and on a busy machine.
    assert search["name"] == "grid" and search["cut"] is None
    assert search["made"] == len(trials) - 1 == sum(stage["made"] for stage in search["stages"]) == 42
    grid = candidate_grid(onnx.load(str(config.model.path)), config)
    assert [(t.fp32_fallback, t.quant_format, t.calibration_algorithm) for t in trials[1:]] == [
        (spec.fp32_fallback, spec.quant_format.value, spec.calibration_algorithm.value) for spec in grid
    ]
    assert trials[0].description == "fp32 baseline" and trials[0].latency_ratio == 1.0
    for trial in trials[1:]:
        assert trial.int8_nodes, trial
        assert trial.screening_ratio > 0, "every candidate is screened"
    models = search["models"]
    # Graph twins: the grid's percentile candidates have the graphs of the minmax ones (KL made minmax's very
    # bytes), with other scales; each takes its original's screening ratio and is not screened itself.
    twins = {t.index: t.same_graph_as for t in trials[1:] if t.same_graph_as is not None and t.same_model_as is None}
    assert len(twins) == models["graph_twins"] == 14 and models["screened"] == models["distinct"] - len(twins)
    for index, original in twins.items():
        twin, first = trials[index], trials[original]
        assert (twin.fp32_fallback, twin.quant_format) == (first.fp32_fallback, first.quant_format)
        assert twin.calibration_algorithm != first.calibration_algorithm and twin.model_sha256 != first.model_sha256
        assert twin.screening_ratio == first.screening_ratio and original < index
    assert models["timed"] == len({t.model_sha256 for t in trials[1:] if t.latency_ratio is not None})
    passing = [t for t in trials[1:] if t.meets_criterion]
    best = min(t.screening_ratio for t in passing)
    # Scored fastest first: only candidates no slower than SCREEN_FACTOR x the fastest passing one are scored, and
    # every one faster than the MAX_FINALISTS-th passing graph is, but for a twin of a passing graph.
    fastest = sorted(t.screening_ratio for t in passing if t.same_model_as is None)[:MAX_FINALISTS]
    for trial in trials[1:]:
        assert (trial.accuracy is not None) == (trial.meets_criterion is not None), trial
        if trial.accuracy is not None:
            assert trial.screening_ratio <= SCREEN_FACTOR * best and 0 < trial.accuracy <= 1
        twin_of_passing = trial.same_graph_as is not None and trials[trial.same_graph_as].meets_criterion
        if trial.screening_ratio <= fastest[-1] and not twin_of_passing:
            assert trial.accuracy is not None, trial
        if twin_of_passing:
            assert trial.accuracy is None, trial
    # Timed in full: the MAX_FINALISTS fastest passing graphs by screening, and the most preferred passing one.
    # (The grid makes some models twice, e.g. a fallback INC quantizes alike under two calibration algorithms:
    # they count once.)
    timed = {t.index for t in trials[1:] if t.latency_ratio is not None}
    assert {t.index for t in passing if t.screening_ratio < fastest[-1]} <= timed
    assert len({trials[index].same_graph_as or trials[index].index for index in timed if trials[index].same_model_as is None}) == models["timed"]
    first = min(preference(t, 0)[:2] for t in passing)  # format, then fewer fp32 nodes (file sizes are not recorded)
    assert any(preference(trials[index], 0)[:2] == first for index in timed)
    assert len({trials[index].model_sha256 for index in timed}) <= MAX_FINALISTS + 1
    for trial in passing:
        if trial.latency_ratio is not None:
            # One timing of the finalists, or up to MAX_TIMINGS where noise hid the choice (tuning/search/finalists.py).
            timings, left = divmod(len(trial.latency_ratio_rounds), config.tuning.latency.rounds)
            assert trial.latency_p50_ms > 0 and left == 0 and 1 <= timings <= summary.search["finalist_timings"] <= MAX_TIMINGS
            # The median of the session sets' ratios (of an even count: the geometric mean of the middle two).
            assert trial.latency_ratio == pytest.approx(np.exp(np.median(np.log(trial.latency_ratio_rounds))))
            assert trial.latency_ratio_interval[0] <= trial.latency_ratio <= trial.latency_ratio_interval[1]
        # The choice reads batch 1: the throughput batch is timed for the chosen candidate alone.
        if summary.chosen_trial in (trial.index, trial.same_model_as):
            assert trial.throughput_images_per_s > 0 and len(trial.throughput_ratio_rounds) == config.tuning.latency.rounds
            assert trial.throughput_ratio == pytest.approx(np.exp(np.median(np.log(trial.throughput_ratio_rounds))))
            assert trial.throughput_ratio_interval[0] <= trial.throughput_ratio <= trial.throughput_ratio_interval[1]
        else:
            assert trial.throughput_ratio is None and trial.throughput_ratio_rounds == ()
    assert all(t.latency_ratio is None for t in trials[1:] if not t.meets_criterion)
    # A candidate asked to keep a node in fp32 has it (or what onnxruntime fused from it) in fp32.
    for trial in trials[1:]:
        for name in trial.fp32_fallback:
            assert any(re.fullmatch(node_pattern(name), node) for node in trial.fp32_nodes), (name, trial)
    written = json.loads((config.output.dir / "tuning_summary.json").read_text())
    # Where the time went: every stage of the run, in order, adding up to the run's seconds.
    stages = written["stage_seconds"]
    assert list(stages)[:5] == ["start_up", "read_model", "load_data", "import_inc", "search"]
    assert list(stages)[5:] == ["finalists_at_batch_1", "chosen_at_throughput_batch", "write_model"]
    assert all(seconds >= 0 for seconds in stages.values())
    assert sum(stages.values()) - stages["start_up"] == pytest.approx(written["seconds"], abs=0.05)
    assert set(search["seconds_by_step"]) == {"making", "screening", "scoring"}
    assert sum(search["seconds_by_step"].values()) <= stages["search"] + 0.05
    assert [t["index"] for t in written["trials"]] == list(range(len(trials)))
    assert written["latency_measurement"]["rounds"] == config.tuning.latency.rounds
    assert written["latency_measurement"]["session_options"]["config_entries"] == {}


def test_the_chosen_candidate_and_the_verdict_are_recorded_with_their_reasons(default_run):
    """The rule itself is tested on made-up intervals (test_speed_decisions.py); here: what the run records."""
    config, summary = default_run
    trials = summary.trials
    chosen = [trial for trial in trials if trial.chosen]
    assert len(chosen) == 1 and summary.chosen_trial == chosen[0].index
    chosen = chosen[0]
    assert chosen.meets_criterion and chosen.same_model_as is None and chosen.latency_ratio is not None
    assert chosen.reason == summary.reason and "fp32 at batch 1" in chosen.reason
    assert summary.latency_measurement["preference"] == PREFERENCE
    assert summary.int8_top1_accuracy == chosen.accuracy
    verdict = summary.latency_measurement["verdict"]
    # Directions pinned: latency as time int8/fp32, throughput as images/s int8/fp32, both of the written model.
    assert verdict["latency_time_ratio_int8_over_fp32"]["value"] == pytest.approx(chosen.latency_ratio)
    assert verdict["throughput_ratio_int8_over_fp32"]["value"] == pytest.approx(chosen.throughput_ratio)
    low, high = chosen.latency_ratio_interval
    assert low <= chosen.latency_ratio <= high
    assert verdict["batch_1"] in ("pays", "does not pay", "cannot tell at this noise")
    assert "AVX2" in verdict["line"] and "VNNI" in verdict["line"]


def test_a_user_s_plain_session_runs_no_slow_pattern_and_needs_no_option(default_run, tmp_path):
    """The emitted model as a user loads it: ``InferenceSession(path)`` with default options, 1 thread."""
    config, summary = default_run
    optimized = {}
    for name, entries in (("plain", {}), ("with-option", {"optimization.disable_specified_optimizers":
                                                          "QDQPropagationTransformer"})):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        for key, value in entries.items():
            options.add_session_config_entry(key, value)
        options.optimized_model_filepath = str(tmp_path / f"{name}.onnx")
        ort.InferenceSession(str(config.output.model), options, providers=["CPUExecutionProvider"])
        optimized[name] = onnx.load(options.optimized_model_filepath)
    assert uint8_nchw_max_pools(optimized["plain"]) == []
    # The option this project once asked deployments to set changes nothing about what onnxruntime runs.
    assert [(n.op_type, n.domain) for n in optimized["plain"].graph.node] == [
        (n.op_type, n.domain) for n in optimized["with-option"].graph.node
    ]
    chosen = summary.trials[summary.chosen_trial]
    if chosen.quant_format == "QDQ":  # portable: nothing from onnxruntime's contrib domains in the file
        assert {node.domain for node in onnx.load(str(config.output.model)).graph.node} <= {"", "ai.onnx"}
    if "Convolution28" in chosen.fp32_fallback:  # the fp32 conv is followed by Relu -> MaxPool -> quantize
        assert chosen.rewrites == ("MaxPool Pooling66 moved above its activation",)


def test_the_emitted_model_takes_any_batch_and_records_its_session_options(default_run):
    config, summary = default_run
    model = onnx_io.load_model(config.output.model)
    spec = onnx_io.describe(model)
    assert spec.batch_dim is None  # symbolic: the model measured at batch 256 is this model
    images = evaluation_images(config.dataset, Split.TEST, spec.sample_shape).images[:256]
    session = make_session(model)
    batched = session.run(None, {spec.input_name: images})[0]
    one_by_one = np.concatenate([session.run(None, {spec.input_name: image[None]})[0] for image in images])
    assert batched.shape == (256, spec.num_classes)
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-5, atol=1e-5)
    assert np.array_equal(batched.argmax(axis=1), one_by_one.argmax(axis=1))
    props = {prop.key: prop.value for prop in model.metadata_props}
    assert not [key for key in props if key.startswith("tuning.session_options.config_entries.")]
    threads = config.benchmark.intra_op_threads
    assert props["tuning.session_options.intra_op_num_threads"] == str(threads)
    assert float(props["tuning.int8_top1_accuracy"]) == summary.int8_top1_accuracy


@pytest.mark.fast
def test_declared_session_entries_reach_every_session_and_the_metadata(tmp_path):
    entry = ("optimization.disable_specified_optimizers", "QDQPropagationTransformer")
    config = project_config(tmp_path, **{"deployment.session_config_entries": dict([entry])})
    settings = SessionSettings.of(config)
    assert settings.config_entries == (entry,)
    assert settings.options().get_session_config_entry(entry[0]) == entry[1]
    assert settings.describe()["config_entries"] == dict([entry])
    with pytest.raises(RuntimeError, match="does not have configuration with key"):
        SessionSettings().options().get_session_config_entry(entry[0])


@pytest.mark.fast
def test_declared_session_entries_reach_real_sessions_on_every_path(tmp_path):
    """An entry onnxruntime cannot ignore: ``session.load_model_format: ORT`` makes a real session refuse an ONNX
    file. Every way this project opens a session with the config's settings must then refuse the model; with
    the defaults, the same calls load it."""
    refusing = project_config(tmp_path, **{"deployment.session_config_entries": {"session.load_model_format": "ORT"}})
    model = batch_capable_copy(onnx.load(str(refusing.model.path)), refusing.model.path)
    images = evaluation_images(refusing.dataset, Split.TEST, (1, 28, 28))
    small = refusing.benchmark.model_copy(update={"warmup": 1, "iterations": 1, "rounds": 1, "min_time_s": 0,
                                                  "batch_sizes": (1,)})  # fmt: skip
    paths = {
        "make_session": lambda settings: make_session(model, settings),
        "open_runner": lambda settings: open_runner(model, Runtime.ONNXRUNTIME, settings),
        "evaluator": lambda settings: AccuracyEvaluator(images, 1000, settings)(model),
        "benchmark": lambda settings: benchmark.measure(
            [benchmark.BenchmarkTarget("fp32", model, refusing.model.path)], images.images[:8], small, settings
        ),
    }
    for name, opens in paths.items():
        opens(SessionSettings())  # the defaults load it
        with pytest.raises(InputError, match="onnxruntime cannot load it"):
            opens(SessionSettings.of(refusing))
            pytest.fail(f"{name} opened its session without the config's entries")


@pytest.mark.fast
@pytest.mark.parametrize("threads", [1, 3])
def test_the_thread_count_and_the_entries_reach_the_session_as_read_back_from_it(tmp_path, threads):
    """The session's own options (``InferenceSession.get_session_options``), not the settings object's."""
    config = project_config(tmp_path, **{"benchmark.intra_op_threads": threads,
                                         "deployment.session_config_entries": {"session.intra_op.allow_spinning": "0",
                                                                               "session.disable_prepacking": "1"}})
    settings = SessionSettings.of(config)
    assert settings.config_entries == (("session.disable_prepacking", "1"), ("session.intra_op.allow_spinning", "0"))
    model = onnx.load(str(config.model.path))
    runner = open_runner(model, Runtime.ONNXRUNTIME, settings)
    for session in (make_session(model, settings), runner.infer.func.__self__, runner.quiet_infer.func.__self__):
        options = session.get_session_options()
        assert options.intra_op_num_threads == threads
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
        assert options.get_session_config_entry("session.disable_prepacking") == "1"
    assert runner.conditions["intra_op_num_threads"] == threads
    assert runner.conditions["config_entries"] == {"session.disable_prepacking": "1", "session.intra_op.allow_spinning": "0"}
    assert runner.input_name == "Input3"
    assert settings.options().log_severity_level == 3  # errors only
    assert runner.quiet_infer.keywords["run_options"].log_severity_level == 4 and not runner.infer.keywords


def test_a_tuning_run_opens_its_sessions_with_the_declared_entries(tmp_path):
    """The fp32 baseline's evaluation, the first session with the config's settings, refuses the model."""
    refusing = project_config(tmp_path, **{"deployment.session_config_entries": {"session.load_model_format": "ORT"}})
    with pytest.raises(InputError, match="onnxruntime cannot load it"):
        run_tuning(refusing)
    assert not refusing.output.model.exists()


def test_the_config_hash_covers_what_decides_the_choice(default_run, tmp_path):
    config, _ = default_run
    base = config.quantization_sha256()
    assert project_config(tmp_path, **{"benchmark.intra_op_threads": 2}).quantization_sha256() != base
    assert project_config(tmp_path, **{"tuning.latency.tie_margin": 0.2}).quantization_sha256() != base
    assert project_config(tmp_path, **{"tuning.latency.min_time_s": 0.5}).quantization_sha256() != base
    assert project_config(
        tmp_path, **{"deployment.session_config_entries": {"session.intra_op.allow_spinning": "0"}}
    ).quantization_sha256() != base
    assert project_config(tmp_path, **{"benchmark.iterations": 7}).quantization_sha256() == base
    assert project_config(tmp_path, **{"benchmark.min_time_s": 1}).quantization_sha256() == base


@pytest.mark.fast
def test_latency_objective_refuses_dynamic_quantization(tmp_path):
    with pytest.raises(ConfigError, match="tuning.objective: latency needs quantization.approach static"):
        project_config(tmp_path, **{"quantization.approach": "dynamic"})


def test_an_interrupt_inc_swallows_still_stops_the_run():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        with interrupts_survive_inc():
            try:
                signal.raise_signal(signal.SIGTERM)
            except KeyboardInterrupt:
                pass  # what INC's fit() does with it
    assert signal.getsignal(signal.SIGTERM) is before
