"""tuning/measure/measurements.py's guard: a measurement with a model or an A/A twin not timed at batch 1 is refused
with its message (``Measurements`` reads batch-1 timings only; benchmark.measure times a throughput batch alone
when asked, and such a measurement has no place among them).
"""

from __future__ import annotations

import numpy as np
import pytest

from tuning.measure.benchmark import SECOND_SESSION, Performance
from tuning.measure.measurements import Measurements
from tuning.measure.timings import Timing

pytestmark = pytest.mark.fast


def at_batch_1() -> Timing:
    return Timing(1, 0, (np.ones(3),))


def only_at_batch_8(name: str) -> Performance:
    return Performance(name, None, (Timing(8, 0, (np.ones(3),)),))


@pytest.mark.parametrize("which", ["twin", "model"])
def test_a_model_or_twin_not_timed_at_batch_1_is_refused_with_the_guard_s_message(which):
    twin = only_at_batch_8(SECOND_SESSION.format(name="fp32")) if which == "twin" else Performance(
        SECOND_SESSION.format(name="fp32"), at_batch_1(), ()
    )
    model = only_at_batch_8("trial 1") if which == "model" else Performance("trial 1", at_batch_1(), ())
    fp32 = Performance("fp32", at_batch_1(), (), second_session=twin)
    with pytest.raises(ValueError) as refused:
        Measurements().added({"fp32": fp32, "trial 1": model})
    assert str(refused.value) == "a measurement without batch-1 latency"
