"""The report's PNG plots: latency distribution, throughput against batch size, int8 confusion matrix."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tuning import benchmark
from tuning.atomic import atomic_output
from tuning.benchmark import threads_phrase
from tuning.report_data import Report
from tuning.report_format import pct

LATENCY_PLOT = "latency.png"
THROUGHPUT_PLOT = "throughput.png"
CONFUSION_PLOT = "confusion-int8.png"
PLOT_TITLES = {
    LATENCY_PLOT: "latency distribution per model",
    THROUGHPUT_PLOT: "throughput against batch size",
    CONFUSION_PLOT: "confusion matrix of the int8 model",
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
    measured = [result for result in report.models if result.performance is not None]
    samples = [1000 * result.performance.latency.durations_ms for result in measured]
    # Latencies on a shared machine have a long tail (stalls of milliseconds next to a 40 us body):
    # log-spaced bins on a log axis show the body and the tail in one picture.
    low = min(float(s.min()) for s in samples)
    high = max(float(s.max()) for s in samples)
    bins = np.geomspace(low * 0.95, high * 1.05, 80)
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for index, (result, s) in enumerate(zip(measured, samples)):
        p50, p99 = (1000 * result.performance.latency.percentile(q) for q in (50, 99))
        colour = f"C{index}"
        label = f"{result.entry.name}: p50 {p50:.1f} µs, p99 {p99:.1f} µs"
        axes.hist(s, bins=bins, histtype="step", linewidth=1.5, color=colour, label=label)
        axes.axvline(p50, color=colour, linestyle="--", linewidth=1)
    axes.set_xscale("log")
    axes.set_xlabel("latency per run, µs (log scale; dashed: p50)")
    axes.set_ylabel("runs")
    settings = report.config.benchmark
    axes.set_title(f"Batch-1 latency: {settings.iterations} runs per model, {threads_phrase(settings.intra_op_threads)}")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def _plot_throughput(report: Report, path: Path) -> Path:
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for result in report.models:
        if result.performance is None:
            continue
        points = result.performance.throughput
        axes.plot([t.batch_size for t in points], [t.images_per_s for t in points], marker="o", label=result.entry.name)
    batch_sizes = benchmark.batch_sizes(report.config.benchmark)
    axes.set_xscale("log", base=2)
    axes.set_xticks(batch_sizes, [str(b) for b in batch_sizes])
    axes.minorticks_off()
    axes.set_ylim(bottom=0)
    axes.set_xlabel("batch size")
    axes.set_ylabel("images / s")
    axes.set_title(f"Throughput of batch-capable copies ({threads_phrase(report.config.benchmark.intra_op_threads)})")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


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
                axes.text(col, row, str(count), ha="center", va="center", fontsize=8, color=colour)
    axes.set_xticks(range(classes))
    axes.set_yticks(range(classes))
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    axes.set_title(
        f"{result.entry.name}: confusion matrix, {result.accuracy.pixel_scale.value} pixels, "
        f"top-1 error {pct(result.accuracy.top1_error)}"
    )
    figure.colorbar(image, ax=axes, label="images (log scale)")
    return _save(figure, path)


def draw_plots(report: Report, out_dir: Path) -> list[Path]:
    """Every plot the report links, in the order report.md shows them; latency and throughput only when measured."""
    plots = [_plot_confusion(report, out_dir / CONFUSION_PLOT)]
    if report.performance_measured:
        plots = [
            _plot_latency(report, out_dir / LATENCY_PLOT),
            _plot_throughput(report, out_dir / THROUGHPUT_PLOT),
            *plots,
        ]
    return plots
