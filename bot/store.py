"""The durable store: SQLite through aiosqlite, WAL mode, one connection (R8.4).

One aiosqlite connection runs every statement on one thread, in order, so there is exactly
one writer and no "database is locked". Each public method is one transaction: a kill at
any instant leaves either all of it or none of it. The schema is versioned with
`PRAGMA user_version`; the migrations live in `bot.schema`.

What lives here, and why it must outlive the process:
- channels created at run time (R1.1), DM attachments (R1.6), tasks (R7);
- agents with their session ids, so a restart resumes rather than forgets (R3.2);
- the inbox with a unique (platform, event_id): re-deliveries are ignored (R8.1);
- per-agent queues of unanswered nudges: a nudge leaves its queue in the transaction that
  puts the answer of the turn that answered it into the outbox (R3.4, R3.5, R8.5);
- health records (cooldowns, failure counts, breakers) and open escalations (R4.6, R6.1);
- the outbox of posts not yet delivered (R8.3) and bridge cursors such as Matrix
  `next_batch` (R8.2);
- the agent processes now running, so that a bot killed without a chance to stop them ends
  them when it starts again (R4.9);
- threads and every platform id a message has per room (`bot.store_threads`, R12), and the
  outbox's rows (`bot.store_outbox`), mixed into `Store`;
- usage by day, agent, channel and person, and the audit (`bot.store_usage`, R13.8, R13.9);
- what is older than `[bot] retain_days` is pruned, idle workers forgotten
  (`bot.store_retention`, R14.6).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from crewbridge.bot import datadir
from crewbridge.bot.model import ChannelKind, Nudge
from crewbridge.bot.schema import MIGRATIONS
from crewbridge.bot.store_approvals import ApprovalRecords
from crewbridge.bot.store_outbox import (
    OutboxRecords,
    OutboxRow,
    Room,
    Said,
    pending_messages,
    said_sql,
)
from crewbridge.bot.store_retention import RetentionRecords
from crewbridge.bot.store_threads import (
    ThreadRecords,
    add_ref,
    bot_message,
    insert_message,
    new_thread,
)
from crewbridge.bot.store_usage import AuditRecords, UsageRecords
from crewbridge.bridges.base import Inbound
from crewbridge.supervisor.breaker import Health
from crewbridge.supervisor.ports import AgentKind, AgentRow, QueuedNudge
from crewbridge.supervisor.redact import scrub

T = TypeVar("T")
Statement = tuple[str, tuple]
AIOSQLITE_PIN = ">=0.20,<0.23"  # the versions whose private `Connection._execute` `_tx` uses

AGENT_COLUMNS = "name, kind, channel, task_id, session_id, last_error"
TASK_COLUMNS = "id, subject, channel, assignee, status, created_by, thread"
QUEUE_COLUMNS = "id, agent, text, hops, origin, created_at, attempted, thread, message"
QUEUE_OF = f"SELECT {QUEUE_COLUMNS} FROM queue WHERE agent = ? ORDER BY id"  # oldest first


Queues = tuple[int, dict[str, list[QueuedNudge]]]
"""Agents' queues as one transaction (numbered by `Store._writes`) left them."""


def _queued_nudge(r: tuple) -> QueuedNudge:
    return QueuedNudge(*r[:6], attempted=bool(r[6]), thread=r[7], message=r[8])


def _agent_row(r: tuple) -> AgentRow:
    return AgentRow(r[0], AgentKind(r[1]), *r[2:])


@dataclass(frozen=True)
class TaskRow:
    id: int
    subject: str
    channel: str
    assignee: str
    status: str
    created_by: str
    thread: int | None = None  # the task's thread (R12.4)


