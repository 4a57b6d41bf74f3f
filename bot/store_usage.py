"""The store's usage and audit records (R13.8, R13.9), and the sums people read.

Usage is kept per (UTC day, agent, channel, person) and summed by an upsert, so the table
grows with the team and the calendar, not with every turn. A turn's cost is shared equally
by the people whose messages it answered: whoever asked pays, whichever agent answered.

The audit is one row per act — an admin command, a task opened or finished, a login's
outcome, later an approval or a stop — with who, platform, where, when, what and how it
ended. Like every string the store is given, each field is scrubbed of the config's secrets
(`bot.store.ScrubbingConnection`).

`UsageRecords` and `AuditRecords` are mixed into `bot.store.Store`; like the rest of the
store, every public method is one transaction.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from crewbridge.bot.routing import split_nudge
from crewbridge.bridges.base import Acted, Inbound
from crewbridge.supervisor.ports import TurnUsage

T = TypeVar("T")

TOP_PEOPLE = 5  # the `usage` report's "top people today"
MAX_DAYS = 366  # the longest report `crewbridge usage --days` asks for
NO_ONE = ""  # the person of a turn that answered nobody's message (a task's kick-off, a resume)


def utc_day(ts: float) -> str:
    """The UTC date of `ts` as `YYYY-MM-DD`: the day usage is counted in (R13.8)."""
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def days_before(day: str, n: int) -> str:
    return (date.fromisoformat(day) - timedelta(days=n)).isoformat()


@dataclass(frozen=True)
class Share:
    """One person's part of a turn."""

    person: str
    cost_usd: float
    input_tokens: int
    output_tokens: int


def split_evenly(total: int, n: int) -> list[int]:
    """`total` in `n` whole parts that add up to it (the first ones get the remainder)."""
    q, r = divmod(total, n)
    return [q + (i < r) for i in range(n)]


def turn_shares(usage: TurnUsage) -> list[Share]:
    """R13.8: a turn's cost and tokens in equal shares over the distinct senders of the
    messages it answered (each sender's name is in its nudge's header); all of it to
    `NO_ONE` when it answered none."""
    people = list(dict.fromkeys(split_nudge(q.text)[0] for q in usage.asked)) or [NO_ONE]
    n = len(people)
    return [Share(p, usage.cost_usd / n, i, o) for p, i, o in zip(
        people, split_evenly(usage.input_tokens, n), split_evenly(usage.output_tokens, n),
        strict=True)]


@dataclass(frozen=True)
class Totals:
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    turns: int = 0

    def __add__(self, other: Totals) -> Totals:
        return Totals(self.cost_usd + other.cost_usd, self.input_tokens + other.input_tokens,
                      self.output_tokens + other.output_tokens, self.turns + other.turns)


@dataclass(frozen=True)
class UsageRow:
    """One stored sum: what `agent` cost in `channel` for `person` on `day`."""

    day: str
    agent: str
    channel: str
    person: str
    totals: Totals


@dataclass(frozen=True)
class UsageLine:
    """One row of a report: a channel's, agent's or person's cost today and over the period."""

    name: str
    today: Totals
    period: Totals

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UsageLine:
        return cls(d["name"], Totals(**d["today"]), Totals(**d["period"]))


@dataclass(frozen=True)
class UsageReport:
    """What admin `usage` and `crewbridge usage` show (R13.8): the period is `since` to
    `today`, both included; lines are sorted by the period's cost, people by today's."""

    today: str
    since: str
    days: int
    total: UsageLine
    channels: tuple[UsageLine, ...]
    agents: tuple[UsageLine, ...]
    people: tuple[UsageLine, ...]  # the top people today
    by_day: tuple[tuple[str, Totals], ...]  # newest first; days without usage left out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> UsageReport:
        """The report back from its JSON form (`dataclasses.asdict`, over the socket)."""
        lines = UsageLine.from_json
        return cls(d["today"], d["since"], d["days"], lines(d["total"]),
                   *(tuple(map(lines, d[k])) for k in ("channels", "agents", "people")),
                   tuple((day, Totals(**t)) for day, t in d["by_day"]))


def usage_report(rows: Iterable[UsageRow], today: str, days: int) -> UsageReport:
    """Sum stored rows into the report of the `days` days up to `today` (R13.8). Pure."""
    days = max(1, days)
    since = days_before(today, days - 1)
    rows = [r for r in rows if since <= r.day <= today]
    groups: dict[str, dict[str, list[Totals]]] = {k: defaultdict(lambda: [Totals(), Totals()])
                                                  for k in ("channel", "agent", "person")}
    per_day: dict[str, Totals] = defaultdict(Totals)
    for r in rows:
        per_day[r.day] += r.totals
        for key, name in (("channel", r.channel), ("agent", r.agent), ("person", r.person)):
            pair = groups[key][name]
            pair[1] += r.totals
            if r.day == today:
                pair[0] += r.totals

    def lines(key: str, by_today: bool = False) -> list[UsageLine]:
        out = [UsageLine(name, t, p) for name, (t, p) in groups[key].items()]
        return sorted(out, key=lambda u: (-(u.today if by_today else u.period).cost_usd, u.name))

    people = [u for u in lines("person", by_today=True) if u.today.turns][:TOP_PEOPLE]
    total = UsageLine("all", per_day.get(today, Totals()), sum(per_day.values(), Totals()))
    return UsageReport(today, since, days, total, tuple(lines("channel")), tuple(lines("agent")),
                       tuple(people), tuple(sorted(per_day.items(), reverse=True)))


