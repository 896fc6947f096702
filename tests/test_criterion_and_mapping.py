"""The accuracy criterion at its boundary, and the mapping of a config onto INC's objects (tuning/inc/mapping.py).

Accuracies are binary fractions (0.75, 0.5625, ...), so every loss and relative loss below is exact and the
boundary ``loss <= tolerance`` is tested at equality. The criterion is written out again here (``_inc_rule``)
from INC's documentation of ``AccuracyCriterion``, and the graphs are small ONNX models built here.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import onnx
import pytest
from conftest import project_config
from neural_compressor.config import PostTrainingQuantConfig
from onnx import TensorProto, helper
from tiny_models import mlp

from tuning.config.enums import CalibrationAlgorithm, QuantFormat
from tuning.errors import ConfigError, InputError, TuningError
from tuning.inc.mapping import FP32_ONLY, CandidateSpec, check_kept_in_fp32, fp32_requests, inc_config, node_pattern
from tuning.search.trials import Trial, meets_criterion, no_model_message, record_trial

pytestmark = pytest.mark.fast


def _criterion(tmp_path: Path, kind: str, tolerance: float):
    return project_config(tmp_path, **{"tuning.accuracy_criterion.kind": kind,
                                       "tuning.accuracy_criterion.tolerance": tolerance})


def _inc_rule(kind: str, tolerance: float, fp32: float, int8: float) -> bool:
    """INC's AccuracyCriterion with higher_is_better: relative loss (fp32 - int8) / fp32, absolute fp32 - int8."""
    return ((fp32 - int8) / fp32 if kind == "relative" else fp32 - int8) <= tolerance


@pytest.mark.parametrize(
    "kind, tolerance, fp32, int8, meets",
    [
        ("relative", 0.25, 0.5, 0.375, True),  # relative loss exactly 0.25: at the boundary, accepted
        ("relative", 0.25, 0.5, 0.375 - 2**-20, False),  # just past it
        ("relative", 0.25, 0.5, 0.625, True),  # int8 more accurate: a negative loss
        ("absolute", 0.125, 0.75, 0.625, True),  # absolute loss exactly 0.125
        ("absolute", 0.125, 0.75, 0.625 - 2**-20, False),
        ("absolute", 0.0, 0.75, 0.75, True),  # no loss allowed, none made
        ("absolute", 0.0, 0.75, 0.75 - 2**-20, False),
        # The formula: a loss of 0.1875 from 0.75 is 0.25 relative. Relative 0.2 refuses it, absolute 0.2 accepts it;
        # relative 0.25 accepts it, absolute 0.1875 - 2^-20 refuses it.
        ("relative", 0.2, 0.75, 0.5625, False),
        ("absolute", 0.2, 0.75, 0.5625, True),
        ("relative", 0.25, 0.75, 0.5625, True),
        ("absolute", 0.1875 - 2**-20, 0.75, 0.5625, False),
    ],
)
def test_the_criterion_at_its_boundary_and_its_formula(tmp_path, kind, tolerance, fp32, int8, meets) -> None:
    assert _inc_rule(kind, tolerance, fp32, int8) is meets  # the rule as INC states it
    assert meets_criterion(int8, fp32, _criterion(tmp_path, kind, tolerance)) is meets


def test_a_relative_criterion_against_a_float_model_that_is_never_right_is_refused(tmp_path) -> None:
    with pytest.raises(InputError, match=r"^the float model classifies no evaluation image correctly \(top-1 accuracy 0\), "
                                         r"so a relative accuracy criterion means nothing; check the model, "
                                         r"dataset\.pixel_scale, mean and std$"):
        meets_criterion(0.0, 0.0, _criterion(tmp_path, "relative", 0.5))
    assert meets_criterion(0.0, 0.0, _criterion(tmp_path, "absolute", 0.0))


