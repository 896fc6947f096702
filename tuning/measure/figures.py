"""Number formats shared by every rendering of results (Markdown, plots, the console): one quantity reads the same.

One formatter per kind of figure. A figure measured over several rounds is written as the median of its
per-round values with their range in brackets, ``0.83× (0.82–0.85)``; ``*_range`` formats it so.
"""

from __future__ import annotations

from collections.abc import Callable

from tuning.measure.benchmark import Spread


def pct(fraction: float) -> str:
    return f"{100 * fraction:.2f} %"


def error_pct(accuracy: float | None) -> str:
    """The top-1 error of an accuracy, in percent; ``—`` when it was not scored."""
    return "—" if accuracy is None else pct(1 - accuracy)


def us(ms: float) -> str:
    return f"{1000 * ms:,.1f} µs"


def us_range(spread: Spread) -> str:
    return _with_range(us, spread)


def count(value: float) -> str:
    """Whole things or whole things per second (runs, bytes, images/s), thousands separated: ``12,468``."""
    return f"{value:,.0f}"


def count_range(spread: Spread) -> str:
    return _with_range(count, spread)


def factor(value: float, plain: bool = False) -> str:
    """How many times another figure, ``0.83×``; ``plain``: ASCII for consoles and logs, ``0.83x``."""
    return f"{value:.2f}{'x' if plain else '×'}"


def ratio(spread: Spread | None, plain: bool = False) -> str:
    """A ratio as the median of its per-round values with their range, ``0.83× (0.82–0.85)``; ``—`` when not
    measured. ``plain``: ASCII for consoles and logs, ``0.83x (0.82-0.85)``, ``-``."""
    if spread is None:
        return "-" if plain else "—"
    dash = "-" if plain else "–"
    return f"{factor(spread.value, plain)} ({spread.low:.2f}{dash}{spread.high:.2f})"


def _with_range(form: Callable[[float], str], spread: Spread) -> str:
    return f"{form(spread.value)} ({form(spread.low)}–{form(spread.high)})"
