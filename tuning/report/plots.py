"""The report's PNG plots: speed-up against fp32, latency distribution, throughput against batch size, the int8
confusion matrix and the images int8 classifies differently.

Each ``*_figure`` function returns the matplotlib figure (tests read its artists back); :func:`draw_plots` saves
them. Every legend lies beside its axes, never over the data.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tuning.measure import benchmark
from tuning.measure.benchmark import threads_phrase
from tuning.measure.figures import count, pct, us
from tuning.report.numbers import Report
from tuning.report.plot_axes import (
    LATENCY_AXIS_MEDIANS,
    LATENCY_AXIS_PERCENTILE,
    LatencyWindow,
    batch_size_axis,
    errorbar_series,
    latency_window,
    legend_beside,
    plain_log_ticks,
    pyplot,
    save,
    series_style,
    thousands_formatter,
)
from tuning.report.plot_speedup import SPEEDUP_INTERVAL, speedup_conditions, speedup_figure
from tuning.report.speed import measured_series

if TYPE_CHECKING:  # matplotlib is imported when a plot is drawn, not when the report package is
    from matplotlib.figure import Figure

SPEEDUP_PLOT = "speedup.png"
LATENCY_PLOT = "latency.png"
THROUGHPUT_PLOT = "throughput.png"
CONFUSION_PLOT = "confusion-int8.png"
FLIPS_PLOT = "flips-int8.png"
# What the throughput plot's bars span; said in the plot and in report.md's caption.
THROUGHPUT_SPREAD = "the lowest and highest images/s of the measurement's rounds"
PLOT_TITLES = {
    SPEEDUP_PLOT: "speed-up against fp32 per batch size",
    LATENCY_PLOT: "latency distribution per model",
    THROUGHPUT_PLOT: "throughput against batch size",
    CONFUSION_PLOT: "confusion matrix of the int8 model",
    FLIPS_PLOT: "test images the int8 model classifies differently from fp32",
}


def plot_captions(report: Report) -> dict[str, str]:
    """What report.md says under a plot, by file name; plots that explain themselves have none."""
    return {
        SPEEDUP_PLOT: (
            "Speed-up: each model's images/s over fp32's on the same runtime at each batch size, all interleaved "
            f"in one run; above 1.0 faster than fp32, below slower. Bars: {SPEEDUP_INTERVAL}. "
            f"Measured on {speedup_conditions(report)}."
        ),
        LATENCY_PLOT: (
            f"Latency axis: up to the p{LATENCY_AXIS_PERCENTILE:g} of all runs, at most "
            f"{LATENCY_AXIS_MEDIANS:g}× the slowest model's median (or to the slowest run when that is near); "
            "runs beyond it (stalls of the machine) are counted under the plot and in the legend, not drawn. "
            "The table above has the p99 of every run."
        ),
        THROUGHPUT_PLOT: f"Throughput bars: {THROUGHPUT_SPREAD}; a dip inside them is noise, not a trend.",
    }


def latency_figure(report: Report) -> Figure:
    """Per-run batch-1 latency of every (model, runtime), as step histograms over the window that holds the
    bulk of the runs (:func:`~tuning.report.plot_axes.latency_window`); the rest are counted, not drawn."""
    plt = pyplot()
    measured = measured_series(report)
    samples_us = [1000 * series.performance.latency.durations_ms for series in measured]
    window = latency_window(samples_us)
    spacing = np.geomspace if window.log_scale else np.linspace
    bins = spacing(window.low, window.high, 80)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for series, runs_us, beyond in zip(measured, samples_us, window.beyond):
        p50, p99 = (series.performance.latency.percentile(q) for q in (50, 99))
        colour, line = series_style(series)
        label = f"{series.label}: p50 {us(p50)}, p99 {us(p99)}" + (f", {count(beyond)} beyond" if beyond else "")
        axes.hist(runs_us, bins=bins, histtype="step", linewidth=1.5, color=colour, linestyle=line, label=label)
        axes.axvline(1000 * p50, ymin=0.93, ymax=1.0, color=colour, linewidth=2.5)
    if window.log_scale:
        axes.set_xscale("log")
        # Within a decade, seven labels per decade (30, 40, 50, 70, 100); beyond, 1-2-5 keeps them apart.
        within_decade = window.high / window.low <= 10
        plain_log_ticks(axes.xaxis, subs=(1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0) if within_decade else (1.0, 2.0, 5.0))
    else:
        axes.xaxis.set_major_formatter(thousands_formatter())
    axes.set_xlim(window.low, window.high)
    axes.yaxis.set_major_formatter(thousands_formatter())
    scale = " (log scale)" if window.log_scale else ""
    axes.set_xlabel(f"latency per run, µs{scale}; ticks at the top: p50" + _beyond_note(window, samples_us))
    axes.set_ylabel("runs")
    settings = report.config.benchmark
    axes.set_title(f"Batch-1 latency: {settings.rounds} rounds per model, {threads_phrase(settings.intra_op_threads)}")
    axes.grid(alpha=0.3)
    legend_beside(axes)
    return figure


def _beyond_note(window: LatencyWindow, samples_us: list[np.ndarray]) -> str:
    """A second axis-label line naming the runs past the axis' end; empty when every run is drawn."""
    if not window.beyond_total:
        return ""
    runs = sum(len(s) for s in samples_us)
    return (
        f"\n{count(window.beyond_total)} of {count(runs)} runs ({pct(window.beyond_total / runs)}) lie beyond "
        f"{us(window.high / 1000)}, up to {us(window.slowest / 1000)}: not drawn"
    )


