"""The report command end to end: a freshly tuned int8 model, the vendored float and zoo models, real MNIST.

Every accuracy number is checked against an independent computation: the IDX files read
with gzip and numpy, plain onnxruntime sessions at the models' own batch size, counts by
numpy. report.json is validated against the JSON Schema in docs/report-schema.md.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from tuning.cli.main import main
from tuning.errors import InputError
from tuning.measure.paired import TURN_IMAGES
from tuning.report.numbers import Role, model_entries

ROOT = Path(__file__).resolve().parent.parent
FP32 = ROOT / "models" / "mnist-12.onnx"
ZOO_INT8 = ROOT / "models" / "zoo-mnist-12-int8.onnx"
SCHEMA_DOC = ROOT / "docs" / "report-schema.md"
SETTINGS = [
    "--config", str(ROOT / "configs" / "mnist.yaml"),
    "--set", f"dataset.root={ROOT / 'data'}",
    "--set", "benchmark.warmup=5",
    "--set", "benchmark.iterations=50",
    "--set", "benchmark.min_time_s=0",
    "--set", "benchmark.rounds=2",
    "--set", "benchmark.batch_sizes=[1, 8]",
    "--set", "benchmark.runtimes=[onnxruntime]",  # OpenVINO beside it: tests/test_openvino.py
]


# --- independent truth -------------------------------------------------------------------------


def _idx(name: str, offset: int) -> np.ndarray:
    with gzip.open(ROOT / "data" / "MNIST" / "raw" / name) as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=offset)


@pytest.fixture(scope="module")
def truth() -> dict[str, Any]:
    pixels = _idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28).astype(np.float32)
    return {"labels": _idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64), "unit": pixels / 255.0, "raw": pixels}


def _predictions(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.array([session.run(None, {name: images[i : i + 1]})[0].argmax() for i in range(len(images))])


def _confusion(labels: np.ndarray, predictions: np.ndarray) -> np.ndarray:
    matrix = np.zeros((10, 10), dtype=np.int64)
    np.add.at(matrix, (labels, predictions), 1)
    return matrix


# --- the runs ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tuned_int8(default_run) -> Path:
    """The shipped config's tuning run (objective latency), shared with the tests that check the run itself."""
    config, _ = default_run
    return config.output.model


@pytest.fixture(scope="module")
def tuned_run_dir(default_run) -> Path:
    """That run's output.dir, holding its tuning_summary.json."""
    config, _ = default_run
    return config.output.dir


