"""Whether int8 pays: the written model against fp32, at batch 1 and at the throughput batch, in three states.

A state is read off an interval, never off a point: *pays* when the whole interval is on the faster side of
1, *does not pay* when the whole interval is on the slower side, *cannot tell at this noise* when it
straddles 1. Directions: latency is a time ratio int8/fp32 (below 1: int8 faster), throughput an images/s
ratio int8/fp32 (above 1: int8 faster); see tuning/measure/statistics.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from tuning.measure.statistics import Interval


class Pays(Enum):
    PAYS = "pays"
    DOES_NOT_PAY = "does not pay"
    CANNOT_TELL = "cannot tell at this noise"


def time_ratio_pays(time_ratio: Interval) -> Pays:
    """The state of a time ratio int8/fp32 (below 1: int8 faster)."""
    if time_ratio.below(1.0):
        return Pays.PAYS
    if time_ratio.above(1.0):
        return Pays.DOES_NOT_PAY
    return Pays.CANNOT_TELL


def throughput_ratio_pays(throughput_ratio: Interval) -> Pays:
    """The state of an images/s ratio int8/fp32 (above 1: int8 faster)."""
    return time_ratio_pays(throughput_ratio.inverse())


@dataclass(frozen=True)
class Verdict:
    """The written int8 model against fp32 on this CPU."""

    latency_ratio: Interval  # time int8 / fp32 at batch 1
    throughput_ratio: Interval  # images/s int8 / fp32 at ``batch_size``
    batch_size: int
    noise_floor: Interval | None  # time of fp32's second session / its first, at batch 1
    cpu: str  # tuning.measure.environment.Environment.features()

    @property
    def at_batch_1(self) -> Pays:
        return time_ratio_pays(self.latency_ratio)

    @property
    def at_throughput_batch(self) -> Pays:
        return throughput_ratio_pays(self.throughput_ratio)

    @property
    def slower_than_fp32(self) -> bool:
        """Significantly slower than fp32 at batch 1 or at the throughput batch (what ``if_slower_than_fp32`` acts on)."""
        return Pays.DOES_NOT_PAY in (self.at_batch_1, self.at_throughput_batch)

    def line(self) -> str:
        """One line: both states with their intervals, the noise floor and the CPU."""
        latency, throughput = self.latency_ratio, self.throughput_ratio
        floor = (
            f"noise floor (fp32 vs a second fp32 session) {self.noise_floor.value:.2f}x "
            f"[{self.noise_floor.low:.2f}-{self.noise_floor.high:.2f}]; "
            if self.noise_floor is not None
            else ""
        )
        return (
            f"int8 vs fp32: batch 1 {self.at_batch_1.value}, {latency.value:.2f}x the time "
            f"[{latency.low:.2f}-{latency.high:.2f}]; batch {self.batch_size} {self.at_throughput_batch.value}, "
            f"{throughput.value:.2f}x the throughput [{throughput.low:.2f}-{throughput.high:.2f}]; "
            f"{floor}{latency.coverage:.0%} intervals; on {self.cpu}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line(),
            "batch_1": self.at_batch_1.value,
            "latency_time_ratio_int8_over_fp32": self.latency_ratio.to_json(),
            "throughput_batch_size": self.batch_size,
            "throughput_batch": self.at_throughput_batch.value,
            "throughput_ratio_int8_over_fp32": self.throughput_ratio.to_json(),
            "noise_floor_time_ratio": None if self.noise_floor is None else self.noise_floor.to_json(),
            "cpu": self.cpu,
        }