def test_a_trial_is_judged_against_the_first_trial_the_fp32_baseline(tmp_path) -> None:
    model = onnx.load(str(mlp(tmp_path / "mlp.onnx")))
    config = _criterion(tmp_path, "relative", 0.25)
    baseline = record_trial(0, 0.75, model, [], config, model)
    assert baseline.meets_criterion is True and baseline.index == 0  # judged against itself
    assert record_trial(1, 0.5625, model, [baseline], config, model).meets_criterion is True  # 0.25 relative
    assert record_trial(1, 0.5625 - 2**-20, model, [baseline], config, model).meets_criterion is False
    # Against the baseline, not against the trial before it.
    later = record_trial(2, 0.5625, model, [baseline, record_trial(1, 0.5625, model, [baseline], config, model)],
                         config, model, rank=3)
    assert later.meets_criterion is True and later.rank == 3 and later.index == 2
    # INC hands eval_func its model wrapper, whose .model is the graph.
    wrapped = record_trial(1, 0.5625, SimpleNamespace(model=model), [baseline], config, model)
    assert wrapped.meets_criterion is True and wrapped.model_sha256 == baseline.model_sha256
    unscored = record_trial(3, None, model, [baseline], config, model)
    assert unscored.accuracy is None and unscored.meets_criterion is None
    # What the graph holds: every node of the fp32 MLP is fp32 in itself; fc1 and fc2 are its compute nodes.
    assert baseline.int8_nodes == () and baseline.fp32_nodes == ("flatten", "fc1", "fc1_bias", "relu", "fc2", "fc2_bias")
    assert baseline.fp32_compute_nodes == ("fc1", "fc2")
    assert set(baseline.source_precisions.values()) == {"fp32"}


def test_no_model_message_names_the_best_trial_and_the_baseline() -> None:
    trials = [Trial(0, 0.75, True, (), ()), Trial(1, 0.5, False, (), ()), Trial(2, 0.625, False, (), ()),
              Trial(3, None, None, (), ())]
    message = no_model_message(trials, Path("run/inc.log"))
    assert "in 3 trials (best 62.5000% against fp32 75.0000%)" in message and message.endswith("(INC's log: run/inc.log)")
    assert no_model_message(trials[:1], Path("x.log")).startswith("INC returned no model before evaluating any int8")
    # One int8 trial is enough to name the best; the baseline is never the best candidate.
    assert "in 1 trials (best 50.0000% against fp32 75.0000%)" in no_model_message(trials[:2], Path("x.log"))
    assert "(best 62.5000%" in no_model_message([Trial(0, 0.75, True, (), ()), *trials[2:3], trials[1]], Path("x.log"))


# --- fp32 requests and what INC made of them -----------------------------------------------------------------


def _graph(nodes: list[onnx.NodeProto], dims=(1, 4)) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, list(dims))],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def _source() -> onnx.ModelProto:
    return _graph([
        helper.make_node("MatMul", ["x", "w1"], ["a"], name="fc1"),
        helper.make_node("Relu", ["a"], ["b"], name="relu"),
        helper.make_node("MatMul", ["b", "w2"], ["c"], name="fc2"),
        helper.make_node("Gemm", ["c", "w3"], ["d"], name="head"),
    ])


@pytest.mark.parametrize(
    "names, types, expected",
    [
        ([], [], ()),
        (["fc2"], [], ("fc2",)),
        ([], ["MatMul"], ("fc1", "fc2")),
        ([], ["Mat"], ()),  # a pattern matches the whole op type, as INC matches it
        ([], ["Mat.*|Gemm"], ("fc1", "fc2", "head")),
        (["fc2", "relu"], ["MatMul"], ("fc2", "relu", "fc1")),  # names first, each once
    ],
)
def test_fp32_requests_are_the_named_nodes_then_the_typed_ones(tmp_path, names, types, expected) -> None:
    config = project_config(tmp_path, **{"quantization.fp32_op_names": names, "quantization.fp32_op_types": types})
    assert fp32_requests(_source(), config, "m.onnx") == expected