@pytest.fixture(scope="module")
def full(tuned_int8: Path, tuned_run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("report")
    main(["report", *SETTINGS, "--set", f"output.dir={tuned_run_dir}", "--float-model", str(FP32),
          "--int8-model", str(tuned_int8), "--reference", str(ZOO_INT8), "--out-dir", str(out)])
    return {"dir": out, "json": json.loads((out / "report.json").read_text()), "md": (out / "report.md").read_text()}


@pytest.fixture(scope="module")
def accuracy_only(zoo_accuracy_report: Path) -> dict[str, Any]:
    # The zoo's int8 model reported from the tuned run's output.dir: its tuning_summary.json is another model's.
    out = zoo_accuracy_report
    return {"dir": out, "json": json.loads((out / "report.json").read_text()), "md": (out / "report.md").read_text()}


def _model(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(model for model in report["models"] if model["name"] == name)


# --- the documented schema ---------------------------------------------------------------------


def _documented_schema() -> dict[str, Any]:
    text = SCHEMA_DOC.read_text()
    block = re.search(r"## JSON Schema.*?```json\n(.*?)```", text, re.DOTALL)
    assert block, f"{SCHEMA_DOC} has no JSON Schema block"
    return json.loads(block.group(1))


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _validate(value: Any, schema: dict[str, Any], root: dict[str, Any], where: str = "$") -> None:
    """The subset of JSON Schema the documented schema uses; fails naming the JSON path."""
    if "$ref" in schema:
        node: Any = root
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        return _validate(value, node, root, where)
    types = schema.get("type")
    if types is not None:
        types = [types] if isinstance(types, str) else types
        assert any(_TYPES[t](value) for t in types), f"{where}: expected {types}, got {value!r:.60}"
    if "const" in schema:
        assert value == schema["const"], f"{where}: expected {schema['const']!r}, got {value!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{where}: expected one of {schema['enum']}, got {value!r}"
    if _TYPES["number"](value):
        assert value >= schema.get("minimum", value), f"{where}: {value} < minimum"
        assert value <= schema.get("maximum", value), f"{where}: {value} > maximum"
        if "exclusiveMinimum" in schema:
            assert value > schema["exclusiveMinimum"], f"{where}: {value} not above the minimum"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{where}: missing key {key!r}"
        for key, item in value.items():
            if key in schema.get("properties", {}):
                _validate(item, schema["properties"][key], root, f"{where}.{key}")
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(item, schema["additionalProperties"], root, f"{where}.{key}")
    if isinstance(value, list):
        assert len(value) >= schema.get("minItems", 0), f"{where}: fewer than {schema['minItems']} items"
        for index, item in enumerate(value):
            if "items" in schema:
                _validate(item, schema["items"], root, f"{where}[{index}]")


@pytest.mark.parametrize("run", ["full", "accuracy_only"])
def test_report_json_follows_the_documented_schema(run: str, request: pytest.FixtureRequest) -> None:
    report = request.getfixturevalue(run)["json"]
    schema = _documented_schema()
    _validate(report, schema, schema)
    roles = Counter(model["role"] for model in report["models"])
    assert roles["float"] == 1 and roles["int8"] == 1


def test_the_validator_catches_a_broken_report(full: dict[str, Any]) -> None:
    schema = _documented_schema()
    broken = json.loads(json.dumps(full["json"]))
    broken["models"][1]["accuracy"]["top1_accuracy"] = "98.9 %"
    with pytest.raises(AssertionError, match=r"\$\.models\[1\]\.accuracy\.top1_accuracy"):
        _validate(broken, schema, schema)
    del broken["ratios_vs_float"]
    with pytest.raises(AssertionError, match="missing key 'ratios_vs_float'"):
        _validate(broken, schema, schema)


# --- accuracy against the independent computation ----------------------------------------------


def test_accuracy_and_confusion_match_an_independent_computation(
    full: dict[str, Any], tuned_int8: Path, truth: dict[str, Any]
) -> None:
    labels = truth["labels"]
    float_predictions = _predictions(FP32, truth["unit"])
    for name, path in (("fp32", FP32), ("int8", tuned_int8), ("zoo-int8", ZOO_INT8)):
        accuracy = _model(full["json"], name)["accuracy"]
        predictions = float_predictions if name == "fp32" else _predictions(path, truth["unit"])
        confusion = _confusion(labels, predictions)
        assert accuracy["pixel_scale"] == "unit"
        assert accuracy["images"] == len(labels) == full["json"]["evaluation"]["images"] == 10000
        assert np.array_equal(np.array(accuracy["confusion_matrix"]), confusion), name
        assert accuracy["top1_accuracy"] == pytest.approx(np.mean(predictions == labels), abs=1e-12)
        assert accuracy["top1_error"] == pytest.approx(1 - np.mean(predictions == labels), abs=1e-12)
        per_class = [np.mean(predictions[labels == k] == k) for k in range(10)]
        assert accuracy["per_class_accuracy"] == pytest.approx(per_class, abs=1e-12)
        differ = predictions != float_predictions
        assert accuracy["flips"] == int(differ.sum())
        assert accuracy["agreement_with_float"] == pytest.approx(1 - differ.mean(), abs=1e-12)
        assert accuracy["flips_to_wrong"] == int((differ & (float_predictions == labels)).sum())
        assert accuracy["flips_to_correct"] == int((differ & (predictions == labels)).sum())
    assert _model(full["json"], "fp32")["accuracy"]["flips"] == 0


def test_the_zoo_int8_preprocessing_trap_is_visible(full: dict[str, Any], truth: dict[str, Any]) -> None:
    zoo = _model(full["json"], "zoo-int8")
    assert zoo["accuracy"]["top1_accuracy"] < 0.6
    assert zoo["accuracy_other_scale"]["pixel_scale"] == "raw"
    assert zoo["accuracy_other_scale"]["top1_accuracy"] > 0.98
    raw_predictions = _predictions(ZOO_INT8, truth["raw"])
    raw_error = 100 * (1 - np.mean(raw_predictions == truth["labels"]))
    unit_error = 100 * (1 - np.mean(_predictions(ZOO_INT8, truth["unit"]) == truth["labels"]))
    assert zoo["accuracy_other_scale"]["top1_accuracy"] == pytest.approx(1 - raw_error / 100)
    assert f"⚠ **zoo-int8** has {unit_error:.2f} % error with unit pixels but {raw_error:.2f} % with raw" in full["md"]


# Read off the two vendored graphs (netron or onnx.helper.printable_graph), not computed by tuning/graph/nodes.py.
FP32_OP_TYPES = {"Add": 3, "Conv": 2, "MatMul": 1, "MaxPool": 2, "Relu": 2, "Reshape": 2}
ZOO_INT8_OP_TYPES = {
    "DequantizeLinear": 2, "MaxPool": 2, "QLinearAdd": 1, "QLinearConv": 2, "QLinearMatMul": 1, "QuantizeLinear": 2,
    "Reshape": 1,
}
ZOO_INT8_NODES = {  # int8: QLinear ops and the MaxPool between the two QLinearConvs; Quantize/Dequantize convert
    "int8": ["Convolution28_quant", "Pooling66_quant", "Convolution110_quant", "gemm_MatMul_quant", "gemm_Add_quant"],
    "fp32": ["Pooling160", "Times212_reshape0"],
}


def test_files_sizes_and_ops(full: dict[str, Any], tuned_int8: Path) -> None:
    for name, path in (("fp32", FP32), ("int8", tuned_int8), ("zoo-int8", ZOO_INT8)):
        model = _model(full["json"], name)
        assert model["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert model["size_bytes"] == len(path.read_bytes())
    fp32, int8, zoo = (_model(full["json"], name) for name in ("fp32", "int8", "zoo-int8"))
    assert fp32["op_types"] == FP32_OP_TYPES and zoo["op_types"] == ZOO_INT8_OP_TYPES
    assert fp32["precisions"]["int8"] == [] and len(fp32["precisions"]["fp32"]) == sum(FP32_OP_TYPES.values())
    assert {kind: zoo["precisions"][kind] for kind in ZOO_INT8_NODES} == ZOO_INT8_NODES
    # The tuned model: every node is listed once, its QLinear ops as int8, its Quantize/Dequantize ops in neither list.
    graph = onnx.load(str(tuned_int8)).graph
    assert int8["op_types"] == dict(sorted(Counter(node.op_type for node in graph.node).items()))
    listed = int8["precisions"]["int8"] + int8["precisions"]["fp32"] + int8["precisions"]["convert"]
    assert sorted(listed) == sorted(node.name for node in graph.node)
    qlinear = {node.name for node in graph.node if node.op_type.startswith("QLinear")}
    converts = {node.name for node in graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")}
    assert qlinear <= set(int8["precisions"]["int8"]) and converts == set(int8["precisions"]["convert"])
    chosen = next(trial for trial in full["json"]["tuning"]["candidates"] if trial["chosen"])
    assert int8["precisions"]["int8"] == chosen["int8_nodes"] and chosen["int8_nodes"]
    assert int8["declared_preprocessing"] == {"pixel_scale": "unit", "mean": 0.0, "std": 1.0}
    assert [m["role"] for m in full["json"]["models"]] == ["float", "int8", "reference"]


# --- performance -------------------------------------------------------------------------------


def test_performance_numbers_and_ratios_are_consistent(full: dict[str, Any]) -> None:
    report = full["json"]
    assert report["benchmark"]["batch_sizes"] == [1, 8]
    assert report["benchmark"]["session_options"]["intra_op_num_threads"] == 1
    assert report["benchmark"]["session_options"]["config_entries"] == {}
    for name in ("int8", "zoo-int8"):
        model = _model(report, name)["runtimes"]["onnxruntime"]
        latency = model["latency_ms"]
        # 2 session sets; at batch 1 a turn is a block of TURN_IMAGES calls, so 50 images take one turn per set.
        assert latency["batch_size"] == 1 and latency["samples"] == 2 * TURN_IMAGES and latency["warmup"] == 5
        assert latency["p50"] <= latency["p90"] <= latency["p99"]
        assert [point["batch_size"] for point in model["throughput"]] == [1, 8]
        ratios = report["ratios_vs_float"]["onnxruntime"][name]
        # A ratio (time int8/fp32) is the median of the session sets' paired ratios, inside its interval.
        rounds = ratios["latency_p50_rounds"]
        assert ratios["latency_p50"] == rounds["value"] and rounds["min"] <= rounds["value"] <= rounds["max"]
        assert latency["p50_rounds"]["min"] <= latency["p50"] <= latency["p50_rounds"]["max"]
        for point in model["throughput"]:
            assert point["images_per_s"] == pytest.approx(point["batch_size"] * 1000 / point["batch_p50_ms"])
            spread = ratios["throughput_rounds"][str(point["batch_size"])]
            assert ratios["throughput"][str(point["batch_size"])] == spread["value"]
            assert spread["min"] <= spread["value"] <= spread["max"]  # images/s int8/fp32
            per_model = point["images_per_s_rounds"]
            assert per_model["min"] <= point["images_per_s"] <= per_model["max"]
    assert "fp32" not in report["ratios_vs_float"]["onnxruntime"]
    # One runtime: against the float model on onnxruntime is against the float model on the same runtime.
    assert report["ratios_vs_onnxruntime_float"]["onnxruntime"] == report["ratios_vs_float"]["onnxruntime"]


def test_tuning_candidates_of_the_int8_model_are_listed(full: dict[str, Any], tuned_run_dir: Path) -> None:
    summary = json.loads((tuned_run_dir / "tuning_summary.json").read_text())
    tuning = full["json"]["tuning"]
    assert tuning["objective"] == "latency" and tuning["chosen_trial"] == summary["chosen_trial"]
    assert [c["index"] for c in tuning["candidates"]] == [t["index"] for t in summary["trials"]] == list(range(len(summary["trials"])))
    for candidate, trial in zip(tuning["candidates"], summary["trials"]):
        assert candidate["accuracy"] == trial["accuracy"] and candidate["latency_ratio"] == trial["latency_ratio"]
    section = full["md"][full["md"].index("## Tuning candidates") :].split("\n## ")[0]
    rows = [line for line in section.splitlines() if re.match(r"\| \d+ \|", line)]
    assert len(rows) == len(summary["trials"]) and sum("**yes**" in row for row in rows) == 1
    assert f"Chosen: trial {tuning['chosen_trial']}: {tuning['reason']}." in section


def test_a_summary_of_another_model_is_not_listed(
    accuracy_only: dict[str, Any], tuned_int8: Path, tuned_run_dir: Path
) -> None:
    # accuracy_only reports the zoo's int8 model from the output.dir of a tuning run that made another model.
    summary = json.loads((tuned_run_dir / "tuning_summary.json").read_text())
    assert summary["trials"] and summary["output_sha256"] == hashlib.sha256(tuned_int8.read_bytes()).hexdigest()
    assert summary["output_sha256"] != hashlib.sha256(ZOO_INT8.read_bytes()).hexdigest()
    assert "tuning" not in accuracy_only["json"]
    section = accuracy_only["md"][accuracy_only["md"].index("## Tuning candidates") :].split("\n## ")[0]
    assert "describes another model" in section and str(tuned_run_dir / "tuning_summary.json") in section
    assert not re.search(r"\| \d+ \|", section)  # no candidate rows


def test_skip_performance_leaves_nulls(accuracy_only: dict[str, Any]) -> None:
    report = accuracy_only["json"]
    assert report["benchmark"]["performance_measured"] is False
    assert [m["name"] for m in report["models"]] == ["fp32", "int8"]
    for model in report["models"]:
        on = model["runtimes"]["onnxruntime"]
        assert on["latency_ms"] is None and on["throughput"] is None
        # Accuracy is still reported per runtime: onnxruntime's is the model's own.
        assert on["accuracy"]["top1_accuracy"] == model["accuracy"]["top1_accuracy"]
        assert on["accuracy"]["differing_from_onnxruntime"] == 0
    assert report["ratios_vs_float"] == {} and report["ratios_vs_onnxruntime_float"] == {}
    assert sorted(path.name for path in accuracy_only["dir"].iterdir()) == [
        "confusion-int8.png", "flips-int8.png", "report.html", "report.json", "report.md"
    ]
    assert "Performance was not measured" in accuracy_only["md"]


# --- report.md and the plots -------------------------------------------------------------------


def test_markdown_starts_with_the_summary_and_links_existing_plots(full: dict[str, Any]) -> None:
    md, report = full["md"], full["json"]
    first_table = md[md.index("## Summary") :].split("\n\n")[1].splitlines()
    assert first_table[0].startswith("| model | top-1 error (unit pixels) | top-1 error at raw pixels | agreement")
    assert [row.split(" | ")[0] for row in first_table[2:]] == ["| fp32", "| int8", "| zoo-int8 (reference)"]
    zoo = _model(report, "zoo-int8")["accuracy"]
    assert f"| {100 * zoo['top1_error']:.2f} % |" in first_table[4]
    assert f"/ {zoo['flips']:,} |" in first_table[4]
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    flips_plot = ["flips-int8.png"] if report["flipped_images"]["images"] else []
    assert sorted(links) == sorted(["confusion-int8.png", "latency.png", "speedup.png", "throughput.png", *flips_plot])
    for link in links:
        png = (full["dir"] / link).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    for heading in ("## Ratios against fp32", "## Conditions", "## Per-class top-1 error", "## Flips", "## Operators"):
        assert heading in md
    # One word for one thing: the prose and tables speak of error, never of accuracy percentages.
    assert not re.search(r"(?i)(top-1|per-class) accuracy|accuracy %", md)
    # Plain numbers: thousands separated (4,092.5 µs, 12,468 img/s), never 4092.5 or 1e+04.
    assert not re.search(r"(?<![\d,.])\d{4,}(\.\d+)? (µs|img/s|B)\b", md)
    assert not re.search(r"\de[+-]\d", md)
    for model in report["models"]:
        assert f"`{model['sha256']}`" in md  # full hashes in the table


def test_flipped_images_match_an_independent_computation(accuracy_only: dict[str, Any], truth: dict[str, Any]) -> None:
    flipped = accuracy_only["json"]["flipped_images"]
    labels = truth["labels"]
    float_predictions, int8_predictions = (_predictions(path, truth["unit"]) for path in (FP32, ZOO_INT8))
    expected = {
        int(i): (int(labels[i]), int(float_predictions[i]), int(int8_predictions[i]))
        for i in np.flatnonzero(float_predictions != int8_predictions)
    }
    listed = {f["index"]: (f["label"], f["float_prediction"], f["int8_prediction"]) for f in flipped["images"]}
    assert (flipped["model"], flipped["pixel_scale"]) == ("int8", "unit")
    assert listed == expected and len(flipped["images"]) == len(expected) > 4000
    # Those quantization cost (fp32 right, int8 wrong) come first, each group in file order.
    groups = [0 if f["float_prediction"] == f["label"] else 1 if f["int8_prediction"] == f["label"] else 2
              for f in flipped["images"]]
    assert groups == sorted(groups)
    section = accuracy_only["md"][accuracy_only["md"].index("## Flips") :]
    assert f"{groups.count(0):,} that fp32 classifies correctly and int8 wrongly" in section


# --- naming and errors -------------------------------------------------------------------------


def test_model_entries_names_and_roles() -> None:
    entries = model_entries(FP32, Path("int8.onnx"), [ZOO_INT8, f"mine={ZOO_INT8}", ZOO_INT8])
    assert [(e.name, e.role) for e in entries] == [
        ("fp32", Role.FLOAT), ("int8", Role.INT8), ("zoo-int8", Role.REFERENCE),
        ("mine", Role.REFERENCE), ("zoo-int8-2", Role.REFERENCE),
    ]
    assert entries[3].path == ZOO_INT8


def test_missing_int8_model_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "none.onnx"
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *SETTINGS, "--float-model", str(FP32), "--int8-model", str(missing),
              "--out-dir", str(tmp_path / "out")])
    assert exit_info.value.code == InputError.exit_code
    err = capsys.readouterr().err
    assert err.startswith(f"error: {missing}: int8 model not found") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


# --- report.html in a real browser -------------------------------------------------------------

CHROMIUM = shutil.which("chromium")


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    # The flags of a headless run on a machine without a network or a display (no sync, no updates).
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}"]  # fmt: skip
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: bash scripts/setup_system.sh installs it (root or sudo)")
def test_html_report_renders_in_chromium_with_the_key_numbers(full: dict[str, Any], tmp_path: Path) -> None:
    page, report = full["dir"] / "report.html", full["json"]
    dom = _chromium("--dump-dom", page.as_uri(), profile=tmp_path / "dom").stdout
    text = html.unescape(re.sub(r"<[^>]+>", " ", dom))
    largest = str(max(report["benchmark"]["batch_sizes"]))
    for model in report["models"]:
        assert f"{100 * model['accuracy']['top1_error']:.2f} %" in text, model["name"]
        assert model["sha256"] in text
        throughput = model["runtimes"]["onnxruntime"]["throughput"]
        images_per_s = next(t for t in throughput if str(t["batch_size"]) == largest)["images_per_s"]
        assert f"{images_per_s:,.0f} img/s" in text
    int8 = _model(report, "int8")["accuracy"]
    assert f"{int8['flips']:,} of {int8['images']:,} test images" in text or int8["flips"] == 0
    # Every plot is inside the page: no file beside it is needed.
    embedded = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,', dom)
    assert len(embedded) == len(list(full["dir"].glob("*.png"))) >= 3
    assert len(re.findall(r"<table>", dom)) >= 6

    screenshot = tmp_path / "report.png"
    size = "--window-size=1280,3200"
    result = _chromium(f"--screenshot={screenshot}", size, page.as_uri(), profile=tmp_path / "shot")
    assert screenshot.is_file(), result.stderr[-2000:]
    pixels = matplotlib.image.imread(screenshot)[..., :3]
    assert pixels.shape[:2] == (3200, 1280)
    # The tables are black on white; the plots' coloured lines show the embedded images were drawn.
    colourful = np.ptp(pixels, axis=2) > 0.3
    assert colourful.sum() > 2000
