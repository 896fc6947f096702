"""Property tests: whatever the bytes, config and model loading fail only with the project's errors."""

from __future__ import annotations

import atexit
import multiprocessing
import shutil
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tuning.config import PipelineConfig, load_config
from tuning.errors import ConfigError, InputError
from tuning.onnx_io import describe, load_model

from conftest import ROOT

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


def check_config_text(text: str) -> None:
    path = _SCRATCH / "config.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        load_config(path)
    except ConfigError as exc:
        assert "\n" not in str(exc)


@FUZZ
@given(configs)
def test_yaml_mappings_raise_only_config_error(data: dict) -> None:
    check_config_text(yaml.safe_dump(data, allow_unicode=True))


@FUZZ
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda raw: raw.decode("latin-1")))
def test_random_text_raises_only_config_error(text: str) -> None:
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
