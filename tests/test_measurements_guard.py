"""tuning/measure/measurements.py's guard: a measurement whose A/A twin has no batch-1 timing is refused by name.

``Measurements.added`` keeps only models timed at batch 1 and refuses a reference without its twin; a twin timed at
another batch size only (a hand-made Performance: benchmark.measure times the twin with the reference) reaches the
guard when the noise floor is read.
"""

from __future__ import annotations

import numpy as np
import pytest

from tuning.measure.benchmark import SECOND_SESSION, Performance
from tuning.measure.measurements import Measurements
from tuning.measure.timings import Timing

pytestmark = pytest.mark.fast


def test_a_twin_without_batch_1_latency_is_refused_when_the_noise_floor_is_read():
    twin = Performance(SECOND_SESSION.format(name="fp32"), None, (Timing(8, 0, (np.ones(3),)),))
    fp32 = Performance("fp32", Timing(1, 0, (np.ones(3),)), (), second_session=twin)
    timed = Measurements().added({"fp32": fp32, "trial 1": Performance("trial 1", Timing(1, 0, (np.ones(3),)), ())})
    assert timed.session_sets("trial 1") == 1
    with pytest.raises(ValueError) as refused:
        timed.noise_floor()
    assert str(refused.value) == "a measurement without batch-1 latency"
    with pytest.raises(ValueError) as refused:
        timed.time_ratio("trial 1", "fp32")
    assert str(refused.value) == "a measurement without batch-1 latency"