class UsageRecords:
    """The usage table (R13.8); mixed into `Store`, whose `_tx` and `_all` it uses."""

    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _all: Callable[..., Awaitable[list[tuple]]]

    async def add_usage(self, day: str, agent: str, channel: str | None,
                        shares: Sequence[Share]) -> None:
        """Add one turn's shares to the day's sums: a turn for each person in it. `channel`
        None or "": the agent's home channel, as the agents table has it."""
        rows = [(day, agent, channel or "", agent, s.person, s.cost_usd, s.input_tokens,
                 s.output_tokens) for s in shares]
        await self._tx(lambda conn: conn.executemany(
            "INSERT INTO usage (day, agent, channel, person, cost_usd, input_tokens, "
            "output_tokens, turns) VALUES (?, ?, COALESCE(NULLIF(?, ''), "
            "(SELECT channel FROM agents WHERE name = ?), ''), ?, ?, ?, ?, 1) "
            "ON CONFLICT (day, agent, channel, person) DO UPDATE SET "
            "cost_usd = cost_usd + excluded.cost_usd, "
            "input_tokens = input_tokens + excluded.input_tokens, "
            "output_tokens = output_tokens + excluded.output_tokens, turns = turns + 1",
            rows))

    async def usage_since(self, day: str) -> list[UsageRow]:
        """Every stored sum from `day` (a UTC date) on."""
        return [UsageRow(r[0], r[1], r[2], r[3], Totals(*r[4:])) for r in await self._all(
            "SELECT day, agent, channel, person, cost_usd, input_tokens, output_tokens, turns "
            "FROM usage WHERE day >= ? ORDER BY day, agent, channel, person", (day,))]

    async def cost_by_channel(self, day: str) -> dict[str, float]:
        """Each channel's cost on `day`: what its daily budget is held against (R13.8)."""
        return dict(await self._all("SELECT channel, SUM(cost_usd) FROM usage WHERE day = ? "
                                    "GROUP BY channel", (day,)))

    async def cost_by_agent(self, day: str) -> dict[str, float]:
        """Each agent's cost on `day`: the `status` table's "cost today" (R13.8)."""
        return dict(await self._all("SELECT agent, SUM(cost_usd) FROM usage WHERE day = ? "
                                    "GROUP BY agent", (day,)))


@dataclass(frozen=True)
class Actor:
    """Who acts (a person's name and platform id), on which platform, in which channel."""

    name: str
    platform: str
    where: str
    id: str = ""

    @classmethod
    def of(cls, msg: Inbound | Acted, channel: str) -> Actor:
        return cls(msg.sender_name, msg.platform, channel, msg.sender)

    @property
    def who(self) -> str:
        """The name people know, with the platform's id when it differs: the id is what
        admin and approver lists hold, the name what a reader recognises."""
        return self.name if self.id in ("", self.name) else f"{self.name} ({self.id})"


@dataclass(frozen=True)
class AuditRow:
    id: int
    ts: float
    who: str
    platform: str
    where: str  # the channel it was done in
    what: str
    outcome: str


class AuditRecords:
    """The audit table (R13.9); mixed into `Store`, whose `_tx` and `_all` it uses."""

    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _all: Callable[..., Awaitable[list[tuple]]]

    async def audit(self, *, ts: float, who: str, platform: str, where: str, what: str,
                    outcome: str) -> None:
        """Record one act (R13.9): `who` did `what` (a command with its arguments, or an
        action) on `platform` in channel `where` at `ts`, and `outcome` is how it ended (its
        answer's first line). Every string is scrubbed of secrets on its way in."""
        first = (outcome.strip().splitlines() or [""])[0]
        await self._tx(lambda conn: conn.execute(
            "INSERT INTO audit (ts, who, platform, place, what, outcome) "
            "VALUES (?, ?, ?, ?, ?, ?)", (ts, who, platform, where, what, first)))

    async def audit_act(self, actor: Actor, what: str, outcome: str, ts: float) -> None:
        """`audit` for an `Actor`."""
        await self.audit(ts=ts, who=actor.who, platform=actor.platform, where=actor.where,
                         what=what, outcome=outcome)

    async def audit_entries(self, *, limit: int = 20, since: float | None = None
                            ) -> list[AuditRow]:
        """The latest `limit` entries (at or after `since`, when given), oldest first."""
        rows = await self._all(
            "SELECT id, ts, who, platform, place, what, outcome FROM audit WHERE ts >= ? "
            "ORDER BY id DESC LIMIT ?", (since if since is not None else float("-inf"), limit))
        return [AuditRow(*r) for r in reversed(rows)]
