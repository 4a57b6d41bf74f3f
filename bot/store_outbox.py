"""The store's outbox: what the bot shows, as one stored message and a post per room (R8.3).

Every post is a row here before anything is sent, and leaves only once its platform took
it (`post_sent`, which keeps the id the platform gave it, R12.5). `OutboxRecords` is mixed
into `bot.store.Store`; like the rest of the store, every public method is one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from crewbridge.bot.model import PostKind, PostOp
from crewbridge.bot.store_threads import ThreadTarget, add_ref, bot_message, target_columns
from crewbridge.bridges.base import AuthorRole, Button

T = TypeVar("T")
Room = tuple[str, str]  # (platform, room)

OUTBOX_COLUMNS = ", ".join(f"o.{c}" for c in (
    "id", "platform", "room", "text", "kind", "attempts", "next_at", "author", "role", "thread",
    "message", "op", "buttons"))


@dataclass(frozen=True)
class OutboxRow:
    id: int
    platform: str
    room: str
    text: str
    kind: PostKind
    attempts: int
    next_at: float
    author: str = ""
    role: AuthorRole = AuthorRole.BOT
    thread: int | None = None
    message: int | None = None
    op: PostOp = PostOp.POST
    buttons: tuple[Button, ...] = ()
    target: ThreadTarget | None = None  # where `thread` was in this room when it was read

    @property
    def key(self) -> str:
        """Stable across retries and restarts: the Matrix transaction id (R8.3)."""
        return f"crewbridge-{self.id}"


@dataclass(frozen=True)
class NewPost:
    """One outbox row: `text` for one room, under `author` (kept apart from it, R5.7), into
    `thread` (None: top level), showing logical message `message` (None: none, a test's)."""

    platform: str
    room: str
    text: str
    kind: PostKind = PostKind.AGENT
    author: str = ""
    role: AuthorRole = AuthorRole.BOT
    thread: int | None = None
    message: int | None = None
    op: PostOp = PostOp.POST
    buttons: tuple[Button, ...] = ()


@dataclass(frozen=True)
class Said:
    """One message the bot shows in several rooms (an agent's text, a notice, a person's
    relay): stored once as a message, so a thread may hang under it, and one outbox row per
    room. A relay (`relay_of`) shows a person's stored message and stores no new one."""

    channel: str
    author: str
    text: str
    rooms: tuple[tuple[str, str], ...]
    kind: PostKind = PostKind.AGENT
    role: AuthorRole = AuthorRole.BOT
    thread: int | None = None
    relay_of: int | None = None
    buttons: tuple[Button, ...] = ()

    def posts(self, message: int | None) -> list[NewPost]:
        return [NewPost(p, r, self.text, self.kind, self.author, self.role, self.thread,
                        message, buttons=self.buttons) for p, r in self.rooms]


def buttons_json(buttons: tuple[Button, ...]) -> str:
    return json.dumps([[b.action, b.label, b.emoji, b.style] for b in buttons]) if buttons else ""


def buttons_of(text: str) -> tuple[Button, ...]:
    return tuple(Button(*b) for b in json.loads(text)) if text else ()



def post_sql(p: NewPost, now: float) -> tuple[str, tuple]:
    return ("INSERT INTO outbox (platform, room, text, kind, created_at, next_at, author, "
            "role, thread, message, op, buttons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (p.platform, p.room, p.text, p.kind, now, now, p.author, p.role, p.thread,
             p.message, p.op, buttons_json(p.buttons)))


def said_sql(conn: sqlite3.Connection, said: Said, now: float, *,
             message: int | None = None) -> int:
    """Store what the bot shows: its message (unless a relay's, or given) and a post per
    room; the message's id."""
    mid = message or said.relay_of or bot_message(conn, said.channel, said.author,
                                                  said.text, now, said.thread)
    for p in said.posts(mid):
        conn.execute(*post_sql(p, now))
    return mid


def pending_query(room: Room | None, limit: int, marks: bool | None) -> tuple[str, tuple]:
    """Posts not yet sent, oldest first; of one (platform, room) when given; only its
    reactions (`marks`), or all but them (`marks=False`). A threaded post comes with where
    its thread was in its room at this read (one query, not one per post: the send path's
    store reads are most of a round trip's cost)."""
    where, args = ("AND o.platform = ? AND o.room = ?", room) if room else ("", ())
    if marks is not None:
        where += (f" AND o.op {'IN' if marks else 'NOT IN'} "
                  f"('{PostOp.REACT}', '{PostOp.UNREACT}')")
    return (f"SELECT {OUTBOX_COLUMNS}, {target_columns('o.platform', 'o.room')} FROM outbox o "
            f"LEFT JOIN threads t ON t.id = o.thread WHERE o.set_aside = 0 {where} "
            f"ORDER BY o.id LIMIT ?", (*args, limit))