def throughput_figure(report: Report) -> Figure:
    plt = pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for series in measured_series(report):
        points = series.performance.throughput
        spreads = [t.images_per_s_spread for t in points]
        errorbar_series(axes, [t.batch_size for t in points], spreads, series)
    batch_sizes = benchmark.batch_sizes(report.config.benchmark)
    batch_size_axis(axes, batch_sizes)
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(thousands_formatter())
    axes.set_ylabel("images / s")
    axes.set_title(f"Throughput of batch-capable copies ({threads_phrase(report.config.benchmark.intra_op_threads)})")
    axes.grid(alpha=0.3)
    legend_beside(axes, title=f"bars: {THROUGHPUT_SPREAD}")
    return figure


def confusion_figure(report: Report) -> Figure:
    from matplotlib.colors import LogNorm

    plt = pyplot()
    result = report.int8_result
    confusion = result.accuracy.confusion
    classes = confusion.shape[0]
    figure, axes = plt.subplots(figsize=(7.5, 6.5))
    # Log colours: the diagonal holds ~1000 per cell, the mistakes a handful; linear colours would hide them.
    shown = np.ma.masked_equal(confusion, 0)
    image = axes.imshow(shown, cmap="Blues", norm=LogNorm(vmin=0.5, vmax=max(int(confusion.max()), 2)))
    threshold = np.sqrt(max(int(confusion.max()), 1))
    for row in range(classes):
        for col in range(classes):
            count = int(confusion[row, col])
            if count:
                colour = "white" if count > threshold else "black"
                axes.text(col, row, f"{count:,}", ha="center", va="center", fontsize=8, color=colour)
    labels = [report.class_label(k) for k in range(classes)]
    axes.set_xticks(range(classes), labels, rotation=45, ha="right")
    axes.set_yticks(range(classes), labels)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(
        f"{result.entry.name}: confusion matrix, {result.accuracy.pixel_scale.value} pixels, "
        f"top-1 error {pct(result.accuracy.top1_error)}"
    )
    colorbar = figure.colorbar(image, ax=axes, label="images (log scale)")
    plain_log_ticks(colorbar.ax.yaxis)
    return figure


_FLIP_COLOURS = {"to_wrong": "#c62828", "to_correct": "#2e7d32", "both_wrong": "#555555"}


def flips_figure(report: Report) -> Figure:
    """The flipped images themselves, each titled fp32 → int8 prediction and the true class."""
    plt = pyplot()
    shown = report.flips[: len(report.flip_pixels)]
    columns = min(8, len(shown))
    rows = -(-len(shown) // columns)
    figure, grid = plt.subplots(rows, columns, figsize=(1.35 * columns, 1.6 * rows + 0.9), squeeze=False)
    for axes in grid.flat:
        axes.axis("off")
    for axes, flip, pixels in zip(grid.flat, shown, report.flip_pixels):
        axes.imshow(pixels, cmap="gray", interpolation="nearest")
        axes.set_title(
            f"{flip.float_prediction} → {flip.int8_prediction}\ntrue {report.class_label(flip.label)}",
            fontsize=8,
            color=_FLIP_COLOURS[flip.kind],
        )
    int8 = report.int8_result.entry.name
    figure.suptitle(
        f"{len(report.flips):,} test images {int8} classifies differently from fp32"
        + (f" (first {len(shown)} shown)" if len(shown) < len(report.flips) else "")
        + f"\ntitle: fp32 → {int8} prediction, true class; red: {int8} wrong where fp32 was right, "
        f"green: {int8} right where fp32 was wrong, grey: both wrong",
        fontsize=9,
    )
    figure.tight_layout()
    return figure


def draw_plots(report: Report, out_dir: Path) -> list[Path]:
    """Every plot the report links, in the order report.md shows them; speed-up, latency and throughput only when
    measured, the flipped images only when there are any."""
    figures = {}
    if report.performance_measured:
        figures |= {
            SPEEDUP_PLOT: speedup_figure(report),
            LATENCY_PLOT: latency_figure(report),
            THROUGHPUT_PLOT: throughput_figure(report),
        }
    figures[CONFUSION_PLOT] = confusion_figure(report)
    if report.flips:
        figures[FLIPS_PLOT] = flips_figure(report)
    return [save(figure, out_dir / name) for name, figure in figures.items()]
