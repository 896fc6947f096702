"""Config bounds: every number finite and in range, YAML size/depth/aliases bounded, one-line usage errors.

Each property is tried on generated examples (hypothesis); the expected answers come from the
libraries the values end up in (numpy's seeding, Python's float) or from the README's table,
not from the schema under test.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import threading
from unittest import mock
from pathlib import Path

import annotated_types
import numpy as np
import pytest
import yaml
from conftest import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st
from special_files import KINDS, make_special
from test_cli import assert_one_line_error

from tuning.config import loading
from tuning.config.loading import (
    MAX_CONFIG_BYTES,
    MAX_YAML_DEPTH,
    MAX_YAML_NODES,
    load_config,
)
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError, one_line

EXAMPLES = settings(max_examples=60, deadline=None)
SECTIONS = {name: field.annotation for name, field in PipelineConfig.model_fields.items()}


def keys_of_type(kind: type) -> list[str]:
    """Every dotted key whose annotation is ``kind`` (possibly constrained, possibly optional)."""
    found = []

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, PipelineConfig.__mro__[1]):
                walk(annotation, f"{prefix}{name}.")
            elif annotation is kind or annotation == kind | None:
                found.append(f"{prefix}{name}")

    walk(PipelineConfig, "")
    return found


FLOAT_KEYS = keys_of_type(float)
INT_KEYS = keys_of_type(int)


def config_error(overrides: dict | None = None, path: Path | None = None) -> str:
    with pytest.raises(ConfigError) as caught:
        load_config(path, overrides)
    message = str(caught.value)
    assert "\n" not in message and len(message) < 400, message
    return message


@pytest.mark.fast
def test_the_schema_has_the_keys_these_tests_walk() -> None:
    assert {"dataset.mean", "dataset.std", "tuning.accuracy_criterion.tolerance"} <= set(FLOAT_KEYS)
    assert {"tuning.seed", "tuning.timeout_s", "calibration.seed", "model.download_timeout_s"} <= set(INT_KEYS)


@pytest.mark.fast
@EXAMPLES
@given(st.sampled_from(FLOAT_KEYS), st.sampled_from([math.nan, math.inf, -math.inf]))
def test_nan_and_inf_are_refused_for_every_float_key(key: str, value: float) -> None:
    message = config_error({key: value})
    assert key in message and "finite" in message


@pytest.mark.fast
@EXAMPLES
@given(st.sampled_from([".nan", ".NaN", ".inf", "-.inf", ".Inf", "1.0e+400"]), st.sampled_from(FLOAT_KEYS))
def test_yaml_spellings_of_nan_and_inf_are_refused(tmp_path_factory, spelling: str, key: str) -> None:
    section, *rest = key.split(".")
    text = f"{section}:\n" + "".join(f"{'  ' * (i + 1)}{part}:\n" for i, part in enumerate(rest[:-1]))
    text += f"{'  ' * len(rest)}{rest[-1]}: {spelling}\n"
    path = tmp_path_factory.mktemp("nan") / "config.yaml"
    path.write_text(text)
    assert key in config_error(path=path)


def numpy_accepts_seed(seed: int) -> bool:
    try:
        np.random.seed(seed)  # what INC does with tuning.seed
    except (ValueError, OverflowError, TypeError):
        return False
    return True


@pytest.mark.fast
@EXAMPLES
@given(st.integers(-(2**70), 2**70) | st.sampled_from([2**32 - 1, 2**32, -1, 0]))
def test_seed_is_accepted_exactly_when_numpy_accepts_it(seed: int) -> None:
    for key in ("tuning.seed", "calibration.seed"):
        if numpy_accepts_seed(seed):
            assert getattr(load_config(None, {key: seed}), key.split(".")[0]).seed == seed
        else:
            assert key in config_error({key: seed})


@pytest.mark.fast
@EXAMPLES
@given(st.integers(-(2**64), 2**64) | st.sampled_from([0, 1, 604800, 604801, 10**20]))
def test_timeout_is_between_zero_and_a_week(timeout: int) -> None:
    # README: tuning.timeout_s in [0, 604800]; a larger value would overflow INC's timer thread.
    if 0 <= timeout <= 7 * 24 * 3600:
        assert load_config(None, {"tuning.timeout_s": timeout}).tuning.timeout_s == timeout
    else:
        assert "tuning.timeout_s" in config_error({"tuning.timeout_s": timeout})


def upper_bound(key: str) -> int:
    section, *rest = key.split(".")
    model = SECTIONS[section]
    for part in rest[:-1]:
        model = model.model_fields[part].annotation
    metadata = model.model_fields[rest[-1]].metadata
    return next(item.le for item in metadata if isinstance(item, annotated_types.Le))


@pytest.mark.fast
@EXAMPLES
@given(st.sampled_from(INT_KEYS), st.integers(1, 10**4000))
def test_every_integer_key_has_an_upper_bound(key: str, excess: int) -> None:
    limit = upper_bound(key)
    assert limit < 2**63  # every count fits the C types below (numpy, onnxruntime)
    message = config_error({key: limit + excess})
    assert key in message and "less than or equal" in message


@pytest.mark.fast
@settings(max_examples=20, deadline=None)
@given(st.integers(4301, 20_000))
def test_integers_past_pythons_digit_limit_are_a_config_error(tmp_path_factory, digits: int) -> None:
    path = tmp_path_factory.mktemp("digits") / "config.yaml"
    path.write_text("tuning:\n  seed: " + "7" * digits + "\n")
    message = config_error(path=path)
    assert "line 2" in message and "out of range" in message


@pytest.mark.fast
@EXAMPLES
@given(
    st.dictionaries(st.sampled_from(["seed", "max_trials", "timeout_s", "strategy"]), st.integers(0, 9), min_size=1),
    st.data(),
)
def test_duplicate_keys_are_refused(tmp_path_factory, mapping: dict, data) -> None:
    duplicated = data.draw(st.sampled_from(sorted(mapping)))
    lines = [f"  {key}: {value}" for key, value in mapping.items()]
    lines.insert(data.draw(st.integers(0, len(lines))), f"  {duplicated}: 1")
    path = tmp_path_factory.mktemp("dup") / "config.yaml"
    path.write_text("tuning:\n" + "\n".join(lines) + "\n")
    assert f"duplicate key '{duplicated}'" in config_error(path=path)


@pytest.mark.fast
def test_a_merge_key_may_be_overridden() -> None:
    text = "x-defaults: &d {seed: 3, max_trials: 4}\n"
    document = yaml.safe_load(text + "tuning:\n  <<: *d\n  seed: 5\n")
    assert document["tuning"] == {"seed": 5, "max_trials": 4}  # YAML's rule, which the loader must keep


def distinct_nodes(root: yaml.Node) -> int:
    """Nodes in a composed document, each counted once however many aliases refer to it."""
    seen: dict[int, yaml.Node] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            if isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
            elif isinstance(node, yaml.MappingNode):
                stack.extend(part for pair in node.value for part in pair)
    return len(seen)


def alias_bomb(width: int, levels: int) -> str:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [" + ", ".join([f"*l{level - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.fast
@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(2, 12))
def test_alias_bombs_fail_fast_without_echoing_the_expansion(tmp_path_factory, width: int, levels: int) -> None:
    # Nodes once every alias is expanded: the root mapping, and per line a key and its nested list.
    sizes = [1 + width]
    for _ in range(levels):
        sizes.append(1 + width * sizes[-1])
    expanded = 1 + sum(1 + size for size in sizes)
    path = tmp_path_factory.mktemp("bomb") / "config.yaml"
    path.write_text(alias_bomb(width, levels))
    # Work, not time: the expansion check visits each node of the file at most twice (down, then up), however
    # far its aliases expand, and a refused document constructs nothing.
    file_nodes = distinct_nodes(yaml.compose(path.read_text()))
    with (
        mock.patch.object(loading, "_children", wraps=loading._children) as visits,
        mock.patch.object(loading._BoundedLoader, "construct_document", autospec=True,
                          side_effect=yaml.SafeLoader.construct_document) as constructed,
    ):  # fmt: skip
        message = config_error(path=path)
    assert 0 < visits.call_count <= 2 * file_nodes
    if expanded > MAX_YAML_NODES:
        assert constructed.call_count == 0
        assert "aliases expand to more than" in message
    else:  # small enough to expand: then it is only an unknown key
        assert "unknown key 'l0'" in message
    assert message.count("lol") <= 1


@pytest.mark.fast
@settings(max_examples=25, deadline=None)
@given(st.integers(MAX_YAML_DEPTH + 1, 3000), st.sampled_from(["flow-list", "block-map", "flow-map"]))
def test_deep_nesting_is_refused(tmp_path_factory, depth: int, style: str) -> None:
    if style == "flow-list":
        text = "tuning: " + "[" * depth + "]" * depth + "\n"
    elif style == "flow-map":
        text = "tuning: " + "{a: " * depth + "1" + "}" * depth + "\n"
    else:
        text = "tuning:\n" + "".join(" " * (i + 1) + "a:\n" for i in range(min(depth, 1000)))
    path = tmp_path_factory.mktemp("deep") / "config.yaml"
    path.write_text(text)
    assert "nested more than" in config_error(path=path)


@pytest.mark.fast
def test_aliases_expanding_deeper_than_the_limit_are_refused(tmp_path: Path) -> None:
    step = MAX_YAML_DEPTH // 2
    lines = ["a0: &a0 " + "[" * step + "1" + "]" * step]
    lines += [f"a{i}: &a{i} " + "[" * step + f"*a{i - 1}" + "]" * step for i in range(1, 6)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    assert "nested more than" in config_error(path=path)


@pytest.mark.fast
def test_recursive_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tuning: &t\n  seed: *t\n")
    assert "refers to a value that contains it" in config_error(path=path)


@pytest.mark.fast
def test_oversized_config_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("tuning:\n  seed: 1\n" + "# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert "larger than the config size limit" in config_error(path=path)


@pytest.mark.fast
@pytest.mark.parametrize("kind", [*KINDS, "missing"])
def test_config_path_must_be_a_regular_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "config.yaml"
    if kind != "missing":
        path = make_special(path, kind)
    # A FIFO with no writer would block an ordinary open() forever: the check runs in a thread, so that a
    # regression fails here (after a minute, far beyond any load) rather than hanging the suite.
    messages: list[str] = []
    checker = threading.Thread(target=lambda: messages.append(config_error(path=path)), daemon=True)
    checker.start()
    checker.join(timeout=60)
    assert messages and KINDS.get(kind, "not found") in messages[0]


@pytest.mark.fast
@pytest.mark.parametrize(
    "value", ["'a\\nb'", "'\\x00\\r\\x1b[2J'", "'" + "x" * 5000 + "'", "[" + ", ".join(["'y' "] * 3000) + "]"]
)
def test_bad_values_are_quoted_short_and_escaped(value: str) -> None:
    message = config_error({"tuning.seed": yaml.safe_load(value)})
    assert "tuning.seed" in message
    assert all(char.isprintable() for char in one_line(message))


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tuning", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["gate", "--junit", "{tmp}"], "'--junit'"),
        (["gate", "--write-baseline", "{tmp}"], "'--write-baseline'"),
        (["benchmark", "--batch_size", "0"], "'--batch_size'"),
        (["benchmark", "--batch_size", "x"], "'--batch_size'"),
        (["benchmark", "--batch_size", str(10**30)], "'--batch_size'"),
        (["benchmark", "--mode", "speed"], "'--mode'"),
        (["tune", "--bogus"], "--bogus"),
        (["tune", "--set"], "--set"),
        (["nosuch"], "nosuch"),
        (["report", "--out-dir", "{model}"], "'--out-dir'"),
    ],
)
def test_click_usage_errors_are_one_line_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    model = ROOT / "models" / "mnist-12.onnx"
    result = run_cli(*(arg.format(tmp=tmp_path, model=model) for arg in args))
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.stderr
    assert "Usage:" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "key"),
    [
        ("dataset.mean=.nan", "dataset.mean"),
        ("dataset.std=.inf", "dataset.std"),
        ("tuning.seed=4294967296", "tuning.seed"),
        ("tuning.timeout_s=100000000000000000000", "tuning.timeout_s"),
    ],
)
def test_config_errors_the_issue_found_after_tuning_are_exit_2_at_load(tmp_path: Path, setting: str, key: str) -> None:
    result = run_cli("tune", "--set", setting, "--set", f"output.dir={tmp_path}")
    assert result.returncode == 2 and key in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "nc_workspace").exists()  # refused before any work


@pytest.mark.parametrize("alias", ["same", "relative", "symlink", "hardlink", "symlinked-folder", "config"])
def test_an_output_that_is_an_input_is_refused_before_any_work(tmp_path: Path, alias: str) -> None:
    source = tmp_path / "models" / "fp32.onnx"
    source.parent.mkdir()
    source.write_bytes((ROOT / "models" / "mnist-12.onnx").read_bytes())
    before = source.read_bytes()
    config = tmp_path / "config.yaml"
    config.write_text((ROOT / "configs" / "mnist.yaml").read_text())
    output = {
        "same": source,
        "relative": Path("models/../models/fp32.onnx"),
        "symlink": tmp_path / "link.onnx",
        "hardlink": tmp_path / "hard.onnx",
        "symlinked-folder": tmp_path / "alias" / "fp32.onnx",
        "config": config,
    }[alias]
    if alias == "symlink":
        output.symlink_to(source)
    elif alias == "hardlink":
        os.link(source, output)
    elif alias == "symlinked-folder":
        (tmp_path / "alias").symlink_to(source.parent)
    result = run_cli(
        "tune", f"--config={config}", f"--input_model={source}", f"--output_model={output}",
        "--set", f"output.dir={tmp_path / 'run'}", "--set", f"dataset.root={ROOT / 'data'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "refusing to overwrite an input" in result.stderr
    assert source.read_bytes() == before and not (tmp_path / "run").exists()


def test_tune_with_a_model_path_that_is_a_fifo_is_exit_3(tmp_path: Path) -> None:
    # Other kinds and the verified path: test_fetch_bounds and test_config_path_must_be_a_regular_file.
    model = make_special(tmp_path / "model.onnx", "fifo")
    sha = "null"
    result = run_cli("tune", f"--input_model={model}", "--set", f"model.sha256={sha}", "--set",
                     f"output.dir={tmp_path / 'run'}", "--set", f"output.model={tmp_path / 'out.onnx'}")  # fmt: skip
    assert_one_line_error(result, 3, "expected a regular file")


# --- reports read by gate and report ----------------------------------------------------------------


def write_report(path: Path, batch_key: str = "256", accuracy: object = 0.99) -> Path:
    models = [
        {"name": name, "role": role, "path": f"{name}.onnx",
         "accuracy": {"pixel_scale": "unit", "top1_accuracy": accuracy}}
        for name, role in (("fp32", "float"), ("int8", "int8"))
    ]  # fmt: skip
    report = {"schema_version": 2, "models": models,
              "ratios_vs_float": {"onnxruntime": {"int8": {"latency_p50": 0.9, "throughput": {batch_key: 1.2}}}}}  # fmt: skip
    path.write_text(json.dumps(report))
    return path


@EXAMPLES
@given(st.text(min_size=1, max_size=6).filter(lambda key: not (key.isascii() and key.isdigit())))
def test_gate_refuses_batch_keys_that_are_not_ascii_digits(tmp_path_factory, key: str) -> None:
    from tuning.errors import InputError
    from tuning.gate.report_file import load_report

    path = write_report(tmp_path_factory.mktemp("gate") / "report.json", batch_key=key)
    with pytest.raises(InputError) as caught:
        load_report(path)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "content",
    [
        '{"schema_version": ' + "9" * 5000 + "}",
        "[" * 100_000 + "]" * 100_000,
        '{"schema_version": 1e999999}',
        "\udcff",
    ],
    ids=["5000-digit-int", "nested-100000", "huge-exponent", "not-utf8"],
)
def test_gate_reads_hostile_reports_as_one_line_exit_3(tmp_path: Path, content: str) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(content.encode("utf-8", "surrogateescape"))
    result = run_cli("gate", str(path))
    assert result.returncode == 3 and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("kind", ["fifo", "symlink-to-dev-zero"])
def test_gate_never_blocks_on_a_report_that_is_no_regular_file(tmp_path: Path, kind: str) -> None:
    path = make_special(tmp_path / "report.json", kind)
    result = run_cli("gate", str(path))
    assert result.returncode == 3 and KINDS[kind] in result.stderr


def test_report_and_gate_outputs_never_overwrite_their_inputs(tmp_path: Path) -> None:
    report_json = write_report(tmp_path / "report.json")
    before = report_json.read_bytes()
    result = run_cli("gate", str(report_json), "--junit", str(report_json))
    assert result.returncode == 2 and "refusing to overwrite an input" in result.stderr
    result = run_cli("gate", str(report_json), "--write-baseline", str(tmp_path / "." / "report.json"))
    assert result.returncode == 2 and "refusing to overwrite an input" in result.stderr
    assert report_json.read_bytes() == before
    model_named_like_an_output = tmp_path / "out" / "report.md"
    model_named_like_an_output.parent.mkdir()
    model_named_like_an_output.write_bytes((ROOT / "models" / "mnist-12.onnx").read_bytes())
    result = run_cli("report", "--skip-performance", f"--float-model={model_named_like_an_output}",
                     f"--out-dir={tmp_path / 'out'}", "--set", "benchmark.reference_models=[]")  # fmt: skip
    assert result.returncode == 2 and "refusing to overwrite an input" in result.stderr
    assert model_named_like_an_output.read_bytes() == (ROOT / "models" / "mnist-12.onnx").read_bytes()


@pytest.mark.parametrize(
    ("args", "key", "batch"),
    [
        (["benchmark", "--batch-size", "1000000"], "--batch-size", 1_000_000),
        (["report", "--set", "benchmark.batch_sizes=[1, 100000]"], "benchmark.batch_sizes", 100_000),
        (["report", "--set", "benchmark.batch_sizes=[64]", "--set", "benchmark.max_batch_bytes=100000"],
         "benchmark.batch_sizes", 64),
    ],
)
def test_batches_too_large_for_memory_are_refused_before_allocating(tmp_path: Path, args, key, batch) -> None:
    # mnist-12: 784 input and 10 output floats per image, 3176 bytes; the default limit is 32 MiB.
    per_image = 4 * (28 * 28 + 10)
    args = [*args, "--set", f"output.dir={tmp_path}", "--set", "benchmark.reference_models=[]"]
    if args[0] == "report":
        args += [f"--int8-model={ROOT / 'models' / 'zoo-mnist-12-int8.onnx'}", f"--out-dir={tmp_path / 'report'}"]
    result = run_cli(*args)
    assert_one_line_error(result, 2, key, "benchmark.max_batch_bytes", f"needs {batch * per_image} bytes")
    assert not (tmp_path / "report").exists()
