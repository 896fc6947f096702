"""The report's PNG plots: latency distribution, throughput against batch size, int8 confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuning.files.atomic import atomic_output
from tuning.measure import benchmark
from tuning.measure.benchmark import threads_phrase
from tuning.measure.figures import count, pct, us
from tuning.report.numbers import Report
from tuning.report.speed import Series, measured_series

LATENCY_PLOT = "latency.png"
THROUGHPUT_PLOT = "throughput.png"
CONFUSION_PLOT = "confusion-int8.png"
FLIPS_PLOT = "flips-int8.png"
# What the throughput plot's bars span; said in the plot and in report.md's caption.
THROUGHPUT_SPREAD = "the lowest and highest images/s of the measurement's rounds"
PLOT_TITLES = {
    LATENCY_PLOT: "latency distribution per model",
    THROUGHPUT_PLOT: "throughput against batch size",
    CONFUSION_PLOT: "confusion matrix of the int8 model",
    FLIPS_PLOT: "test images the int8 model classifies differently from fp32",
}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path: Path) -> Path:
    plt = _pyplot()
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    return path


def _plot_latency(report: Report, path: Path) -> Path:
    plt = _pyplot()
    measured = measured_series(report)
    samples = [1000 * series.performance.latency.durations_ms for series in measured]
    # Latencies on a shared machine have a long tail (stalls of milliseconds next to a 40 us body):
    # log-spaced bins on a log axis show the body and the tail in one picture.
    low = min(float(s.min()) for s in samples)
    high = max(float(s.max()) for s in samples)
    bins = np.geomspace(low * 0.95, high * 1.05, 80)
    figure, axes = plt.subplots(figsize=_figure_size(report, 8))
    for series, s in zip(measured, samples):
        p50, p99 = (series.performance.latency.percentile(q) for q in (50, 99))
        colour, line = _style(series)
        label = f"{series.label}: p50 {us(p50)}, p99 {us(p99)}"
        axes.hist(s, bins=bins, histtype="step", linewidth=1.5, color=colour, linestyle=line, label=label)
        axes.axvline(1000 * p50, ymin=0.93, ymax=1.0, color=colour, linewidth=2.5)
    axes.set_xscale("log")
    _plain_log_ticks(axes.xaxis)
    axes.yaxis.set_major_formatter(_thousands())
    axes.set_xlabel("latency per run, µs (log scale; ticks at the top: p50)")
    axes.set_ylabel("runs")
    settings = report.config.benchmark
    axes.set_title(f"Batch-1 latency: {settings.rounds} rounds per model, {threads_phrase(settings.intra_op_threads)}")
    axes.grid(alpha=0.3)
    _legend(report, axes)
    return _save(figure, path)


def _plot_throughput(report: Report, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=_figure_size(report, 7))
    for series in measured_series(report):
        points = series.performance.throughput
        spreads = [t.images_per_s_spread for t in points]
        colour, line = _style(series)
        axes.errorbar(
            [t.batch_size for t in points],
            [spread.value for spread in spreads],
            yerr=[[s.value - s.low for s in spreads], [s.high - s.value for s in spreads]],
            marker="o",
            capsize=4,
            color=colour,
            linestyle=line,
            label=series.label,
        )
    batch_sizes = benchmark.batch_sizes(report.config.benchmark)
    axes.set_xscale("log", base=2)
    axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.yaxis.set_major_formatter(_thousands())
    axes.set_xlabel("batch size")
    axes.set_ylabel("images / s")
    axes.set_title(f"Throughput of batch-capable copies ({threads_phrase(report.config.benchmark.intra_op_threads)})")
    axes.grid(alpha=0.3)
    _legend(report, axes, title=f"bars: {THROUGHPUT_SPREAD}")
    return _save(figure, path)


# One line style per runtime, one colour per model: the same model reads alike on every runtime.
_RUNTIME_LINES = ("-", "--", ":", "-.")


def _style(series: Series) -> tuple[str, str]:
    return f"C{series.model_index}", _RUNTIME_LINES[series.runtime_index % len(_RUNTIME_LINES)]


def _figure_size(report: Report, width: float) -> tuple[float, float]:
    """Wider with several runtimes: the legend then goes beside the axes, not over the lines."""
    return (width + 3.5, 4.5) if len(report.measured_runtimes) > 1 else (width, 4.5)


def _legend(report: Report, axes, title: str | None = None) -> None:
    placement = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if len(report.measured_runtimes) > 1 else {}
    axes.legend(title=title, title_fontsize=8, fontsize=8 if placement else None, **placement)


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda value, _position: count(value))


def _plain_log_ticks(axis) -> None:
    """Ticks at 1, 2, 5 times powers of ten, written as plain numbers (20, 50, 1,000), not 2×10¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda value, _position: f"{value:,.{0 if value >= 1 else 2}f}"))
    axis.set_minor_formatter(NullFormatter())


def _plot_confusion(report: Report, path: Path) -> Path:
    from matplotlib.colors import LogNorm

    plt = _pyplot()
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
    _plain_log_ticks(colorbar.ax.yaxis)
    return _save(figure, path)


_FLIP_COLOURS = {"to_wrong": "#c62828", "to_correct": "#2e7d32", "both_wrong": "#555555"}


def _plot_flips(report: Report, path: Path) -> Path:
    """The flipped images themselves, each titled fp32 → int8 prediction and the true class."""
    plt = _pyplot()
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
    return _save(figure, path)


def draw_plots(report: Report, out_dir: Path) -> list[Path]:
    """Every plot the report links, in the order report.md shows them; latency and throughput only when
    measured, the flipped images only when there are any."""
    plots = [_plot_confusion(report, out_dir / CONFUSION_PLOT)]
    if report.flips:
        plots.append(_plot_flips(report, out_dir / FLIPS_PLOT))
    if report.performance_measured:
        plots = [
            _plot_latency(report, out_dir / LATENCY_PLOT),
            _plot_throughput(report, out_dir / THROUGHPUT_PLOT),
            *plots,
        ]
    return plots
