"""Start-up and exit: the CLI imports neither INC nor torch until a command needs them, INC comes without torch,
and the quick exit is still a Python exit.

Each check runs in a fresh interpreter (this test process has imported everything long ago) and reads
``sys.modules`` there; none of them is timed.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import onnx
from conftest import ROOT

from tuning.inc.loading import DEFERRED, PLACEHOLDERS

HEAVY = ("torch", "torchvision", "neural_compressor", "sklearn", "neural_compressor.metric.bleu")


def imported_after(code: str, cwd: Path = ROOT) -> list[str]:
    """Which of HEAVY a fresh interpreter has imported after running ``code``."""
    report = f"\nimport json, sys\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code + report], cwd=cwd, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_help_and_the_pipeline_module_import_neither_inc_nor_torch() -> None:
    code = (
        "from tuning.cli.main import main\n"
        "for argv in (['--help'], ['tune', '--help'], ['benchmark', '--help']):\n"
        "    assert main(argv) is None\n"
        "import tuning.pipeline\n"
    )
    assert imported_after(code) == []


def test_inc_is_imported_without_torch_and_its_placeholders_are_gone() -> None:
    code = (
        "import sys\n"
        "from tuning.inc.loading import DEFERRED, PLACEHOLDERS, import_inc\n"
        "import_inc()\n"
        "assert not set(PLACEHOLDERS) & set(sys.modules), 'a placeholder outlived the import'\n"
        "from neural_compressor.model.model import MODELS\n"
        "from neural_compressor.model.onnx_model import ONNXModel\n"
        "assert MODELS['onnxrt_qdq'] is ONNXModel and MODELS['pytorch'] is None\n"
    )
    assert imported_after(code) == ["neural_compressor"]


def test_inc_s_deferred_names_import_the_real_ones_at_their_first_call() -> None:
    code = (
        "import sys\n"
        "from tuning.inc.loading import import_inc\n"
        "import_inc()\n"
        "assert not {'sklearn', 'scipy', 'pandas'} & set(sys.modules)\n"
        "from neural_compressor.metric.metric import accuracy_score\n"
        "assert accuracy_score([1, 0, 2, 2], [1, 1, 2, 0], normalize=False) == 2\n"
    )
    assert imported_after(code) == ["neural_compressor", "sklearn"]


def test_inc_reads_the_cpu_features_it_reads_with_py_cpuinfo_s_probe() -> None:
    """INC's CpuInfo asks py-cpuinfo for the architecture only; VNNI and bf16 come from its own CPUID."""
    code = (
        "import json, cpuinfo\n"
        "from tuning.inc.loading import import_inc\n"
        "import_inc()\n"
        "from neural_compressor.utils.utility import CpuInfo\n"
        "probe = cpuinfo.get_cpu_info()\n"  # the real probe, restored after the import
        "print(json.dumps([CpuInfo()._info.get('arch'), probe.get('arch'), CpuInfo().vnni, CpuInfo().bf16]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ours, probed, vnni, bf16 = json.loads(result.stdout.splitlines()[-1])
    assert ours == probed and ours  # e.g. X86_64
    flags = set(Path("/proc/cpuinfo").read_text().split("flags")[1].splitlines()[0].split()) if Path("/proc/cpuinfo").exists() else None
    if flags is not None and ours.startswith("X86"):
        assert vnni == bool({"avx512_vnni"} & flags) and bf16 == bool({"avx512_bf16"} & flags)


def test_each_placeholder_stands_for_a_module_of_the_installed_inc_defining_its_names() -> None:
    for name, attributes in PLACEHOLDERS.items():
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin, name  # read, not imported: the torch model wrapper imports torch
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
        assert set(attributes) <= defined, (name, sorted(set(attributes) - defined))
    for name, names in DEFERRED.items():
        module = importlib.import_module(name)
        assert all(callable(getattr(module, attribute)) for attribute in names), name


def test_a_tuning_run_quantizes_without_importing_torch(tmp_path: Path) -> None:
    output = tmp_path / "int8.onnx"
    argv = [
        "tune", f"--config={ROOT / 'configs' / 'mnist.yaml'}", f"--input_model={ROOT / 'models' / 'mnist-12.onnx'}",
        f"--output_model={output}", "--set", "tuning.objective=accuracy", "--set", "tuning.max_trials=1",
        "--set", "tuning.accuracy_criterion.tolerance=0.5", "--set", "calibration.sampling_size=32",
        "--set", f"output.dir={tmp_path / 'run'}",
    ]  # fmt: skip
    code = f"from tuning.cli.main import main\nassert main({argv!r}) is None\n"
    assert imported_after(code, cwd=tmp_path) == ["neural_compressor"]
    # INC's tuning state is still written, renamed into place (without an fsync), and reads back.
    snapshot = tmp_path / "run" / "nc_workspace" / "history.snapshot"
    assert snapshot.stat().st_size > 0 and not list(snapshot.parent.glob("*.tmp"))
    op_types = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= op_types


def test_inc_reads_its_onnxruntime_capabilities_as_the_pure_python_parser_does() -> None:
    import yaml

    from tuning.inc.loading import import_inc, safe_load_c

    import_inc()
    onnxrt = sys.modules["neural_compressor.adaptor.onnxrt"]
    assert onnxrt.yaml.safe_load is safe_load_c  # what the adaptor calls in every fit()
    capabilities = Path(onnxrt.__file__).with_name("onnxrt.yaml").read_text(encoding="utf-8")
    parsed = safe_load_c(capabilities)
    assert parsed == yaml.safe_load(capabilities) and len(parsed) > 1


def test_the_quick_exit_still_runs_atexit_handlers_and_keeps_the_exit_code() -> None:
    """exit_flushed freezes the objects alive at exit out of the last collections; it must not skip Python's exit."""
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('atexit handler ran', flush=True))\n"
        "sys.argv = ['mnist-tuning', 'tune', '--no-such-flag']\n"
        "from tuning.cli import run\n"
        "run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stdout.splitlines()[-1] == "atexit handler ran"
    assert result.stderr.startswith("error: No such option '--no-such-flag'")
