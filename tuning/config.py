"""The YAML config: one schema, every option typed and validated, its default here.

``load_config`` reads a YAML file, applies ``key.path=value`` overrides from the command
line, and returns a frozen :class:`PipelineConfig`. Every problem becomes one
:class:`~tuning.errors.ConfigError` line naming the file and the key path.

Paths: a relative path written in the config file (or a schema default it leaves out) is resolved
against the config file's folder, so a config works from any current folder; a path given on the
command line (an override) stays relative to the current folder, as users expect. The schema's
defaults fit any classifier; what only fits mnist-12 lives in configs/mnist.yaml (:data:`SHIPPED_CONFIG`).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import reprlib
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tuning.errors import ConfigError

Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def _int_range(low: int, high: int) -> Any:
    """An integer in [low, high]: every count has an upper bound, so no setting can ask for endless work."""
    return Annotated[StrictInt, Field(ge=low, le=high)]


def _float_range(low: float, high: float) -> Any:
    return Annotated[float, Field(ge=low, le=high)]


# numpy's legacy seeding, which INC calls with tuning.seed, takes 0 .. 2**32 - 1.
Seed = _int_range(0, 2**32 - 1)
Count = _int_range(1, 10_000_000)  # iterations, sampling sizes: images, not bytes
BatchSize = _int_range(1, 1_000_000)
# Longest tuning.timeout_s: a week. INC hands the value to a threading.Timer, which fails (in its own thread,
# dropping the limit) above threading.TIMEOUT_MAX, about 292 years.
MAX_TIMEOUT_S = 7 * 24 * 3600
# YAML bounds: a config is a few kB; these stop a hostile file long before memory or time run out.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_YAML_DEPTH = 32  # nesting of mappings and lists
MAX_YAML_NODES = 100_000  # values after expanding aliases (a 500-byte "billion laughs" expands to 10**9)


class PixelScale(str, Enum):
    """How raw 0..255 pixels are scaled before mean/std normalisation."""

    UNIT = "unit"  # pixels / 255, in [0, 1] (the zoo card's preprocessing)
    RAW = "raw"  # pixels as they are, 0..255

    @property
    def factor(self) -> float:
        return 1.0 / 255.0 if self is PixelScale.UNIT else 1.0


class Split(str, Enum):
    TRAIN = "train"
    TEST = "test"


class Approach(str, Enum):
    STATIC = "static"
    DYNAMIC = "dynamic"


class QuantFormat(str, Enum):
    QOPERATOR = "QOperator"
    QDQ = "QDQ"


class CalibrationAlgorithm(str, Enum):
    """INC's activation calibration algorithms for the onnxruntime backend."""

    MINMAX = "minmax"
    KL = "kl"
    PERCENTILE = "percentile"


class Strategy(str, Enum):
    """INC tuning strategies. ``auto`` is INC's default (quant_level auto); the others set quant_level 1."""

    AUTO = "auto"
    BASIC = "basic"
    CONSERVATIVE = "conservative"
    BAYESIAN = "bayesian"
    EXHAUSTIVE = "exhaustive"
    MSE = "mse"
    RANDOM = "random"


class Objective(str, Enum):
    """What tuning optimises once the accuracy criterion is met."""

    ACCURACY = "accuracy"  # INC's behaviour: its strategy stops at the first candidate meeting the criterion
    LATENCY = "latency"  # try a candidate grid, keep the fastest one meeting the criterion (tuning/latency_search.py)


class SlowerThanFp32(str, Enum):
    """Objective latency, when no passing int8 candidate is faster than the fp32 model."""

    WARN = "warn"  # write the fastest passing int8 model, with a warning line in the output and the summary
    FAIL = "fail"  # write nothing and exit with code 6


class Runtime(str, Enum):
    """Where a model is run and timed (tuning/runtimes.py). OpenVINO needs the optional extra ``openvino``.

    ``openvino`` compiles with OpenVINO's own defaults, whose inference precision depends on the CPU
    (bf16 where it has bf16 instructions): the precision it picked is read back and printed beside
    every number. ``openvino-f32`` and ``openvino-bf16`` set the precision hint explicitly.
    """

    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    OPENVINO_F32 = "openvino-f32"
    OPENVINO_BF16 = "openvino-bf16"


