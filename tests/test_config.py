"""The YAML schema: defaults, overrides, and one-line errors naming the key path."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONFIG, ROOT

from tuning.config.enums import (
    Approach,
    CriterionKind,
    Objective,
    PixelScale,
    QuantFormat,
)
from tuning.config.loading import load_config, parse_override
from tuning.config.schema import SHIPPED_CONFIG, PipelineConfig
from tuning.errors import ConfigError

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
    assert config.quantization.format is QuantFormat.QDQ  # portable; QOperator only when measurably faster
    assert config.tuning.accuracy_criterion.kind is CriterionKind.ABSOLUTE
    assert config.tuning.accuracy_criterion.tolerance == 0.001
    assert config.tuning.objective is Objective.LATENCY


def test_the_shipped_config_the_cli_falls_back_to_is_the_projects_config_file():
    # A module moved one folder deeper once pointed this at tuning/configs/, and the CLI silently fell back
    # to the schema's defaults instead of the shipped file.
    assert SHIPPED_CONFIG == CONFIG.resolve()
    assert SHIPPED_CONFIG.is_file()


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
    with pytest.raises(ConfigError, match="model.path: not set; pass -m/--model or set model.path"):
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


# --- boundaries of the messages and of the hash ----------------------------------------------------


def test_yaml_error_gives_the_line_and_column_of_the_problem(tmp_path):
    text = "model:\n  path: a: b\n"
    column = text.splitlines()[1].index("a:") + 2  # 1-based column of the second ':' on line 2
    path = write(tmp_path, text)
    assert error_of(path) == f"{path}: not valid YAML at line 2, column {column}: mapping values are not allowed here"


def test_more_problems_are_counted_after_the_first(tmp_path):
    assert error_of(None, {"calibration.seed": -1}).endswith("calibration.seed: Input should be greater than or equal to 0, got -1")
    assert error_of(None, {"calibration.seed": -1, "calibration.batch_size": 0}).endswith(" (and 1 more problems)")
    three = {"calibration.seed": -1, "calibration.batch_size": 0, "calibration.sampling_size": 0}
    assert error_of(None, three).endswith(" (and 2 more problems)")


def test_unknown_key_without_a_close_match_lists_the_sections_keys():
    # The keys of calibration, in the README's order.
    assert error_of(None, {"calibration.zzzzzz": 1}) == (
        "<defaults>: unknown key 'calibration.zzzzzz' (valid keys: split, sampling_size, batch_size, seed)"
    )


@pytest.mark.parametrize(
    ("dotted", "scalar"),
    [("dataset.name.x", "dataset.name"), ("tuning.latency.rounds.x", "tuning.latency.rounds"), ("a.b", "a"),
     ("dataset.name.x.y", "dataset.name")],
)
def test_override_below_a_value_that_is_not_a_section(dotted, scalar):
    overrides = {"a": 5, dotted: 1} if scalar == "a" else {dotted: 1}
    assert error_of(CONFIG, overrides) == f"{CONFIG}: cannot override {dotted!r}: {scalar!r} is not a section"


def test_override_value_may_contain_the_equals_sign():
    assert parse_override(" dataset.name = a=b") == ("dataset.name", "a=b")
    with pytest.raises(ConfigError) as caught:
        parse_override("=5")
    assert str(caught.value) == "--set '=5': expected KEY.PATH=VALUE, e.g. tuning.max_trials=5"
    with pytest.raises(ConfigError, match=r"--set 'k=\['"):
        parse_override("k=[")


@pytest.mark.parametrize(
    ("key", "value"),
    [("calibration.split", "test"), ("calibration.sampling_size", 50), ("calibration.batch_size", 2),
     ("calibration.seed", 1), ("quantization.calibration_algorithm", "kl")],
)  # fmt: skip
def test_dynamic_quantization_refuses_each_calibration_setting(key, value):
    message = error_of(None, {"quantization.approach": "dynamic", key: value})
    assert message == (
        f"<defaults>: quantization.approach: dynamic uses no calibration, but {key} is set; "
        "remove it or use approach static"
    )


def test_dynamic_quantization_names_every_calibration_setting_given():
    message = error_of(None, {"quantization.approach": "dynamic", "calibration.split": "test", "calibration.seed": 1})
    assert "but calibration.split, calibration.seed are set; remove them" in message


# Settings that decide the int8 model's bytes (README: tuning.config_sha256) and settings that do not.
DECIDING = [
    ("model.sha256", "0" * 64), ("dataset.name", "FashionMNIST"), ("dataset.pixel_scale", "raw"),
    ("dataset.mean", 0.5), ("dataset.std", 0.5), ("calibration.split", "test"), ("calibration.sampling_size", 7),
    ("calibration.batch_size", 2), ("calibration.seed", 1), ("evaluation.split", "train"),
    ("evaluation.batch_size", 2), ("quantization.format", "QDQ"), ("quantization.calibration_algorithm", "kl"),
    ("quantization.fp32_op_types", ["Conv"]), ("quantization.fp32_op_names", ["n"]), ("tuning.objective", "latency"),
    ("tuning.strategy", "basic"), ("tuning.accuracy_criterion.kind", "absolute"),
    ("tuning.accuracy_criterion.tolerance", 0.02), ("tuning.max_trials", 3), ("tuning.timeout_s", 5),
    ("tuning.seed", 2), ("tuning.latency.rounds", 2), ("tuning.latency.tie_margin", 0.2),
    ("benchmark.intra_op_threads", 2),
    ("deployment.session_config_entries", {"optimization.disable_specified_optimizers": "QDQPropagationTransformer"}),
]  # fmt: skip
NOT_DECIDING = [
    ("model.path", "elsewhere.onnx"), ("model.url", None), ("model.max_bytes", 1000), ("dataset.root", "other"),
    ("output.model", "x.onnx"), ("output.dir", "out"), ("benchmark.warmup", 3), ("benchmark.iterations", 9),
    ("benchmark.reference_models", []), ("gates.max_int8_top1_error_pct", 5.0), ("gates.baseline", "b.json"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value"), DECIDING)
def test_every_setting_that_decides_the_model_changes_the_config_hash(key, value):
    assert load_config(None, {key: value}).quantization_sha256() != PipelineConfig().quantization_sha256()


@pytest.mark.parametrize(("key", "value"), NOT_DECIDING)
def test_settings_that_do_not_decide_the_model_keep_the_config_hash(key, value):
    assert load_config(None, {key: value}).quantization_sha256() == PipelineConfig().quantization_sha256()


def test_the_timed_batch_size_decides_the_model_only_under_objective_latency():
    def digest(objective: str, batch_sizes: list[int]) -> str:
        overrides = {"tuning.objective": objective, "benchmark.batch_sizes": batch_sizes}
        return load_config(None, overrides).quantization_sha256()

    assert digest("accuracy", [1, 64]) == digest("accuracy", [1, 256])
    assert digest("latency", [1, 64]) != digest("latency", [1, 256])
    assert digest("latency", [1, 256]) == digest("latency", [256, 16])  # the largest is the one timed


def test_config_hash_is_a_sha256_hex_digest_and_stable():
    digest = PipelineConfig().quantization_sha256()
    assert len(digest) == 64 and int(digest, 16) >= 0 and digest == digest.lower()
    assert load_config(None, {}).quantization_sha256() == digest


def test_a_path_that_is_not_set_names_what_sets_it(tmp_path):
    config = load_config(None, {"model.path": str(tmp_path / "m.onnx")})
    assert config.path("model.path") == tmp_path / "m.onnx"
    assert config.path("output.model") == tmp_path / "m-int8.onnx"  # derived beside the model
    assert config.path("output.dir") == tmp_path / "m-int8-run"
    unset = load_config(None)
    with pytest.raises(ConfigError) as caught:
        unset.path("model.path")
    assert str(caught.value) == "model.path: not set; pass -m/--model or set model.path"
    with pytest.raises(ConfigError) as caught:
        unset.path("output.dir")
    assert str(caught.value) == "output.dir: not set; set it, or model.path"


@pytest.mark.parametrize(
    ("overrides", "clash"),
    [
        ({"output.model": "{model}"}, "output.model ({model}) is model.path ({model})"),
        ({"output.dir": "{dir}", "gates.baseline": "{dir}/tuning_summary.json"},
         "output.dir/tuning_summary.json ({dir}/tuning_summary.json) is gates.baseline ({dir}/tuning_summary.json)"),
        ({"output.model": "{dir}/ref.onnx", "benchmark.reference_models": ["{dir}/other.onnx", "{dir}/ref.onnx"]},
         "output.model ({dir}/ref.onnx) is benchmark.reference_models[1] ({dir}/ref.onnx)"),
    ],
)  # fmt: skip
def test_an_output_that_is_an_input_is_refused_naming_both_keys(tmp_path, overrides, clash):
    model = tmp_path / "m.onnx"
    fill = {"model": str(model), "dir": str(tmp_path / "run")}
    settings = {"model.path": str(model)} | {
        key: [v.format(**fill) for v in value] if isinstance(value, list) else value.format(**fill)
        for key, value in overrides.items()
    }
    assert error_of(None, settings) == f"<defaults>: {clash.format(**fill)}; refusing to overwrite an input"


def test_objective_latency_refuses_dynamic_quantization_in_one_line():
    assert error_of(None, {"tuning.objective": "latency", "quantization.approach": "dynamic"}) == (
        "<defaults>: tuning.objective: latency needs quantization.approach static; a dynamically quantized "
        "model computes something else at each batch size (use objective accuracy for dynamic)"
    )


def test_paths_in_the_file_resolve_against_its_folder_even_when_one_is_overridden(tmp_path):
    # README: relative paths in the config are relative to its folder; an override stays as given.
    folder = tmp_path / "configs"
    folder.mkdir()
    path = folder / "c.yaml"
    path.write_text("model:\n  path: m.onnx\ndataset:\n  root: data\noutput:\n  dir: out\n")
    config = load_config(path, {"model.path": "given.onnx"})
    assert config.model.path == Path("given.onnx")
    assert config.dataset.root == folder / "data"
    assert config.output.dir == folder / "out"
