"""The one way this project calls INC's ``quantization.fit``: seeded, in its workspace, contained."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx

from tuning.errors import TuningError
from tuning.inc.containment import contained_inc_call
from tuning.inc.loading import import_inc


def fit(
    model: onnx.ModelProto,
    inc_conf: Any,
    workspace: Path,
    *,
    seed: int,
    timeout_s: int,
    what: str,
    calibration_loader: Any = None,
    eval_func: Callable[[Any], float] | None = None,
    over_ranks: bool = False,
) -> Any:
    """INC's result for one ``quantization.fit`` call (None when INC found no model), its log in ``workspace``.

    ``what`` names the call in errors ("during tuning", "making candidate 3 (...)"). ``over_ranks``: under an
    MPI launch, INC spreads the call over the ranks (its distributed traversal); otherwise it never sees MPI.
    An exception INC raised or swallowed becomes a TuningError, or the project's own error when the
    evaluation function raised it.
    """
    import_inc()
    from neural_compressor import quantization, set_random_seed, set_workspace
    from neural_compressor.model.onnx_model import ONNXModel

    workspace.mkdir(parents=True, exist_ok=True)
    set_workspace(str(workspace))
    set_random_seed(seed)
    log_path = workspace / "inc.log"
    try:
        with contained_inc_call(log_path, timeout_s, over_ranks) as inc_call:
            # Wrapped as INC wraps an onnx.ModelProto, without INC's guessing of its framework, which imports
            # torch to ask whether it is a torch module (a second or more) and opens an onnxruntime session.
            result = quantization.fit(
                ONNXModel(model), inc_conf, calib_dataloader=calibration_loader, eval_func=eval_func
            )
    except Exception as exc:  # INC raises bare Exceptions of many kinds from deep inside its adaptors
        raise TuningError(f"INC failed {what}: {exc.__class__.__name__}: {exc}; INC's log: {log_path}") from None
    if result is None and (failure := inc_call.failure(what, model.ByteSize())) is not None:
        raise failure
    return result