class CriterionKind(str, Enum):
    RELATIVE = "relative"  # tolerated loss as a fraction of the fp32 accuracy
    ABSOLUTE = "absolute"  # tolerated loss in accuracy (0.001 = 0.1 percentage point)


class _Section(BaseModel):
    # allow_inf_nan=False: .nan and .inf are refused for every float key (a NaN mean makes every image NaN).
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, allow_inf_nan=False)


# The config used when none is given: found beside the package, wherever the command runs.
SHIPPED_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "mnist.yaml"
# Keys holding paths, resolved against the config file's folder when written there.
PATH_KEYS = ("model.path", "dataset.root", "output.model", "output.dir", "benchmark.reference_models", "gates.baseline")


class ModelSection(_Section):
    # The float model; None: given on the command line (--input_model). url and sha256 describe this file:
    # an override of path to another file drops them unless they are overridden too (load_config).
    path: Path | None = None
    url: str | None = None  # where `fetch` downloads path from when it is missing; None: never download
    sha256: Sha256 | None = None  # checked before every use; None: the file is used unverified
    # Upper bound on the model file plus its external data, checked before reading, so a wrong or
    # hostile path cannot exhaust memory; mnist-12 is 26 KB, so 256 MiB leaves room for real classifiers.
    max_bytes: _int_range(1, 2**40) = 256 * 1024 * 1024
    # Wall-clock limit of a whole download, retries included; a server sending one byte a second is cut off.
    download_timeout_s: _int_range(1, 24 * 3600) = 600


class DatasetSection(_Section):
    name: str = "MNIST"  # a torchvision.datasets class reading 28x28 IDX files (MNIST, FashionMNIST, KMNIST)
    root: Path = Path("data")
    pixel_scale: PixelScale = PixelScale.UNIT
    # Bounds keep (pixel - mean) / std finite in float32 for every pixel scale.
    mean: _float_range(-1e6, 1e6) = 0.0
    std: _float_range(1e-6, 1e6) = 1.0


class CalibrationSection(_Section):
    split: Split = Split.TRAIN
    sampling_size: Count = 100
    batch_size: BatchSize = 1
    seed: Seed = 0


class EvaluationSection(_Section):
    split: Split = Split.TEST
    batch_size: BatchSize = 100  # the fp32 model and the candidates are scored on batch-capable copies


class QuantizationSection(_Section):
    approach: Approach = Approach.STATIC
    format: QuantFormat = QuantFormat.QOPERATOR
    calibration_algorithm: CalibrationAlgorithm = CalibrationAlgorithm.MINMAX
    fp32_op_types: tuple[str, ...] = ()
    fp32_op_names: tuple[str, ...] = ()


class AccuracyCriterionSection(_Section):
    kind: CriterionKind = CriterionKind.RELATIVE
    tolerance: Annotated[float, Field(ge=0, lt=1)] = 0.01


class _TimingSection(_Section):
    """How long models are timed (tuning/benchmark.py): every model runs interleaved with the others, in
    ``rounds`` rounds; in each round and at each batch size a model runs ``warmup`` untimed images, then
    timed batches until it has run at least ``iterations`` images *and* ``min_time_s`` seconds (like
    OpenVINO's benchmark_app ``-t``), so a fast model is not judged on a few milliseconds. Every figure is
    reported with the spread of its per-round values, which shows when the machine was too noisy."""

    warmup: _int_range(0, 10_000_000) = 200
    iterations: Count = 2000
    min_time_s: _float_range(0, 60) = 0.2
    rounds: _int_range(1, 100) = 5


