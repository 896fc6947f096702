"""INC's activation calibration, computed once per tensor and method for all the candidates of a run.

Objective latency has INC make dozens of candidates of one fp32 model, on the same calibration images, that
differ in which nodes stay in fp32 and in the format. For each ``fit()``, INC's onnxruntime adaptor runs the
model on every calibration image again, with every activation it quantizes as an extra output, and feeds each
output to a calibrator of that output's algorithm (``ONNXRTAugment.get_activation_tensors_calib_range``): on
mnist-12's grid of 42 candidates that was more than half of the time INC took.

An activation's range depends only on the model that runs, the images, and the algorithm its calibrator uses
(the producing node's ``activation.algorithm`` in the op-wise config, ``minmax`` for a node kept in fp32):
each calibrator sees its own output alone. So the ranges are remembered per (model, images, iterations,
execution provider) and per (tensor, node, algorithm), and a ``fit()`` whose every output is known gets them
without running the model; any other runs INC's own code, whose results are remembered. The same model is
made, byte for byte, as without the memo (tests/test_inc_calibration.py). Cases INC handles differently
(layer-wise calibration, already-quantized models, models with external data, no op-wise config) always run
INC's code. Pinned to neural-compressor 3.7.1, like tuning/inc/loading.py, which installs it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
from collections.abc import Callable
from typing import Any

import numpy as np

# fingerprint of (model, images, iterations, provider) -> (tensor, node, algorithm) -> INC's ranges of that tensor
_RANGES: dict[str, dict[tuple[str, str, str], Any]] = {}

Output = tuple[str, str, str]  # an augmented output: tensor name, the node INC attributes it to, its algorithm


def remembering(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """``ONNXRTAugment.get_activation_tensors_calib_range`` that remembers its ranges (see the module)."""

    @functools.wraps(original)
    def calib_range(augment: Any, q_config: dict[str, Any] | None = None) -> dict[str, Any]:
        if (
            q_config is None
            or augment.layer_wise
            or augment.dequantized_output
            or augment.model_wrapper.is_large_model
            or iter(augment.dataloader) is augment.dataloader  # one pass only: the fingerprint would consume it
        ):
            return original(augment, q_config)
        outputs = _outputs(augment, q_config)
        known = _RANGES.setdefault(_fingerprint(augment), {})
        if all(output in known for output in outputs):
            augment._dataloder_for_next_split_model = []  # what INC's own code leaves outside layer-wise calibration
            return {output[0]: copy.deepcopy(known[output]) for output in outputs}
        ranges = original(augment, q_config)
        known.update({output: copy.deepcopy(ranges[output[0]]) for output in outputs if output[0] in ranges})
        return ranges

    return calib_range


def _outputs(augment: Any, q_config: dict[str, Any]) -> list[Output]:
    """Each output of the augmented model as INC's code attributes it: the node that makes it (or, for a graph
    input, its first consumer) and that node's algorithm."""
    graph = augment.augmented_model.graph
    producers = {name: node.name for node in graph.node for name in node.output}
    consumers: dict[str, str] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, node.name)
    outputs = []
    for output in graph.output:
        node = producers.get(output.name, consumers.get(output.name, ""))
        config = q_config.get(node)
        algorithm = config["activation"]["algorithm"] if node in q_config and "activation" in config else "minmax"
        outputs.append((output.name, node, algorithm))
    return outputs


def _fingerprint(augment: Any) -> str:
    """What every range depends on besides its tensor and algorithm: the model that runs, the calibration
    batches INC reads (``iterations``), and the execution provider."""
    digest = hashlib.sha256(augment.model.SerializeToString(deterministic=True))
    digest.update(repr((augment.iterations, augment.backend)).encode())
    last = max(augment.iterations) if augment.iterations else None
    for index, (inputs, _labels) in enumerate(augment.dataloader):
        if last is not None and index > last:
            break
        for array in inputs.values() if isinstance(inputs, dict) else inputs if isinstance(inputs, (list, tuple)) else [inputs]:
            array = np.ascontiguousarray(array)
            digest.update(repr((array.dtype.str, array.shape)).encode())
            digest.update(array.tobytes())
    return digest.hexdigest()
