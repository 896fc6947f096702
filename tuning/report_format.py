"""Number formats shared by every rendering of the report (Markdown, plots): one quantity reads the same."""

from __future__ import annotations


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def us(ms: float) -> str:
    return f"{1000 * ms:,.1f} µs"


def optional_pct(value: float | None) -> str:
    return "—" if value is None else pct(value)