class LatencyMeasurementSection(_TimingSection):
    """How objective ``latency`` times its candidates: the passing candidates and the fp32 model together,
    interleaved, at batch 1 and at the largest ``benchmark.batch_sizes``.

    Choice rule (tuning/latency_search.py): the fastest passing candidate is the one with the lowest
    median batch-1 latency ratio to fp32; it displaces an earlier candidate in the candidate order only
    when it beats that candidate by more than ``tie_margin`` in every round. Otherwise the earlier one
    is kept, so noise does not change the model.
    """

    warmup: _int_range(0, 10_000_000) = 50
    iterations: Count = 400
    min_time_s: _float_range(0, 60) = 0.03
    tie_margin: Annotated[float, Field(ge=0, lt=1)] = 0.03  # 0.03: more than 3 % faster in every round
    # What happens when no passing int8 candidate is faster than fp32 (at batch 1 or at the throughput batch).
    if_slower_than_fp32: SlowerThanFp32 = SlowerThanFp32.WARN


class TuningSection(_Section):
    """How int8 candidates are searched.

    ``objective``: ``accuracy`` runs INC's own strategy (``strategy``), which stops at the first
    candidate meeting ``accuracy_criterion``; ``latency`` has INC produce a grid of candidates (fp32
    fallbacks of the Conv/MatMul/Gemm nodes, both quantization formats, every calibration algorithm),
    measures each one's accuracy and speed, and keeps the fastest that meets the criterion (``strategy``
    is not used). ``max_trials`` and ``timeout_s`` bound the candidates of either objective; under
    ``latency`` the candidates made within them are then timed together (``latency``), which takes
    a few seconds more. A ``timeout_s`` makes the candidates, and so the model, depend on the machine.
    """

    objective: Objective = Objective.ACCURACY
    strategy: Strategy = Strategy.AUTO
    accuracy_criterion: AccuracyCriterionSection = AccuracyCriterionSection()
    max_trials: _int_range(1, 100_000) = 100
    timeout_s: _int_range(0, MAX_TIMEOUT_S) = 0  # 0: no time limit
    seed: Seed = 1978
    latency: LatencyMeasurementSection = LatencyMeasurementSection()  # used by objective latency only


class OutputSection(_Section):
    model: Path | None = None  # None: <model.path's stem>-int8.onnx beside model.path
    # Run summary, reports, INC's workspace and log. None: <output.model's stem>-run/ beside output.model,
    # so each output model has its own run folder and nothing lands in the current folder.
    dir: Path | None = None


class BenchmarkSection(_TimingSection):
    """Conditions of ``benchmark`` and ``report`` (timing rule: :class:`_TimingSection`)."""

    batch_sizes: Annotated[tuple[BatchSize, ...], Field(min_length=1, max_length=64)] = (1, 16, 64, 256)
    intra_op_threads: _int_range(1, 1024) = 1
    # Input plus output tensors of one benchmark or report batch; larger batch sizes are refused before
    # anything is allocated (onnxruntime's intermediate tensors need several times more on top).
    max_batch_bytes: _int_range(1, 2**40) = 32 * 1024 * 1024
    reference_models: tuple[Path, ...] = ()  # further models to compare in reports
    # Every model is measured on each, interleaved in one run; its accuracy too, against onnxruntime's.
    runtimes: Annotated[tuple[Runtime, ...], Field(min_length=1, max_length=len(Runtime))] = (Runtime.ONNXRUNTIME,)

    @field_validator("runtimes")
    @classmethod
    def _runtimes_once_each(cls, runtimes: tuple[Runtime, ...]) -> tuple[Runtime, ...]:
        return _once_each(runtimes)


class DeploymentSection(_Section):
    """How the int8 model will be run: every evaluation and timing uses these onnxruntime session options.

    onnxruntime's defaults (only ``benchmark.intra_op_threads`` set) unless ``session_config_entries``
    declares others (``SessionOptions.add_session_config_entry`` keys, e.g.
    ``optimization.disable_specified_optimizers``); they are written into the int8 model's metadata, so a
    deployment can reproduce the measured speed. The shipped model needs none.
    """

    session_config_entries: dict[str, str] = {}
    # Objective latency times the candidates on this runtime, and only candidates it can load are kept;
    # the emitted model must load on it under either objective.
    runtime: Runtime = Runtime.ONNXRUNTIME


