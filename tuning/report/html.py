"""report.html: report.md as one self-contained page, its plots embedded as ``data:`` URIs.

The page is the Markdown converted by the ``markdown`` library (tables extension), so the HTML and
the Markdown cannot say different things; only the plots change from links to embedded images, and
the file can be mailed or attached to a CI run on its own.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown as markdown_library

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
/* A table wider than the page scrolls sideways in its own box; the page itself never does. */
.table-scroll { max-width: 100%; overflow-x: auto; margin: 1rem 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.45rem; vertical-align: top; }
th { background: #f3f3f3; }
td[style*="right"] { white-space: nowrap; }
/* A figure with its range, "27.0 µs (26.9 µs–27.4 µs)", may wrap before the bracket and nowhere else. */
td.ranged { white-space: normal; }
td.ranged span { white-space: nowrap; }
code { font-size: 0.9em; word-break: break-all; }
img { max-width: 100%; height: auto; display: block; margin: 1rem 0; }
"""
TABLE_SCROLL = "table-scroll"  # the class of the box around every table
# A table cell holding a figure and its range in brackets, as tuning.measure.figures writes them.
_RANGED_CELL = re.compile(r"<td(?P<attributes>[^>]*)>(?P<figure>[^<()]+) (?P<range>\(\d[^<()]*–[^<()]*\))</td>")
# What markdown's converter writes for ![alt](file.png) pointing at a file beside the report.
_LOCAL_IMAGE = re.compile(r'<img alt="(?P<alt>[^"]*)" src="(?P<src>[^":/]+\.png)"\s*/?>')


def html_page(markdown_text: str, images: dict[str, Path]) -> str:
    """The whole page; ``images`` maps each file name report.md links to the PNG written for it."""
    body = markdown_library.markdown(markdown_text, extensions=["tables"], output_format="html")

    def embed(match: re.Match[str]) -> str:
        data = base64.b64encode(images[match["src"]].read_bytes()).decode("ascii")
        return f'<img alt="{match["alt"]}" src="data:image/png;base64,{data}">'

    body = _LOCAL_IMAGE.sub(embed, body)
    body = _RANGED_CELL.sub(r'<td\g<attributes> class="ranged"><span>\g<figure></span> <span>\g<range></span></td>', body)
    body = body.replace("<table>", f'<div class="{TABLE_SCROLL}"><table>').replace("</table>", "</table></div>")
    title = html.escape(markdown_text.splitlines()[0].lstrip("# ").strip())
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n<style>{_STYLE}</style>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )
