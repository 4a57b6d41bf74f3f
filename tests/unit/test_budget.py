"""Daily budgets (R13.8): `bot.budget`'s levels and the state it keeps. Pure."""

from __future__ import annotations

import pytest

from crewbridge.bot.budget import Budgets, Level, level


@pytest.mark.parametrize(("spent", "cap", "expected"), [
    (0.0, 0.0, Level.UNDER),  # no cap
    (999.0, 0.0, Level.UNDER),
    (0.79, 1.0, Level.UNDER),
    (0.8, 1.0, Level.WARNING),  # one warning at 80 %
    (0.99, 1.0, Level.WARNING),
    (1.0, 1.0, Level.SPENT),  # the cap reached: paused
    (3.0, 1.0, Level.SPENT),
], ids=lambda v: str(v))
def test_r13_8_a_channels_level_against_its_cap(spent: float, cap: float,
                                                 expected: Level) -> None:
    assert level(spent, cap) is expected


def test_r13_8_caps_come_from_the_day_then_the_channel_then_the_default() -> None:
    """R13.8: an admin's cap for today wins over the channel's, which wins over `[agent]`'s;
    a new day forgets today's caps and costs, so every pause lifts."""
    b = Budgets(2.0, {"webui": 1.0})
    b.spent.update({"webui": 1.5, "backend": 1.7})
    assert (b.cap("webui"), b.cap("backend")) == (1.0, 2.0)
    assert b.paused("webui") and not b.paused("backend")
    b.today["webui"] = 5.0
    assert not b.paused("webui") and b.level("backend") is Level.WARNING
    b.today["backend"] = 0.0  # no cap today
    assert b.level("backend") is Level.UNDER
    b.spent["webui"] = 9.0
    b.new_day()
    assert not b.paused("webui") and b.cap("webui") == 1.0
