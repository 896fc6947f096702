"""report.html's width rule: at 1,280 px the page never scrolls sideways; the report's tables fit (a figure with
its range wraps before the bracket), and a table too wide anyway scrolls inside its own box. Measured in
headless Chromium on a report of chosen numbers with three runtimes (tests/report_fakes.py)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from report_fakes import fake_report, performance
from tuning.config.enums import Runtime
from tuning.report.html import TABLE_SCROLL, html_page
from tuning.report.run import write_report

CHROMIUM = shutil.which("chromium")
PAGE_WIDTH = 1280
RUNTIMES = (Runtime.ONNXRUNTIME, Runtime.OPENVINO, Runtime.OPENVINO_F32)
# Written into the page's body once laid out: the page's width and each table box's content and visible widths.
_MEASURE = """<script>
const boxes = [...document.querySelectorAll(".%s")];
document.body.setAttribute("data-widths", JSON.stringify({page: document.documentElement.scrollWidth,
  viewport: window.innerWidth, tables: boxes.map(box => [box.scrollWidth, box.clientWidth])}));
</script>""" % TABLE_SCROLL


@pytest.mark.fast
def test_every_table_is_in_a_scroll_box_and_ranged_figures_wrap_only_before_the_bracket() -> None:
    text = "# t\n\n| model | p50 |\n| :--- | ---: |\n| zoo-int8 (reference) | 27.0 µs (26.9 µs–27.4 µs) |\n"
    page = html_page(text, {})
    assert page.count(f'<div class="{TABLE_SCROLL}"><table>') == page.count("<table>") == 1
    assert page.count("</table></div>") == 1
    assert '<td style="text-align: right;" class="ranged"><span>27.0 µs</span> <span>(26.9 µs–27.4 µs)</span></td>' in page
    assert "<td style=\"text-align: left;\">zoo-int8 (reference)</td>" in page  # a name is not a figure
    assert re.search(r"\.table-scroll \{[^}]*overflow-x: auto", page)


def _wide_report(tmp_path: Path) -> tuple[str, dict[str, Path]]:
    """report.md of three models on three runtimes, zoo-int8 unable to load on two, and its plots by name."""
    sizes = (1, 16, 64, 256)
    rng = np.random.default_rng(0)
    timings = {
        name: {
            runtime: performance(name, rng.normal(0.03, 0.001, 200), {b: [0.03 * b * f for f in (0.9, 1.0, 1.1)] for b in sizes})
            for runtime in (RUNTIMES if name != "zoo-int8" else RUNTIMES[:1])
        }
        for name in ("fp32", "int8", "zoo-int8")
    }
    files = write_report(fake_report(timings, sizes), tmp_path / "report")
    return files.markdown.read_text(), {plot.name: plot for plot in files.plots}


def _widths(page: str, tmp_path: Path) -> dict:
    measured = tmp_path / "measured.html"
    measured.write_text(page.replace("</body>", _MEASURE + "</body>"))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
             f"--window-size={PAGE_WIDTH},2000", "--dump-dom"]  # fmt: skip
    dom = subprocess.run([CHROMIUM, *flags, measured.as_uri()], capture_output=True, text=True, timeout=120).stdout
    (attribute,) = re.findall(r'data-widths="([^"]*)"', dom)
    return json.loads(attribute.replace("&quot;", '"'))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed: bash scripts/setup_system.sh installs it (root or sudo)")
def test_at_1280_px_the_page_never_scrolls_sideways_and_the_report_tables_fit(tmp_path: Path) -> None:
    markdown_text, plots = _wide_report(tmp_path)
    too_wide = "| " + " | ".join(f"column {k} 123,456.7 µs" for k in range(20)) + " |"
    extra = "\n\n" + too_wide + "\n|" + " ---: |" * 20 + "\n" + too_wide + "\n"
    widths = _widths(html_page(markdown_text + extra, plots), tmp_path)
    assert widths["viewport"] == PAGE_WIDTH
    assert widths["page"] <= PAGE_WIDTH
    *report_tables, (extra_content, extra_box) = widths["tables"]
    assert len(report_tables) >= 5
    assert all(content <= box for content, box in report_tables), report_tables  # the runtimes table among them
    assert extra_content > extra_box  # the 20-column table scrolls in its box, not the page
