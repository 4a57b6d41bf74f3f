"""The store's part of conversations: threads, and the ids a message has in each room (R12).

A thread is rooted at one message — a person's, or one the bot showed (a "Task #N" post, a
lead's answer) — and numbered within its channel (`#webui/3`, R12.6). The same message has
a different platform id in every room that shows it: its own where it was written, its
relay's elsewhere (R1.4). `refs` keeps them all, written in the transaction that stores the
message or records the post as sent, so a reply on any platform finds its thread, and an
answer finds the root to reply under in every room (R12.5).

`ThreadRecords` is mixed into `bot.store.Store`; like the rest of the store, every public
method is one transaction.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

THREAD_COLUMNS = "id, channel, number, root, owner, task_id"


@dataclass(frozen=True)
class ThreadRow:
    """One thread: `root` is the id of the message it hangs under (`messages.id`); `owner`
    the agent that answers it, once decided (a task's worker, a fork, R12.2)."""

    id: int
    channel: str
    number: int
    root: int
    owner: str | None = None
    task_id: int | None = None


@dataclass(frozen=True)
class ThreadTarget:
    """Where a post into a thread goes in one room: the root's id there (None when the root
    was never shown in that room), the thread's number, and its latest message there (for
    Matrix's reply fallback; None when the root is the latest)."""

    number: int
    root: str | None
    latest: str | None = None


def target_columns(platform: str, room: str) -> str:
    """The columns of a `ThreadTarget` of thread `t` in the room that `platform` and `room`
    name (SQL expressions: `?` for values, or another table's columns)."""
    return (f"t.number, (SELECT r.event_id FROM refs r WHERE r.message = t.root AND "
            f"r.platform = {platform} AND r.room = {room} ORDER BY r.rowid LIMIT 1), "
            f"(SELECT l.event_id FROM messages m JOIN refs l ON l.message = m.id AND "
            f"l.platform = {platform} AND l.room = {room} WHERE m.thread = t.id "
            f"ORDER BY l.rowid DESC LIMIT 1)")


def new_thread(conn: sqlite3.Connection, channel: str, root: int, *, owner: str | None = None,
               task_id: int | None = None) -> ThreadRow:
    """Open a thread under message `root` with the channel's next number."""
    (number,) = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM threads "
                             "WHERE channel = ?", (channel,)).fetchone()
    cur = conn.execute("INSERT INTO threads (channel, number, root, owner, task_id) "
                       "VALUES (?, ?, ?, ?, ?)", (channel, number, root, owner, task_id))
    return ThreadRow(cur.lastrowid or 0, channel, number, root, owner, task_id)


def insert_message(conn: sqlite3.Connection, *, channel: str, platform: str, room: str,
                   sender: str, sender_name: str, event_id: str, text: str, ts: float,
                   thread: int | None) -> int | None:
    """A message row; None when (platform, event_id) is stored already (R8.1)."""
    cur = conn.execute(
        "INSERT OR IGNORE INTO messages (channel, platform, room, sender, sender_name, "
        "event_id, text, ts, thread) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (channel, platform, room, sender, sender_name, event_id, text, ts, thread))
    return cur.lastrowid if cur.rowcount > 0 else None


def bot_message(conn: sqlite3.Connection, channel: str, author: str, text: str, now: float,
                thread: int | None) -> int:
    """A message the bot shows (an agent's text, a notice), stored so a thread may hang
    under it; it has no platform id of its own, only those of its posts (`refs`)."""
    mid = insert_message(conn, channel=channel, platform="bot", room="", sender=author,
                         sender_name=author, event_id=f"said-{uuid.uuid4().hex}", text=text,
                         ts=now, thread=thread)
    assert mid is not None  # a fresh event id
    return mid


def add_ref(conn: sqlite3.Connection, platform: str, room: str, event_id: str,
            message: int) -> None:
    conn.execute("INSERT OR IGNORE INTO refs (platform, room, event_id, message) "
                 "VALUES (?, ?, ?, ?)", (platform, room, event_id, message))


class ThreadRecords:
    """Threads and refs; mixed into `Store`, whose `_tx`, `_one` and `_all` it uses."""

    _tx: Callable[[Callable[[sqlite3.Connection], T]], Awaitable[T]]
    _one: Callable[..., Awaitable[tuple | None]]
    _all: Callable[..., Awaitable[list[tuple]]]

    async def thread(self, thread_id: int) -> ThreadRow | None:
        row = await self._one(f"SELECT {THREAD_COLUMNS} FROM threads WHERE id = ?",
                              (thread_id,))
        return ThreadRow(*row) if row else None

    async def thread_by_number(self, channel: str, number: int) -> ThreadRow | None:
        row = await self._one(f"SELECT {THREAD_COLUMNS} FROM threads "
                              "WHERE channel = ? AND number = ?", (channel, number))
        return ThreadRow(*row) if row else None

    async def thread_of_task(self, task_id: int) -> ThreadRow | None:
        row = await self._one(f"SELECT {THREAD_COLUMNS} FROM threads WHERE task_id = ?",
                              (task_id,))
        return ThreadRow(*row) if row else None

    async def thread_of_reply(self, channel: str, platform: str, room: str, root_ref: str,
                              now: float) -> ThreadRow:
        """The thread of a reply under the message `root_ref` names in `room`; opened at
        its first reply. A root the bot never saw (written before it joined the room) gets
        a stand-in, so the thread still works in that room."""
        def work(conn: sqlite3.Connection) -> ThreadRow:
            row = conn.execute("SELECT message FROM refs WHERE platform = ? AND room = ? "
                               "AND event_id = ?", (platform, room, root_ref)).fetchone()
            if row is not None:
                root = row[0]
            else:
                root = insert_message(conn, channel=channel, platform=platform, room=room,
                                      sender="", sender_name="", text="", ts=now, thread=None,
                                      event_id=f"unseen-root:{room}:{root_ref}")
                if root is None:  # the stand-in exists; its ref must too
                    raise RuntimeError(f"stand-in root for {root_ref} has no ref")
                add_ref(conn, platform, room, root_ref, root)
            found = conn.execute(f"SELECT {THREAD_COLUMNS} FROM threads WHERE root = ?",
                                 (root,)).fetchone()
            return ThreadRow(*found) if found else new_thread(conn, channel, root)

        return await self._tx(work)

    async def thread_rooted_at(self, platform: str, room: str, root_ref: str) -> int | None:
        """The thread under the message `root_ref` names in `room`, if it has one."""
        row = await self._one("SELECT t.id FROM refs r JOIN threads t ON t.root = r.message "
                              "WHERE r.platform = ? AND r.room = ? AND r.event_id = ?",
                              (platform, room, root_ref))
        return row[0] if row else None

    async def set_thread_owner(self, thread_id: int, owner: str) -> None:
        await self._tx(lambda conn: conn.execute(
            "UPDATE threads SET owner = ? WHERE id = ?", (owner, thread_id)))

    async def thread_target(self, thread_id: int, platform: str, room: str
                            ) -> ThreadTarget | None:
        """Where thread `thread_id` is in `room` (read when a post is sent, since the root's
        relay is sent, in order, just before); one indexed query."""
        row = await self._one(f"SELECT {target_columns('?', '?')} FROM threads t "
                              "WHERE t.id = ?", (platform, room, platform, room, thread_id))
        return ThreadTarget(*row) if row else None
