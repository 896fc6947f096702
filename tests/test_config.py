"""The YAML schema: defaults, overrides, and one-line errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuning.config import (
    Approach,
    CriterionKind,
    Objective,
    PipelineConfig,
    PixelScale,
    QuantFormat,
    load_config,
    parse_override,
)
from tuning.errors import ConfigError

from conftest import CONFIG, ROOT

pytestmark = pytest.mark.fast


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def error_of(path: Path | None, overrides: dict | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_shipped_config_loads_with_the_documented_values():
    config = load_config(CONFIG)
    assert config.model.path == ROOT / "models" / "mnist-12.onnx"  # relative to configs/, wherever we run
    assert config.dataset.root == ROOT / "data"
    assert config.output.model == ROOT / "models" / "mnist-12-int8.onnx"
    assert config.output.dir == ROOT / "models" / "mnist-12-int8-run"  # beside the output model
    assert config.dataset.pixel_scale is PixelScale.UNIT
    assert config.quantization.approach is Approach.STATIC
    assert config.quantization.format is QuantFormat.QOPERATOR
    assert config.tuning.accuracy_criterion.kind is CriterionKind.ABSOLUTE
    assert config.tuning.accuracy_criterion.tolerance == 0.001
    assert config.tuning.objective is Objective.LATENCY


def test_objective_defaults_to_inc_behaviour_and_latency_settings_are_validated(tmp_path):
    assert PipelineConfig().tuning.objective is Objective.ACCURACY
    assert "tuning.objective" in error_of(None, {"tuning.objective": "speed"})
    message = error_of(write(tmp_path, "tuning:\n  latency:\n    round: 3\n"))
    assert "unknown key 'tuning.latency.round'" in message and "did you mean 'rounds'" in message
    assert "tuning.latency.tie_margin" in error_of(None, {"tuning.latency.tie_margin": 1.5})


def test_defaults_fill_missing_sections(tmp_path):
    config = load_config(write(tmp_path, "dataset:\n  pixel_scale: raw\n"))
    assert config.dataset.pixel_scale is PixelScale.RAW
    assert config.calibration == PipelineConfig().calibration


def test_paths_in_a_config_resolve_against_its_folder_and_command_line_paths_against_the_current_one(tmp_path):
    config_file = write(tmp_path / "project" / "configs", "model:\n  path: ../models/net.onnx\noutput:\n  dir: runs\n")
    config = load_config(config_file)
    project = tmp_path / "project"
    assert config.model.path == project / "models" / "net.onnx"
    assert config.dataset.root == project / "configs" / "data"  # a default the file leaves out, in its folder
    assert config.output.model == project / "models" / "net-int8.onnx"  # beside the float model
    assert config.output.dir == project / "configs" / "runs"
    given = load_config(config_file, {"model.path": "other.onnx", "output.model": "out/x.onnx", "output.dir": None})
    assert given.model.path == Path("other.onnx") and given.output.model == Path("out/x.onnx")
    assert given.output.dir == Path("out/x-run")  # outputs of a run go beside its output model


def test_the_configured_checksum_describes_the_configured_model_only(tmp_path):
    config_file = write(
        tmp_path, f"model:\n  path: net.onnx\n  url: https://example.org/net.onnx\n  sha256: {'a' * 64}\n"
    )
    same = load_config(config_file, {"model.path": str(tmp_path / "net.onnx")})
    assert (same.model.sha256, same.model.url) == ("a" * 64, "https://example.org/net.onnx")
    other = load_config(config_file, {"model.path": "mine.onnx"})
    assert (other.model.sha256, other.model.url) == (None, None)  # the user's file: not mnist-12's checksum
    given = load_config(config_file, {"model.path": "mine.onnx", "model.sha256": "b" * 64})
    assert given.model.sha256 == "b" * 64


def test_unset_model_path_is_named_when_needed():
    with pytest.raises(ConfigError, match="model.path: not set; pass --input_model or set model.path"):
        PipelineConfig().path("model.path")


def test_unknown_key_names_the_path_and_suggests_the_closest(tmp_path):
    message = error_of(write(tmp_path, "tuning:\n  max_trails: 3\n"))
    assert "unknown key 'tuning.max_trails'" in message
    assert "did you mean 'max_trials'" in message


def test_unknown_section(tmp_path):
    assert "unknown key 'tunning'" in error_of(write(tmp_path, "tunning: {}\n"))


def test_wrong_type_names_the_key_and_the_value(tmp_path):
    message = error_of(write(tmp_path, "calibration:\n  sampling_size: lots\n"))
    assert message.startswith(f"{tmp_path / 'config.yaml'}: calibration.sampling_size:")
    assert "'lots'" in message


def test_string_number_is_not_silently_converted(tmp_path):
    assert "calibration.seed" in error_of(write(tmp_path, "calibration:\n  seed: '3'\n"))


def test_bad_enum_value_lists_the_choices(tmp_path):
    message = error_of(write(tmp_path, "quantization:\n  format: QDQQ\n"))
    assert "quantization.format" in message and "'QOperator'" in message and "'QDQ'" in message


def test_out_of_range_value(tmp_path):
    message = error_of(write(tmp_path, "tuning:\n  accuracy_criterion:\n    tolerance: 1.5\n"))
    assert "tuning.accuracy_criterion.tolerance" in message and "1.5" in message


def test_missing_file(tmp_path):
    assert "config file not found" in error_of(tmp_path / "absent.yaml")


def test_empty_file(tmp_path):
    assert "empty" in error_of(write(tmp_path, ""))


def test_not_yaml_gives_the_line(tmp_path):
    assert "not valid YAML at line 2" in error_of(write(tmp_path, "model:\n  path: a: b\n"))


def test_top_level_must_be_a_mapping(tmp_path):
    assert "expected a mapping" in error_of(write(tmp_path, "- a\n- b\n"))


def test_overrides_win_over_the_file_and_are_validated():
    config = load_config(CONFIG, {"tuning.max_trials": 7, "dataset.pixel_scale": "raw"})
    assert config.tuning.max_trials == 7
    assert config.dataset.pixel_scale is PixelScale.RAW
    assert "unknown key 'tuning.bogus'" in error_of(CONFIG, {"tuning.bogus": 1})


def test_parse_override_reads_yaml_values():
    assert parse_override("tuning.max_trials=5") == ("tuning.max_trials", 5)
    assert parse_override("benchmark.batch_sizes=[1, 8]") == ("benchmark.batch_sizes", [1, 8])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        parse_override("tuning.max_trials")


def test_quantization_hash_ignores_output_locations_but_not_quantization_settings():
    base = load_config(CONFIG)
    moved = load_config(CONFIG, {"output.dir": "elsewhere", "output.model": "x.onnx"})
    retuned = load_config(CONFIG, {"calibration.seed": 1})
    assert base.quantization_sha256() == moved.quantization_sha256()
    assert base.quantization_sha256() != retuned.quantization_sha256()