class GatesSection(_Section):
    """Thresholds of ``python -m tuning gate`` (docs/gate.md); None switches a check off."""

    # Absolute error depends on the dataset (FashionMNIST's fp32 models err ~10 %): off unless a config sets it.
    max_int8_top1_error_pct: Annotated[float, Field(ge=0, le=100)] | None = None
    # Relative to the float model: the default allows what the default tuning.accuracy_criterion (relative
    # 0.01) allows a model near 100 % accurate; configs/mnist.yaml sets 0.1 with its absolute 0.001 criterion.
    max_accuracy_drop_pp: Annotated[float, Field(ge=0, le=100)] | None = 1.0
    max_latency_ratio: Annotated[float, Field(gt=0)] | None = None  # int8/float p50 latency
    min_throughput_ratio: Annotated[float, Field(gt=0)] | None = None  # int8/float, largest batch size
    baseline: Path | None = None  # written by `gate --write-baseline`
    baseline_accuracy_tolerance_pp: Annotated[float, Field(ge=0)] = 0.1
    # Above 100 % the throughput check could never fail.
    baseline_performance_tolerance_pct: Annotated[float, Field(ge=0, lt=100)] = 10.0
    fail_on_missing_performance: StrictBool = True
    runtime: Runtime = Runtime.ONNXRUNTIME  # whose int8/float ratios the latency and throughput checks read


