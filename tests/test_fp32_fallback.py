"""fp32 fallbacks happen on the graph INC makes, whatever INC renames or splits, or are refused by name.

Models are torch-built (tests/torch_models.py): a torch Linear exports as a Gemm, which INC splits into
``<name>_MatMul`` and ``<name>_Add``; a fallback matched on the Gemm's own name used to be ignored.
What is checked is the produced graph, read independently of the pipeline's own bookkeeping.
"""

from __future__ import annotations

import json

import onnx
import pytest
from conftest import write_config

from tuning.config.loading import load_config
from tuning.errors import ConfigError, TuningError
from tuning.graph.nodes import COMPUTE_OP_TYPES
from tuning.inc.mapping import check_kept_in_fp32
from tuning.pipeline import candidate_table, run_tuning

QUANTIZED_MATH = {"QLinearMatMul", "MatMulInteger", "QGemm", "QLinearConv", "ConvInteger"}


def config_for(tmp_path, model, dataset_roots, **sections):
    """A YAML config for ``model`` on MNIST, every path absolute, outputs under tmp_path."""
    base = {
        "model": {"path": str(model), "url": None, "sha256": None},
        "dataset": {"name": "MNIST", "root": str(dataset_roots["MNIST"])},
        "evaluation": {"batch_size": 500},
        "output": {"model": str(tmp_path / "int8.onnx"), "dir": str(tmp_path / "run")},
        "benchmark": {"reference_models": []},
    }
    for section, values in sections.items():
        base[section] = {**base.get(section, {}), **values}
    return load_config(write_config(tmp_path / "config.yaml", base))


def float_weight_consumers(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> op type of every MatMul/Gemm/Conv that reads a float32 initializer directly (fp32 math)."""
    floats = {init.name for init in model.graph.initializer if init.data_type == onnx.TensorProto.FLOAT}
    return {
        node.name: node.op_type
        for node in model.graph.node
        if node.op_type in ("MatMul", "Gemm", "Conv") and any(value in floats for value in node.input[1:2])
    }


def test_fp32_op_types_gemm_keeps_every_gemm_in_fp32(tmp_path, torch_model, dataset_roots):
    model = torch_model("lenet", "MNIST")
    config = config_for(
        tmp_path, model, dataset_roots,
        quantization={"fp32_op_types": ["Gemm"]},
        tuning={"objective": "accuracy", "accuracy_criterion": {"kind": "relative", "tolerance": 0.05}},
    )
    summary = run_tuning(config)
    produced = onnx.load(str(config.output.model))
    op_types = [node.op_type for node in produced.graph.node]
    # Independent reading: both Gemms' matrix products read float weights; the convolutions are int8.
    assert float_weight_consumers(produced) == {"/fc1/Gemm_MatMul": "MatMul", "/fc2/Gemm_MatMul": "MatMul"}
    assert op_types.count("QLinearConv") == 2 and "QLinearMatMul" not in op_types
    chosen = summary.trials[summary.chosen_trial]
    assert chosen.fp32_compute_nodes == ("/fc1/Gemm", "/fc2/Gemm")
    assert chosen.description.endswith("fp32: /fc1/Gemm, /fc2/Gemm")


def test_a_fallback_inc_ignored_is_an_error_naming_the_node(tmp_path, torch_model, dataset_roots):
    from neural_compressor import quantization, set_workspace
    from neural_compressor.config import PostTrainingQuantConfig

    from tuning.data.datasets import BatchLoader, calibration_images
    from tuning.inc.containment import contained_inc_call

    source = onnx.load(str(torch_model("mlp", "MNIST")))
    config = config_for(tmp_path, torch_model("mlp", "MNIST"), dataset_roots)
    loader = BatchLoader(calibration_images(config.dataset, config.calibration, (1, 28, 28)), 1)
    # INC's own matching of op_name_dict on the Gemm's name: what the pipeline did before, ignored by INC.
    fp32_only = {"weight": {"dtype": ["fp32"]}, "activation": {"dtype": ["fp32"]}}
    # Contained as the pipeline's own calls are: an INC call in this process must not start MPI, whose
    # singleton would leave launcher variables for every later subprocess of the suite.
    set_workspace(str(tmp_path / "nc_workspace"))  # INC's default is ./nc_workspace in the current folder
    with contained_inc_call(tmp_path / "inc.log"):
        ignored = quantization.fit(
            source, PostTrainingQuantConfig(op_name_dict={"/1/Gemm": fp32_only}), calib_dataloader=loader
        )
    expected = r"node '/1/Gemm' was to stay fp32, but INC quantized it anyway \('/1/Gemm_MatMul_quant'"
    with pytest.raises(TuningError, match=expected):
        check_kept_in_fp32(source, ignored.model, ["/1/Gemm"], "candidate 1")


def test_a_node_name_not_in_the_graph_is_a_config_error(tmp_path, torch_model, dataset_roots):
    config = config_for(
        tmp_path, torch_model("mlp", "MNIST"), dataset_roots,
        quantization={"fp32_op_names": ["/1/Gemm", "/9/Gemm"]}, tuning={"objective": "accuracy"},
    )
    expected = r"fp32_op_names: no node named '/9/Gemm' in .*mlp.onnx \(its Conv/MatMul/Gemm nodes: /1/Gemm, /3/Gemm\)"
    with pytest.raises(ConfigError, match=expected):
        run_tuning(config)
    assert not config.output.model.exists()


def test_latency_grid_labels_say_what_each_graph_holds(tmp_path, torch_model, dataset_roots):
    model = torch_model("lenet", "MNIST")
    config = config_for(
        tmp_path, model, dataset_roots,
        tuning={
            "objective": "latency", "max_trials": 10,
            "accuracy_criterion": {"kind": "relative", "tolerance": 0.05},
            "latency": {"warmup": 5, "iterations": 30, "rounds": 2},
        },
        benchmark={"batch_sizes": [32]},
    )
    summary = run_tuning(config)
    source = onnx.load(str(model))
    compute = [node.name for node in source.graph.node if node.op_type in COMPUTE_OP_TYPES]
    written = json.loads((config.output.dir / "tuning_summary.json").read_text())
    assert len(written["trials"]) == 11
    totals = {len(trial.source_precisions) for trial in summary.trials}
    assert totals == {len(source.graph.node)}  # node counts are per fp32-graph node: the same total for all
    for trial in summary.trials[1:]:
        assert set(trial.fp32_fallback) <= set(trial.fp32_compute_nodes) <= set(compute), trial
        assert trial.description.endswith("fp32: " + (", ".join(trial.fp32_compute_nodes) or "none"))
        if trial.same_model_as is None and trial.accuracy is not None:  # None: screened out as too slow to win
            assert trial.accuracy > 0.5  # trained far above chance, and quantization kept it there
    # The first Gemm's candidates really hold it in fp32 (it used to be "same model as trial 1").
    gemm = [t for t in summary.trials[1:] if t.fp32_fallback == ("/fc2/Gemm",)]
    assert gemm and all(t.same_model_as is None for t in gemm)
    lines = candidate_table(summary.trials, summary.latency_measurement)
    distinct = [t for t in summary.trials if t.same_model_as is None]
    assert len(lines) == 2 + len(distinct)  # a note, the header, one row per distinct model
    for trial in summary.trials:
        if trial.same_model_as is not None:
            row = next(line for line in lines[2:] if line.split()[0] == str(trial.same_model_as))
            assert str(trial.index) in row.split("trial")[-1]