def _apply(conn: sqlite3.Connection, statements: Iterable[Statement]) -> list[int | None]:
    """Run statements on the store's thread, inside the caller's transaction.

    Per statement: the new row id for an insert that inserted, the number of rows changed
    for any other statement that changed some, None when nothing changed.
    """
    results: list[int | None] = []
    for sql, args in statements:
        cur = conn.execute(sql, args)
        if cur.rowcount <= 0:
            results.append(None)
        elif sql.lstrip().upper().startswith("INSERT"):
            results.append(cur.lastrowid)
        else:
            results.append(cur.rowcount)
    return results


def _in_transaction(conn: sqlite3.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


class ScrubbingConnection(sqlite3.Connection):
    """The store's connection: every string it is given passes `scrub`, so no secret the
    config holds is ever written to disk (R10.5) — whichever method wrote it, and so no post
    (each is stored before it is sent) can carry one either."""

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        return super().execute(sql, _scrubbed(parameters))

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> sqlite3.Cursor:
        return super().executemany(sql, (_scrubbed(p) for p in parameters))


def _scrubbed(parameters: Any) -> Any:
    if isinstance(parameters, dict):
        return {k: scrub(v) if isinstance(v, str) else v for k, v in parameters.items()}
    return tuple(scrub(v) if isinstance(v, str) else v for v in parameters)


@dataclass(frozen=True)
class RoomMessage:
    """A stored message and the room it was written in."""

    id: int
    platform: str
    room: str


class StoreError(Exception):
    """The data directory or database cannot be used; the message says which and why."""


class Store(OutboxRecords, ThreadRecords, UsageRecords, AuditRecords, ApprovalRecords,
            RetentionRecords):
    def __init__(self, db: aiosqlite.Connection, path: Path):
        self._db = db
        self.path = path
        self._writes = 0  # transactions begun, counted on the store's thread in their order
        self._queues: Queues = (-1, {})
        """Agents' queues as a transaction left them (`queued`), valid while no other began."""

    @classmethod
    async def open(cls, path: Path) -> Store:
        if not hasattr(aiosqlite.Connection, "_execute"):  # see `_tx`
            raise StoreError(f"aiosqlite {aiosqlite.__version__} is not supported "
                             f"(no Connection._execute); install aiosqlite{AIOSQLITE_PIN}")
        try:
            datadir.prepare(path.parent)  # R8.6: the team's history is private
            datadir.create_private(path)
            db = await aiosqlite.connect(path, isolation_level=None,
                                         factory=ScrubbingConnection)
        except OSError as e:
            raise StoreError(f"cannot open the store at {path}: {e.strerror or e}") from None
        except Exception as e:  # sqlite3.OperationalError and friends
            raise StoreError(f"cannot open the store at {path}: {e}") from None
        store = cls(db, path)
        try:
            await store._prepare()
        except BaseException:
            await db.close()  # a refused store must not leave its worker thread behind
            raise
        return store

    async def _prepare(self) -> None:
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.execute("PRAGMA foreign_keys=ON")
        await self._db.execute("PRAGMA busy_timeout=5000")
        version = (await self._one("PRAGMA user_version"))[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{self.path} was written by a newer crewbridge "
                             f"(schema {version}, this one knows {len(MIGRATIONS)})")
        for i in range(version, len(MIGRATIONS)):
            await self._db.executescript(
                f"BEGIN; {MIGRATIONS[i]} PRAGMA user_version = {i + 1}; COMMIT;")

    async def close(self) -> None:
        await self._db.close()

    async def _one(self, sql: str, args: Iterable = ()) -> tuple | None:
        rows = await self._db.execute_fetchall(sql, tuple(args))
        return tuple(rows[0]) if rows else None

    async def _all(self, sql: str, args: Iterable = ()) -> list[tuple]:
        return [tuple(r) for r in await self._db.execute_fetchall(sql, tuple(args))]

    async def _tx(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` as one transaction on the connection's own thread, in one hand-off.

        aiosqlite runs each call on its one thread, in order, so a transaction that is a
        single call cannot interleave with another: that is the one-writer rule, without a
        lock, and without paying a thread hand-off per statement (the store's main cost).

        `Connection._execute` is aiosqlite's private "run this on your thread" — it has no
        public one. We keep it, pinned (`AIOSQLITE_PIN`, pyproject.toml), rather than go
        public-only: with `execute`/`commit` a transaction costs a hand-off per statement
        plus two (30 per message before this, 6 with it: docs/benchmarks.md), and a thread
        of our own would re-implement aiosqlite. `open` refuses a version without it, and
        tests/unit/test_store.py fails by name when an upgrade removes or changes it.
        """
        def counted(conn: sqlite3.Connection) -> T:
            self._writes += 1
            return work(conn)

        return await self._db._execute(_in_transaction, self._db._conn, counted)

    def _queues_now(self, conn: sqlite3.Connection, agents: Iterable[str]) -> Queues:
        """Inside a transaction that queued nudges: their agents' queues as it leaves them,
        for `queued` to answer from until another transaction begins."""
        return self._writes, {a: [_queued_nudge(r) for r in conn.execute(QUEUE_OF, (a,))]
                              for a in agents}

    async def _write(self, statements: list[Statement]) -> list[int | None]:
        """Run statements in one transaction of their own; see `_apply` for the results."""
        return await self._tx(lambda conn: _apply(conn, statements))

    # --- key/value (bridge cursors, one-off flags) -------------------------------------------

    async def get_value(self, key: str) -> str | None:
        row = await self._one("SELECT value FROM kv WHERE key = ?", (key,))
        return row[0] if row else None

    async def put_value(self, key: str, value: str) -> None:
        await self._write([("INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT(key) "
                            "DO UPDATE SET value = excluded.value", (key, value))])

    async def delete_value(self, key: str) -> None:
        await self._write([("DELETE FROM kv WHERE key = ?", (key,))])

    async def put_value_once(self, key: str, value: str) -> bool:
        """Set `key` unless it is set; True when this call set it (a one-time flag)."""
        ids = await self._write([("INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)",
                                  (key, value))])
        return ids[0] is not None

    # --- channels and DM attachments ---------------------------------------------------------

    async def ensure_channel(self, name: str, kind: ChannelKind, now: float) -> None:
        await self._write([("INSERT OR IGNORE INTO channels (name, kind, created_at) "
                            "VALUES (?, ?, ?)", (name, kind, now))])

    async def channels(self) -> dict[str, ChannelKind]:
        rows = await self._all("SELECT name, kind FROM channels ORDER BY name")
        return {n: ChannelKind(k) for n, k in rows}

    async def attach_dm(self, platform: str, room: str, worker: str) -> None:
        await self._write([("INSERT INTO dm_attachments (platform, room, worker) VALUES (?, ?, ?) "
                            "ON CONFLICT(platform, room) DO UPDATE SET worker = excluded.worker",
                            (platform, room, worker))])

    async def dm_attachments(self) -> list[tuple[str, str, str]]:
        return [tuple(r) for r in await self._all(
            "SELECT platform, room, worker FROM dm_attachments ORDER BY platform, room")]

    # --- inbox and queues --------------------------------------------------------------------

    async def accept_inbound(self, channel: str, msg: Inbound, nudges: Iterable[Nudge],
                             now: float, *, thread: int | None = None,
                             roots_thread: bool = False) -> int | None:
        """Store a person's message and queue its nudges atomically (R1.3, R8.1); the
        message's id, or None when the platform event was stored before (a re-delivery,
        ignored whole). The message is in `thread`; with `roots_thread` it opens a thread
        of its own, which its nudges answer in (R12.1)."""
        nudges = list(nudges)

        def work(conn: sqlite3.Connection) -> tuple[int | None, Queues | None]:
            mid = insert_message(conn, channel=channel, platform=msg.platform, room=msg.room,
                                 sender=msg.sender, sender_name=msg.sender_name,
                                 event_id=msg.event_id, text=msg.text, ts=msg.ts,
                                 thread=thread)
            if mid is None:
                return None, None
            add_ref(conn, msg.platform, msg.room, msg.root_ref, mid)
            answer_in = new_thread(conn, channel, mid).id if roots_thread else thread
            _apply(conn, [self._enqueue_sql(n if n.thread else replace(n, thread=answer_in),
                                            now, message=mid) for n in nudges])
            agents = dict.fromkeys(n.agent for n in nudges)
            return mid, self._queues_now(conn, agents) if agents else None

        mid, queues = await self._tx(work)
        if queues is not None:  # committed: the supervisor reads them next (`queued`)
            self._queues = queues
        return mid

    async def is_stored(self, platform: str, event_id: str) -> bool:
        return await self._one("SELECT 1 FROM messages WHERE platform = ? AND event_id = ?",
                               (platform, event_id)) is not None

    @staticmethod
    def _enqueue_sql(n: Nudge, now: float, *, message: int | None = None
                     ) -> tuple[str, tuple]:
        return ("INSERT INTO queue (agent, text, hops, origin, created_at, thread, message) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (n.agent, n.text, n.hops, n.origin, now, n.thread, message))

    async def written_where(self, ids: Iterable[int]) -> dict[int, RoomMessage]:
        """Where each of these messages was written (the room the marks go in, R13.7)."""
        ids = list(ids)
        if not ids:
            return {}
        rows = await self._all(f"SELECT id, platform, room FROM messages WHERE id IN "
                               f"({','.join('?' * len(ids))})", tuple(ids))
        return {m: RoomMessage(m, p, r) for m, p, r in rows}

    async def enqueue(self, nudges: Iterable[Nudge], now: float) -> None:
        statements = [self._enqueue_sql(n, now) for n in nudges]
        if statements:
            await self._write(statements)

    async def queued(self, agent: str) -> list[QueuedNudge]:
        """The agent's queue, oldest first. Right after a person's message queued nudges
        (`accept_inbound`) it is known without a read, until another transaction begins:
        the read would wait on the store's thread, on the path of every answer."""
        writes, queues = self._queues
        if writes == self._writes and agent in queues:
            return list(queues[agent])
        rows = await self._all(QUEUE_OF, (agent,))
        return [_queued_nudge(r) for r in rows]

    async def mark_attempted(self, ids: Iterable[int]) -> None:
        """These nudges are being written to an agent: should no turn answer them, their
        next delivery says an earlier attempt was cut short (R8.5)."""
        ids = list(ids)
        if ids:
            await self._write([(f"UPDATE queue SET attempted = 1 WHERE id IN "
                                f"({','.join('?' * len(ids))})", tuple(ids))])

    async def agents_with_queue(self) -> list[str]:
        return [r[0] for r in await self._all("SELECT DISTINCT agent FROM queue ORDER BY agent")]

    async def queue_lengths(self) -> dict[str, int]:
        return {a: n for a, n in await self._all(
            "SELECT agent, COUNT(*) FROM queue GROUP BY agent")}

    async def drop_queued(self, agent: str, ids: Iterable[int]) -> list[QueuedNudge]:
        """Remove some of `agent`'s queued nudges (R6.6); the ones that were still there."""
        ids = list(ids)
        if not ids:
            return []
        marks = ",".join("?" * len(ids))

        def work(conn: sqlite3.Connection) -> list[QueuedNudge]:
            rows = conn.execute(f"SELECT {QUEUE_COLUMNS} FROM queue "
                                f"WHERE agent = ? AND id IN ({marks}) ORDER BY id",
                                (agent, *ids)).fetchall()
            conn.execute(f"DELETE FROM queue WHERE agent = ? AND id IN ({marks})", (agent, *ids))
            return [_queued_nudge(r) for r in rows]

        return await self._tx(work)

    # --- agents ------------------------------------------------------------------------------

    async def upsert_agent(self, name: str, kind: AgentKind, channel: str,
                           task_id: int | None) -> None:
        await self._write([(
            "INSERT INTO agents (name, kind, channel, task_id) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET kind = excluded.kind, channel = excluded.channel, "
            "task_id = COALESCE(excluded.task_id, agents.task_id)",
            (name, str(kind), channel, task_id))])

    async def agent(self, name: str) -> AgentRow | None:
        row = await self._one(f"SELECT {AGENT_COLUMNS} FROM agents WHERE name = ?", (name,))
        return _agent_row(row) if row else None

    async def agents(self) -> list[AgentRow]:
        rows = await self._all(f"SELECT {AGENT_COLUMNS} FROM agents ORDER BY kind, name")
        return [_agent_row(r) for r in rows]

    async def set_session_id(self, name: str, session_id: str | None) -> None:
        await self._write([("UPDATE agents SET session_id = ? WHERE name = ?",
                            (session_id, name))])

    async def record_process(self, agent: str, pgid: int, started: str) -> None:
        await self._write([("INSERT INTO processes (agent, pgid, started) VALUES (?, ?, ?) "
                            "ON CONFLICT(agent) DO UPDATE SET pgid = excluded.pgid, "
                            "started = excluded.started", (agent, pgid, started))])

    async def forget_process(self, agent: str, pgid: int) -> None:
        await self._write([("DELETE FROM processes WHERE agent = ? AND pgid = ?", (agent, pgid))])

    async def take_processes(self) -> list[tuple[str, int, str]]:
        """The processes recorded by an earlier run, forgotten as they are returned."""
        def work(conn: sqlite3.Connection) -> list[tuple[str, int, str]]:
            rows = conn.execute("SELECT agent, pgid, started FROM processes ORDER BY agent")
            taken = [tuple(r) for r in rows]
            conn.execute("DELETE FROM processes")
            return taken  # type: ignore[return-value]
        return await self._tx(work)

    async def set_agent_error(self, name: str, error: str) -> None:
        await self._write([("UPDATE agents SET last_error = ? WHERE name = ?", (error, name))])

    # --- tasks -------------------------------------------------------------------------------

    async def create_task(self, subject: str, channel: str, assignee: str, created_by: str,
                          now: float, *, root: int | None = None,
                          first: Callable[[TaskRow], tuple[Nudge, Said]] | None = None
                          ) -> TaskRow:
        """Open a task and its thread (R12.4), under the person's `!task` message `root`,
        else under the task's own post. `first(task)` gives the worker's first nudge and
        the "Task #N" post, stored with it in the same transaction: into the thread when it
        hangs under `root`, else the post is the thread's root, at the top level."""
        def work(conn: sqlite3.Connection) -> TaskRow:
            cur = conn.execute(
                "INSERT INTO tasks (subject, channel, assignee, status, created_by, created_at) "
                "VALUES (?, ?, ?, 'open', ?, ?)", (subject, channel, assignee, created_by, now))
            task = TaskRow(cur.lastrowid or 0, subject, channel, assignee, "open", created_by)
            if first is None:
                return task
            nudge, said = first(task)
            if root is None:
                root_id = bot_message(conn, channel, said.author, said.text, now, None)
                thread = new_thread(conn, channel, root_id, owner=assignee, task_id=task.id)
                said_sql(conn, said, now, message=root_id)
            else:
                thread = new_thread(conn, channel, root, owner=assignee, task_id=task.id)
                said_sql(conn, replace(said, thread=thread.id), now)
            conn.execute("UPDATE tasks SET thread = ? WHERE id = ?", (thread.id, task.id))
            _apply(conn, [self._enqueue_sql(replace(nudge, thread=thread.id), now)])
            return replace(task, thread=thread.id)

        return await self._tx(work)

    async def finish_task(self, task_id: int, now: float) -> TaskRow | None:
        """Mark a task done; None when there is no such open task."""
        def work(conn: sqlite3.Connection) -> TaskRow | None:
            row = conn.execute(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?",
                               (task_id,)).fetchone()
            if row is None or row[4] != "open":
                return None
            conn.execute("UPDATE tasks SET status = 'done', done_at = ? WHERE id = ?",
                         (now, task_id))
            return replace(TaskRow(*row), status="done")

        return await self._tx(work)

    async def task(self, task_id: int) -> TaskRow | None:
        row = await self._one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?", (task_id,))
        return TaskRow(*row) if row else None

    async def latest_task_of(self, assignee: str) -> TaskRow | None:
        """The newest open task of `assignee`, else its newest task (one indexed look-up:
        starting a worker must not read every task ever)."""
        row = await self._one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE assignee = ? "
                              "ORDER BY status = 'open' DESC, id DESC LIMIT 1", (assignee,))
        return TaskRow(*row) if row else None

    async def tasks(self, *, open_only: bool = False) -> list[TaskRow]:
        where = "WHERE status = 'open'" if open_only else ""
        rows = await self._all(f"SELECT {TASK_COLUMNS} FROM tasks {where} ORDER BY id")
        return [TaskRow(*r) for r in rows]

    # --- health and escalations --------------------------------------------------------------

    async def health(self, key: str) -> Health:
        row = await self._one("SELECT json FROM health WHERE key = ?", (key,))
        return Health.from_json(row[0]) if row else Health()

    async def healths(self) -> dict[str, Health]:
        """Every health record, in one query (for `status`, whatever the crew's size)."""
        return {k: Health.from_json(j) for k, j in await self._all("SELECT key, json FROM health")}

    async def put_health(self, key: str, h: Health) -> None:
        await self._write([("INSERT INTO health (key, json) VALUES (?, ?) ON CONFLICT(key) "
                            "DO UPDATE SET json = excluded.json", (key, h.to_json()))])

    async def open_escalation(self, key: str, detail: str, now: float) -> bool:
        """Record an open problem; True only the first time, so an alert is sent once (R6.1)."""
        ids = await self._write([("INSERT OR IGNORE INTO escalations (key, opened_at, detail) "
                                  "VALUES (?, ?, ?)", (key, now, detail))])
        return ids[0] is not None

    async def close_escalation(self, key: str) -> bool:
        """Forget an open problem; True when it was open (so "recovered" is said once)."""
        ids = await self._write([("DELETE FROM escalations WHERE key = ?", (key,))])
        return ids[0] is not None

    async def escalations(self) -> dict[str, str]:
        return {k: d for k, d in await self._all("SELECT key, detail FROM escalations")}

    # --- outbox ------------------------------------------------------------------------------

    async def answer(self, said: Iterable[Said], nudges: Iterable[Nudge],
                     answered: Iterable[int], now: float, *, limit: int = -1
                     ) -> dict[Room, list[OutboxRow]]:
        """A turn's answer, in one transaction (R8.5): its posts enter the outbox, the
        nudges its text routes to colleagues are queued (R2.6), and the queued nudges it
        answered leave the queue. A kill either side of it loses nothing and repeats
        nothing: before, the messages are answered again; after, the posts are sent.
        Returns the messages waiting in each room it posted to (`pending_messages`, at
        most `limit` a room)."""
        ids, said, nudges = list(answered), list(said), list(nudges)
        rooms = {r for s in said for r in s.rooms}

        def work(conn: sqlite3.Connection) -> dict[Room, list[OutboxRow]]:
            for s in said:
                said_sql(conn, s, now)
            _apply(conn, [self._enqueue_sql(n, now) for n in nudges])
            if ids:
                conn.execute(f"DELETE FROM queue WHERE id IN ({','.join('?' * len(ids))})",
                             tuple(ids))
            return pending_messages(conn, rooms, limit)

        return await self._tx(work) if said or nudges or ids else {}
