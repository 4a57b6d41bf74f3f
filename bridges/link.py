"""Whether a bridge's link to its platform is up: one `ConnectionChanged` per transition (R6.3).

Both bridges learn about their link from many places (a failed or a good sync; a `hello`, a
`disconnect` envelope, a poll of the socket), most of which repeat what is already known.
The core counts outages from these events, so a repeat would be a second outage; this is
the one place that turns observations into transitions.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from crewbridge.bridges.base import ConnectionChanged


class LinkState:
    """The last known state of one platform link; pure (the caller brings the time)."""

    def __init__(self, platform: str, *, up: bool) -> None:
        self.platform = platform
        self.up = up

    def observe(self, up: bool, detail: str, now: float, *,
                down_for_s: float = 0.0) -> ConnectionChanged | None:
        """The event to report when `up` differs from what was known, else None.
        `down_for_s`: how long the link had been silent before a failure was seen (R6.3)."""
        if up == self.up:
            return None
        self.up = up
        return ConnectionChanged(self.platform, up=up, ts=now, detail=detail,
                                 down_for_s=0.0 if up else max(0.0, down_for_s))


class Leg(StrEnum):
    """A part of a link that can fail on its own."""

    SOCKET = "socket"  # Slack's Socket Mode websocket (HTTP mode has none: always up)
    API = "api"  # Slack's Web API


class Legs:
    """A link that is up only while every one of its legs is; pure, one event per
    transition of the whole (R6.3). Slack's socket can be fine while its Web API hangs,
    and then posts wait as surely as when the socket is gone."""

    def __init__(self, platform: str, legs: Mapping[Leg, bool]) -> None:
        self._legs = dict(legs)
        self._link = LinkState(platform, up=all(self._legs.values()))

    @property
    def up(self) -> bool:
        return self._link.up

    def is_up(self, leg: Leg) -> bool:
        return self._legs[leg]

    def observe(self, leg: Leg, up: bool, detail: str, now: float, *,
                down_for_s: float = 0.0) -> ConnectionChanged | None:
        """The event to report when the whole link changed, else None."""
        self._legs[leg] = up
        return self._link.observe(all(self._legs.values()), detail, now, down_for_s=down_for_s)
