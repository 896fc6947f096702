"""Objective latency's budget (tuning/search/budget.py) at its edges: when it is spent, what it says, what it records.

The clock is the budget's own seam (a list the test moves); the progress bar is tqdm's, drawn into a text stream
that says it is a terminal (and into one that says it is not, where tqdm draws nothing). Every expected line and
record is written out here from the rule in the module's docstring, not read from a run.
"""

from __future__ import annotations

import io

import pytest

from tuning.search.budget import Budget, StageRecord

pytestmark = pytest.mark.fast


class Terminal(io.StringIO):
    """A text stream tqdm takes for a terminal: it draws the bar into it."""

    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def budget_with(max_trials: int = 10, timeout_s: int = 0, expected: int = 4) -> tuple[Budget, list[str], Clock]:
    lines: list[str] = []
    clock = Clock()
    return Budget(max_trials, timeout_s, lines.append, expected, clock=clock), lines, clock


def test_a_stage_record_s_json_rounds_its_seconds_and_copies_its_lists():
    record = StageRecord("each node alone in fp32", 6, made=4, not_made=["a", "b"], seconds=1.23456, decisions=["d"])
    document = record.to_json()
    assert document == {
        "name": "each node alone in fp32", "planned": 6, "made": 4, "not_made": ["a", "b"], "seconds": 1.235,
        "decisions": ["d"],
    }  # fmt: skip
    document["not_made"].append("c")
    document["decisions"].append("e")
    assert record.not_made == ["a", "b"] and record.decisions == ["d"]  # the summary holds copies
    assert StageRecord("x", 1).to_json() == {"name": "x", "planned": 1, "made": 0, "not_made": [], "seconds": 0.0, "decisions": []}


def test_max_trials_is_spent_when_made_reaches_it_not_before():
    budget, _, _ = budget_with(max_trials=2)
    record = budget.stage("every node int8", ["a", "b", "c"])
    assert not budget.spent()
    budget.made_one(record, "a")
    assert not budget.spent() and budget.cut_by is None
    budget.made_one(record, "b")
    assert budget.spent() and budget.cut_by == "tuning.max_trials"
    assert (budget.made, record.made) == (2, 2)


def test_the_time_limit_is_spent_at_the_limit_itself_and_never_without_one():
    budget, _, clock = budget_with(timeout_s=30)
    clock.now += 29.5
    assert not budget.spent()
    clock.now += 0.5  # exactly 30 s since the budget started
    assert budget.spent() and budget.cut_by == "tuning.timeout_s"
    unlimited, _, clock = budget_with(timeout_s=0)
    clock.now += 10**6
    assert not unlimited.spent() and unlimited.cut_by is None  # 0: no limit


def test_the_first_limit_reached_is_the_one_remembered():
    budget, _, clock = budget_with(max_trials=1, timeout_s=5)
    clock.now += 5
    assert budget.spent() and budget.cut_by == "tuning.timeout_s"
    budget.made_one(budget.stage("s", ["a"]), "a")  # now max_trials is reached too
    assert budget.spent() and budget.cut_by == "tuning.timeout_s"
    other, _, clock = budget_with(max_trials=1, timeout_s=5)
    other.made_one(other.stage("s", ["a"]), "a")
    assert other.spent() and other.cut_by == "tuning.max_trials"
    clock.now += 5
    assert other.spent() and other.cut_by == "tuning.max_trials"


def test_seconds_run_with_the_clock_until_closed():
    budget, _, clock = budget_with()
    clock.now += 2.5
    assert budget.seconds() == 2.5
    clock.now += 1.0
    budget.close()
    clock.now += 100.0
    assert budget.seconds() == 3.5
    assert budget.to_json("grid")["seconds"] == 3.5
    other, _, clock = budget_with()
    clock.now += 1.23456
    assert other.to_json("grid")["seconds"] == 1.235  # to the millisecond


def test_each_stage_says_what_it_plans_the_budget_and_the_time_so_far():
    budget, lines, clock = budget_with(max_trials=12, timeout_s=600)
    first = budget.stage("every node int8", ["a"])
    budget.made_one(first, "a")
    clock.now += 61.6
    budget.stage("each node alone in fp32", ["b", "c"])
    unlimited, unlimited_lines, _ = budget_with(max_trials=3, timeout_s=0)
    unlimited.stage("grid", [])
    assert lines == [
        "tune: search stage 1, every node int8: 1 candidate (0 made so far, budget: tuning.max_trials 12, "
        "tuning.timeout_s 600; 0 s elapsed)",
        "tune: search stage 2, each node alone in fp32: 2 candidates (1 made so far, budget: tuning.max_trials 12, "
        "tuning.timeout_s 600; 62 s elapsed)",
    ]
    assert unlimited_lines == ["tune: search stage 1, grid: 0 candidates (0 made so far, budget: tuning.max_trials 3; 0 s elapsed)"]
    assert [(record.name, record.planned) for record in budget.stages] == [("every node int8", 1), ("each node alone in fp32", 2)]


