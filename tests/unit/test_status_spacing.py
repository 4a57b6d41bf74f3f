"""How far apart one status message's edits are (R13.7): the configured interval, or longer
when all running turns' edits together would pass the platform's limit."""

from __future__ import annotations

import pytest

from crewbridge.bot.status_ops import HEADROOM, edit_gap


@pytest.mark.parametrize(("cards", "per_minute", "gap"), [
    (1, 50, 3.0),  # one turn: the interval
    (2, 50, 3.0),  # 2 × 20 edits a minute, under 40
    (20, 50, 20 * 60 / (50 * HEADROOM)),  # 20 turns share Slack's Tier 3
    (20, None, 3.0),  # Matrix: no such limit
    (0, 50, 3.0),
])
def test_r13_7_edits_are_spread_under_the_platforms_limit(cards: int, per_minute: float | None,
                                                          gap: float) -> None:
    assert edit_gap(3.0, cards, per_minute) == pytest.approx(gap)
    if per_minute:
        assert cards * 60 / edit_gap(3.0, cards, per_minute) <= per_minute
