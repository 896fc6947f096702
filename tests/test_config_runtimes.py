"""benchmark.runtimes and gates.runtime (issue 13's keys) at their edges: a runtime listed twice, a gated
runtime the report never measures, and the default gates.runtime following the runtimes measured."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONFIG, project_config

from tuning.config.enums import Runtime
from tuning.errors import ConfigError

pytestmark = pytest.mark.fast


def config_error(tmp_path: Path, **overrides: object) -> str:
    with pytest.raises(ConfigError) as caught:
        project_config(tmp_path, **overrides)
    return str(caught.value)


@pytest.mark.parametrize(
    ("runtimes", "repeated"),
    [
        (["onnxruntime", "onnxruntime"], "onnxruntime"),
        (["openvino", "onnxruntime", "openvino-f32", "openvino"], "openvino"),
        (["openvino", "onnxruntime", "openvino", "onnxruntime"], "onnxruntime, openvino"),  # sorted, each once
    ],
)
def test_a_runtime_listed_twice_is_named(tmp_path: Path, runtimes: list[str], repeated: str) -> None:
    assert config_error(tmp_path, **{"benchmark.runtimes": runtimes}) == (
        f"{CONFIG}: benchmark.runtimes: each runtime may be listed once; repeated: {repeated}, got {runtimes}"
    )


def test_every_runtime_once_is_accepted_in_its_order(tmp_path: Path) -> None:
    runtimes = ["openvino-bf16", "onnxruntime", "openvino", "openvino-f32"]
    config = project_config(tmp_path, **{"benchmark.runtimes": runtimes})
    assert [runtime.value for runtime in config.benchmark.runtimes] == runtimes


@pytest.mark.parametrize(("gated", "measured"), [("openvino", ["onnxruntime"]), ("onnxruntime", ["openvino", "openvino-f32"])])
def test_a_gated_runtime_that_is_not_measured_is_refused(tmp_path: Path, gated: str, measured: list[str]) -> None:
    assert config_error(tmp_path, **{"gates.runtime": gated, "benchmark.runtimes": measured}) == (
        f"{CONFIG}: gates.runtime: {gated} is not in benchmark.runtimes ({', '.join(measured)}); "
        "add it there or gate another runtime"
    )


@pytest.mark.parametrize(
    ("measured", "gated"),
    [
        (["openvino-f32", "openvino"], Runtime.OPENVINO_F32),  # no onnxruntime: the first one measured
        (["openvino", "onnxruntime"], Runtime.ONNXRUNTIME),  # the default is measured: it stays
    ],
)
def test_gates_runtime_left_at_its_default_follows_the_runtimes_measured(tmp_path: Path, measured, gated) -> None:  # type: ignore[no-untyped-def]
    config = project_config(tmp_path, **{"benchmark.runtimes": measured})
    assert config.gates.runtime is gated
    assert [runtime.value for runtime in config.benchmark.runtimes] == measured


def test_a_gated_runtime_that_is_measured_is_kept(tmp_path: Path) -> None:
    config = project_config(tmp_path, **{"gates.runtime": "openvino", "benchmark.runtimes": ["onnxruntime", "openvino"]})
    assert config.gates.runtime is Runtime.OPENVINO
