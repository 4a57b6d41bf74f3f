"""The store's part of approvals (R13.1–R13.4): the requests people are asked to decide,
and the rules "Always allow" added per channel.

A request is stored with its card in one transaction, so a card is never shown for a
request the store does not know, and one that is known survives a restart of the bot: the
agent's interrupted turn is given again (R8.5), the resumed agent asks again, and the same
card takes the new request (`rebind`), keeping its number and its deadline (R13.4).
Deciding is a conditional update, so of two people pressing at once exactly one decides.
`ApprovalRecords` is mixed into `bot.store.Store`; every public method is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from crewbridge.bot.approvals import Approval, ApprovalState
from crewbridge.bot.store_outbox import Said, said_sql

T = TypeVar("T")

COLUMNS = ("id, agent, channel, thread, request_id, tool, input, rule, safety, askers, "
           "message, state, decided_by, reason, deadline")


def _row(r: tuple) -> Approval:
    return Approval(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7], bool(r[8]),
                    tuple(json.loads(r[9])), r[10], ApprovalState(r[11]), r[12], r[13], r[14])


def input_key(tool_input: dict[str, Any]) -> str:
    """The input as stored and compared: the same request asked again matches exactly."""
    return json.dumps(tool_input, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


class ApprovalRecords:
    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _one: Callable[..., Awaitable[tuple | None]]
    _all: Callable[..., Awaitable[list[tuple]]]
    _write: Callable[..., Awaitable[list[int | None]]]

    async def add_approval(self, a: Approval, card: Callable[[Approval], Said],
                           now: float) -> Approval:
        """Store request `a` (its id is given here) and its card, made by `card` once the
        request has its number, in one transaction."""
        def work(conn: sqlite3.Connection) -> Approval:
            cur = conn.execute(
                "INSERT INTO approvals (agent, channel, thread, request_id, tool, input, rule, "
                "safety, askers, state, created_at, deadline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?, ?, ?)",
                (a.agent, a.channel, a.thread, a.request_id, a.tool, input_key(a.input), a.rule,
                 int(a.safety), json.dumps(list(a.askers)), a.state, now, a.deadline))
            stored = Approval(**{**a.__dict__, "id": cur.lastrowid or 0})
            message = said_sql(conn, card(stored), now)
            conn.execute("UPDATE approvals SET message = ? WHERE id = ?", (message, stored.id))
            return Approval(**{**stored.__dict__, "message": message})

        return await self._tx(work)

    async def rebind_approval(self, agent: str, tool: str, tool_input: dict[str, Any],
                              request_id: str, live: set[str]) -> Approval | None:
        """A pending request of `agent` for the same tool and input whose request is no
        longer live (`live`: the run's open request ids) now answers `request_id`."""
        def work(conn: sqlite3.Connection) -> Approval | None:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM approvals WHERE agent = ? AND tool = ? AND input = ? "
                f"AND state = ? ORDER BY id", (agent, tool, input_key(tool_input),
                                                ApprovalState.PENDING)).fetchall()
            old = next((_row(r) for r in rows if r[4] not in live), None)
            if old is None:
                return None
            conn.execute("UPDATE approvals SET request_id = ? WHERE id = ?", (request_id, old.id))
            return Approval(**{**old.__dict__, "request_id": request_id})

        return await self._tx(work)

    async def approval(self, approval_id: int) -> Approval | None:
        row = await self._one(f"SELECT {COLUMNS} FROM approvals WHERE id = ?", (approval_id,))
        return _row(row) if row else None

    async def approval_of_request(self, agent: str, request_id: str) -> Approval | None:
        row = await self._one(f"SELECT {COLUMNS} FROM approvals WHERE agent = ? AND "
                              f"request_id = ? ORDER BY id DESC LIMIT 1", (agent, request_id))
        return _row(row) if row else None

    async def approval_of_ref(self, platform: str, room: str, ref: str) -> Approval | None:
        """The request whose card has platform id `ref` in this room (a click, a reaction,
        a reply to the card)."""
        row = await self._one(
            f"SELECT {', '.join('a.' + c.strip() for c in COLUMNS.split(','))} FROM refs r "
            f"JOIN approvals a ON a.message = r.message WHERE r.platform = ? AND r.room = ? "
            f"AND r.event_id = ?", (platform, room, ref))
        return _row(row) if row else None

    async def latest_pending(self, channel: str, thread: int | None) -> Approval | None:
        """The newest request still waiting in a conversation (a bare `allow` there)."""
        row = await self._one(
            f"SELECT {COLUMNS} FROM approvals WHERE channel = ? AND thread IS ? AND state = ? "
            f"ORDER BY id DESC LIMIT 1", (channel, thread, ApprovalState.PENDING))
        return _row(row) if row else None

    async def pending_approvals(self) -> list[Approval]:
        rows = await self._all(f"SELECT {COLUMNS} FROM approvals WHERE state = ? ORDER BY "
                               f"deadline", (ApprovalState.PENDING,))
        return [_row(r) for r in rows]

    async def pending_approval_count(self) -> int:
        """How many requests wait for a decision (R14.3's gauge), without reading them."""
        row = await self._one("SELECT COUNT(*) FROM approvals WHERE state = ?",
                              (ApprovalState.PENDING,))
        return row[0] if row else 0

    async def settle_approval(self, approval_id: int, state: ApprovalState, by: str,
                              reason: str, now: float) -> bool:
        """Decide (or withdraw) a request still pending; False when it was not pending: one
        decision wins."""
        ids = await self._write([(
            "UPDATE approvals SET state = ?, decided_by = ?, reason = ?, decided_at = ? "
            "WHERE id = ? AND state = ?",
            (state, by, reason, now, approval_id, ApprovalState.PENDING))])
        return bool(ids and ids[0] is not None)

    async def reopen_approval(self, approval_id: int) -> None:
        """A decision that could not reach the agent is taken back: the card stays open."""
        await self._write([("UPDATE approvals SET state = ?, decided_by = '', reason = '', "
                            "decided_at = NULL WHERE id = ?",
                            (ApprovalState.PENDING, approval_id))])

    async def add_tool_rule(self, channel: str, rule: str, by: str, now: float) -> None:
        await self._write([("INSERT OR IGNORE INTO tool_rules (channel, rule, added_by, "
                            "added_at) VALUES (?, ?, ?, ?)", (channel, rule, by, now))])

    async def tool_rules(self) -> dict[str, tuple[str, ...]]:
        rules: dict[str, tuple[str, ...]] = {}
        for channel, rule in await self._all("SELECT channel, rule FROM tool_rules "
                                             "ORDER BY added_at, rule"):
            rules[channel] = (*rules.get(channel, ()), rule)
        return rules
