"""The speed-up plot: every model's images/s over fp32's per batch size, on each runtime, with its interval.

The picture of report.md's "Ratios against fp32" table, drawn from the same ratios
(:func:`tuning.report.speed.ratios_vs_float`); :func:`speedup_interval` is the one place that says which interval
the bars span.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from tuning.measure import benchmark
from tuning.measure.benchmark import Spread, threads_phrase
from tuning.measure.runtimes import is_openvino
from tuning.report.numbers import Report
from tuning.report.plot_axes import batch_size_axis, errorbar_series, legend_below, plain_log_ticks, pyplot
from tuning.report.speed import Series, SpeedRatios, measured_series, ratios_vs_float

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, not when the report package is
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# What the bars span, in the plot's legend and report.md's caption; read by speedup_interval alone.
SPEEDUP_INTERVAL = "range of the per-round ratios, point at their median"
FASTER, SLOWER = "faster than fp32", "slower than fp32"
FASTER_COLOUR, SLOWER_COLOUR = "#2e7d32", "#c62828"
# Points of one batch size are spread sideways by this fraction of a doubling per series, so that bars of
# models with similar speed-ups do not hide each other.
_DODGE_DOUBLINGS = 0.07


def speedup_interval(ratios: SpeedRatios, batch_size: int) -> Spread | None:
    """A model's images/s over fp32's at ``batch_size`` and the interval drawn around it: today the median of
    the per-round ratios (both models ran interleaved in every round) and their range over the rounds. When
    the measurement gains a confidence interval, it is read here (and SPEEDUP_INTERVAL says so)."""
    return ratios.throughput.get(batch_size)


@dataclass(frozen=True)
class SpeedupSeries:
    """One model on one runtime: its speed-up against fp32 on the same runtime at each timed batch size."""

    series: Series
    points: dict[int, Spread]  # by batch size; a batch size either model was not timed at is left out


def speedup_series(report: Report) -> list[SpeedupSeries]:
    """Every timed model other than fp32, runtime by runtime, against fp32 on the same runtime."""
    sizes = benchmark.batch_sizes(report.config.benchmark)
    by_model_runtime = {(s.model_index, s.runtime_index): s for s in measured_series(report)}
    model_indices = {result.entry.name: index for index, result in enumerate(report.models)}
    found = []
    for runtime_index, runtime in enumerate(report.measured_runtimes):
        for name, ratios in ratios_vs_float(report, runtime).items():
            points = {b: spread for b in sizes if (spread := speedup_interval(ratios, b)) is not None}
            series = by_model_runtime.get((model_indices[name], runtime_index))
            if points and series is not None:
                found.append(SpeedupSeries(series, points))
    return found


def speedup_conditions(report: Report) -> str:
    """The CPU and the conditions in one line, for the plot's title and its caption."""
    settings, env = report.config.benchmark, report.environment
    packages = dict.fromkeys("openvino" if is_openvino(r) else "onnxruntime" for r in report.measured_runtimes)
    versions = ", ".join(f"{package} {env.versions.get(package)}" for package in packages)
    return (
        f"{env.cpu_model}; {threads_phrase(settings.intra_op_threads)}; "
        f"{settings.rounds} interleaved rounds; {versions}"
    )


def speedup_figure(report: Report) -> Figure:
    """The figure: one errorbar line per (model, runtime), batch size on a log-2 axis, a reference line at 1.0
    with the faster and the slower side named, the legend below."""
    plt = pyplot()
    drawn = speedup_series(report)
    figure, axes = plt.subplots(figsize=(8, 5), layout="constrained")
    for position, entry in enumerate(drawn):
        dodge = 2 ** (_DODGE_DOUBLINGS * (position - (len(drawn) - 1) / 2))
        sizes = sorted(entry.points)
        spreads = [entry.points[b] for b in sizes]
        errorbar_series(axes, [b * dodge for b in sizes], spreads, entry.series)
    ends = [end for entry in drawn for s in entry.points.values() for end in (s.low, s.high)] + [1.0]
    _ratio_axis(axes, min(ends), max(ends))
    _faster_and_slower(axes)
    batch_sizes = benchmark.batch_sizes(report.config.benchmark)
    batch_size_axis(axes, batch_sizes)
    axes.grid(alpha=0.3)
    axes.set_title(
        "Speed-up against fp32 on the same runtime: images/s ÷ fp32's images/s\n" + speedup_conditions(report),
        fontsize=10,
    )
    # The legend goes below: the right of the axes names the faster and the slower side.
    legend_below(figure, axes, title=f"bars: {SPEEDUP_INTERVAL}")
    return figure


def _ratio_axis(axes: Axes, lowest: float, highest: float) -> None:
    """Linear while the ratios stay within a factor of 3; a log axis beyond, where 2× faster and 2× slower lie
    equally far from 1 and one wild round does not flatten the rest."""
    from matplotlib.ticker import FuncFormatter

    if highest / lowest > 3.0:
        axes.set_yscale("log")
        plain_log_ticks(axes.yaxis, subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0))
        axes.set_ylim(lowest / 1.15, highest * 1.15)
        axes.set_ylabel("speed-up (log scale)")
    else:
        margin = 0.08 * (highest - lowest) or 0.05
        axes.set_ylim(lowest - margin, highest + margin)
        axes.set_ylabel("speed-up")
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _position: f"{round(value, 3):g}×"))


def _faster_and_slower(axes: Axes) -> None:
    """A line at 1.0 (as fast as fp32), the sides shaded and named just right of the axes, where no point lies."""
    from matplotlib.transforms import blended_transform_factory

    axes.axhline(1.0, color="black", linewidth=1.2, zorder=1)
    bottom, top = axes.get_ylim()
    axes.axhspan(1.0, top, color=FASTER_COLOUR, alpha=0.06, zorder=0)
    axes.axhspan(bottom, 1.0, color=SLOWER_COLOUR, alpha=0.06, zorder=0)
    axes.set_ylim(bottom, top)
    beside = blended_transform_factory(axes.transAxes, axes.transData)
    style = {"transform": beside, "x": 1.02, "y": 1.0, "fontsize": 9, "ha": "left", "clip_on": False}
    axes.text(s=f"↑ {FASTER}", va="bottom", color=FASTER_COLOUR, **style)
    axes.text(s=f"↓ {SLOWER}", va="top", color=SLOWER_COLOUR, **style)
