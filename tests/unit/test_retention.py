"""Retention's pure decisions (R14.6): the horizon, who counts as running, who may be
forgotten, and the pass's one log line."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbridge.bot.config import ConfigError, load_config
from crewbridge.bot.retention import DAY_S, Pruned, horizon, is_running, may_forget
from crewbridge.bot.store_retention import Prune
from crewbridge.supervisor.executor import RunView
from crewbridge.supervisor.resolve import RunState

NOON = 20_000 * DAY_S + DAY_S / 2  # 2024-10-04 12:00 UTC


@pytest.mark.parametrize(("days", "cut", "day"), [
    (90, NOON - 90 * DAY_S, "2024-07-06"),
    (1, NOON - DAY_S, "2024-10-03"),
    (0.5, NOON - DAY_S / 2, "2024-10-04"),  # the day the cut falls in is kept whole
    (365, NOON - 365 * DAY_S, "2023-10-05"),
    (1e6, 0.0, "1970-01-01"),  # longer than the epoch: everything is kept
])
def test_r14_6_the_horizon_is_retain_days_back(days: float, cut: float, day: str) -> None:
    h = horizon(NOON, days)
    assert (h.cut, h.day, h.running) == (cut, day, frozenset())


STOPPED = RunView(RunState.STOPPED, 1, False)


@pytest.mark.parametrize(("view", "running"), [
    (None, False),  # the supervisor never had to do with it
    (STOPPED, False),
    (RunView(RunState.STARTING, 1, False), True),
    (RunView(RunState.RUNNING, 1, False), True),
    (RunView(RunState.STOPPING, 1, False), True),
    (RunView(RunState.STOPPED, 1, True), True),  # a turn still open
    (RunView(RunState.STOPPED, 1, False, waiting_for_slot=True), True),
])
def test_r14_6_running_is_anything_but_stopped_and_idle(view: RunView | None,
                                                        running: bool) -> None:
    assert is_running(view) is running


@pytest.mark.parametrize(("view", "open_task", "asked"), [
    (None, False, True),
    (STOPPED, False, True),
    (STOPPED, True, False),
    (RunView(RunState.RUNNING, 1, False), False, False),
])
def test_r14_6_only_a_stopped_worker_without_an_open_task_may_be_forgotten(
        view: RunView | None, open_task: bool, asked: bool) -> None:
    assert may_forget(view, open_task) is asked


@pytest.mark.parametrize(("pruned", "line"), [
    (Pruned(), "nothing"),
    (Pruned({Prune.MESSAGES: 0, Prune.AUDIT: 0}), "nothing"),
    (Pruned({Prune.MESSAGES: 120, Prune.TASKS: 3}, ("alice",)),
     "120 messages, 3 tasks, workers alice forgotten"),
])
def test_r14_6_a_pass_is_one_line(pruned: Pruned, line: str) -> None:
    assert pruned.summary() == line


@pytest.mark.parametrize(("toml", "days", "problem"), [
    ("", 90, None),
    ("[bot]\nretain_days = 30\n", 30, None),
    ("[bot]\nretain_days = 0.5\n", 0.5, None),
    ("[bot]\nretain_days = 0\n", None, "bot.retain_days"),
    ("[bot]\nretain_days = -1\n", None, "bot.retain_days"),
    ('[bot]\nretain_days = "90"\n', None, "bot.retain_days"),
])
def test_r14_6_r11_1_retain_days_is_a_positive_number(tmp_path: Path, toml: str,
                                                       days: float | None,
                                                       problem: str | None) -> None:
    path = tmp_path / "crewbridge.toml"
    path.write_text(toml)
    if problem is None:
        assert load_config(path).bot.retain_days == days
    else:
        with pytest.raises(ConfigError, match=problem):
            load_config(path)