def test_decisions_are_recorded_under_their_stage_and_said_with_its_number():
    budget, lines, _ = budget_with()
    first = budget.stage("every node int8", ["a"])
    second = budget.stage("each node alone in fp32", ["b"])
    lines.clear()
    budget.decide(second, "QDQ, fp32: fc1: significantly faster")
    budget.decide(first, "first's")
    assert second.decisions == ["QDQ, fp32: fc1: significantly faster"] and first.decisions == ["first's"]
    assert lines == ["tune: stage 2 decided: QDQ, fp32: fc1: significantly faster", "tune: stage 1 decided: first's"]


def test_a_stage_s_seconds_add_up_over_its_parts():
    budget, _, _ = budget_with()
    record = budget.stage("s", ["a"])
    budget.close_stage(record, 1.5)
    budget.close_stage(record, 0.25)
    assert record.seconds == 1.75


def test_the_cut_names_every_stage_it_cut_and_the_trials_that_would_make_them():
    budget, _, _ = budget_with(max_trials=3)
    first = budget.stage("every node int8", ["a", "b"])
    second = budget.stage("each node alone in fp32", ["c", "d", "e"])
    third = budget.stage("sets", ["f"])
    for record, description in ((first, "a"), (first, "b"), (second, "c")):
        budget.made_one(record, description)
    assert budget.spent()
    second.not_made += ["d", "e"]
    third.not_made.append("f")
    message = (
        "the search was cut by tuning.max_trials after 3 candidates: not made: 2 candidates of stage "
        "'each node alone in fp32'; 1 candidate of stage 'sets' (listed in the summary, search.stages); "
        "to search them, raise tuning.max_trials to at least 6"
    )
    assert budget.cut_message() == message
    document = budget.to_json("greedy")
    assert document["cut"] == message and document["cut_by"] == "tuning.max_trials"
    assert document["name"] == "greedy" and document["budget"] == {"max_trials": 3, "timeout_s": 0}
    assert document["made"] == 3 and document["stages"] == [record.to_json() for record in (first, second, third)]
    assert set(document) == {"name", "budget", "made", "seconds", "stages", "cut_by", "cut"}


def test_a_limit_reached_with_nothing_left_unmade_or_a_stage_left_unmade_without_a_limit_is_no_cut():
    budget, _, _ = budget_with(max_trials=1)
    budget.made_one(budget.stage("s", ["a"]), "a")
    assert budget.spent() and budget.cut_message() is None
    assert budget.to_json("grid")["cut_by"] is None and budget.to_json("grid")["cut"] is None
    unspent, _, _ = budget_with(max_trials=5)
    unspent.stage("s", ["a"]).not_made.append("a")  # not made, but no limit said so
    assert unspent.cut_message() is None and unspent.to_json("grid")["cut_by"] is None


def test_on_a_terminal_one_bar_counts_the_candidates_against_the_expected_total(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    budget, _, _ = budget_with(expected=4)
    record = budget.stage("every node int8", ["a", "b", "c"])
    budget.made_one(record, "QDQ, minmax, fp32: none")
    drawn = terminal.getvalue().split("\r")[-1]
    assert drawn.startswith("candidates:  25%") and " 1/4 " in drawn and "candidate/s" in drawn
    assert drawn.endswith(", every node int8: QDQ, minmax, fp32: none]")
    budget.expect(0)  # a total below what is made is raised to it
    assert " 1/1 " in terminal.getvalue().split("\r")[-1]
    budget.expect(9)
    assert " 1/9 " in terminal.getvalue().split("\r")[-1]
    long = "QOperator, percentile, fp32: " + ", ".join(f"/layer{i}/Conv" for i in range(6))
    budget.made_one(record, long)
    shown = f"every node int8: {long}"[:60]
    assert terminal.getvalue().split("\r")[-1].endswith(f", {shown}]") and len(shown) == 60
    budget.close()
    # Not left on the screen: the bar's line is blanked, no new line.
    assert terminal.getvalue().split("\r")[-2].strip() == "" and "\n" not in terminal.getvalue()


def test_off_a_terminal_there_is_no_bar(monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    budget, lines, _ = budget_with(expected=2)
    record = budget.stage("every node int8", ["a", "b"])
    budget.made_one(record, "a")
    budget.expect(3)
    budget.close()
    assert stream.getvalue() == "" and len(lines) == 1
