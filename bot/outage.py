"""Platform outages and their alerts (R6.3). Pure: events and the time in, alerts out.

A platform whose connection is down for `alert_after_s` gets one alert, and one "back"
notice when it returns — but only if its outage was alerted: a short blip says nothing.
Alerts go to the admin rooms of the *other* platforms (`skip`), since the one that is down
cannot carry them. When no other platform has an admin room (a bot on Matrix alone), the
down alert reaches only the log, so the "back" notice says what happened instead — "matrix
was unreachable from … to …" — in the admin room of the platform that is back.
`next_due()` tells the watcher when to look again, so an idle bot with
every connection up sleeps instead of waking every second (issue 8, item 6).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass

from crewbridge.bridges.base import ConnectionChanged

ALERT_AFTER_S = 60.0


@dataclass(frozen=True)
class OutageAlert:
    text: str
    skip: str | None  # the platform that is down, which cannot be told; None: everyone


@dataclass
class _Outage:
    since: float
    alerted: bool = False


class OutageTracker:
    def __init__(self, alert_after_s: float = ALERT_AFTER_S,
                 admin_platforms: Collection[str] = ()):
        self.alert_after_s = alert_after_s
        self.admin_platforms = frozenset(admin_platforms)
        """The platforms with an admin room: who can hear of another platform's outage."""
        self._outages: dict[str, _Outage] = {}

    def observe(self, event: ConnectionChanged, now: float) -> list[OutageAlert]:
        """Note a connection going down or coming back; the "back" alert if one is owed."""
        if not event.up:  # down since the bridge last heard from the platform
            self._outages.setdefault(event.platform, _Outage(now - event.down_for_s))
            return []
        outage = self._outages.pop(event.platform, None)
        if outage is None or not outage.alerted:
            return []
        if self.admin_platforms - {event.platform}:
            return [OutageAlert(f"✅ {event.platform} connection is back.", event.platform)]
        return [OutageAlert(unreachable(event.platform, outage.since, now), None)]

    def is_down(self, platform: str) -> bool:
        return platform in self._outages

    def next_due(self) -> float | None:
        """When the next alert falls due; None when none will without a new outage."""
        times = [o.since + self.alert_after_s for o in self._outages.values() if not o.alerted]
        return min(times, default=None)

    def due(self, now: float) -> list[OutageAlert]:
        """The alerts due at `now`, each given once."""
        alerts = []
        for platform, outage in self._outages.items():
            if not outage.alerted and now - outage.since >= self.alert_after_s:
                outage.alerted = True
                alerts.append(OutageAlert(
                    f"⚠️ {platform} connection down for more than {self.alert_after_s:.0f}s; "
                    "messages there wait until it is back.", platform))
        return alerts


def unreachable(platform: str, since: float, until: float) -> str:
    """The report of an outage nobody could be told of while it lasted (R6.3)."""
    def hms(t: float) -> str:
        return time.strftime("%H:%M:%S", time.localtime(t))

    minutes, seconds = divmod(round(until - since), 60)
    return (f"⚠️ {platform} was unreachable from {hms(since)} to {hms(until)} "
            f"({minutes}m{seconds:02d}s); messages sent there meanwhile are handled now.")
