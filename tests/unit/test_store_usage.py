"""Usage by day, agent, channel and person (R13.8) and the audit (R13.9): the pure shares and
sums, and the store's tables on a fresh file."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import pytest

from crewbridge.bot.cli import since_arg
from crewbridge.bot.store import Store
from crewbridge.bot.store_usage import (
    NO_ONE,
    Actor,
    Share,
    Totals,
    UsageReport,
    UsageRow,
    split_evenly,
    turn_shares,
    usage_report,
    utc_day,
)
from crewbridge.bridges.base import Inbound
from crewbridge.supervisor.ports import QueuedNudge, TurnUsage
from crewbridge.supervisor.redact import SECRETS


def asked(*texts: str) -> tuple[QueuedNudge, ...]:
    return tuple(QueuedNudge(i, "webui", t, 0, "webui") for i, t in enumerate(texts, 1))


@pytest.fixture
async def store(tmp_path: Path):
    s = await Store.open(tmp_path / "data" / "crewbridge.db")
    yield s
    await s.close()


# --- shares (pure) ---------------------------------------------------------------------------


@pytest.mark.parametrize(("usage", "expected"), [
    pytest.param(TurnUsage(0.3, 100, 10, asked("[alice via slack in #webui] hi")),
                 [Share("alice", 0.3, 100, 10)], id="one-sender-pays-all"),
    pytest.param(TurnUsage(0.3, 101, 11, asked("[alice via slack in #webui] a",
                                               "[bob via matrix in #webui] b")),
                 [Share("alice", 0.15, 51, 6), Share("bob", 0.15, 50, 5)], id="two-split"),
    pytest.param(TurnUsage(0.4, 8, 4, asked("[alice via slack in #webui] a",
                                            "[bob via slack in #webui] b",
                                            "[alice via console in #webui] c")),
                 [Share("alice", 0.2, 4, 2), Share("bob", 0.2, 4, 2)],
                 id="a-sender-twice-is-one-share"),
    pytest.param(TurnUsage(0.2, 3, 1, asked("[task #4 from dana in #webui] fix it")),
                 [Share("dana", 0.2, 3, 1)], id="a-task-prompt-is-its-creator"),
    pytest.param(TurnUsage(0.2, 3, 1, asked("[webui via agent in #webui] over to you")),
                 [Share("webui", 0.2, 3, 1)], id="an-agent-that-asked-pays"),
    pytest.param(TurnUsage(0.05, 7, 2), [Share(NO_ONE, 0.05, 7, 2)], id="answered-no-one"),
])
def test_r13_8_a_turn_is_shared_equally_by_the_people_it_answered(
        usage: TurnUsage, expected: list[Share]) -> None:
    """R13.8: equal shares over the distinct senders; nothing is lost to rounding."""
    shares = turn_shares(usage)
    assert [(s.person, s.input_tokens, s.output_tokens) for s in shares] == [
        (s.person, s.input_tokens, s.output_tokens) for s in expected]
    assert [s.cost_usd for s in shares] == pytest.approx([s.cost_usd for s in expected])
    assert sum(s.input_tokens for s in shares) == usage.input_tokens
    assert sum(s.cost_usd for s in shares) == pytest.approx(usage.cost_usd)


@pytest.mark.parametrize(("total", "n", "parts"), [
    (10, 3, [4, 3, 3]), (0, 2, [0, 0]), (5, 1, [5]), (2, 4, [1, 1, 0, 0])])
def test_r13_8_tokens_split_into_whole_parts_that_add_up(total: int, n: int,
                                                          parts: list[int]) -> None:
    assert split_evenly(total, n) == parts


def test_r13_8_the_day_is_the_utc_date() -> None:
    """R13.8: counted per UTC day, whatever the host's time zone."""
    late = datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC).timestamp()
    assert utc_day(late) == "2026-12-01" and utc_day(late + 1) == "2026-12-02"


# --- the report (pure) -----------------------------------------------------------------------


def row(day: str, agent: str, channel: str, person: str, cost: float, turns: int = 1
        ) -> UsageRow:
    return UsageRow(day, agent, channel, person, Totals(cost, 100 * turns, 10 * turns, turns))


