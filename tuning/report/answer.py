"""The answer a report opens with: is the int8 model accurate enough, and is it faster here?

One line, first in ``report``'s console output, report.md and report.html, and in report.json as ``answer``:
the change in top-1 error against fp32, then the speed verdict of :mod:`tuning.measure.verdict` (pays, does
not pay, cannot tell at this noise, at batch 1 and at the largest batch, with intervals and the CPU class), on
the runtime the gate reads (``gates.runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tuning.measure import benchmark
from tuning.measure.verdict import Verdict
from tuning.report.numbers import Report


@dataclass(frozen=True)
class Answer:
    float_error: float  # top-1 error of fp32, a fraction
    int8_error: float
    verdict: Verdict | None  # None: speed not measured, or a model the gate's runtime cannot run
    runtime: str  # where the speed was measured (gates.runtime)

    @property
    def error_change_pp(self) -> float:
        """int8 minus fp32 top-1 error, in percentage points (positive: int8 is less accurate)."""
        return 100 * (self.int8_error - self.float_error)

    def line(self) -> str:
        accuracy = (
            f"top-1 error int8 {100 * self.int8_error:.2f} % vs fp32 {100 * self.float_error:.2f} % "
            f"({self.error_change_pp:+.2f} pp)"
        )
        if self.verdict is None:
            return f"{accuracy}; speed not measured on {self.runtime}"
        return f"{accuracy}; on {self.runtime}, {self.verdict.line()}"

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line(),
            "int8_top1_error": self.int8_error,
            "fp32_top1_error": self.float_error,
            "error_change_pp": self.error_change_pp,
            "speed_runtime": self.runtime,
            "speed": None if self.verdict is None else self.verdict.to_json(),
        }


def report_answer(report: Report) -> Answer:
    """The int8 model against fp32 in ``report``: accuracy on onnxruntime, speed on ``gates.runtime``."""
    float_result, int8_result = report.float_result, report.int8_result
    runtime = report.config.gates.runtime
    fp32, int8 = float_result.performance(runtime), int8_result.performance(runtime)
    verdict = None
    if fp32 is not None and int8 is not None and fp32.latency is not None and int8.latency is not None:
        largest = max(benchmark.batch_sizes(report.config.benchmark))
        verdict = Verdict(
            latency_ratio=int8.latency_ratio(fp32),
            throughput_ratio=int8.throughput_ratio(fp32, largest),
            batch_size=largest,
            noise_floor=fp32.noise_floor(),
            cpu=report.environment.features(),
        )
    return Answer(float_result.accuracy.top1_error, int8_result.accuracy.top1_error, verdict, runtime.value)
