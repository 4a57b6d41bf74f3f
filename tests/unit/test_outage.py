"""Platform outages: `bot.outage.OutageTracker` (R6.3). Pure: events and times in, alerts out."""

from __future__ import annotations

from crewbridge.bot.outage import OutageTracker
from crewbridge.bridges.base import ConnectionChanged


def down(platform: str = "slack") -> ConnectionChanged:
    return ConnectionChanged(platform, False, 0.0, "socket closed")


def up(platform: str = "slack") -> ConnectionChanged:
    return ConnectionChanged(platform, True, 0.0)


def test_r6_3_idle_tracker_has_nothing_due() -> None:
    """Issue 8 item 6: with every connection up there is no time to wake at."""
    t = OutageTracker(60)
    assert t.next_due() is None
    assert t.due(1e9) == []


def test_r6_3_one_alert_after_60s_on_the_other_platforms() -> None:
    t = OutageTracker(60)
    assert t.observe(down(), 100.0) == []
    assert t.next_due() == 160.0
    assert t.due(159.9) == []
    [alert] = t.due(160.0)
    assert alert.skip == "slack" and "slack connection down for more than 60s" in alert.text
    assert t.due(500.0) == [] and t.next_due() is None  # once


def test_r6_3_repeated_down_keeps_the_first_start() -> None:
    t = OutageTracker(60)
    t.observe(down(), 100.0)
    t.observe(down(), 130.0)
    assert t.next_due() == 160.0


def test_r6_3_back_after_alert_says_so_once() -> None:
    t = OutageTracker(60, admin_platforms={"slack", "matrix"})
    t.observe(down(), 0.0)
    t.due(60.0)
    [back] = t.observe(up(), 70.0)
    assert back.skip == "slack" and back.text == "✅ slack connection is back."
    assert t.observe(up(), 71.0) == []
    assert not t.is_down("slack")


def test_r6_3_short_blip_says_nothing() -> None:
    t = OutageTracker(60)
    t.observe(down(), 0.0)
    assert t.is_down("slack")
    assert t.observe(up(), 5.0) == []
    assert t.next_due() is None and t.due(100.0) == []


def test_r6_3_platforms_are_tracked_apart() -> None:
    t = OutageTracker(60)
    t.observe(down("slack"), 0.0)
    t.observe(down("matrix"), 30.0)
    assert t.next_due() == 60.0
    assert [a.skip for a in t.due(60.0)] == ["slack"]
    assert t.next_due() == 90.0
    assert [a.skip for a in t.due(90.0)] == ["matrix"]


def test_r6_3_an_outage_counts_from_the_last_good_exchange() -> None:
    """R6.3: a hang reported 40 s after the link went quiet is alerted 60 s after it went
    quiet, not 60 s after the report."""
    t = OutageTracker(60)
    t.observe(ConnectionChanged("matrix", False, 0.0, "sync overdue", down_for_s=40.0), 140.0)
    assert t.next_due() == 160.0
    assert [a.skip for a in t.due(160.0)] == ["matrix"]


def test_r6_3_with_a_single_platform_the_outage_is_reported_once_it_is_back() -> None:
    """R6.3: a bot on Matrix alone could tell nobody while Matrix was down; once it is back,
    its own admin room reads "matrix was unreachable from … to …" (and no plain "back")."""
    import time

    t = OutageTracker(60, admin_platforms={"matrix"})
    t.observe(down("matrix"), 1000.0)
    [alert] = t.due(1060.0)
    assert alert.skip == "matrix"  # it reaches only the log: matrix cannot carry it
    [back] = t.observe(up("matrix"), 1135.0)
    since = time.strftime("%H:%M:%S", time.localtime(1000.0))
    until = time.strftime("%H:%M:%S", time.localtime(1135.0))
    assert back.skip is None
    assert back.text == (f"⚠️ matrix was unreachable from {since} to {until} (2m15s); "
                         "messages sent there meanwhile are handled now.")


def test_r6_3_a_single_platform_short_blip_is_not_reported() -> None:
    t = OutageTracker(60, admin_platforms={"matrix"})
    t.observe(down("matrix"), 0.0)
    assert t.observe(up("matrix"), 30.0) == []