ROWS = [
    row("2026-12-01", "webui", "webui", "alice", 1.0, 2),
    row("2026-12-01", "webui", "webui", "bob", 0.5),
    row("2026-12-01", "webui/2", "webui", "bob", 0.25),
    row("2026-12-01", "general", "general", NO_ONE, 0.125),
    row("2026-11-30", "webui", "webui", "alice", 2.0),
    row("2026-11-25", "general", "general", "carol", 4.0),
    row("2026-11-24", "general", "general", "carol", 99.0),  # 8 days ago: outside 7 days
]


def test_r13_8_report_sums_today_and_the_period_by_channel_agent_person_and_day() -> None:
    """R13.8: cost by channel, agent and day; the period is today and the 6 days before."""
    r = usage_report(ROWS, "2026-12-01", 7)
    assert (r.since, r.days) == ("2026-11-25", 7)
    assert r.total.today.cost_usd == pytest.approx(1.875)
    assert r.total.period.cost_usd == pytest.approx(7.875)
    channels = {u.name: (u.today.cost_usd, u.period.cost_usd) for u in r.channels}
    assert channels == {"webui": pytest.approx((1.75, 3.75)),
                        "general": pytest.approx((0.125, 4.125))}
    assert [u.name for u in r.channels] == ["general", "webui"]  # by the period's cost
    agents = {u.name: u.today.cost_usd for u in r.agents}
    assert agents == pytest.approx({"webui": 1.5, "webui/2": 0.25, "general": 0.125})
    assert [d for d, _ in r.by_day] == ["2026-12-01", "2026-11-30", "2026-11-25"]
    assert r.by_day[0][1].turns == 5


def test_r13_8_top_people_are_today_s_sorted_by_cost() -> None:
    """R13.8: the people who asked today, most expensive first; yesterday's are not there."""
    r = usage_report(ROWS, "2026-12-01", 7)
    assert [(u.name, u.today.turns) for u in r.people] == [("alice", 2), ("bob", 2),
                                                           (NO_ONE, 1)]
    assert r.people[1].today.cost_usd == pytest.approx(0.75)


def test_r13_8_report_survives_its_json_form() -> None:
    """R13.8 `crewbridge usage`: the report crosses the socket as JSON and comes back equal."""
    r = usage_report(ROWS, "2026-12-01", 3)
    assert UsageReport.from_json(json.loads(json.dumps(asdict(r)))) == r


def test_r13_8_an_empty_report_has_no_lines() -> None:
    r = usage_report([], "2026-12-01", 1)
    assert (r.since, r.channels, r.by_day, r.total.period) == ("2026-12-01", (), (), Totals())


# --- the usage table -------------------------------------------------------------------------


async def test_r13_8_usage_is_summed_per_day_agent_channel_and_person(store: Store) -> None:
    """R13.8: an upsert per (day, agent, channel, person): turns add up, rows do not grow."""
    for _ in range(3):
        await store.add_usage("2026-12-01", "webui", "webui",
                              [Share("alice", 0.1, 10, 1), Share("bob", 0.1, 10, 1)])
    await store.add_usage("2026-12-01", "webui", "general", [Share("alice", 1.0, 5, 5)])
    await store.add_usage("2026-12-02", "webui", "webui", [Share("alice", 0.5, 1, 1)])
    rows = await store.usage_since("2026-12-01")
    assert len(rows) == 4
    alice = next(r for r in rows if (r.day, r.channel, r.person) == ("2026-12-01", "webui",
                                                                    "alice"))
    assert alice.totals == Totals(pytest.approx(0.3), 30, 3, 3)
    assert [r.day for r in await store.usage_since("2026-12-02")] == ["2026-12-02"]
    assert await store.cost_by_agent("2026-12-01") == {"webui": pytest.approx(1.6)}
    assert await store.cost_by_agent("2026-11-30") == {}


async def test_r13_8_a_turn_of_no_conversation_counts_in_the_agent_s_home(store: Store
                                                                           ) -> None:
    """R13.8: channel None (the supervisor's "home") is the agents table's channel."""
    from crewbridge.supervisor.ports import AgentKind

    await store.upsert_agent("alice", AgentKind.WORKER, "dm-alice", 3)
    await store.add_usage("2026-12-01", "alice", None, [Share("bob", 0.5, 1, 1)])
    await store.add_usage("2026-12-01", "ghost", "", [Share("bob", 0.5, 1, 1)])
    assert sorted((r.agent, r.channel) for r in await store.usage_since("2026-12-01")) == [
        ("alice", "dm-alice"), ("ghost", "")]


