"""A bridge's link, observed many times, reported once per transition (R6.3)."""

from __future__ import annotations

import pytest

from bridges.base import ConnectionChanged
from bridges.link import LinkState


@pytest.mark.parametrize(("name", "start_up", "observations", "reported"), [
    ("repeated failures are one outage", True,
     [False, False, False, True, True], [False, True]),
    ("every success while up says nothing", True, [True, True], []),
    ("a link not yet up comes up once", False, [True, True], [True]),
    ("two outages are two", True, [False, True, False, True], [False, True, False, True]),
    ("a socket replaced while up is down then up (Slack hello)", False,
     [True, False, True], [True, False, True]),
    ("down while already down says nothing", False, [False, False], []),
])
def test_r6_3_one_connection_changed_per_transition(name: str, start_up: bool,
                                                    observations: list[bool],
                                                    reported: list[bool]) -> None:
    link = LinkState("matrix", up=start_up)
    events = [link.observe(up, f"observation {i}", float(i))
              for i, up in enumerate(observations)]
    assert [e.up for e in events if e is not None] == reported, name
    assert link.up is observations[-1]


def test_r6_3_the_event_names_the_platform_the_time_and_what_was_seen() -> None:
    link = LinkState("slack", up=True)
    assert link.observe(False, "the Socket Mode connection was lost", 12.5) == \
        ConnectionChanged("slack", up=False, ts=12.5, detail="the Socket Mode connection was lost")
