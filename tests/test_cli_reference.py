"""The flag vocabulary and the environment variables, against docs/cli.md (tuning/cli/flags.py).

docs/cli.md's list of every flag and variable is what scripts/cli_reference.py generates from the commands; every
``MNIST_TUNING_…`` name the docs mention is one an option reads; every variable has the effect of its flag; every
hidden alias parses as its flag and stays out of ``--help``. The end-to-end tests run the real gate and benchmark
for the names the UX review found ignored (``MNIST_TUNING_GATE_JUNIT``, ``_JSON``) and for the new vocabulary.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
from test_gate import make_report, write_json

from tuning.cli import options
from tuning.cli.flags import aliases, variables
from tuning.cli.main import cli
from tuning.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "mnist.yaml"


def _reference_script() -> Any:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _options() -> list[tuple[str, click.Option]]:
    return [
        (name, param)
        for name, command in cli.commands.items()
        for param in command.params
        if isinstance(param, click.Option)
    ]


def _read_variables() -> set[str]:
    return {variable for _, param in _options() for variable in variables(param)}


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No MNIST_TUNING_* of the caller; --verbose parsed here must not reach later tests' error printing."""
    for name in list(os.environ):
        if name.startswith("MNIST_TUNING_"):
            monkeypatch.delenv(name)
    requested = set(options._requested)
    yield monkeypatch
    options._requested.clear()
    options._requested.update(requested)


@pytest.mark.fast
def test_docs_list_every_flag_and_variable_as_the_code_declares_them() -> None:
    reference = _reference_script()
    documented = reference.documented_block((ROOT / "docs" / "cli.md").read_text(encoding="utf-8"))
    assert documented is not None, "docs/cli.md has no generated flag list"
    assert documented == reference.render(), "docs/cli.md is stale: run bash scripts/python.sh scripts/cli_reference.py"


@pytest.mark.fast
def test_every_variable_the_docs_name_is_read_by_the_code() -> None:
    read = _read_variables()
    # The two the UX review found documented yet ignored (the code read _JUNIT_PATH and _JSON_OUTPUT).
    assert {"MNIST_TUNING_GATE_JUNIT", "MNIST_TUNING_GATE_JSON", "MNIST_TUNING_BENCHMARK_JSON"} <= read
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for name in re.findall(r"\bMNIST_TUNING_[A-Z0-9_]*", doc.read_text(encoding="utf-8")):
            name = name.rstrip("_")  # MNIST_TUNING_<COMMAND>_…: a pattern, not a name
            if name != "MNIST_TUNING":
                assert name in read, f"{doc.name} names {name}, which no option reads"


@pytest.mark.fast
def test_every_flag_the_docs_name_is_accepted_by_a_command() -> None:
    accepted = {spelling for _, param in _options() for spelling in param.opts + param.secondary_opts}
    accepted |= {"--help", "--version"}
    # The docs about this CLI (README.md also quotes pip's flags, measurement.md other tools').
    for name in ("cli.md", "gate.md", "configuration.md", "pipeline.md", "report-schema.md"):
        text = (ROOT / "docs" / name).read_text(encoding="utf-8").replace("--flag=value", "").replace("--flag value", "")
        for flag in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", text):
            assert flag in accepted, f"docs/{name} names {flag}, which no command accepts"


@pytest.mark.fast
def test_every_option_has_a_variable_and_the_shared_ones_one_name_everywhere() -> None:
    shared = {"config_path": "CONFIG", "assignments": "SET", "model": "MODEL", "output_model": "OUTPUT_MODEL",
              "run_dir": "RUN_DIR", "dataset_location": "DATASET_LOCATION", "quiet": "QUIET", "verbose": "VERBOSE"}  # fmt: skip
    for command, param in _options():
        documented = variables(param)[0]
        if param.name in shared:
            assert documented == f"MNIST_TUNING_{shared[param.name]}", (command, param.name)
        else:
            flag = next(opt for opt in param.opts if opt.startswith("--") and opt not in aliases(param))
            assert documented == f"MNIST_TUNING_{command}_{flag[2:]}".replace("-", "_").upper(), (command, flag)


