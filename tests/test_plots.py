"""The report's plots drawn from chosen numbers (tests/report_fakes.py), read back from the matplotlib figures:
speed-up points and bars where the per-round ratios put them, legends beside the axes, a latency axis that
keeps the bulk of the runs and counts the rest, and where report.md and report.html show the speed-up plot."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer
from matplotlib.transforms import Bbox

from report_fakes import CPU_MODEL, fake_report, performance
from tuning.config.enums import Runtime
from tuning.measure.benchmark import Spread
from tuning.report import plot_speedup
from tuning.report.markdown_speed import runtimes_table
from tuning.report.plot_axes import LATENCY_AXIS_MEDIANS, latency_window
from tuning.report.plot_speedup import FASTER, SLOWER, SPEEDUP_INTERVAL, speedup_figure
from tuning.report.plots import PLOT_TITLES, SPEEDUP_PLOT, latency_figure, throughput_figure
from tuning.report.run import write_report

pytestmark = pytest.mark.fast

SIZES = (1, 16, 64)
# Per-round p50 of one batch (ms), by model, runtime and batch size. The rounds differ, so every speed-up has a
# median distinct from both ends of its range; zoo-int8 is slower than fp32, int8 faster.
ROUND_P50S_MS = {
    "fp32": {
        Runtime.ONNXRUNTIME: {1: [0.030, 0.033, 0.029], 16: [0.40, 0.44, 0.41], 64: [1.60, 1.50, 1.70]},
        Runtime.OPENVINO: {1: [0.040, 0.041, 0.039], 16: [0.30, 0.31, 0.33], 64: [1.00, 1.10, 1.05]},
    },
    "int8": {
        Runtime.ONNXRUNTIME: {1: [0.025, 0.020, 0.027], 16: [0.20, 0.25, 0.21], 64: [0.80, 0.70, 0.95]},
        Runtime.OPENVINO: {1: [0.030, 0.035, 0.028], 16: [0.20, 0.18, 0.22], 64: [0.60, 0.65, 0.50]},
    },
    "zoo-int8": {Runtime.ONNXRUNTIME: {1: [0.050, 0.052, 0.045], 16: [0.60, 0.70, 0.65], 64: [2.5, 2.2, 2.9]}},
}


def _report(runtimes: tuple[Runtime, ...] = (Runtime.ONNXRUNTIME, Runtime.OPENVINO), latency_runs_ms=None):
    rng = np.random.default_rng(1)
    timings = {
        name: {
            runtime: performance(
                name,
                latency_runs_ms[name] if latency_runs_ms else rng.normal(by_batch[1][0], 0.001, 500),
                by_batch,
            )
            for runtime, by_batch in by_runtime.items()
            if runtime in runtimes
        }
        for name, by_runtime in ROUND_P50S_MS.items()
    }
    return fake_report(timings, SIZES)


def _expected_speedups(runtimes: tuple[Runtime, ...]) -> dict[str, dict[int, tuple[float, float, float]]]:
    """(median, min, max) over the rounds of fp32's batch time over the model's, by series label and batch
    size: images/s ratios, computed here from the round p50s without the report's code."""
    expected = {}
    several = runtimes != (Runtime.ONNXRUNTIME,)
    for runtime in runtimes:
        base = ROUND_P50S_MS["fp32"][runtime]
        for name in ("int8", "zoo-int8"):
            if runtime not in ROUND_P50S_MS[name]:
                continue
            mine = ROUND_P50S_MS[name][runtime]
            label = f"{name} · {runtime.value}" if several else name
            expected[label] = {}
            for batch_size in SIZES:
                ratios = [theirs / own for theirs, own in zip(base[batch_size], mine[batch_size])]
                expected[label][batch_size] = (float(np.median(ratios)), min(ratios), max(ratios))
    return expected


def _drawn_errorbars(axes) -> dict[str, list[tuple[float, float, float, float]]]:
    """(x, y, bar bottom, bar top) of every point, by legend label, as the figure holds them."""
    drawn = {}
    for container in axes.containers:
        assert isinstance(container, ErrorbarContainer)
        data_line, _caps, (bars,) = container.lines
        xs, ys = data_line.get_data()
        ends = [(min(y for _x, y in segment), max(y for _x, y in segment)) for segment in bars.get_segments()]
        drawn[container.get_label()] = [(x, y, low, high) for x, y, (low, high) in zip(xs, ys, ends)]
    return drawn


