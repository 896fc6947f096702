"""How objective latency times its candidates (tuning/search/timing.py) and weighs an OpenVINO candidate's two pool
placements (tuning/search/latency.py's ``_pool_placement``), against timings the test writes.

The timing is a recording stand-in for tuning.measure.benchmark.measure: it keeps what it was asked and returns
per-call durations the test chose, so every ratio is known to it (computed again here from those durations, with
numpy, or through tuning/measure's own interval type where an interval is the value). Loading is real: each
candidate is a real ONNX model (tests/tiny_models.py's MLP) opened by onnxruntime, and one onnxruntime refuses is
made here (an operator of a domain it does not know).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import project_config
from onnx import TensorProto, helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static
from tiny_models import mlp

from tuning.config.enums import Runtime
from tuning.errors import InputError
from tuning.measure.benchmark import SECOND_SESSION, BenchmarkTarget, Performance, Timing
from tuning.measure.runtimes import SessionSettings, open_runner
from tuning.measure.statistics import median_interval
from tuning.search.choice import CHOICE_RULE, PREFERENCE
from tuning.search.latency import _pool_placement
from tuning.search.timing import (
    MAX_FINALISTS,
    SCREEN_FACTOR,
    combined,
    latency_settings,
    measurement_conditions,
    screen,
    with_performance,
)
from tuning.search.trials import Trial, record_trial

pytestmark = pytest.mark.fast

IMAGES = np.zeros((4, 1, 28, 28), dtype=np.float32)


def timing(batch: int, *sets: list[float]) -> Timing:
    return Timing(batch, 0, tuple(np.asarray(durations, dtype=float) for durations in sets))


def performance(name: str, latency: Timing | None, *throughput: Timing, twin: Performance | None = None) -> Performance:
    return Performance(name, latency, tuple(throughput), {"read back": name}, second_session=twin)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory):
    return project_config(
        tmp_path_factory.mktemp("timing"),
        **{
            "tuning.latency.warmup": 3, "tuning.latency.iterations": 7, "tuning.latency.min_time_s": 0.25,
            "tuning.latency.rounds": 5, "tuning.latency.tie_margin": 0.07, "benchmark.batch_sizes": [1, 32, 8],
            "benchmark.intra_op_threads": 2, "deployment.session_config_entries": {"session.intra_op.allow_spinning": "0"},
        },
    )  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, onnx.ModelProto]:
    folder = tmp_path_factory.mktemp("models")
    unknown = helper.make_model(
        helper.make_graph(
            [helper.make_node("Mystery", ["pixels"], ["logits"], name="mystery", domain="org.example.unknown")],
            "unknown-op",
            [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 1, 28, 28])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        ),
        opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("org.example.unknown", 1)],
    )
    unknown.ir_version = 8

    models = {
        "fp32": onnx.load(str(mlp(folder / "fp32.onnx", seed=1))),
        "a": onnx.load(str(mlp(folder / "a.onnx", seed=2))),
        "b": onnx.load(str(mlp(folder / "b.onnx", seed=3))),
        "unknown": unknown,
    }

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter([{"pixels": np.random.default_rng(0).uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)}])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.feeds, None)

    # The quantized-pools placement: a real int8 graph (onnxruntime's static quantizer, QDQ) of "b".
    quantize_static(str(folder / "b.onnx"), str(folder / "b-int8.onnx"), Reader(), quant_format=QuantFormat.QDQ)
    return models | {"b int8": onnx.load(str(folder / "b-int8.onnx"))}


def test_latency_settings_are_objective_latency_s_at_batch_1_and_the_largest_batch(config):
    settings = latency_settings(config)
    assert (settings.warmup, settings.iterations, settings.min_time_s, settings.rounds) == (3, 7, 0.25, 5)
    assert settings.batch_sizes == (32,) and settings.intra_op_threads == 2 and settings.reference_models == ()


def test_the_measurement_conditions_say_how_the_candidates_were_timed(config):
    conditions = measurement_conditions(config)
    assert conditions == {
        "models": (
            "fp32, a second fp32 session (the A/A pair) and the distinct candidates, in turns: each candidate "
            "once in one screening session set at batch 1 with fp32 (one per search stage), then the session sets "
            f"below (rounds) at batch 1 for the ones meeting the accuracy criterion within {SCREEN_FACTOR}x of the "
            f"screening's best (the {MAX_FINALISTS} fastest by screening and the most preferred one), then as many "
            "session sets at the throughput batch size for the chosen one alone (the choice reads batch 1 only)"
        ),
        "min_calls": 20,
        "screen_factor": 1.25,
        "max_finalists": 4,
        "rounds": 5,
        "warmup": 3,
        "iterations": 7,
        "min_time_s": 0.25,
        "throughput_batch_size": 32,
        "intra_op_threads": 2,
        "tie_margin": 0.07,
        "runtime": "onnxruntime",
        "choice_rule": CHOICE_RULE.format(margin="7%"),
        "preference": PREFERENCE,
        "ratio_statistic": (
            "median over session sets of the paired per-call ratios; interval: order-statistic confidence "
            "interval of that median widened by the A/A pair's excursion (docs/measurement.md)"
        ),
        "session_options": {
            "intra_op_num_threads": 2, "inter_op_num_threads": 0, "graph_optimization_level": "ORT_ENABLE_ALL",
            "execution_mode": "ORT_SEQUENTIAL", "providers": ["CPUExecutionProvider"],
            "config_entries": {"session.intra_op.allow_spinning": "0"},
        },
    }  # fmt: skip
    assert "0.07" not in conditions["choice_rule"] and "1 - 7%" in conditions["choice_rule"]


def test_screening_times_each_loadable_candidate_once_with_fp32_and_gives_its_ratio(config, models, tmp_path):
    asked: list[tuple] = []
    fp32_ms, candidate_ms = [2.0, 2.0, 4.0], {1: [1.0, 1.5, 2.0], 3: [3.0, 3.0, 3.0]}

    def measure(targets, images, settings, session, **options):
        asked.append((targets, images, settings, session, options))
        durations = {"fp32": fp32_ms} | {f"trial {index}": ms for index, ms in candidate_ms.items()}
        return {target.name: performance(target.name, timing(1, durations[target.name])) for target in targets}

    source = tmp_path / "model.onnx"
    settings = latency_settings(config)
    session = SessionSettings.of(config)
    candidates = {1: models["a"], 2: models["unknown"], 3: models["b"]}
    ratios, conditions, unloadable = screen(
        models["fp32"], candidates, IMAGES, settings, session, Runtime.ONNXRUNTIME, source, measure
    )
    # Each ratio is the median of the per-call ratios against fp32 (one session set).
    assert ratios == {1: float(np.median(np.array([1.0, 1.5, 2.0]) / fp32_ms)), 3: float(np.median(np.array([3.0] * 3) / fp32_ms))}
    assert ratios == {1: 0.5, 3: 1.5}
    assert conditions == {"read back": "fp32"}  # fp32's conditions, read back by its runner
    with pytest.raises(InputError) as refused:
        open_runner(models["unknown"], Runtime.ONNXRUNTIME, session, "candidate 2")
    assert unloadable == {2: str(refused.value)} and "candidate 2" in str(refused.value)
    [(targets, images, timed_settings, timed_session, options)] = asked
    assert targets == [
        BenchmarkTarget("fp32", models["fp32"], source, Runtime.ONNXRUNTIME),
        BenchmarkTarget("trial 1", models["a"], Path(f"<candidate trial 1 of {source}>"), Runtime.ONNXRUNTIME),
        BenchmarkTarget("trial 3", models["b"], Path(f"<candidate trial 3 of {source}>"), Runtime.ONNXRUNTIME),
    ]
    assert images is IMAGES and timed_session is session
    assert timed_settings == settings.model_copy(update={"rounds": 1}) and settings.rounds == 5
    assert options == {"label": "screening candidates", "throughput_batch_sizes": ()}


def test_the_runtime_given_is_the_one_the_candidates_are_timed_on(config, models, tmp_path):
    asked: list[list[BenchmarkTarget]] = []

    def measure(targets, *args, **options):
        asked.append(targets)
        return {target.name: performance(target.name, timing(1, [1.0])) for target in targets}

    screen(models["fp32"], {4: models["a"]}, IMAGES, latency_settings(config), SessionSettings.of(config),
           Runtime.OPENVINO, tmp_path / "m.onnx", measure)  # fmt: skip
    assert [target.runtime for target in asked[0]] == [Runtime.OPENVINO, Runtime.OPENVINO]


def test_combined_takes_batch_1_from_one_measurement_and_the_throughput_from_the_other():
    twin_1 = performance("fp32 (second session)", timing(1, [1.1]), timing(32, [9.0]))
    twin_b = performance("fp32 (second session)", timing(1, [1.2]), timing(32, [31.0]))
    at_1 = performance("fp32", timing(1, [1.0]), timing(32, [10.0]), twin=twin_1)
    at_b = performance("fp32", None, timing(32, [30.0]), twin=twin_b)
    both = combined(at_1, at_b)
    assert both.name == "fp32" and both.latency is at_1.latency and both.throughput == at_b.throughput
    assert both.throughput[0].rounds_ms[0][0] == 30.0 and both.conditions == at_1.conditions
    assert both.second_session.latency is twin_1.latency and both.second_session.throughput[0].rounds_ms[0][0] == 31.0
    assert both.second_session.second_session is None
    # A twin in one measurement only: none combined.
    assert combined(at_1, dataclasses.replace(at_b, second_session=None)).second_session is None
    assert combined(dataclasses.replace(at_1, second_session=None), at_b).second_session is None


def unscored(index: int, same_model_as: int | None = None) -> Trial:
    return Trial(index, 0.9, True, (), (), quant_format="QDQ", same_model_as=same_model_as)


def fp32_with_twin(latency: list[list[float]], throughput: list[list[float]], batch: int) -> Performance:
    twin = performance(SECOND_SESSION.format(name="fp32"), timing(1, *latency), timing(batch, *throughput))
    return performance("fp32", timing(1, *latency), timing(batch, *throughput), twin=twin)


def test_every_timed_trial_gets_its_latency_and_where_timed_its_throughput_a_duplicate_its_original_s():
    batch = 8
    fp32 = fp32_with_twin([[2.0, 2.0], [2.0, 2.0], [2.0, 2.0]], [[16.0, 16.0], [16.0, 16.0], [16.0, 16.0]], batch)
    # Trial 1: batch 1 only, its sets 0.5, 0.6, 0.7 of fp32. Trial 2: both batches, throughput sets 2x, 4x, 2.5x.
    one = performance("trial 1", timing(1, [1.0, 1.0], [1.2, 1.2], [1.4, 1.4]))
    two = performance("trial 2", timing(1, [1.0, 3.0], [1.0, 3.0], [1.0, 3.0]), timing(batch, [8.0, 8.0], [4.0, 4.0], [6.4, 6.4]))
    trials = [Trial(0, 0.95, None, (), ()), unscored(1), unscored(2), unscored(3, same_model_as=2), unscored(4)]
    filled = with_performance(trials, {"fp32": fp32, "trial 1": one, "trial 2": two}, batch)
    assert filled[4] == trials[4]  # not timed (screened out, or failing the criterion)
    assert filled[0].latency_ratio == 1.0 and filled[0].index == 0
    expected_1 = median_interval([0.5, 0.6, 0.7])
    assert filled[1].latency_ratio == pytest.approx(0.6) and filled[1].latency_p50_ms == pytest.approx(1.2)
    assert filled[1].latency_ratio_interval == pytest.approx((expected_1.low, expected_1.high))
    assert expected_1.low < expected_1.high  # so the order of the pair shows
    assert filled[1].latency_ratio_rounds == pytest.approx((0.5, 0.6, 0.7))
    assert filled[1].throughput_ratio is None and filled[1].throughput_images_per_s is None
    # Trial 2: per-call ratios 0.5 and 1.5, median 1.0 in every set; p50 of 1 and 3 ms is 2 ms.
    assert filled[2].latency_ratio == pytest.approx(1.0) and filled[2].latency_p50_ms == pytest.approx(2.0)
    assert filled[2].latency_ratio_rounds == pytest.approx((1.0, 1.0, 1.0))
    assert filled[2].throughput_ratio_rounds == pytest.approx((2.0, 4.0, 2.5))
    assert filled[2].throughput_ratio == pytest.approx(2.5)
    expected_2 = median_interval([2.0, 4.0, 2.5])
    assert filled[2].throughput_ratio_interval == pytest.approx((expected_2.low, expected_2.high))
    # images/s over every call: batch 8 over the median of 8, 8, 4, 4, 6.4, 6.4 ms
    assert filled[2].throughput_images_per_s == pytest.approx(8 * 1000 / np.median([8, 8, 4, 4, 6.4, 6.4]))
    # The duplicate takes trial 2's figures, keeping its own index and what it was made as.
    figures = ("latency_ratio", "latency_ratio_interval", "latency_ratio_rounds", "throughput_ratio", "throughput_images_per_s")
    assert [getattr(filled[3], name) for name in figures] == [getattr(filled[2], name) for name in figures]
    assert filled[3].index == 3 and filled[3].same_model_as == 2
    # Not timed at the batch size asked: no throughput.
    assert with_performance(trials, {"fp32": fp32, "trial 2": two}, 16)[2].throughput_ratio is None


def test_the_fp32_trial_reads_fp32_s_own_timing():
    fp32 = fp32_with_twin([[2.0, 2.0]], [[16.0, 16.0]], 8)
    [filled] = with_performance([Trial(0, 0.95, None, (), ())], {"fp32": fp32}, 8)
    assert filled.latency_ratio == 1.0 and filled.throughput_ratio == 1.0 and filled.latency_p50_ms == 2.0


# _pool_placement: the chosen OpenVINO candidate, its pools moved before their quantizers (trial 5) or quantized.
def placements(models: dict[str, onnx.ModelProto]) -> tuple[onnx.ModelProto, onnx.ModelProto, list[str]]:
    return models["a"], models["b int8"], ["a rewrite of the quantized pools"]


def placement_performances(moved_ms: list[list[float]], kept_ms: list[list[float]], batch: int) -> dict[str, Performance]:
    fp32 = fp32_with_twin([[2.0, 2.0]] * len(moved_ms), [[20.0, 20.0]] * len(moved_ms), batch)
    return {
        "fp32": fp32,
        "trial 5": performance("trial 5", timing(1, *([[1.0, 1.0]] * len(moved_ms))), timing(batch, *moved_ms)),
        "trial 5 with quantized pools": performance(
            "trial 5 with quantized pools", timing(1, *([[1.5, 1.5]] * len(kept_ms))), timing(batch, *kept_ms)
        ),
    }


def test_pools_stay_before_their_quantizers_only_where_that_is_significantly_faster(config, models):
    batch = 8
    trial = with_performance([unscored(5)], placement_performances([[10.0, 10.0]] * 9, [[10.0, 10.0]] * 9, batch), batch)[0]
    # Moved: 8 ms against 10 ms in every set, 1.25x the throughput, the whole interval above 1.
    performances = placement_performances([[8.0, 8.0]] * 9, [[10.0, 10.0]] * 9, batch)
    kept_trial, model, written, reason = _pool_placement(trial, placements(models), performances, batch, models["fp32"], config)
    assert kept_trial is trial and model is models["a"] and written is performances["trial 5"]
    assert reason == "pools before their quantizers: 1.25x [1.25-1.25] the throughput at batch 8 of quantized pools"


def test_otherwise_the_quantized_pools_are_written_with_their_own_graph_and_figures(config, models):
    batch = 8
    # Moved: sets at 1.0x, 1.25x and 0.8x the throughput: not wholly above 1.
    performances = placement_performances([[10.0, 10.0], [8.0, 8.0], [12.5, 12.5]], [[10.0, 10.0]] * 3, batch)
    trial = dataclasses.replace(  # with the graph fields of the other placement, which must not stay
        with_performance([unscored(5)], performances, batch)[0], calibration_algorithm="minmax", fp32_fallback=("fc1",),
        int8_nodes=("stale",), fp32_nodes=("stale",), source_precisions={"stale": "int8"}, fp32_compute_nodes=("stale",),
        model_sha256="stale",
    )
    made, model, written, reason = _pool_placement(trial, placements(models), performances, batch, models["fp32"], config)
    assert model is models["b int8"] and written is performances["trial 5 with quantized pools"]
    gain = median_interval([1.0, 1.25, 0.8])
    assert reason == (
        f"pools left quantized: moving them before their quantizers gave 1.00x [{gain.low:.2f}-{gain.high:.2f}] the "
        "throughput at batch 8, not significantly more"
    ) and gain.low < 1 < gain.high
    graph = record_trial(5, 0.9, models["b int8"], [], config, models["fp32"])
    assert graph.int8_nodes and graph.fp32_compute_nodes == ()  # onnxruntime quantized both MatMuls
    assert (made.int8_nodes, made.fp32_nodes, made.source_precisions, made.fp32_compute_nodes, made.model_sha256) == (
        graph.int8_nodes, graph.fp32_nodes, graph.source_precisions, graph.fp32_compute_nodes, graph.model_sha256
    )  # fmt: skip
    assert made.rewrites == ("a rewrite of the quantized pools",)
    # Its figures are the quantized pools' own (1.5 ms at batch 1 against fp32's 2 ms), how it was made the trial's.
    assert made.latency_ratio == pytest.approx(0.75) and made.latency_p50_ms == pytest.approx(1.5)
    assert made.throughput_ratio == pytest.approx(2.0) and made.throughput_ratio_rounds == pytest.approx((2.0,) * 3)  # 20 ms against 10
    assert (made.index, made.accuracy, made.quant_format, made.calibration_algorithm, made.fp32_fallback) == (
        5, 0.9, "QDQ", "minmax", ("fc1",)
    )


def test_the_placement_s_interval_is_widened_by_fp32_s_noise_at_the_throughput_batch(config, models):
    """Moving the pools gives 1.25x the throughput in each of 9 sets, but fp32's A/A pair at batch 8 differs by 2x
    either way from set to set (at batch 1 not at all): widened by that noise, 1.25x is not significant."""
    batch, sets = 8, 9
    aa = [0.5, 2.0] * 4 + [1.0]  # second session / first, per set, at batch 8
    fp32 = performance(
        "fp32", timing(1, *([[2.0, 2.0]] * sets)), timing(batch, *([[20.0, 20.0]] * sets)),
        twin=performance(SECOND_SESSION.format(name="fp32"), timing(1, *([[2.0, 2.0]] * sets)),
                         timing(batch, *([20.0 * r, 20.0 * r] for r in aa))),
    )  # fmt: skip
    performances = placement_performances([[8.0, 8.0]] * sets, [[10.0, 10.0]] * sets, batch) | {"fp32": fp32}
    trial = with_performance([unscored(5)], performances, batch)[0]
    _, model, _, reason = _pool_placement(trial, placements(models), performances, batch, models["fp32"], config)
    gain = median_interval([0.8] * sets).widened(median_interval(sorted(aa))).inverse()
    assert gain.low < 1 < gain.high and gain.value == pytest.approx(1.25)
    assert model is models["b int8"] and reason == (
        f"pools left quantized: moving them before their quantizers gave 1.25x [{gain.low:.2f}-{gain.high:.2f}] the "
        "throughput at batch 8, not significantly more"
    )
