"""The choices of the config's enumerated keys, one ``str`` enum per key: its values are what the YAML holds."""

from __future__ import annotations

from enum import Enum


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
    LATENCY = "latency"  # try a candidate grid, keep the fastest one meeting the criterion (tuning/search/latency.py)


class SlowerThanFp32(str, Enum):
    """Objective latency, when the model to be written is significantly slower than fp32 (its interval wholly
    on the slower side) at batch 1 or at the throughput batch."""

    WARN = "warn"  # write the chosen int8 model, with a warning line in the output and the summary
    FAIL = "fail"  # write nothing and exit with code 6


class LatencySearch(str, Enum):
    """How objective latency searches its candidates (tuning/search/plan.py)."""

    # The grid while it fits in tuning.max_trials, the greedy search beyond (the default). The grid makes
    # every candidate whatever the machine's speed, so a config makes the same candidates on a quiet and on a
    # busy machine; the greedy search's sets follow its speed measurements.
    AUTO = "auto"
    # Each compute node's fp32 fallback screened alone, then greedy sets of the ones that helped: about
    # 4 candidates per Conv/MatMul/Gemm node.
    GREEDY = "greedy"
    # Every fallback set of none, one or two compute nodes x formats x calibration algorithms: quadratic in
    # the nodes, affordable on a model of a handful of them (kept to compare the greedy search against).
    GRID = "grid"


class SpeedInconclusive(str, Enum):
    """The gate, when a speed check's interval straddles its threshold (neither wholly within nor wholly worse)."""

    WARN = "warn"  # the check passes with a warning (exit 0): noise must not fail CI
    FAIL = "fail"  # the check fails: CI that must prove the speed


class Runtime(str, Enum):
    """Where a model is run and timed (tuning/measure/runtimes.py). OpenVINO needs the optional extra ``openvino``.

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