def test_an_fp32_request_for_a_node_not_in_the_graph_names_the_compute_nodes(tmp_path) -> None:
    config = project_config(tmp_path, **{"quantization.fp32_op_names": ["fc3"]})
    with pytest.raises(ConfigError, match=r"^quantization\.fp32_op_names: no node named 'fc3' in m\.onnx "
                                          r"\(its Conv/MatMul/Gemm nodes: fc1, fc2, head\)$"):
        fp32_requests(_source(), config, "m.onnx")
    only_relu = _graph([helper.make_node("Relu", ["x"], ["y"], name="r")])
    with pytest.raises(ConfigError, match=r"\(its Conv/MatMul/Gemm nodes: none\)$"):
        fp32_requests(only_relu, config, "m.onnx")


def test_an_unnamed_node_of_a_listed_type_is_refused(tmp_path) -> None:
    model = _graph([helper.make_node("Relu", ["x"], ["a"], name="r"), helper.make_node("Relu", ["a"], ["b"])])
    config = project_config(tmp_path, **{"quantization.fp32_op_types": ["Relu"]})
    with pytest.raises(ConfigError, match=r"^quantization\.fp32_op_types: m\.onnx has an unnamed Relu node, which INC "
                                          r"cannot keep in fp32 \(it addresses nodes by name\); name the model's nodes$"):
        fp32_requests(model, config, "m.onnx")


def _quantized(fc2: str) -> onnx.ModelProto:
    """What INC could make of ``_source``: fc1 int8 (QLinearMatMul), the Relu folded, fc2 as ``fc2``."""
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"], name="x_QuantizeLinear"),
        helper.make_node("QLinearMatMul", ["xq", "s", "z", "w1", "s", "z", "s", "z"], ["aq"], name="fc1_quant"),
        helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["b"], name="aq_DequantizeLinear"),
    ]
    if fc2 == "fp32":
        nodes.append(helper.make_node("MatMul", ["b", "w2"], ["c"], name="fc2"))
    elif fc2 == "int8":
        nodes.append(helper.make_node("MatMulInteger", ["b", "w2"], ["c"], name="fc2_quant"))
        nodes.append(helper.make_node("Identity", ["c"], ["c_copy"], name="fc2/Copy"))  # a second node carrying its name
    else:  # renamed beyond recognition
        nodes.append(helper.make_node("MatMul", ["b", "w2"], ["c"], name="MatMul_17"))
    nodes.append(helper.make_node("Gemm", ["c", "w3"], ["d"], name="head/GemmFusion"))
    return _graph(nodes)


def test_a_requested_fp32_node_must_compute_in_fp32_in_the_quantized_graph() -> None:
    check_kept_in_fp32(_source(), _quantized("fp32"), ["fc2", "head"], "trial 1")
    with pytest.raises(TuningError, match=r"^trial 1: node 'fc1' was to stay fp32, but INC quantized it anyway \('fc1_quant'\)$"):
        check_kept_in_fp32(_source(), _quantized("fp32"), ["fc2", "fc1"], "trial 1")
    with pytest.raises(TuningError, match=r"^trial 2: node 'fc2' was to stay fp32, but INC quantized it anyway "
                                          r"\('fc2_quant', 'fc2/Copy'\)$"):
        check_kept_in_fp32(_source(), _quantized("int8"), ["fc2"], "trial 2")


def test_a_requested_fp32_node_that_vanished_is_refused() -> None:
    with pytest.raises(TuningError, match=r"^chosen: node 'fc2' was to stay fp32, but no node of the quantized graph "
                                          r"carries its name, so its precision cannot be confirmed$"):
        check_kept_in_fp32(_source(), _quantized("renamed"), ["head", "fc2"], "chosen")
    # The folded Relu was not requested: nothing to confirm.
    check_kept_in_fp32(_source(), _quantized("renamed"), ["head"], "chosen")


# --- inc_config ------------------------------------------------------------------------------------------------


