"""The one Markdown table format of report.md."""

from __future__ import annotations

from collections.abc import Sequence


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], align: str = "l") -> str:
    # The first column is a label; the others are numbers and read best right-aligned.
    marks = [":---"] + ["---:" if align == "r" else ":---"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