async def test_r13_8_usage_table_primary_key_is_the_four_dimensions(tmp_path: Path) -> None:
    """R13.8: the schema itself forbids a second row for the same day, agent, channel, person."""
    s = await Store.open(tmp_path / "d" / "c.db")
    await s.add_usage("2026-12-01", "a", "c", [Share("p", 1.0, 1, 1)])
    await s.close()
    conn = sqlite3.connect(tmp_path / "d" / "c.db")
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO usage (day, agent, channel, person) "
                     "VALUES ('2026-12-01', 'a', 'c', 'p')")
    conn.close()


# --- the audit -------------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "who"), [
    (Actor("alice", "console", "ops"), "alice"),
    (Actor("alice", "console", "ops", "alice"), "alice"),
    (Actor("Dana", "slack", "ops", "U0DANA"), "Dana (U0DANA)"),
    (Actor.of(Inbound("matrix", "!r:x", "@d:x", "Dana", "t", "e", 1.0), "ops"), "Dana (@d:x)"),
])
def test_r13_9_who_is_the_name_with_the_platform_id(actor: Actor, who: str) -> None:
    """R13.9: the id is what admin lists hold; the name is what a reader recognises."""
    assert actor.who == who


async def test_r13_9_audit_keeps_who_platform_where_when_what_and_outcome(
        store: Store) -> None:
    """R13.9: every field as given, the outcome's first line only; the latest N, oldest
    first; `since` cuts by time."""
    await store.audit(ts=100.0, who="Dana (U1)", platform="slack", where="ops",
                      what="reset webui", outcome="Closed webui's breaker.\nDelivering 2.")
    for i in range(5):
        await store.audit_act(Actor("alice", "console", "webui"), f"task @bob job {i}",
                              f"Task #{i} for @bob: job {i}", 200.0 + i)
    first = (await store.audit_entries(limit=100))[0]
    assert (first.ts, first.who, first.platform, first.where, first.what, first.outcome) == (
        100.0, "Dana (U1)", "slack", "ops", "reset webui", "Closed webui's breaker.")
    latest = await store.audit_entries(limit=2)
    assert [e.what for e in latest] == ["task @bob job 3", "task @bob job 4"]
    assert len(await store.audit_entries(limit=100, since=202.0)) == 3
    assert len(await store.audit_entries()) == 6


async def test_r13_9_r10_5_no_secret_reaches_the_audit(store: Store) -> None:
    """R13.9, R10.5: a secret in what was typed is scrubbed before it is written."""
    SECRETS.add(["xoxb-secret-audit-token-123"])
    try:
        await store.audit(ts=1.0, who="x", platform="slack", where="ops",
                          what="auth code xoxb-secret-audit-token-123", outcome="ok")
    finally:
        SECRETS.clear()
    (entry,) = await store.audit_entries()
    assert "xoxb-secret-audit-token-123" not in entry.what
    raw = (store.path.read_bytes() + Path(f"{store.path}-wal").read_bytes())
    assert b"xoxb-secret-audit-token-123" not in raw


# --- `crewbridge audit --since` --------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", 10_000.0 - 7200), ("90m", 10_000.0 - 5400), ("1d", 10_000.0 - 86400),
    ("30s", 9_970.0), ("1.5h", 10_000.0 - 5400),
    ("1970-01-01T01:00:00", 3600.0), ("1970-01-01T01:00:00+01:00", 0.0),
    ("1970-01-02", 86400.0),
])
def test_r13_9_since_is_an_iso_time_or_a_duration_ago(text: str, expected: float) -> None:
    """R13.9 `crewbridge audit --since`: an ISO time (UTC unless it says) or `2h`, `1d`."""
    assert since_arg(text, now=10_000.0) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["yesterday", "2 h", "h", "-1d", ""])
def test_r13_9_a_since_that_is_neither_is_a_usage_error(text: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        since_arg(text, now=0.0)
