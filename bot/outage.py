"""Platform outages and their alerts (R6.3). Pure: events and the time in, alerts out.

A platform whose connection is down for `alert_after_s` gets one alert, and one "back"
notice when it returns — but only if its outage was alerted: a short blip says nothing.
Alerts go to the admin rooms of the *other* platforms (`skip`), since the one that is down
cannot carry them. `next_due()` tells the watcher when to look again, so an idle bot with
every connection up sleeps instead of waking every second (issue 8, item 6).
"""

from __future__ import annotations

from dataclasses import dataclass

from bridges.base import ConnectionChanged

ALERT_AFTER_S = 60.0


@dataclass(frozen=True)
class OutageAlert:
    text: str
    skip: str  # the platform that is (or was) down: not told about itself


@dataclass
class _Outage:
    since: float
    alerted: bool = False


class OutageTracker:
    def __init__(self, alert_after_s: float = ALERT_AFTER_S):
        self.alert_after_s = alert_after_s
        self._outages: dict[str, _Outage] = {}

    def observe(self, event: ConnectionChanged, now: float) -> list[OutageAlert]:
        """Note a connection going down or coming back; the "back" alert if one is owed."""
        if not event.up:  # down since the bridge last heard from the platform
            self._outages.setdefault(event.platform, _Outage(now - event.down_for_s))
            return []
        outage = self._outages.pop(event.platform, None)
        if outage is None or not outage.alerted:
            return []
        return [OutageAlert(f"✅ {event.platform} connection is back.", event.platform)]

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
