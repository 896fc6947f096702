"""What every plot of the report shares: the matplotlib handle, saving, one style per (model, runtime), legends
beside the axes, plain tick labels, and the latency window that keeps a stall tail from stretching an axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuning.files.atomic import atomic_output
from tuning.measure.figures import count
from tuning.report.speed import Series

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, not when the report package is
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from tuning.measure.benchmark import Spread


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def save(figure: Figure, path: Path) -> Path:
    plt = pyplot()
    with atomic_output(path) as tmp:
        # "tight" grows the picture to hold what lies outside the axes: legends, notes, long titles.
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


# One line style per runtime, one colour per model: the same model reads alike on every runtime.
_RUNTIME_LINES = ("-", "--", ":", "-.")


def series_style(series: Series) -> tuple[str, str]:
    """The colour and line style of one (model, runtime) pair."""
    return f"C{series.model_index}", _RUNTIME_LINES[series.runtime_index % len(_RUNTIME_LINES)]


def errorbar_series(axes: Axes, xs: Sequence[float], spreads: Sequence[Spread], series: Series) -> None:
    """One (model, runtime) line: each point its median, its bar from low to high, in the series' style."""
    colour, line = series_style(series)
    axes.errorbar(
        list(xs),
        [s.value for s in spreads],
        yerr=[[s.value - s.low for s in spreads], [s.high - s.value for s in spreads]],
        marker="o",
        capsize=4,
        color=colour,
        linestyle=line,
        label=series.label,
    )


def batch_size_axis(axes: Axes, batch_sizes: Sequence[int]) -> None:
    """The x axis of a per-batch-size plot: log 2, one labelled tick per measured batch size."""
    axes.set_xscale("log", base=2)
    axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    axes.minorticks_off()
    axes.set_xlabel("batch size")


def legend_beside(axes: Axes, title: str | None = None) -> None:
    """The legend to the right of the axes, top-aligned: never over a point, however the data fall."""
    axes.legend(title=title, title_fontsize=8, fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)


def legend_below(figure: Figure, axes: Axes, title: str | None = None) -> None:
    """The legend under the axes and their x label, in up to three columns; for a figure made with
    ``layout="constrained"``, which makes room for it. For plots whose right side holds other notes."""
    handles, labels = axes.get_legend_handles_labels()
    figure.legend(handles, labels, title=title, title_fontsize=8, fontsize=8, loc="outside lower center",
                  ncols=min(3, len(labels)))  # fmt: skip


def thousands_formatter():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _position: count(value))


def plain_log_ticks(axis, subs: Sequence[float] = (1.0, 2.0, 5.0)) -> None:
    """Ticks at ``subs`` times powers of ten, written as plain numbers (20, 50, 1,000), not 2×10¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=tuple(subs)))
    axis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:,.{0 if value >= 1 else 2}f}"))
    axis.set_minor_formatter(NullFormatter())


# Where the latency axis ends: at the p99.5 of all runs, but never beyond this many times the slowest model's
# median. On a shared machine more than 0.5 % of the runs can be stalls (scheduler, page faults) of
# milliseconds beside a body of tens of µs; such a tail says nothing about the model and would squeeze its body
# into a sliver at the left, so it is counted and named, not drawn. A tail that would widen the axis by less
# than LATENCY_TAIL_STRETCH is drawn whole: cutting it would only hide runs.
LATENCY_AXIS_PERCENTILE = 99.5
LATENCY_AXIS_MEDIANS = 5.0
LATENCY_TAIL_STRETCH = 1.5


@dataclass(frozen=True)
class LatencyWindow:
    """The part of the latency axis the plot shows, in µs, and what lies beyond its right end."""

    low: float
    high: float
    beyond: tuple[int, ...]  # runs above ``high``, per series in the order given
    slowest: float  # the slowest run of all

    @property
    def beyond_total(self) -> int:
        return sum(self.beyond)

    @property
    def log_scale(self) -> bool:
        """A log axis once the window spans more than a factor of 4 (e.g. a 25 µs model beside a 200 µs one);
        a narrower window reads better on a linear axis, with more tick labels."""
        return self.high / self.low > 4.0


def latency_window(samples_us: Sequence[np.ndarray]) -> LatencyWindow:
    """The window over every series' per-run latencies (µs): from the fastest run to the p99.5 of all runs,
    capped at LATENCY_AXIS_MEDIANS times the largest median; up to the slowest run when that is near."""
    pooled = np.concatenate(samples_us)
    slowest = float(pooled.max())
    largest_median = max(float(np.median(s)) for s in samples_us)
    bulk_end = min(float(np.percentile(pooled, LATENCY_AXIS_PERCENTILE)), LATENCY_AXIS_MEDIANS * largest_median)
    high = slowest * 1.02 if slowest <= LATENCY_TAIL_STRETCH * bulk_end else bulk_end
    low = float(pooled.min()) * 0.98
    return LatencyWindow(low, high, tuple(int(np.sum(s > high)) for s in samples_us), slowest)
