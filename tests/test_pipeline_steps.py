"""tuning/pipeline.py's steps that need no INC run: the batch-copy check before any tuning, and the summary's
arithmetic (the sign of the error change, the sizes, the candidate table).

The model refused here gives the same outputs as its batch-capable copy on one image, but not on a batch: its
scores are centred over the batch (score - mean over the images of the batch), so at batch 1 every score is 0
and at batch 256 they are not. Only the verification of the batch copy sees that, before INC is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_config
from neural_compressor.utils import logger as _inc_logger  # noqa: F401  (imported once, as run_tuning would)
from tiny_models import batch_centred

from tuning.config.loading import load_config
from tuning.errors import InputError
from tuning.pipeline import TuningSummary, candidate_table, run_tuning, summary_lines
from tuning.search.trials import Trial

pytestmark = pytest.mark.fast

ROOT = Path(__file__).resolve().parent.parent


def test_a_model_whose_batch_copy_computes_something_else_is_refused_before_tuning(tmp_path: Path) -> None:
    model = batch_centred(tmp_path / "centred.onnx")
    config = load_config(write_config(tmp_path / "config.yaml", {
        "model": {"path": str(model), "url": None, "sha256": None},
        "dataset": {"name": "MNIST", "root": str(ROOT / "data")},
        "output": {"model": str(tmp_path / "int8.onnx"), "dir": str(tmp_path / "run")},
        "tuning": {"objective": "accuracy"},
        "benchmark": {"reference_models": []},
    }))
    with pytest.raises(InputError, match=r"centred\.onnx: the batch-capable copy's outputs differ from the original's"):
        run_tuning(config)
    assert not (tmp_path / "int8.onnx").exists() and not (tmp_path / "run" / "tuning_summary.json").exists()


def _trial(index: int, accuracy: float, **fields) -> Trial:
    return Trial(index, accuracy, True, (), (), source_precisions={"fc": "fp32" if index == 0 else "int8"}, **fields)


def _summary(fp32: float, int8: float, trials: list[Trial]) -> TuningSummary:
    return TuningSummary(
        source_model="m.onnx", source_sha256="a" * 64, output_model="m-int8.onnx", fp32_top1_accuracy=fp32,
        int8_top1_accuracy=int8, trials=trials, source_bytes=26143, output_bytes=10969, seconds=12.34,
        config_sha256="b" * 64, summary_path="run/tuning_summary.json", objective="accuracy", chosen_trial=None,
        reason=None, session_options={}, latency_measurement=None, output_sha256="c" * 64, warning=None,
        deployment_runtime="onnxruntime",
    )


@pytest.mark.parametrize("fp32, int8, change", [(0.75, 0.5, "+25.00"), (0.5, 0.75, "-25.00"), (0.875, 0.875, "+0.00")])
def test_the_error_change_is_int8_minus_fp32_error(fp32: float, int8: float, change: str) -> None:
    lines = summary_lines(_summary(fp32, int8, [_trial(0, fp32), _trial(1, int8)]))
    assert f"  error change: {change} percentage points" in lines
    fp32_error, int8_error = 100 * (1 - fp32), 100 * (1 - int8)
    assert lines[-1] == (f"Answer: top-1 error int8 {int8_error:.2f} % vs fp32 {fp32_error:.2f} % ({change} pp) "
                         "(objective accuracy: not timed)")
    assert lines[0] == "Tuned m.onnx -> m-int8.onnx in 12.3 s (1 INC trial, objective accuracy)"
    assert f"  fp32  {fp32_error:>12.2f}%    26,143 B" in lines and f"  int8  {int8_error:>12.2f}%    10,969 B" in lines


def test_the_candidate_table_lists_each_distinct_model_once() -> None:
    trials = [_trial(0, 0.75), _trial(1, 0.5, chosen=True), _trial(2, 0.5, same_model_as=1), _trial(3, 0.25, same_model_as=1),
              Trial(4, 0.625, False, (), (), source_precisions={"fc": "int8"})]
    table = candidate_table(trials, None)
    assert table[0].startswith("4 int8 trials, 2 distinct models (* chosen); nodes: what each of the fp32 graph's 1 nodes")
    rows = {line.split()[0]: line for line in table[2:]}
    assert set(rows) == {"0", "1", "4"}
    assert "baseline" in rows["0"] and "0/1/0" in rows["0"]
    assert rows["1"].startswith("1 *") and "trials 2, 3" in rows["1"] and "meets" in rows["1"] and "50.00%" in rows["1"]
    assert "misses" in rows["4"] and "1/0/0" in rows["4"]
    summary = _summary(0.75, 0.5, trials)
    assert summary.int8_trials == 4