def _sample(param: click.Option, tmp_path: Path) -> list[str]:
    """Values for ``param`` unlike its default: as separate command-line values (several for a repeatable one)."""
    kind = param.type
    if param.is_flag:
        return []
    if isinstance(kind, options.UserPath):
        folder = tmp_path / "folder"
        folder.mkdir(exist_ok=True)
        file = tmp_path / "model.onnx"
        file.write_bytes(b"")
        return [str(folder if kind.kind == "folder" else file)]
    if param.multiple:
        return ["a.b=1", "c.d=x"]
    if isinstance(kind, click.Choice):
        return [next(choice for choice in reversed(kind.choices) if choice != param.default)]
    if isinstance(kind, click.types.FloatParamType):
        return ["0.5"]
    if isinstance(kind, click.types.IntParamType):
        return ["3"]
    return ["ab" * 32]


def _parsed(command: str, args: list[str]) -> click.Context:
    ctx = cli.commands[command].make_context(command, list(args), obj=options.CommandLine(tuple(args)))
    ctx.close()
    return ctx


def _value(ctx: click.Context, param: click.Option) -> Any:
    return ctx.params[param.name] if param.expose_value else ctx.meta[f"tuning.{param.name}"]


VARIABLES = [(command, param, variable) for command, param in _options() for variable in variables(param)]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("command", "param", "variable"), VARIABLES, ids=[f"{command}-{variable}" for command, _, variable in VARIABLES]
)
def test_each_variable_has_the_effect_of_its_flag(
    command: str, param: click.Option, variable: str, tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    values = _sample(param, tmp_path)
    flag = param.opts[0]
    by_flag = _parsed(command, [*(arg for value in values or [None] for arg in (flag, value) if arg is not None)])
    default = _value(_parsed(command, []), param)
    clean_environment.setenv(variable, " ".join(values) if values else "1")
    by_variable = _parsed(command, [])
    assert by_variable.get_parameter_source(param.name) is click.core.ParameterSource.ENVIRONMENT
    assert _value(by_variable, param) == _value(by_flag, param) != default


@pytest.mark.fast
def test_the_documented_variable_wins_over_an_earlier_name(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "new.xml").touch()
    clean_environment.setenv("MNIST_TUNING_GATE_JUNIT_PATH", str(tmp_path / "old.xml"))
    clean_environment.setenv("MNIST_TUNING_GATE_JUNIT", str(tmp_path / "new.xml"))
    assert _parsed("gate", []).params["junit_path"] == tmp_path / "new.xml"
    # The command line wins over both.
    assert _parsed("gate", ["--junit", str(tmp_path / "flag.xml")]).params["junit_path"] == tmp_path / "flag.xml"


ALIASES = [(command, param, alias) for command, param in _options() for alias in aliases(param)]


@pytest.mark.fast
@pytest.mark.parametrize(
    ("command", "param", "alias"), ALIASES, ids=[f"{command}{alias}" for command, _, alias in ALIASES]
)
def test_each_hidden_alias_parses_as_its_flag_and_stays_out_of_help(
    command: str, param: click.Option, alias: str, tmp_path: Path, clean_environment: pytest.MonkeyPatch
) -> None:
    values = _sample(param, tmp_path)
    assert _value(_parsed(command, [alias, *values]), param) == _value(_parsed(command, [param.opts[0], *values]), param)
    flags, _ = param.get_help_record(click.Context(cli.commands[command]))
    assert alias not in re.split(r"[ ,/=]+", flags) and param.opts[0] in flags


@pytest.mark.fast
def test_inc_example_flags_are_aliases_of_the_vocabulary() -> None:
    # run_tuning.sh and INC's READMEs pass these; the vocabulary flag they stand for is given.
    expected = {
        ("tune", "--input_model"): "--model", ("tune", "--output_model"): "--output-model",
        ("tune", "--dataset_location"): "--dataset-location", ("tune", "--quant_format"): "--quant-format",
        ("tune", "--batch_size"): "--batch-size", ("tune", "--input_sha256"): "--input-sha256",
        ("benchmark", "--input_model"): "--model", ("benchmark", "--batch_size"): "--batch-size",
        ("benchmark", "--dataset_location"): "--dataset-location", ("report", "--float-model"): "--model",
        ("report", "--int8-model"): "--output-model", ("report", "--out-dir"): "--report-dir",
    }  # fmt: skip
    found = {(command, alias): param.opts for command, param, alias in ALIASES}
    for (command, alias), flag in expected.items():
        assert flag in found[(command, alias)], (command, alias)
    assert {(command, param.opts[0]) for command, param in _options() if param.opts[0] == "-m"} == {
        ("tune", "-m"), ("benchmark", "-m"), ("report", "-m")
    }
    assert {command for command, param in _options() if param.opts[0] == "-o"} == {"tune", "report", "gate"}
    assert {command for command, param in _options() if param.opts[0] == "-c"} == set(cli.commands)


@pytest.mark.fast
def test_an_error_names_the_flag_spelling_typed(clean_environment: pytest.MonkeyPatch, tmp_path: Path) -> None:
    looped = tmp_path / "loop"
    looped.symlink_to(looped)
    for spelling in ("-m", "--model", "--input_model"):
        with pytest.raises(ConfigError) as caught:
            _parsed("tune", [spelling, str(looped)])
        assert str(caught.value) == f"{spelling}: {looped}: a loop of symbolic links"
    # click's own errors too, not every alias joined ('-m' / '--model' / '--input-model' / ...).
    for spelling in ("-m", "--float-model"):
        with pytest.raises(click.BadParameter) as caught:
            _parsed("report", [spelling, str(tmp_path)])
        assert caught.value.format_message() == f"Invalid value for '{spelling}': File {str(tmp_path)!r} is a directory."
    clean_environment.setenv("MNIST_TUNING_MODEL", str(tmp_path))
    with pytest.raises(click.BadParameter) as caught:
        _parsed("report", [])
    assert caught.value.format_message().startswith("Invalid value for 'MNIST_TUNING_MODEL': ")


@pytest.mark.fast
def test_report_and_gate_may_read_an_input_as_the_output_model() -> None:
    # .ci/run reports the zoo's int8 model (-o) while the shipped config lists it as a reference: tune would
    # overwrite an input there, report and gate only read it.
    zoo = ROOT / "models" / "zoo-mnist-12-int8.onnx"
    with pytest.raises(ConfigError, match="refusing to overwrite an input"):
        options.build_config(CONFIG, (), **{"output.model": zoo})
    config = options.build_config(CONFIG, (), writes_outputs=False, **{"output.model": zoo})
    assert config.output.model == zoo and config.output.dir == zoo.with_name("zoo-mnist-12-int8-run")


# --- end to end: the real commands --------------------------------------------------------------------------


def run(*args: str | Path, env: dict[str, str] | None = None, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MNIST_TUNING_") and k != "GITHUB_ACTIONS"}
    return subprocess.run(
        [sys.executable, "-m", "tuning", *map(str, args)],
        cwd=cwd,
        env={**clean, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_gate_junit_and_json_from_the_documented_variables(tmp_path: Path) -> None:
    report = write_json(tmp_path, make_report())
    junit = tmp_path / "ci" / "gate.xml"
    result = run("gate", report, env={"MNIST_TUNING_GATE_JUNIT": str(junit), "MNIST_TUNING_GATE_JSON": "1"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["passed"] is True
    assert ET.parse(junit).getroot().find("testsuite").get("tests") == "4"


def test_gate_finds_the_run_folder_from_the_output_model(tmp_path: Path) -> None:
    # tune -o my-int8.onnx writes its run into my-int8-run/; gate -o my-int8.onnx reads my-int8-run/report/.
    folder = tmp_path / "my-int8-run" / "report"
    folder.mkdir(parents=True)
    report = write_json(folder, make_report(int8_accuracy=0.9777))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    by_flag = run("gate", "-o", tmp_path / "my-int8.onnx", "--json", cwd=elsewhere)
    by_variable = run("gate", "--json", env={"MNIST_TUNING_OUTPUT_MODEL": str(tmp_path / "my-int8.onnx")}, cwd=elsewhere)
    by_run_dir = run("gate", "--json", env={"MNIST_TUNING_RUN_DIR": str(tmp_path / "my-int8-run")}, cwd=elsewhere)
    for result in (by_flag, by_variable, by_run_dir):
        assert result.returncode == 1, result.stderr  # a 2.23 % error fails the shipped config's 1.5 %
        assert json.loads(result.stdout)["report"] == str(report)


def test_report_then_gate_follow_the_output_model_to_its_run_folder(tmp_path: Path) -> None:
    int8 = tmp_path / "my-int8.onnx"
    int8.write_bytes((ROOT / "models" / "zoo-mnist-12-int8.onnx").read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    common = ("-c", CONFIG, "--dataset-location", ROOT / "data", "--set", "benchmark.runtimes=[onnxruntime]")
    result = run("report", "-o", int8, *common, "--skip-performance", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    written = json.loads((tmp_path / "my-int8-run" / "report" / "report.json").read_text())
    assert next(model for model in written["models"] if model["role"] == "int8")["path"] == str(int8)
    assert os.listdir(elsewhere) == []
    gate = run("gate", "-o", int8, "-c", CONFIG, "--json", cwd=elsewhere)
    assert gate.returncode == 1, gate.stderr  # the zoo's model on [0, 1] pixels fails the error check
    assert json.loads(gate.stdout)["report"] == str(tmp_path / "my-int8-run" / "report" / "report.json")


def test_benchmark_length_from_flags(tmp_path: Path) -> None:
    model = ROOT / "models" / "mnist-12.onnx"
    length = ("-n", "37", "-t", "0.01", "--rounds", "2", "--warmup", "3")
    result = run("benchmark", "-c", CONFIG, "-m", model, "--dataset-location", ROOT / "data", *length)
    assert result.returncode == 0, result.stderr
    conditions = result.stdout.splitlines()[-1]
    for phrase in ("2 session sets", "each >= 0.01 s", ">= 37 images", "after 3 warm-up images"):
        assert phrase in conditions, conditions
    by_variables = run("benchmark", "-c", CONFIG, "-m", model, "--dataset-location", ROOT / "data",
                       env={"MNIST_TUNING_BENCHMARK_ITERATIONS": "41", "MNIST_TUNING_BENCHMARK_ROUNDS": "1",
                            "MNIST_TUNING_BENCHMARK_MIN_TIME": "0", "MNIST_TUNING_BENCHMARK_WARMUP": "0"})  # fmt: skip
    assert by_variables.returncode == 0, by_variables.stderr
    assert "1 session set " in by_variables.stdout and ">= 41 images" in by_variables.stdout


def test_help_shows_the_vocabulary_and_examples_not_the_aliases() -> None:
    for command in ("tune", "benchmark", "report", "gate"):
        result = run(command, "--help")
        assert result.returncode == 0
        options_part = " ".join(result.stdout.split("Options:")[1].split())  # as one line: wrapping varies
        assert "Examples:" in result.stdout.split("Options:")[0], command
        for hidden in ("--input_model", "--output_model", "--float-model", "--int8-model", "--out-dir", "--batch_size"):
            assert hidden not in options_part, (command, hidden)
        assert "-c, --config" in options_part and "[env var: MNIST_TUNING_CONFIG]" in options_part


def test_tuning_env_profile_picks_the_environment_scripts_python_sets_up(tmp_path: Path) -> None:
    # docs/distributed.md: TUNING_ENV_PROFILE=distributed bash run_tuning.sh … sets up the distributed profile.
    # Without mpirun that profile stops before installing anything, naming the system step: proof it was chosen.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "dirname", "cat", "sha256sum", "cut"):
        real = next(Path(d) / name for d in os.environ["PATH"].split(":") if (Path(d) / name).is_file())
        (bin_dir / name).symlink_to(real)
    env = {key: value for key, value in os.environ.items() if key not in ("VIRTUAL_ENV", "TUNING_ENV_PROFILE")}
    env["PATH"] = str(bin_dir)
    script = str(ROOT / "scripts" / "python.sh")
    for profile, code, expected in (("distributed", 1, "needs Open MPI's mpirun"), ("nonsense", 2, "got 'nonsense'")):
        done = subprocess.run(["bash", script, "-c", "pass"], env={**env, "TUNING_ENV_PROFILE": profile},
                              capture_output=True, text=True, timeout=60)  # fmt: skip
        assert done.returncode == code and expected in done.stderr, done.stderr
    # Unset: the runtime profile, which the test environment already satisfies.
    done = subprocess.run(["bash", script, "-c", "print('ran')"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout == "ran\n", done.stderr
