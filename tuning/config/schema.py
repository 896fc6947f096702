"""The config's schema: every option typed and validated, its default here (README, "Configuration").

The schema's defaults fit any classifier; what only fits mnist-12 lives in configs/mnist.yaml
(:data:`SHIPPED_CONFIG`). Reading a YAML file into a :class:`PipelineConfig`: :mod:`tuning.config.loading`; the choices a key takes:
:mod:`tuning.config.enums`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from tuning.config.enums import (
    Approach,
    CalibrationAlgorithm,
    CriterionKind,
    LatencySearch,
    Objective,
    PixelScale,
    QuantFormat,
    Runtime,
    SlowerThanFp32,
    SpeedInconclusive,
    Split,
    Strategy,
)
from tuning.errors import ConfigError
from tuning.files.limits import DOWNLOAD_DEADLINE_S, MODEL_MAX_BYTES

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


class _Section(BaseModel):
    # allow_inf_nan=False: .nan and .inf are refused for every float key (a NaN mean makes every image NaN).
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, allow_inf_nan=False)


# The config used when none is given: found beside the package, wherever the command runs.
SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "mnist.yaml"


class ModelSection(_Section):
    # The float model; None: given on the command line (-m/--model). url and sha256 describe this file:
    # an override of path to another file drops them unless they are overridden too (load_config).
    path: Path | None = None
    url: str | None = None  # where `fetch` downloads path from when it is missing; None: never download
    sha256: Sha256 | None = None  # checked before every use; None: the file is used unverified
    # Upper bound on the model file plus its external data, checked before reading, so a wrong or
    # hostile path cannot exhaust memory; mnist-12 is 26 KB, so 256 MiB leaves room for real classifiers.
    max_bytes: _int_range(1, 2**40) = MODEL_MAX_BYTES
    # Wall-clock limit of a whole download, retries included; a server sending one byte a second is cut off.
    download_timeout_s: _int_range(1, 24 * 3600) = DOWNLOAD_DEADLINE_S


class DatasetSection(_Section):
    name: str = "MNIST"  # a torchvision.datasets class reading 28x28 IDX files (MNIST, FashionMNIST, KMNIST)
    # Holds <name>/raw/ or the IDX files; nothing is ever downloaded into it. None: the user cache
    # ($XDG_CACHE_HOME/mnist-int8-tuning/datasets), where a missing archive is downloaded (tuning/data/download.py).
    root: Path | None = Path("data")
    # Where the archives are downloaded from into the cache: a folder URL (https; http only to localhost)
    # holding <file>.gz. None: the https mirror torchvision's dataset class lists.
    download_url: str | None = None
    # Wall-clock limit of one archive's download, retries included.
    download_timeout_s: _int_range(1, 24 * 3600) = DOWNLOAD_DEADLINE_S
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
    """How long models are timed (tuning/measure/benchmark.py, docs/measurement.md): in ``rounds`` *session
    sets*, each with fresh sessions of every model; in each set and at each batch size a model runs ``warmup``
    untimed images, then the models take turns (blocks of consecutive calls of >= 64 images) until each has run at least ``iterations``
    images, at least 20 calls *and* ``min_time_s`` seconds (like OpenVINO's benchmark_app ``-t``), so a fast
    model is not judged on a few milliseconds. A ratio is the median of paired per-call ratios over the
    session sets, with a confidence interval over the sets (6 or more sets: 95 % or more)."""

    warmup: _int_range(0, 10_000_000) = 200
    iterations: Count = 1000
    min_time_s: _float_range(0, 60) = 0.1
    rounds: _int_range(1, 100) = 10


class LatencyMeasurementSection(_TimingSection):
    """How objective ``latency`` times its candidates: the passing candidates, the fp32 model and a second
    fp32 session (the A/A pair) together, at batch 1 and at the largest ``benchmark.batch_sizes``.

    Choice rule (tuning/search/choice.py): a candidate is significantly faster than another only when the
    interval of their paired batch-1 time ratio lies wholly below ``1 - tie_margin``; among the candidates
    no other is significantly faster than, the first by preference is written (QDQ first, fewer fp32
    compute nodes, smaller file, earlier trial), so noise does not change the model.
    """

    warmup: _int_range(0, 10_000_000) = 50
    iterations: Count = 400
    min_time_s: _float_range(0, 60) = 0.05
    rounds: _int_range(1, 100) = 6
    # Significantly faster means by more than this, with confidence. Well above the few percent that separate
    # near-equal candidates (mnist-12: ~5 %), so which of them is written does not flip with the machine's load.
    tie_margin: Annotated[float, Field(ge=0, lt=1)] = 0.1
    # What happens when the model to be written is significantly slower than fp32 (at batch 1 or at the
    # throughput batch); "cannot tell at this noise" is neither.
    if_slower_than_fp32: SlowerThanFp32 = SlowerThanFp32.WARN
    # Which candidates are made: the grid (quadratic in the compute nodes) while it fits in max_trials, else
    # greedy (linear); or either one by name. tuning/search/plan.py.
    search: LatencySearch = LatencySearch.AUTO


class TuningSection(_Section):
    """How int8 candidates are searched.

    ``objective``: ``accuracy`` runs INC's own strategy (``strategy``), which stops at the first
    candidate meeting ``accuracy_criterion``; ``latency`` has INC make candidates (fp32 fallbacks of
    the Conv/MatMul/Gemm nodes, both quantization formats, calibration algorithms) chosen by
    ``latency.search`` (greedy, linear in the nodes, or the grid), screens and scores them, and keeps the
    fastest that meets the criterion (``strategy`` is not used). ``max_trials`` and ``timeout_s`` bound the
    candidates of either objective; under ``latency`` a cut is reported, and the finalists made within
    them are then timed together (``latency``), which takes a few seconds more. A ``timeout_s`` makes the
    candidates, and so the model, depend on the machine.
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
    # report: also NNCF's int8 model of the float model, same calibration images (needs the nncf extra)
    nncf_reference: bool = False
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
    # Speed checks compare the ratio's interval with the threshold (docs/gate.md): FAIL only when the whole
    # interval is worse, PASS when it is wholly within, INCONCLUSIVE otherwise, then ``if_speed_inconclusive``.
    max_latency_ratio: Annotated[float, Field(gt=0)] | None = None  # time int8/float at batch 1 (p50)
    min_throughput_ratio: Annotated[float, Field(gt=0)] | None = None  # images/s int8/float, largest batch size
    if_speed_inconclusive: SpeedInconclusive = SpeedInconclusive.WARN
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
            hint = "pass -m/--model or set model.path" if key == "model.path" else "set it, or model.path"
            raise ConfigError(f"{key}: not set; {hint}")
        return value

    @model_validator(mode="after")
    def _dynamic_takes_no_calibration(self) -> PipelineConfig:
        _refuse_calibration_under_dynamic(self)
        return self

    @model_validator(mode="after")
    def _gated_runtime_is_measured(self) -> PipelineConfig:
        return _gate_a_measured_runtime(self)

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
        raise PydanticCustomError("repeated", "each runtime may be listed once; repeated: {names}", {"names": ", ".join(repeated)})
    return runtimes


def _gate_a_measured_runtime(config: PipelineConfig) -> PipelineConfig:
    # The gate reads the ratios the report measured: a runtime the report never measures would make every
    # speed check "missing". Left at its default, gates.runtime follows a report that measures no onnxruntime.
    gates, runtimes = config.gates, config.benchmark.runtimes
    if gates.runtime in runtimes:
        return config
    if "runtime" not in gates.model_fields_set:
        return config.model_copy(update={"gates": gates.model_copy(update={"runtime": runtimes[0]})})
    raise PydanticCustomError(
        "contradiction",
        "gates.runtime: {runtime} is not in benchmark.runtimes ({runtimes}); add it there or gate another runtime",
        {"runtime": gates.runtime.value, "runtimes": ", ".join(runtime.value for runtime in runtimes)},
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


__all__ = [
    "Approach",
    "CalibrationAlgorithm",
    "CriterionKind",
    "Objective",
    "PipelineConfig",
    "PixelScale",
    "QuantFormat",
    "Runtime",
    "SlowerThanFp32",
    "SpeedInconclusive",
    "Split",
    "Strategy",
]
