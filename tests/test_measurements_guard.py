"""tuning/measure/measurements.py's refusals, each with its whole message: a measurement with a model or an A/A twin
not timed at batch 1 (``Measurements`` reads batch-1 timings only; benchmark.measure times a throughput batch alone
when asked, and such a measurement has no place among them), one whose models did not take turns together, and a
ratio or figure of a model never timed, or never timed with the other.
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


def measurement(**models: Timing) -> dict[str, Performance]:
    twin = Performance(SECOND_SESSION.format(name="fp32"), at_batch_1(), ())
    return {"fp32": Performance("fp32", at_batch_1(), (), second_session=twin)} | {
        name.replace("_", " "): Performance(name.replace("_", " "), timing, ()) for name, timing in models.items()
    }


def test_a_model_never_timed_or_never_timed_with_the_other_is_named_in_the_refusal():
    timed = Measurements().added(measurement(trial_1=at_batch_1())).added(measurement(trial_2=at_batch_1()))
    refusals = {
        "trial 9 was never timed": lambda: timed.p50_ms("trial 9"),
        "trial 1 and trial 2 were never timed together": lambda: timed.time_ratio("trial 1", "trial 2"),
        "trial 2 and trial 1 were never timed together": lambda: timed.set_ratios("trial 2", "trial 1"),
        "trial 1 and trial 9 were never timed together": lambda: timed.set_ratios("trial 1", "trial 9"),
        "fp32 was never timed": lambda: Measurements().noise_floor(),
    }
    for message, read in refusals.items():
        with pytest.raises(ValueError) as refused:
            read()
        assert str(refused.value) == message
    assert timed.set_ratios("trial 1", "fp32") == [1.0] and timed.session_sets("trial 2") == 1


def test_a_measurement_whose_models_did_not_take_turns_together_is_refused():
    apart = Timing(1, 0, (np.ones(3),), turns="openvino")  # another runtime's turns: its calls pair with no other's
    with pytest.raises(ValueError) as refused:
        Measurements().added(measurement(trial_1=apart))
    assert str(refused.value) == "a measurement's models must take turns together: their calls are paired"