def test_inc_config_carries_every_setting_of_the_config(tmp_path) -> None:
    config = project_config(tmp_path, **{
        "quantization.approach": "static", "quantization.format": "QDQ", "quantization.calibration_algorithm": "kl",
        "quantization.fp32_op_types": ["Gemm"], "calibration.sampling_size": 120,
        "tuning.strategy": "auto", "tuning.accuracy_criterion.kind": "absolute",
        "tuning.accuracy_criterion.tolerance": 0.02, "tuning.timeout_s": 30, "tuning.max_trials": 7,
    })
    inc = inc_config(config, ["fc1", "a.b"])
    assert isinstance(inc, PostTrainingQuantConfig)
    assert (inc.device, inc.backend, inc.approach, inc.quant_format) == ("cpu", "default", "post_training_static_quant", "QDQ")
    assert inc.calibration_sampling_size == [120]
    assert inc.op_type_dict == {".*": {"activation": {"algorithm": ["kl"]}}, "Gemm": FP32_ONLY}
    assert inc.op_name_dict == {node_pattern("fc1"): FP32_ONLY, node_pattern("a.b"): FP32_ONLY}
    assert inc.quant_level == "auto"
    criterion = inc.accuracy_criterion
    assert (criterion.higher_is_better, criterion.criterion, criterion.tolerable_loss) == (True, "absolute", 0.02)
    tuning = inc.tuning_criterion
    assert (tuning.strategy, tuning.timeout, tuning.max_trials) == ("basic", 30, 7)


def test_inc_config_of_a_candidate_and_of_a_named_strategy(tmp_path) -> None:
    config = project_config(tmp_path, **{"quantization.approach": "static", "quantization.format": "QOperator",
                                         "tuning.strategy": "basic", "tuning.accuracy_criterion.kind": "relative"})
    candidate = CandidateSpec(QuantFormat.QDQ, CalibrationAlgorithm.PERCENTILE, ("fc2",))
    inc = inc_config(config, ["fc1"], candidate)
    assert inc.quant_format == "QDQ"  # the candidate's, not the config's
    assert inc.op_type_dict == {".*": {"activation": {"algorithm": ["percentile"]}}}
    assert inc.op_name_dict == {node_pattern("fc1"): FP32_ONLY, node_pattern("fc2"): FP32_ONLY}
    assert inc.quant_level == 1 and inc.tuning_criterion.strategy == "basic"  # INC reads the strategy only then
    assert inc.accuracy_criterion.relative == config.tuning.accuracy_criterion.tolerance
    assert candidate.description == "QDQ, percentile, fp32: fc2"
    assert CandidateSpec(QuantFormat.QOPERATOR, CalibrationAlgorithm.MINMAX, ()).description == "QOperator, minmax, fp32: none"


@pytest.mark.parametrize("strategy", ["exhaustive", "mse"])
def test_a_named_strategy_reaches_inc_with_quant_level_1(tmp_path, strategy) -> None:
    inc = inc_config(project_config(tmp_path, **{"tuning.strategy": strategy}), [])
    assert (inc.quant_level, inc.tuning_criterion.strategy) == (1, strategy)


def test_conservative_reaches_inc_as_quant_level_0_which_inc_accepts(tmp_path) -> None:
    # TuningCriterion refuses "conservative" by name (INC 3.7.1); INC runs it for quant_level 0.
    from neural_compressor.config import TuningCriterion

    with pytest.raises(AssertionError, match="conservative"):
        TuningCriterion(strategy="conservative")
    inc = inc_config(project_config(tmp_path, **{"tuning.strategy": "conservative"}), [])
    assert (inc.quant_level, inc.tuning_criterion.strategy) == (0, "basic")


def test_inc_config_without_fp32_requests_under_dynamic_quantization(tmp_path) -> None:
    config = project_config(tmp_path, **{"quantization.approach": "dynamic", "quantization.format": "QOperator",
                                         "tuning.objective": "accuracy"})
    inc = inc_config(config, [])
    assert inc.approach == "post_training_dynamic_quant"
    assert inc.op_type_dict is None and inc.op_name_dict is None  # no calibration algorithm, no fallback
