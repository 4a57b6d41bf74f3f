"""The store's part of retention (R14.6): what is older than the horizon is deleted, in
batches, and idle workers are forgotten.

Each `prune` call is one transaction of at most `limit` rows of one kind (`Prune`), so a
first prune of a year's history never holds the one writer for long: the bot's own writes
go in between the batches (R8.4). A row goes with everything that exists only for it — a
message with its platform ids (`refs`) and the Matrix bridge's memory of the bot's reactions
to it, a task with its health record, a thread with its fork's agent row, health and
breaker — and nothing goes that something still in use needs:

- a message stays while it roots a thread that stays, or a post still waiting in the outbox
  shows it, or an approval or a queued nudge names it;
- a thread stays while it has a message newer than the horizon, a post or a nudge waiting,
  a pending approval, an open task, or a fork running in it, and the newest thread of each
  channel stays always: numbers are the channel's next (`new_thread`), and a number (a
  fork's name) must never be given twice;
- pending posts, pending approvals and queued nudges are never deleted by age.

The keys other modules write are named here as they write them: health keys are
`supervisor.rules.health_key`'s, breakers `supervisor.lifecycle`'s, the daily budget flags
`bot.budget_ops`'s and the reactions `bridges.matrix_reactions`'s; the tests hold each
against its source. `RetentionRecords` is mixed into `bot.store.Store`.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

from crewbridge.bot.approvals import ApprovalState
from crewbridge.bot.model import DM_PREFIX, ChannelKind
from crewbridge.supervisor.ports import AgentKind

T = TypeVar("T")

DOOMED = "doomed"  # a temporary table: the ids of the batch being deleted
MATRIX_REACTIONS = "matrix.reactions."  # `bridges.matrix_reactions.KV_REACTIONS`, not
# imported: it would bring matrix-nio into every command that opens the store


@dataclass(frozen=True)
class Horizon:
    """What is older than `cut` (a time) goes; usage of days before `day` (its UTC date).
    `running`: the agents running now, whose threads stay whatever their age."""

    cut: float
    day: str
    running: frozenset[str] = frozenset()


class Prune(StrEnum):
    """The kinds of rows pruned by age, in the order they are pruned: what refers to a
    message goes before the messages, so the messages it kept are free in the same pass."""

    APPROVALS = "approvals"
    SET_ASIDE = "set-aside posts"
    TASKS = "tasks"
    THREADS = "threads"
    MESSAGES = "messages"
    USAGE = "usage rows"
    AUDIT = "audit rows"
    DAILY_FLAGS = "daily flags"


def _doom(conn: sqlite3.Connection, select: str, args: tuple) -> int:
    """Fill the batch table with the ids `select` gives; how many."""
    conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {DOOMED} (id INTEGER PRIMARY KEY)")
    conn.execute(f"DELETE FROM {DOOMED}")
    return conn.execute(f"INSERT INTO {DOOMED} (id) {select}", args).rowcount


def _named_by_none(column: str, *users: tuple[str, str]) -> str:
    """SQL: `column` is named by no row of these (table, column): what is in use is kept."""
    return " ".join(f"AND {column} NOT IN (SELECT {ref} FROM {table} WHERE {ref} IS NOT NULL)"
                    for table, ref in users)


def _delete(conn: sqlite3.Connection, table: str, column: str = "id") -> None:
    conn.execute(f"DELETE FROM {table} WHERE {column} IN (SELECT id FROM {DOOMED})")


def _approvals(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, "SELECT id FROM approvals WHERE state != ? AND "
                    "COALESCE(decided_at, created_at) < ? LIMIT ?",
              (ApprovalState.PENDING, h.cut, limit))
    _delete(conn, "approvals")
    return n


def _set_aside(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    """Posts the platform refused for good, kept for inspection: not pending."""
    n = _doom(conn, "SELECT id FROM outbox WHERE set_aside = 1 AND created_at < ? LIMIT ?",
              (h.cut, limit))
    _delete(conn, "outbox")
    return n


def _tasks(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, "SELECT id FROM tasks WHERE status != 'open' AND "
                    "COALESCE(done_at, created_at) < ? LIMIT ?", (h.cut, limit))
    conn.execute(f"DELETE FROM health WHERE key IN (SELECT 'task:' || id FROM {DOOMED})")
    _delete(conn, "tasks")
    return n


def _threads(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, (
        "SELECT t.id FROM threads t JOIN messages r ON r.id = t.root WHERE r.ts < ? "
        "AND t.number < (SELECT MAX(number) FROM threads n WHERE n.channel = t.channel) "
        "AND NOT EXISTS (SELECT 1 FROM messages m WHERE m.thread = t.id AND m.ts >= ?) "
        f"{_named_by_none('t.id', ('outbox', 'thread'), ('queue', 'thread'))} "
        "AND t.id NOT IN (SELECT thread FROM approvals WHERE state = ? AND thread IS NOT NULL) "
        "AND NOT EXISTS (SELECT 1 FROM tasks k WHERE k.id = t.task_id AND k.status = 'open') "
        "AND (t.channel || '/' || t.number) NOT IN (SELECT value FROM json_each(?)) "
        "ORDER BY t.id LIMIT ?"),
        (h.cut, h.cut, ApprovalState.PENDING, json.dumps(sorted(h.running)), limit))
    doomed = f"SELECT channel, number, id FROM threads WHERE id IN (SELECT id FROM {DOOMED})"
    conn.execute(f"DELETE FROM agents WHERE kind = ? AND name IN "
                 f"(SELECT channel || '/' || number FROM ({doomed}))", (AgentKind.FORK,))
    conn.execute(f"DELETE FROM health WHERE key IN "
                 f"(SELECT 'fork:' || channel || '/' || id FROM ({doomed}))")
    conn.execute(f"DELETE FROM escalations WHERE key IN "
                 f"(SELECT 'breaker:' || channel || '/' || number FROM ({doomed}))")
    _delete(conn, "threads")
    return n


def _messages(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, (
        "SELECT m.id FROM messages m WHERE m.ts < ? "
        + _named_by_none("m.id", ("threads", "root"), ("outbox", "message"),
                         ("approvals", "message"), ("queue", "message"))
        + " ORDER BY m.ts LIMIT ?"), (h.cut, limit))
    conn.execute(f"DELETE FROM kv WHERE key IN (SELECT ? || room || ' ' || event_id FROM refs "
                 f"WHERE platform = 'matrix' AND message IN (SELECT id FROM {DOOMED}))",
                 (MATRIX_REACTIONS,))
    _delete(conn, "refs", "message")
    _delete(conn, "messages")
    return n


def _usage(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, "SELECT rowid FROM usage WHERE day < ? LIMIT ?", (h.day, limit))
    _delete(conn, "usage", "rowid")
    return n


def _audit(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    n = _doom(conn, "SELECT id FROM audit WHERE ts < ? LIMIT ?", (h.cut, limit))
    _delete(conn, "audit")
    return n


def _daily_flags(conn: sqlite3.Connection, h: Horizon, limit: int) -> int:
    """A day's budget caps (`budget.caps.<day>`) and its warnings and alerts (escalations
    `budget-warning:<day>:<channel>`, `budget-spent:…`): one of each per day."""
    n = _doom(conn, "SELECT rowid FROM kv WHERE key >= 'budget.caps.' AND "
                    "key < 'budget.caps.' || ? LIMIT ?", (h.day, limit))
    _delete(conn, "kv", "rowid")
    return n + conn.execute(
        "DELETE FROM escalations WHERE rowid IN (SELECT rowid FROM escalations WHERE "
        "(key LIKE 'budget-warning:%' OR key LIKE 'budget-spent:%') AND opened_at < ? "
        "LIMIT ?)", (h.cut, limit)).rowcount


PRUNES: dict[Prune, Callable[[sqlite3.Connection, Horizon, int], int]] = {
    Prune.APPROVALS: _approvals,
    Prune.SET_ASIDE: _set_aside,
    Prune.TASKS: _tasks,
    Prune.THREADS: _threads,
    Prune.MESSAGES: _messages,
    Prune.USAGE: _usage,
    Prune.AUDIT: _audit,
    Prune.DAILY_FLAGS: _daily_flags,
}

ACTIVE_SINCE = (  # a worker's activity at or after the horizon (`?`s: name ×4, cut ×5)
    "SELECT EXISTS (SELECT 1 FROM tasks WHERE assignee = ? AND (status = 'open' "
    "  OR created_at >= ? OR done_at >= ?)) "
    "OR EXISTS (SELECT 1 FROM messages WHERE channel = ? AND ts >= ?) "
    "OR EXISTS (SELECT 1 FROM queue WHERE agent = ? AND created_at >= ?) "
    "OR EXISTS (SELECT 1 FROM threads t JOIN messages m ON m.thread = t.id "
    "  WHERE t.owner = ? AND m.ts >= ?)")


class RetentionRecords:
    """Pruning and forgetting; mixed into `Store`, whose `_tx` and `_all` it uses."""

    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _all: Callable[..., Awaitable[list[tuple]]]

    async def prune(self, kind: Prune, horizon: Horizon, limit: int) -> int:
        """Delete up to `limit` rows of `kind` older than the horizon, in one transaction;
        how many went (fewer than `limit`: none of that kind is left to go)."""
        return await self._tx(lambda conn: PRUNES[kind](conn, horizon, limit))

    async def worker_names(self) -> list[str]:
        """Every worker the store knows: by its agent row, or by its `dm-<name>` channel."""
        return [r[0] for r in await self._all(
            "SELECT name FROM agents WHERE kind = ? UNION SELECT substr(name, ?) FROM channels "
            "WHERE kind = ? ORDER BY 1", (AgentKind.WORKER, len(DM_PREFIX) + 1, ChannelKind.DM))]

    async def forget_worker(self, name: str, horizon: Horizon) -> bool:
        """Forget worker `name` if it has no open task and nothing it did or was asked is
        newer than the horizon: its channel and the channel's threads (a new one starts
        at number 1 again: a `dm-` thread has no fork to be named after it), agent row,
        health, breaker, queue, DM attachments and process record; its messages follow
        by age. True when it was forgotten. The caller makes sure it is not running."""
        channel = f"{DM_PREFIX}{name}"

        def work(conn: sqlite3.Connection) -> bool:
            (active,) = conn.execute(ACTIVE_SINCE, (
                name, horizon.cut, horizon.cut, channel, horizon.cut, name, horizon.cut,
                name, horizon.cut)).fetchone()
            if active:
                return False
            for sql, arg in (("DELETE FROM channels WHERE name = ?", channel),
                             ("DELETE FROM threads WHERE channel = ? AND id NOT IN (SELECT "
                              "thread FROM outbox WHERE thread IS NOT NULL)", channel),
                             ("DELETE FROM tool_rules WHERE channel = ?", channel),
                             ("DELETE FROM agents WHERE name = ?", name),
                             ("DELETE FROM health WHERE key = ?", f"worker:{name}"),
                             ("DELETE FROM escalations WHERE key = ?", f"breaker:{name}"),
                             ("DELETE FROM queue WHERE agent = ?", name),
                             ("DELETE FROM dm_attachments WHERE worker = ?", name),
                             ("DELETE FROM processes WHERE agent = ?", name)):
                conn.execute(sql, (arg,))
            return True

        return await self._tx(work)
