"""Objective latency's budget: ``tuning.max_trials`` and ``tuning.timeout_s``, what they cut, and the progress.

A search asks the budget before making each candidate. When the budget says no, the candidate is recorded as
not made, under the stage that planned it, and the run's summary and console say which candidates were never
made, which stages were never reached, and which setting to raise: nothing is cut silently.

Progress: one line per stage through ``say`` (a console's progress lines, printed on a terminal and in CI logs
alike), and on a terminal one bar over the whole search with its ETA (tqdm, hidden when stderr is not a terminal).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tqdm import tqdm


@dataclass
class StageRecord:
    """One stage of a search: what it planned, what it made, what the budget left unmade."""

    name: str
    planned: int
    made: int = 0
    not_made: list[str] = field(default_factory=list)  # the candidates' descriptions
    seconds: float = 0.0
    decisions: list[str] = field(default_factory=list)  # what the stage's timing decided for the next stage, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "planned": self.planned,
            "made": self.made,
            "not_made": list(self.not_made),
            "seconds": round(self.seconds, 3),
            "decisions": list(self.decisions),
        }


class Budget:
    """Counts the candidates made against ``max_trials`` and the time spent against ``timeout_s`` (0: none).

    ``expected`` is the search's upper bound on the candidates it will make, for the bar's ETA; a search
    lowers it (:meth:`expect`) once a stage's results fix the size of the next ones.
    """

    def __init__(
        self,
        max_trials: int,
        timeout_s: int,
        say: Callable[[str], None],
        expected: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_trials = max_trials
        self.timeout_s = timeout_s
        self._say = say
        self._clock = clock
        self.started = clock()
        self.made = 0
        self.cut_by: str | None = None
        self.stages: list[StageRecord] = []
        self._closed_at: float | None = None
        self._bar = tqdm(total=expected, desc="candidates", unit="candidate", disable=None, leave=False)

    def expect(self, total: int) -> None:
        """The search will make at most ``total`` candidates in all (the bar's total, for its ETA)."""
        self._bar.total = max(total, self.made)
        self._bar.refresh()

    def seconds(self) -> float:
        """Time spent by the search so far (until :meth:`close`)."""
        return (self._closed_at if self._closed_at is not None else self._clock()) - self.started

    def spent(self) -> bool:
        """Whether the budget allows no further candidate; the first limit reached is remembered as ``cut_by``."""
        if self.made >= self.max_trials:
            self.cut_by = self.cut_by or "tuning.max_trials"
        elif self.timeout_s and self.seconds() >= self.timeout_s:
            self.cut_by = self.cut_by or "tuning.timeout_s"
        return self.cut_by is not None

    def stage(self, name: str, descriptions: Sequence[str]) -> StageRecord:
        """Open a stage that plans these candidates; says so on one line."""
        record = StageRecord(name, len(descriptions))
        self.stages.append(record)
        self._say(
            f"tune: search stage {len(self.stages)}, {name}: {len(descriptions)} candidate"
            f"{'s' if len(descriptions) != 1 else ''} ({self.made} made so far, {self._limits()}; "
            f"{self.seconds():.0f} s elapsed)"
        )
        return record

    def made_one(self, record: StageRecord, description: str) -> None:
        self.made += 1
        record.made += 1
        self._bar.update(1)
        self._bar.set_postfix_str(f"{record.name}: {description}"[:60])

    def decide(self, record: StageRecord, decision: str) -> None:
        """Record what the stage's timing decided (the summary's ``search.stages[].decisions``) and say it."""
        record.decisions.append(decision)
        self._say(f"tune: stage {self.stages.index(record) + 1} decided: {decision}")

    def close_stage(self, record: StageRecord, seconds: float) -> None:
        record.seconds += seconds

    def close(self) -> None:
        self._closed_at = self._clock()
        self._bar.close()

    def _limits(self) -> str:
        time_limit = f", tuning.timeout_s {self.timeout_s}" if self.timeout_s else ""
        return f"budget: tuning.max_trials {self.max_trials}{time_limit}"

    def cut_message(self) -> str | None:
        """What the budget left out and how to widen it, in one sentence; None when it cut nothing."""
        not_made = [(record.name, len(record.not_made)) for record in self.stages if record.not_made]
        if self.cut_by is None or not not_made:
            return None
        parts = [f"{count} candidate{'s' if count != 1 else ''} of stage '{name}'" for name, count in not_made]
        if self.cut_by == "tuning.max_trials":
            unmade = sum(count for _, count in not_made)
            widen = f"raise tuning.max_trials to at least {self.max_trials + unmade}"
        else:
            widen = f"raise tuning.timeout_s above {self.timeout_s} or set it to 0 (no limit)"
        return (
            f"the search was cut by {self.cut_by} after {self.made} candidates: not made: {'; '.join(parts)} "
            f"(listed in the summary, search.stages); to search them, {widen}"
        )

    def to_json(self, search: str) -> dict[str, Any]:
        """The summary's ``search`` record: which search ran, its budget, its stages and what it cut."""
        return {
            "name": search,
            "budget": {"max_trials": self.max_trials, "timeout_s": self.timeout_s},
            "made": self.made,
            "seconds": round(self.seconds(), 3),
            "stages": [record.to_json() for record in self.stages],
            "cut_by": self.cut_by if self.cut_message() else None,
            "cut": self.cut_message(),
        }