class PipelineConfig(_Section):
    model: ModelSection = ModelSection()
    dataset: DatasetSection = DatasetSection()
    calibration: CalibrationSection = CalibrationSection()
    evaluation: EvaluationSection = EvaluationSection()
    quantization: QuantizationSection = QuantizationSection()
    tuning: TuningSection = TuningSection()
    output: OutputSection = OutputSection()
    benchmark: BenchmarkSection = BenchmarkSection()
    deployment: DeploymentSection = DeploymentSection()
    gates: GatesSection = GatesSection()

    # The validators' bodies are plain functions below the class: mutation testing does not reach into
    # decorated functions (docs/mutation.md).
    @model_validator(mode="after")
    def _outputs_beside_their_model(self) -> PipelineConfig:
        return _with_outputs_beside_the_model(self)

    def path(self, key: str) -> Path:
        """The path at ``key`` (``model.path``, ``output.model``, ``output.dir``); a ConfigError when unset."""
        section, name = key.split(".")
        value = getattr(getattr(self, section), name)
        if value is None:
            hint = "pass --input_model or set model.path" if key == "model.path" else "set it, or model.path"
            raise ConfigError(f"{key}: not set; {hint}")
        return value

    @model_validator(mode="after")
    def _dynamic_takes_no_calibration(self) -> PipelineConfig:
        _refuse_calibration_under_dynamic(self)
        return self

    @model_validator(mode="after")
    def _gated_runtime_is_measured(self) -> PipelineConfig:
        _refuse_gate_on_unmeasured_runtime(self)
        return self

    @model_validator(mode="after")
    def _latency_needs_static(self) -> PipelineConfig:
        _refuse_dynamic_under_latency(self)
        return self

    @property
    def preprocessing(self) -> dict[str, Any]:
        """What the int8 model expects as input; written into its metadata."""
        return {
            "pixel_scale": self.dataset.pixel_scale.value,
            "mean": self.dataset.mean,
            "std": self.dataset.std,
        }

    def quantization_sha256(self) -> str:
        """Hash of every setting that decides the int8 model's bytes.

        Output paths, gate settings and benchmark settings are left out so that moving an
        output does not change the model it holds, except the benchmark settings that do decide
        it: the threads (recorded in the model's session options, like ``deployment``) and, under
        objective latency, the batch size candidates are timed at.
        """
        relevant = self.model_dump(
            mode="json", include={"dataset", "calibration", "evaluation", "quantization", "tuning", "deployment"}
        )
        relevant["model"] = {"sha256": self.model.sha256}
        relevant["dataset"].pop("root")
        # The session options (threads included) are written into the model's metadata.
        relevant["benchmark"] = {"intra_op_threads": self.benchmark.intra_op_threads}
        if self.tuning.objective is Objective.LATENCY:
            # Which candidate is fastest depends on how it is measured.
            relevant["benchmark"]["throughput_batch_size"] = max(self.benchmark.batch_sizes)
        canonical = json.dumps(relevant, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


def _with_outputs_beside_the_model(config: PipelineConfig) -> PipelineConfig:
    """output.model beside the float model, output.dir beside output.model: derived from the final paths."""
    model = config.output.model
    if model is None and config.model.path is not None:
        model = config.model.path.with_name(f"{config.model.path.stem}-int8.onnx")
    folder = config.output.dir
    if folder is None and model is not None:
        folder = model.with_name(f"{model.stem}-run")
    if (model, folder) == (config.output.model, config.output.dir):
        return config
    return config.model_copy(update={"output": config.output.model_copy(update={"model": model, "dir": folder})})


def _once_each(runtimes: tuple[Runtime, ...]) -> tuple[Runtime, ...]:
    repeated = sorted({runtime.value for runtime in runtimes if runtimes.count(runtime) > 1})
    if repeated:
        raise ValueError(f"each runtime may be listed once; repeated: {', '.join(repeated)}")
    return runtimes


def _refuse_gate_on_unmeasured_runtime(config: PipelineConfig) -> None:
    # The gate reads the ratios the report measured: a runtime the report never measures would make
    # every speed check "missing".
    if config.gates.runtime not in config.benchmark.runtimes:
        raise PydanticCustomError(
            "contradiction",
            "gates.runtime: {runtime} is not in benchmark.runtimes ({runtimes}); add it there or gate another runtime",
            {"runtime": config.gates.runtime.value,
             "runtimes": ", ".join(runtime.value for runtime in config.benchmark.runtimes)},
        )


def _refuse_calibration_under_dynamic(config: PipelineConfig) -> None:
    # Dynamic quantization computes activation ranges at run time, so calibration settings would be
    # silently ignored; a user who set them most likely meant static.
    if config.quantization.approach is not Approach.DYNAMIC:
        return
    defaults = CalibrationSection()
    changed = [f"calibration.{name}" for name in ("split", "sampling_size", "batch_size", "seed")
               if getattr(config.calibration, name) != getattr(defaults, name)]
    if config.quantization.calibration_algorithm is not CalibrationAlgorithm.MINMAX:
        changed.append("quantization.calibration_algorithm")
    if changed:
        raise PydanticCustomError(
            "contradiction",
            "quantization.approach: dynamic uses no calibration, but {keys} {verb} set; "
            "remove {them} or use approach static",
            {"keys": ", ".join(changed), "verb": "is" if len(changed) == 1 else "are",
             "them": "it" if len(changed) == 1 else "them"},
        )


def _refuse_dynamic_under_latency(config: PipelineConfig) -> None:
    # Objective latency times each candidate at batch 1 and at a large batch as one model; a
    # dynamically quantized model scales each batch by its own range, so it computes something
    # else at each batch size.
    if config.tuning.objective is Objective.LATENCY and config.quantization.approach is Approach.DYNAMIC:
        raise PydanticCustomError(
            "contradiction",
            "tuning.objective: latency needs quantization.approach static; a dynamically quantized "
            "model computes something else at each batch size (use objective accuracy for dynamic)",
        )


Overrides = dict[str, Any]


def load_config(path: Path | None, overrides: Overrides | None = None) -> PipelineConfig:
    """Read ``path`` (or only the defaults when None), apply dotted-key overrides, validate.

    Paths from the file (and the defaults it leaves out) resolve against its folder; overrides stay as
    given. ``model.url``/``model.sha256`` describe the file's ``model.path``: when an override points
    ``model.path`` at another file, they are dropped unless overridden too (``--input_sha256``).
    """
    source = str(path) if path is not None else "<defaults>"
    raw: dict[str, Any] = {} if path is None else _read_yaml(path)
    overrides = dict(overrides or {})
    folder = Path(path).parent if path is not None else Path()
    if path is not None:
        _resolve_paths(raw, folder, skip=set(overrides), source=source)
    _drop_checksum_of_another_model(raw, overrides, folder)
    for dotted_key, value in overrides.items():
        _set_dotted(raw, dotted_key, value, source)
    try:
        config = PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    _check_outputs_are_not_inputs(config, [] if path is None else [("the config file", Path(path))], source)
    return config


def parse_override(assignment: str) -> tuple[str, Any]:
    """Split ``key.path=value``; the value is read as YAML (``5``, ``0.01``, ``[1, 2]``, ``null``)."""
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {_short(assignment)}: expected KEY.PATH=VALUE, e.g. tuning.max_trials=5")
    return key.strip(), _parse_yaml(text.encode("utf-8"), f"--set {_short(assignment)}")


def output_input_clashes(outputs: list[tuple[str, Path]], inputs: list[tuple[str, Path]]) -> str | None:
    """The first output that is one of the inputs (through symlinks and hard links), as a message."""
    from tuning.inputs import same_file

    for output_name, output in outputs:
        for input_name, source in inputs:
            if same_file(output, source):
                return f"{output_name} ({output}) is {input_name} ({source}); refusing to overwrite an input"
    return None


def _check_outputs_are_not_inputs(config: PipelineConfig, extra_inputs: list[tuple[str, Path]], source: str) -> None:
    outputs = [
        ("output.model", config.output.model),
        ("output.dir/tuning_summary.json", config.output.dir and config.output.dir / "tuning_summary.json"),
    ]
    inputs = [("model.path", config.model.path), *extra_inputs]
    # Unset paths (no model.path yet: --input_model will give it) have nothing to clash with.
    outputs = [(name, path) for name, path in outputs if path is not None]
    inputs = [(name, path) for name, path in inputs if path is not None]
    inputs += [(f"benchmark.reference_models[{i}]", p) for i, p in enumerate(config.benchmark.reference_models)]
    if config.gates.baseline is not None:
        inputs.append(("gates.baseline", config.gates.baseline))
    clash = output_input_clashes(outputs, inputs)
    if clash:
        raise ConfigError(f"{source}: {clash}")


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds and without silent surprises.

    Nesting is limited while the document is composed (PyYAML's composer recurses, so a
    deeply nested file would otherwise end in RecursionError); aliases are counted as the values
    they expand to before anything is constructed; a key given twice in one mapping is an error
    (PyYAML keeps the last one); an integer too long to convert is an error at its line.
    """

    def __init__(self, stream: bytes) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):  # type: ignore[no-untyped-def]
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_YAML_DEPTH} levels deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {_short(key)}", key_node.start_mark
                    )
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):  # type: ignore[no-untyped-def]
        try:
            return super().construct_yaml_int(node)
        except ValueError:  # Python refuses to convert integers of more than 4300 digits
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value)} characters is out of range", node.start_mark
            ) from None


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand past the node or depth bounds, or refer to themselves.

    Sizes and depths are memoised per node, so this takes time proportional to the file, not to
    the expansion (a 500-byte "billion laughs" document expands to 10**9 values).
    """
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    in_progress: set[int] = set()
    # Iterative post-order walk: an alias chain may be deeper than Python's recursion limit.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if key in sizes:
            continue
        children = _children(node)
        if children_done:
            in_progress.discard(key)
            sizes[key] = min(1 + sum(sizes[id(child)] for child in children), MAX_YAML_NODES + 1)
            depths[key] = 1 + max((depths[id(child)] for child in children), default=0)
            continue
        in_progress.add(key)
        stack.append((node, True))
        for child in children:
            if id(child) in in_progress:
                raise yaml.composer.ComposerError(
                    None, None, "an alias refers to a value that contains it", child.start_mark
                )
            stack.append((child, False))
    if sizes[id(root)] > MAX_YAML_NODES:
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand to more than {MAX_YAML_NODES} values; refusing to expand them", None
        )
    if depths[id(root)] > MAX_YAML_DEPTH + 1:  # +1: scalars count as a level here
        raise yaml.composer.ComposerError(
            None, None, f"aliases expand to values nested more than {MAX_YAML_DEPTH} levels deep", None
        )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _parse_yaml(text: bytes, source: str) -> Any:
    """Parse one YAML document within the bounds; every problem is one ConfigError line naming ``source``."""
    loader = None
    try:
        loader = _BoundedLoader(text)  # its reader already decodes and checks the first bytes
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    except RecursionError:  # a bound above was not enough for some construct; never a traceback
        raise ConfigError(f"{source}: not valid YAML: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read_yaml(path: Path) -> dict[str, Any]:
    from tuning.inputs import read_bounded

    raw = read_bounded(Path(path), MAX_CONFIG_BYTES, "config file", ConfigError, "the config size limit")
    data = _parse_yaml(raw, str(path))
    if data is None:
        raise ConfigError(f"{path}: the config is empty; expected a mapping with sections such as 'model:'")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections at the top level, got {type(data).__name__}")
    return data


def _resolve_paths(raw: dict[str, Any], folder: Path, skip: set[str], source: str) -> None:
    """Make the file's relative paths (and the relative defaults it leaves out) relative to ``folder``."""
    for key in PATH_KEYS:
        if key in skip:
            continue
        section_name, name = key.split(".")
        section = raw.get(section_name, {})
        if not isinstance(section, dict):
            continue  # validation reports a section that is not a mapping
        value = section.get(name, PipelineConfig.model_fields[section_name].default.model_dump().get(name))
        if isinstance(value, (list, tuple)):
            resolved: Any = [_beside(folder, item) for item in value]
        else:
            resolved = _beside(folder, value)
        if resolved != value:
            _set_dotted(raw, key, resolved, source)


def _beside(folder: Path, value: Any) -> Any:
    if isinstance(value, (str, Path)) and str(value) and not Path(value).is_absolute():
        return os.path.normpath(folder / value)  # "configs/../models/x" reads as "models/x"
    return value


def _drop_checksum_of_another_model(raw: dict[str, Any], overrides: Overrides, folder: Path) -> None:
    """A model.path override naming another file than the config's makes its url and sha256 not apply."""
    if "model.path" not in overrides or overrides["model.path"] is None:
        return
    model = raw.get("model")
    if not isinstance(model, dict):
        return
    configured = _beside(folder, model.get("path"))
    if configured is not None and Path(configured).resolve() == Path(overrides["model.path"]).resolve():
        return
    for key in ("url", "sha256"):
        if f"model.{key}" not in overrides:
            model.pop(key, None)


def _set_dotted(raw: dict[str, Any], dotted_key: str, value: Any, source: str) -> None:
    *parents, leaf = dotted_key.split(".")
    node = raw
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parents[: depth + 1])
            raise ConfigError(f"{source}: cannot override {dotted_key!r}: {where!r} is not a section")
        node = child
    node[leaf] = value


