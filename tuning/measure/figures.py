"""Number formats shared by every rendering of results (Markdown, plots, the console): one quantity reads the same."""

from __future__ import annotations

from tuning.measure.benchmark import Spread


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def us(ms: float) -> str:
    return f"{1000 * ms:,.1f} µs"


def optional_pct(value: float | None) -> str:
    return "—" if value is None else pct(value)


def ratio(spread: Spread | None, plain: bool = False) -> str:
    """A ratio as the median of its per-round values with their range, ``0.83× (0.82–0.85)``; ``—`` when not
    measured. ``plain``: ASCII for consoles and logs, ``0.83x (0.82-0.85)``, ``-``."""
    if spread is None:
        return "-" if plain else "—"
    times, dash = ("x", "-") if plain else ("×", "–")
    return f"{spread.value:.2f}{times} ({spread.low:.2f}{dash}{spread.high:.2f})"
