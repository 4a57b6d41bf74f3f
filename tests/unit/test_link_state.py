"""A bridge's link, observed many times, reported once per transition (R6.3)."""

from __future__ import annotations

import pytest

from crewbridge.bridges.base import ConnectionChanged
from crewbridge.bridges.link import Leg, Legs, LinkState


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


@pytest.mark.parametrize(("up", "down_for_s", "reported"), [
    (False, 42.0, 42.0),  # a hang seen once a sync was overdue: the outage is older
    (False, -1.0, 0.0),  # a clock step never dates an outage into the future
    (True, 42.0, 0.0),  # coming back has no age
])
def test_r6_3_a_link_going_down_says_how_long_it_was_already_silent(
        up: bool, down_for_s: float, reported: float) -> None:
    link = LinkState("matrix", up=not up)
    change = link.observe(up, "no answer to a sync within 40 s", 100.0, down_for_s=down_for_s)
    assert change is not None and change.down_for_s == reported


@pytest.mark.parametrize(("name", "steps", "reported"), [
    ("the API failing while the socket is up is an outage",
     [(Leg.API, False), (Leg.API, True)], [False, True]),
    ("both failing is one outage, over once both are back",
     [(Leg.SOCKET, False), (Leg.API, False), (Leg.SOCKET, True), (Leg.API, True)],
     [False, True]),
    ("a leg answering while the other is down says nothing",
     [(Leg.SOCKET, False), (Leg.API, True), (Leg.API, True)], [False]),
])
def test_r6_3_a_link_of_two_legs_is_up_only_while_both_are(
        name: str, steps: list[tuple[Leg, bool]], reported: list[bool]) -> None:
    legs = Legs("slack", {Leg.SOCKET: True, Leg.API: True})
    events = [legs.observe(leg, up, "seen", float(i)) for i, (leg, up) in enumerate(steps)]
    assert [e.up for e in events if e is not None] == reported, name