@pytest.mark.parametrize("runtimes", [(Runtime.ONNXRUNTIME,), (Runtime.ONNXRUNTIME, Runtime.OPENVINO)])
def test_speedup_points_and_bars_sit_at_the_per_round_ratios(runtimes: tuple[Runtime, ...]) -> None:
    figure = speedup_figure(_report(runtimes))
    drawn = _drawn_errorbars(figure.axes[0])
    expected = _expected_speedups(runtimes)
    assert set(drawn) == set(expected)
    for label, points in drawn.items():
        assert len(points) == len(SIZES), label
        for (x, y, low, high), batch_size in zip(points, SIZES):
            median, lowest, highest = expected[label][batch_size]
            # Points of one batch size are nudged sideways, by much less than the gap to the next batch size.
            assert abs(np.log2(x) - np.log2(batch_size)) < 0.25, (label, x)
            assert (y, low, high) == pytest.approx((median, lowest, highest), rel=1e-9), (label, batch_size)
    # The fixture's int8 is faster than fp32 at every batch size and zoo-int8 slower: both sides are shown.
    assert all(y > 1 for _x, y, _l, _h in next(p for label, p in drawn.items() if label.startswith("int8")))
    assert all(y < 1 for _x, y, _l, _h in next(p for label, p in drawn.items() if label.startswith("zoo-int8")))


def test_the_bars_come_from_speedup_interval_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # The seam for a confidence interval: whatever speedup_interval returns is what the plot draws.
    monkeypatch.setattr(plot_speedup, "speedup_interval", lambda ratios, batch_size: Spread(2.0, 1.5, 3.0))
    drawn = _drawn_errorbars(speedup_figure(_report()).axes[0])
    assert drawn and all((y, low, high) == (2.0, 1.5, 3.0) for points in drawn.values() for _x, y, low, high in points)


def test_speedup_has_a_line_at_one_its_sides_named_and_the_conditions_in_the_title() -> None:
    figure = speedup_figure(_report())
    axes = figure.axes[0]
    (reference,) = [line for line in axes.get_lines() if list(line.get_ydata()) == [1.0, 1.0]]
    assert list(reference.get_xdata()) == [0, 1]  # across the whole width
    low, high = axes.get_ylim()
    assert low < 1.0 < high
    texts = {text.get_text(): text for text in axes.texts}
    faster, slower = texts[f"↑ {FASTER}"], texts[f"↓ {SLOWER}"]
    assert faster.get_position()[1] == slower.get_position()[1] == 1.0
    assert (faster.get_va(), slower.get_va()) == ("bottom", "top")  # above the line and below it
    title = axes.get_title()
    for condition in (CPU_MODEL, "1 intra-op thread", "3 interleaved rounds", "onnxruntime 1.2.3"):
        assert condition in title


def _outside(inner: Bbox, axes_box: Bbox) -> bool:
    return not inner.overlaps(axes_box)


@pytest.mark.parametrize("runtimes", [(Runtime.ONNXRUNTIME,), (Runtime.ONNXRUNTIME, Runtime.OPENVINO)])
@pytest.mark.parametrize("draw", [speedup_figure, latency_figure, throughput_figure])
def test_legends_and_notes_lie_outside_the_axes(draw, runtimes: tuple[Runtime, ...]) -> None:
    figure = draw(_report(runtimes))
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    axes = figure.axes[0]
    axes_box = axes.get_window_extent(renderer)
    legends = [legend for legend in [axes.get_legend(), *figure.legends] if legend is not None]
    assert len(legends) == 1
    legend_box = legends[0].get_window_extent(renderer)
    assert _outside(legend_box, axes_box), (legend_box, axes_box)
    # Every model's entry is in it.
    assert len(legends[0].get_texts()) == len(axes.get_legend_handles_labels()[1])
    for note in axes.texts:  # the speed-up plot's "faster" and "slower"
        note_box = note.get_window_extent(renderer)
        assert _outside(note_box, axes_box) and not note_box.overlaps(legend_box), note.get_text()