def outbox_row(r: tuple) -> OutboxRow:
    return OutboxRow(*r[:4], PostKind(r[4]), r[5], r[6], r[7], AuthorRole(r[8]), r[9], r[10],
                     PostOp(r[11]), buttons_of(r[12]),
                     ThreadTarget(*r[13:]) if r[13] is not None else None)


def pending_messages(conn: sqlite3.Connection, rooms: Iterable[Room],
                     limit: int) -> dict[Room, list[OutboxRow]]:
    """Each room's messages not yet sent (not its marks), read inside a transaction that
    queued some: the outbox sends them without reading them back (`Outbox.add_answer`)."""
    return {room: [outbox_row(r) for r in conn.execute(*pending_query(room, limit, False))]
            for room in rooms}


class OutboxRecords:
    """The outbox's rows; mixed into `Store`, whose `_tx`, `_all` and `_write` it uses."""

    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _one: Callable[..., Awaitable[tuple | None]]
    _all: Callable[..., Awaitable[list[tuple]]]
    _write: Callable[..., Awaitable[list[int | None]]]

    async def add_posts(self, posts: Iterable[NewPost], now: float) -> list[int]:
        statements = [post_sql(p, now) for p in posts]
        return [i for i in await self._write(statements) if i is not None] if statements else []

    async def add_said(self, said: Iterable[Said], now: float) -> list[int]:
        """Queue what the bot shows; the ids of the messages stored for it."""
        said = list(said)
        return await self._tx(lambda conn: [said_sql(conn, s, now) for s in said])

    async def pending_posts(self, room: Room | None = None, limit: int = -1, *,
                            marks: bool | None = None) -> list[OutboxRow]:
        """Posts not yet sent, oldest first (`pending_query`)."""
        return [outbox_row(r) for r in await self._all(*pending_query(room, limit, marks))]

    async def pending_count(self) -> int:
        """How many rows wait to be sent, set-aside ones not counted (R14.3's gauge)."""
        row = await self._one("SELECT COUNT(*) FROM outbox WHERE set_aside = 0")
        return row[0] if row else 0

    async def add_changes(self, changes: Iterable[NewPost], now: float) -> None:
        """Queue edits, deletions and reactions of messages shown before. An edit or a
        deletion replaces the edits of the same message in the same room still waiting:
        only the latest text matters, and a status edited every few seconds must not pile
        up behind a rate limit (R13.7)."""
        changes = list(changes)

        def work(conn: sqlite3.Connection) -> None:
            for c in changes:
                if c.op in (PostOp.EDIT, PostOp.DELETE):
                    conn.execute("DELETE FROM outbox WHERE platform = ? AND room = ? AND "
                                 "message = ? AND op = ? AND attempts = 0",
                                 (c.platform, c.room, c.message, PostOp.EDIT))
                conn.execute(*post_sql(c, now))

        await self._tx(work)

    async def ref_in(self, message: int, platform: str, room: str) -> str | None:
        """The platform id message `message` has in this room (its first post there)."""
        row = await self._one("SELECT event_id FROM refs WHERE message = ? AND platform = ? "
                              "AND room = ? ORDER BY rowid LIMIT 1", (message, platform, room))
        return row[0] if row else None

    async def post_sent(self, post_id: int, *, ref: str | None = None) -> None:
        """The platform took the post; `ref` is the id it gave it, kept as the id of the
        post's message in that room, so a reply under it finds its thread (R12.5)."""
        def work(conn: sqlite3.Connection) -> None:
            row = conn.execute("SELECT platform, room, message, op FROM outbox WHERE id = ?",
                               (post_id,)).fetchone()
            if ref and row is not None and row[2] is not None and row[3] == PostOp.POST:
                add_ref(conn, row[0], row[1], ref, row[2])
            conn.execute("DELETE FROM outbox WHERE id = ?", (post_id,))

        await self._tx(work)

    async def post_set_aside(self, post_id: int, error: str) -> None:
        """Keep a post the platform will never take (for inspection), but stop sending it."""
        await self._write([("UPDATE outbox SET set_aside = 1, last_error = ? WHERE id = ?",
                            (error, post_id))])

    async def post_failed(self, post_id: int, next_at: float, error: str) -> None:
        await self._write([("UPDATE outbox SET attempts = attempts + 1, next_at = ?, "
                            "last_error = ? WHERE id = ?", (next_at, error, post_id))])
