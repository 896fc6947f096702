"""The shipped speed gate on real measurements: a slowed int8 model FAILS, the shipped int8 model never does.

The slowed model is the shipped one with a chain of redundant Relu nodes on its input (pixels are >= 0, so
its outputs do not change by a bit): every call pays 1,000 extra kernel launches and passes over the batch,
more than the whole model's work on any CPU, with or without VNNI. No assertion is about int8 being faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT
from onnx import helper

from tuning.config.enums import SpeedInconclusive
from tuning.config.loading import load_config
from tuning.config.schema import BenchmarkSection
from tuning.data.datasets import evaluation_images
from tuning.gate import speed
from tuning.measure.benchmark import BenchmarkTarget, measure
from tuning.measure.runtimes import SessionSettings, make_session

CONFIG = ROOT / "configs" / "mnist.yaml"
FP32 = ROOT / "models" / "mnist-12.onnx"
REDUNDANT_NODES = 1000  # at batch 256 each passes over 0.8 MB: ~2x the model's own time in all


def slowed(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with REDUNDANT_NODES Relu nodes chained on its (non-negative) input."""
    slow = onnx.ModelProto()
    slow.CopyFrom(model)
    graph = slow.graph
    source = graph.input[0].name
    names = [f"redundant_relu_{k}" for k in range(REDUNDANT_NODES)]
    chain = [helper.make_node("Relu", [source if k == 0 else names[k - 1]], [name], name=name) for k, name in enumerate(names)]
    for node in graph.node:
        node.input[:] = [names[-1] if name == source else name for name in node.input]
    nodes = chain + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(slow)
    return slow


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    config = load_config(CONFIG)
    return evaluation_images(config.dataset, config.evaluation.split, (1, 28, 28)).images[:2048]


def test_the_slowed_model_gives_the_same_outputs(default_run, images: np.ndarray) -> None:
    model = onnx.load(str(default_run[0].output.model))
    plain, slow = make_session(model), make_session(slowed(model))
    name = plain.get_inputs()[0].name
    batch = images[:64]
    np.testing.assert_array_equal(plain.run(None, {name: batch})[0], slow.run(None, {name: batch})[0])


def test_the_shipped_gate_fails_a_slowed_int8_model_and_never_the_shipped_one(default_run, images: np.ndarray) -> None:
    gates = load_config(CONFIG).gates
    written = default_run[0].output.model  # the shipped config's model
    settings = BenchmarkSection(warmup=50, iterations=200, min_time_s=0.05, rounds=6, batch_sizes=(256,))
    int8 = onnx.load(str(written))
    targets = [
        BenchmarkTarget("fp32", onnx.load(str(FP32)), FP32),
        BenchmarkTarget("int8", int8, written),
        BenchmarkTarget("slowed", slowed(int8), Path("<slowed int8>")),
    ]
    performances = measure(targets, images, settings, SessionSettings())
    fp32 = performances["fp32"]

    def states(name: str) -> tuple[speed.SpeedState, speed.SpeedState]:
        latency = performances[name].latency_ratio(fp32)  # time int8/fp32
        throughput = performances[name].throughput_ratio(fp32, 256)  # images/s int8/fp32
        as_read = [speed.RatioInterval(r.value, r.low, r.high) for r in (latency, throughput)]
        return (
            speed.judge("latency", as_read[0], gates.max_latency_ratio, "<=", SpeedInconclusive.WARN).state,
            speed.judge("throughput", as_read[1], gates.min_throughput_ratio, ">=", SpeedInconclusive.WARN).state,
        )

    assert states("slowed") == (speed.SpeedState.FAIL, speed.SpeedState.FAIL)
    assert speed.SpeedState.FAIL not in states("int8")
