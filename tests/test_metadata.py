"""Model metadata: plain strings under flat keys, read back without decoding; the recorded preprocessing."""

from __future__ import annotations

import numpy as np
import onnx
from conftest import ROOT

from tuning.files.onnx_io import (
    declared_preprocessing,
    load_model,
    plain_metadata,
    read_metadata,
    save_model,
)


def test_values_are_plain_text_under_flat_keys():
    flat = plain_metadata(
        {
            "accuracy": 0.9891,
            "threads": 1,
            "digest": "495c",
            "preprocessing": {"pixel_scale": "raw", "mean": 0.1307, "std": 1.0},
            "options": {"providers": ["CPUExecutionProvider", "X"], "entries": {"a.b.c": "Q,R"}},
        }
    )
    assert flat == {
        "tuning.accuracy": "0.9891",
        "tuning.threads": "1",
        "tuning.digest": "495c",
        "tuning.preprocessing.pixel_scale": "raw",
        "tuning.preprocessing.mean": "0.1307",
        "tuning.preprocessing.std": "1",
        "tuning.options.providers": "CPUExecutionProvider,X",
        "tuning.options.entries.a.b.c": "Q,R",
    }
    assert float(plain_metadata({"x": 0.1 + 0.2})["tuning.x"]) == 0.1 + 0.2  # the text reads back exactly
    assert "e" not in plain_metadata({"x": 1e-7})["tuning.x"]  # decimal text, not exponent notation


def test_saved_metadata_reads_back_with_onnx_alone(tmp_path):
    model = load_model(ROOT / "models" / "mnist-12.onnx")
    model.metadata_props.add(key="author", value="someone else")  # another tool's key is kept
    path = tmp_path / "with-metadata.onnx"
    save_model(model, path, {"int8_top1_accuracy": 0.5, "preprocessing": {"pixel_scale": "unit", "mean": 0.0, "std": 1.0}})
    props = {prop.key: prop.value for prop in onnx.load(str(path)).metadata_props}
    assert props == {
        "author": "someone else",
        "tuning.int8_top1_accuracy": "0.5",
        "tuning.preprocessing.pixel_scale": "unit",
        "tuning.preprocessing.mean": "0",
        "tuning.preprocessing.std": "1",
    }
    reloaded = onnx.load(str(path))
    assert read_metadata(reloaded)["int8_top1_accuracy"] == "0.5"
    assert declared_preprocessing(reloaded) == {"pixel_scale": "unit", "mean": 0.0, "std": 1.0}
    assert declared_preprocessing(load_model(ROOT / "models" / "mnist-12.onnx")) is None


def test_a_model_made_for_other_input_is_named_on_one_line():
    from conftest import CONFIG

    from tuning.config.loading import load_config
    from tuning.files.onnx_io import preprocessing_warning

    config = load_config(CONFIG)
    unit_pixels = np.linspace(0.0, 1.0, 784, dtype=np.float32).reshape(1, 1, 28, 28)
    zoo = ROOT / "models" / "zoo-mnist-12-int8.onnx"
    # The zoo's int8 model records nothing, but quantizes its input in steps of 1.0: one step over [0, 1].
    warning = preprocessing_warning(load_model(zoo), zoo, config.preprocessing, unit_pixels)
    assert warning.startswith(f"warning: {zoo} records no preprocessing") and "steps of 1:" in warning
    assert "\n" not in warning
    assert preprocessing_warning(load_model(zoo), zoo, config.preprocessing, unit_pixels * 255) is None
    fp32 = ROOT / "models" / "mnist-12.onnx"  # no quantized input: nothing to say
    assert preprocessing_warning(load_model(fp32), fp32, config.preprocessing, unit_pixels) is None