def _describe(exc: ValidationError) -> str:
    """One line for the first problem, naming the key path, expected and got."""
    error = exc.errors()[0]
    loc = tuple(str(part) for part in error["loc"])
    key = ".".join(loc)
    if not loc:  # a check across sections, whose message names its keys
        return error["msg"]
    if error["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(valid)}"
        return f"unknown key {key!r} ({hint})"
    more = f" (and {len(exc.errors()) - 1} more problems)" if len(exc.errors()) > 1 else ""
    return f"{key}: {error['msg']}, got {_short(error['input'])}{more}"


_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = _SHORT.maxlong = 60


def _short(value: Any) -> str:
    """A value as it may appear in an error line: cut to a few dozen characters, whatever its size."""
    return _SHORT.repr(value)


def _valid_keys(loc: tuple[str, ...]) -> list[str]:
    section: type[BaseModel] = PipelineConfig
    for part in loc:  # only sections nest, so every annotation on the way is a section class
        section = section.model_fields[part].annotation
    return list(section.model_fields)


__all__ = [
    "Approach",
    "CalibrationAlgorithm",
    "CriterionKind",
    "Objective",
    "PipelineConfig",
    "PixelScale",
    "QuantFormat",
    "SlowerThanFp32",
    "Split",
    "Strategy",
    "load_config",
    "parse_override",
]
