"""INC's activation calibration remembered across fit() calls (tuning/inc/calibration.py): the same bytes, less work.

Real INC runs on mnist-12 with real MNIST calibration images: candidates made with the memo are compared byte for
byte with the same candidates made by INC's own code alone, and the calibration runs INC's code makes are counted.
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from conftest import project_config

from tuning.config.enums import CalibrationAlgorithm, QuantFormat
from tuning.data.datasets import BatchLoader, LabelledImages, calibration_images
from tuning.graph.rewrite import batch_capable_copy
from tuning.inc import calibration
from tuning.inc.fit import fit
from tuning.inc.loading import import_inc
from tuning.inc.mapping import CandidateSpec, fp32_requests, inc_config
from tuning.search.plan import compute_nodes

MINMAX, PERCENTILE = CalibrationAlgorithm.MINMAX, CalibrationAlgorithm.PERCENTILE


@pytest.fixture(scope="module")
def maker(tmp_path_factory):
    """Makes one candidate of mnist-12 with INC, as objective latency does; returns its bytes."""
    import_inc()
    config = project_config(tmp_path_factory.mktemp("calibration"), **{"calibration.sampling_size": 20})
    source = Path(config.model.path)
    model = batch_capable_copy(onnx.load(str(source)), source)
    loader = BatchLoader(calibration_images(config.dataset, config.calibration, (1, 28, 28)), 1)
    requested = fp32_requests(model, config, source)

    def make(spec: CandidateSpec) -> bytes:
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        result = fit(copy, inc_config(config, requested, spec), config.output.dir / "nc_workspace", seed=1,
                     timeout_s=0, what="a test candidate", calibration_loader=loader)  # fmt: skip
        return result.model.SerializeToString(deterministic=True)

    return make, compute_nodes(model, config)


@pytest.fixture
def counted(monkeypatch):
    """Counts the calibration runs INC's own code makes beneath the memo, which starts empty."""
    augment = __import__("neural_compressor.adaptor.ox_utils.calibration", fromlist=["ONNXRTAugment"]).ONNXRTAugment
    inc_code = augment.get_activation_tensors_calib_range.__wrapped__
    runs = []

    def run(self, q_config=None):
        runs.append(q_config is not None)
        return inc_code(self, q_config)

    monkeypatch.setattr(calibration, "_RANGES", {})
    monkeypatch.setattr(augment, "get_activation_tensors_calib_range", calibration.remembering(run))
    return augment, inc_code, runs


def test_candidates_made_with_the_memo_are_the_bytes_inc_makes_without_it(maker, counted, monkeypatch):
    make, nodes = maker
    augment, inc_code, runs = counted
    specs = [
        CandidateSpec(QuantFormat.QDQ, MINMAX, ()),
        CandidateSpec(QuantFormat.QOPERATOR, MINMAX, (nodes[0],)),
        CandidateSpec(QuantFormat.QDQ, PERCENTILE, ()),
        CandidateSpec(QuantFormat.QDQ, PERCENTILE, (nodes[0],)),  # conv1's input from minmax, the rest percentile
        CandidateSpec(QuantFormat.QOPERATOR, PERCENTILE, (nodes[1], nodes[2])),
    ]
    remembered = [make(spec) for spec in specs]
    # The first candidate of each algorithm calibrates; every later one finds each of its tensors remembered.
    assert len(runs) == 2
    monkeypatch.setattr(augment, "get_activation_tensors_calib_range", inc_code)
    assert [make(spec) for spec in specs] == remembered
    assert len(set(remembered)) == len(specs)  # five different models: the memo does not make them alike


def test_a_tensor_never_calibrated_with_its_algorithm_runs_inc_s_code(maker, counted):
    make, nodes = maker
    _, _, runs = counted
    make(CandidateSpec(QuantFormat.QDQ, PERCENTILE, (nodes[0],)))
    make(CandidateSpec(QuantFormat.QDQ, PERCENTILE, ()))  # conv1's input now wants percentile: not remembered
    make(CandidateSpec(QuantFormat.QOPERATOR, PERCENTILE, (nodes[0],)))
    assert len(runs) == 2


def test_other_images_are_not_given_remembered_ranges(tmp_path):
    import_inc()
    config = project_config(tmp_path, **{"calibration.sampling_size": 8})
    source = Path(config.model.path)
    model = batch_capable_copy(onnx.load(str(source)), source)
    images = calibration_images(config.dataset, config.calibration, (1, 28, 28))
    brighter = LabelledImages(images.images * 0.5, images.labels)
    spec = CandidateSpec(QuantFormat.QDQ, MINMAX, ())
    made = []
    for data in (images, brighter):
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        result = fit(copy, inc_config(config, fp32_requests(model, config, source), spec), tmp_path / "ws", seed=1,
                     timeout_s=0, what="a test candidate", calibration_loader=BatchLoader(data, 1))  # fmt: skip
        made.append(result.model.SerializeToString(deterministic=True))
    assert made[0] != made[1]  # half the pixel values: other ranges, other scales