def _runs_with_stalls(median_ms: float, body: int, stalls: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([rng.normal(median_ms, 0.03 * median_ms, body), rng.uniform(4.0, 50.0, stalls)])


def test_the_latency_axis_keeps_the_bulk_and_counts_the_stalls_beyond_it() -> None:
    rng = np.random.default_rng(2)
    # 1 % of the runs are stalls of 4-50 ms: more than the 0.5 % a p99.5 leaves out.
    runs_ms = {"fp32": _runs_with_stalls(0.040, 4000, 60, rng), "int8": _runs_with_stalls(0.030, 4000, 20, rng),
               "zoo-int8": _runs_with_stalls(0.045, 4000, 0, rng)}  # fmt: skip
    figure = latency_figure(_report((Runtime.ONNXRUNTIME,), runs_ms))
    axes = figure.axes[0]
    left, right = axes.get_xlim()
    bodies_us = [1000 * runs[runs < 1.0] for runs in runs_ms.values()]
    assert left <= min(b.min() for b in bodies_us) and right >= max(b.max() for b in bodies_us)
    assert right <= LATENCY_AXIS_MEDIANS * 45.5  # not stretched towards the 50 ms stalls
    assert "80 of 12,080 runs (0.66 %) lie beyond" in axes.get_xlabel()
    labels = [text.get_text() for text in axes.get_legend().get_texts()]
    assert labels[0].endswith(", 60 beyond") and labels[1].endswith(", 20 beyond") and "beyond" not in labels[2]
    # Every drawn run is in a bin: the histograms hold exactly the runs inside the axis.
    drawn = sum(count for patch in axes.patches for count in _step_heights(patch))
    assert drawn == 12_000
    # The tick labels are there to read, several of them, inside the axis.
    figure.canvas.draw()
    ticks = [t for t in axes.xaxis.get_major_ticks() if left <= t.get_loc() <= right and t.label1.get_text()]
    assert len(ticks) >= 3


def _step_heights(patch) -> list[float]:
    """The bin heights of one step histogram: the y of each horizontal top edge of its outline."""
    vertices = patch.get_path().vertices
    tops = [(a, b) for a, b in zip(vertices[:-1], vertices[1:]) if a[1] == b[1] and a[0] != b[0] and a[1] > 0]
    return [a[1] for a, _b in tops]


def test_a_near_tail_is_drawn_whole_and_not_noted() -> None:
    rng = np.random.default_rng(3)
    body = rng.normal(40.0, 1.0, 4000)
    window = latency_window([body, np.append(body, 55.0)])  # one slow run, not a stall: well inside 1.5x p99.5
    assert window.high >= 55.0 and window.beyond == (0, 0)


def test_report_md_and_html_show_the_speedup_plot_with_its_caption(tmp_path: Path) -> None:
    files = write_report(_report(), tmp_path)
    assert (tmp_path / SPEEDUP_PLOT).read_bytes().startswith(b"\x89PNG")
    md = files.markdown.read_text()
    ratios_section = md[md.index("## Ratios against fp32") : md.index("## Performance")]
    link = f"![{PLOT_TITLES[SPEEDUP_PLOT]}]({SPEEDUP_PLOT})"
    assert link in ratios_section  # beside the table it draws
    caption = ratios_section.split(link, 1)[1].strip().split("\n\n")[0]
    assert caption.startswith("Speed-up:") and SPEEDUP_INTERVAL in caption and CPU_MODEL in caption
    page = files.html.read_text()
    assert re.search(rf'<img alt="{re.escape(PLOT_TITLES[SPEEDUP_PLOT])}" src="data:image/png;base64,', page)


def test_a_runtime_that_is_not_installed_is_a_line_under_the_table_not_rows_of_blanks() -> None:
    timings = {name: {Runtime.ONNXRUNTIME: performance(name, np.full(10, 0.03), {1: [0.03]})} for name in ("fp32", "int8")}
    report = fake_report(timings, (1,), unavailable={Runtime.OPENVINO: "OpenVINO is not installed (test)"})
    table = runtimes_table(report)
    assert [row.split(" | ")[1] for row in table.splitlines()[2:]] == ["onnxruntime", "onnxruntime"]
    assert "not installed" not in table
