"""Property tests: whatever the bytes, config and model loading fail only with the project's errors.

The config properties also check that the file was read: a file that is not a mapping of known sections
and keys must be refused naming the file, and a config that loads must hold every value the file set.
"""

from __future__ import annotations

import atexit
import math
import multiprocessing
import os
import shutil
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import ROOT
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tuning.config.loading import load_config
from tuning.config.schema import PipelineConfig
from tuning.errors import ConfigError, InputError
from tuning.files.onnx_io import describe, load_model

MODEL_BYTES = (ROOT / "models" / "mnist-12.onnx").read_bytes()
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Real keys make the generated configs reach validation, not only the unknown-key check.
SECTION_KEYS = {name: list(field.annotation.model_fields) for name, field in PipelineConfig.model_fields.items()}
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["static", "dynamic", "QDQ", "kl", "unit", "raw", "train", "test", "auto", "MNIST", "1e3"]),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=6,
)  # fmt: skip
sections = st.sampled_from(list(SECTION_KEYS)).flatmap(
    lambda section: st.tuples(
        st.just(section),
        st.dictionaries(st.sampled_from(SECTION_KEYS[section]) | st.text(max_size=8), values, max_size=4)
        | values,
    )
)
configs = st.lists(sections, max_size=4).map(dict) | st.dictionaries(st.text(max_size=8), values, max_size=3)


_SCRATCH = Path(tempfile.mkdtemp(prefix="fuzz-config-"))
atexit.register(shutil.rmtree, _SCRATCH, True)


def must_be_refused(raw: bytes) -> bool:
    """Whether a file with these bytes is no config whatever its values: not UTF-8, not YAML, not a
    mapping of sections, or naming a section or key the README's table does not have. Read with PyYAML
    here, independently of load_config."""
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError):
        return True
    except Exception:  # noqa: BLE001 - e.g. a date PyYAML cannot build; no claim about such files
        return False
    if not isinstance(data, dict):
        return True
    for section, body in data.items():
        if section not in SECTION_KEYS:
            return True
        if isinstance(body, dict) and any(key not in SECTION_KEYS[section] for key in body):
            return True
    return False


# README: output.model and output.dir left out (or null) are derived from the model's path.
DERIVED_WHEN_NULL = {("output", "model"), ("output", "dir")}


def same_value(loaded: Any, written: Any, folder: Path, where: tuple[str, ...] = ()) -> bool:
    """Whether a loaded setting is what the file wrote (pydantic converts str to Path, lists to tuples...;
    README: a relative path in the file is relative to the file's folder)."""
    if isinstance(loaded, BaseModel):
        return isinstance(written, dict) and all(
            same_value(getattr(loaded, k), v, folder, (*where, k)) for k, v in written.items()
        )
    if written is None and where in DERIVED_WHEN_NULL:
        return True
    if isinstance(loaded, Enum):
        return loaded.value == written
    if isinstance(loaded, Path):
        relative = isinstance(written, str) and written and not Path(written).is_absolute()
        return loaded == (Path(os.path.normpath(folder / written)) if relative else Path(written))
    if isinstance(loaded, tuple):
        return len(loaded) == len(written) and all(same_value(a, b, folder, where) for a, b in zip(loaded, written))
    if isinstance(loaded, float):
        written = float(written)
        return loaded == written or (math.isnan(loaded) and math.isnan(written))
    return loaded == written


def check_config_text(text: str) -> None:
    path = _SCRATCH / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        config = load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith(f"{path}: "), message
        return
    raw = path.read_bytes()
    assert not must_be_refused(raw), f"loaded a file that is no config: {raw!r}"
    data = yaml.safe_load(raw.decode("utf-8"))
    for section, body in data.items():
        assert same_value(getattr(config, section), body, path.parent, (section,)), (section, body, getattr(config, section))


@FUZZ
@given(configs)
def test_yaml_mappings_raise_only_config_error(data: dict) -> None:
    check_config_text(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_random_text_raises_only_config_error(text: str) -> None:
    check_config_text(text)


@pytest.mark.parametrize(
    "text",
    ["calibration:\n  seed: 5\n  sampling_size: 7\n", "tuning:\n  latency:\n    rounds: 2\n", "[1, 2]\n", "x\n",
     "tuning:\n  max_trails: 3\n"],
)  # fmt: skip
def test_the_properties_see_a_loader_that_ignores_the_file(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The check the two properties above make, against a load_config that returns the defaults.
    check_config_text(text)
    monkeypatch.setitem(globals(), "load_config", lambda path: PipelineConfig())
    with pytest.raises(AssertionError):
        check_config_text(text)


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(MODEL_BYTES) - 1), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, len(MODEL_BYTES) - 1), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, len(MODEL_BYTES)), st.integers(0, 255)),
)


def mutate(data: bytes, steps: list[tuple[str, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, at, value in steps:
        at = min(at, len(out))
        if kind == "flip" and at < len(out):
            out[at] ^= value
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value])
    return bytes(out)


def _load_and_describe(path: str, answer: multiprocessing.Queue) -> None:
    try:
        describe(load_model(Path(path)), path)
        answer.put("ok")
    except InputError as exc:
        answer.put("InputError" if "\n" not in str(exc) else f"multi-line: {exc!r}")
    except BaseException as exc:  # noqa: BLE001 - the property under test is that nothing else escapes
        answer.put(f"{exc.__class__.__name__}: {exc}")


@FUZZ
@given(st.lists(mutations, min_size=1, max_size=4))
def test_mutated_onnx_raises_only_input_error(steps: list[tuple[str, int, int]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mutated.onnx"
        path.write_bytes(mutate(MODEL_BYTES, steps))
        # A fork per example is what lets a hang fail the test instead of stalling the suite.
        answer: multiprocessing.Queue = _CONTEXT.Queue()
        worker = _CONTEXT.Process(target=_load_and_describe, args=(str(path), answer))
        worker.start()
        worker.join(timeout=10)
        if worker.is_alive():
            worker.kill()
            raise AssertionError("load_model/describe hung on a mutated model")
        outcome = answer.get(timeout=5) if worker.exitcode == 0 else f"crashed with exit code {worker.exitcode}"
    assert outcome in ("ok", "InputError"), outcome


_CONTEXT = multiprocessing.get_context("fork")
