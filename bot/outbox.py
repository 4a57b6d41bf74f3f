"""Delivering stored posts to the platforms: in order per room, paced, retried (R8.3).

Every post is a row in the store's outbox before anything is sent, so a crash or a
platform outage loses nothing. One worker per room sends that room's posts strictly in
order; rooms do not wait for each other. A post is removed only after the platform
accepted it. Rate limits (`RateLimited`) wait exactly as long as the platform asked;
other transient errors back off exponentially with jitter; a permanent error (the bot
was removed from the room) is logged and the post set aside, so one dead room cannot
block the others forever.

Edits, deletions and reactions (R13.3, R13.7) are rows too, in the same order as the posts
of their room, so an edit always follows the post it edits; they name the message they act
on, found in their room by its ref at sending time. The room's pace (`post_interval_s`,
Slack's one message a second per channel) is for new messages: an edit or a reaction has
limits of its own (Slack's Tier 3, spread by the callers), so an answer never waits a
second behind the 👀 on the message it answers. One whose message never reached the room
is dropped, and a status edit the platform refuses for now is dropped (the next one replaces
it) rather than holding up the room's answers behind it.

A post can reach the platform and still be pending here: the bot died between the two, or
the answer was lost. Such posts go out marked `maybe_sent`; Matrix deduplicates by
transaction id anyway, and the Slack bridge looks for the post in the channel first.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from enum import StrEnum

from crewbridge.bot.model import Nudge, PostKind, PostOp
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import NewPost, OutboxRow, Said
from crewbridge.bridges.base import Bridge, Post, RateLimited, SendError, ThreadRef, backoff_delay
from crewbridge.supervisor.ports import Clock

log = logging.getLogger(__name__)

BATCH = 50  # posts read per store round trip; a retry re-reads
MARKS = frozenset({PostOp.REACT, PostOp.UNREACT})
Lane = tuple[str, str, bool]
"""A room's queue: its messages (posts, edits, deletions, in order), or its marks (the
reactions on people's messages, R13.7). Messages never wait for marks — an answer does not
wait behind the 👀 on the message it answers — but a mark waits for the messages queued
before it: ✅ shows once the answer is in the room, not before it (and on Matrix the answer
does not queue behind the reaction in the homeserver's order of the room's events)."""


class PostOutcome(StrEnum):
    """What became of one attempt to send a row (R14.3's `crewbridge_posts_total`)."""

    SENT = "sent"  # the platform took it
    RETRIED = "retried"  # refused for now: it waits for a retry
    SET_ASIDE = "set_aside"  # refused for good (the bot was removed from the room)
    DROPPED = "dropped"  # not needed after all: a status edit refused for now (the next one
    # replaces it), a reaction the platform will never show


class Outbox:
    def __init__(self, store: Store, bridges: Mapping[str, Bridge], clock: Clock,
                 counted: Callable[[str, PostOutcome], None] = lambda _p, _o: None):
        self.store = store
        self.bridges = bridges
        self.clock = clock
        self.counted = counted  # told each attempt's platform and outcome
        self._workers: dict[Lane, asyncio.Task] = {}
        self._last_sent: dict[tuple[str, str], float] = {}
        self._added: dict[Lane, int] = {}  # rows added per lane, to skip re-reads
        self._unsure: set[int] = set()  # posts an earlier attempt may have delivered
        self._at: dict[tuple[str, str], int] = {}  # per room: the first message row not done
        self._moved = asyncio.Event()  # set, and replaced, when a room's messages go on
        self._idle = asyncio.Event()
        self._idle.set()
        self._stopping = False

    def _ours(self, said: Iterable[Said]) -> list[Said]:
        """What is shown, in the rooms of the platforms this run has a bridge for."""
        return [replace(s, rooms=tuple(r for r in s.rooms if r[0] in self.bridges))
                for s in said]

    async def add(self, said: Iterable[Said]) -> None:
        said = [s for s in self._ours(said) if s.rooms]
        if said:
            await self.store.add_said(said, self.clock.now())
            self._wake({r for s in said for r in s.rooms})

    async def add_answer(self, said: Iterable[Said], nudges: Iterable[Nudge],
                         answered: Iterable[int]) -> None:
        """`add`, in one transaction with queueing `nudges` and dequeueing the nudges a
        turn `answered` (R8.5: `Store.answer`)."""
        said = self._ours(said)
        waiting = await self.store.answer(said, nudges, answered, self.clock.now(), limit=BATCH)
        self._wake(set(waiting), first=waiting)

    def stored(self, said: Iterable[Said]) -> None:
        """`said` was stored with something else (a task with its post): send it."""
        self._wake({r for s in self._ours(said) for r in s.rooms})

    async def resume(self) -> None:
        """Send what a previous run left in the outbox (R8.3)."""
        pending = await self.store.pending_posts()
        self._unsure.update(p.id for p in pending)  # the last run may have sent them, unrecorded
        self._wake({(p.platform, p.room) for p in pending if p.platform in self.bridges})
        self._wake({(p.platform, p.room) for p in pending if p.platform in self.bridges},
                   marks=True)

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every stored post is sent (or set aside); False on timeout."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stopping = True
        for task in self._workers.values():
            task.cancel()
        await asyncio.gather(*self._workers.values(), return_exceptions=True)
        self._workers.clear()

    def _wake(self, rooms: set[tuple[str, str]], *, marks: bool = False,
              first: Mapping[tuple[str, str], list[OutboxRow]] | None = None) -> None:
        """Start the lanes' workers that are not running. `first`: a room's waiting
        messages, as read by the transaction that queued them — a new worker begins with
        them instead of reading them back (an answer's posts go out one store round trip
        sooner); a running worker reads again anyway."""
        if self._stopping:
            return
        for platform, room in rooms:
            key = (platform, room, marks)
            self._added[key] = self._added.get(key, 0) + 1
            task = self._workers.get(key)
            if task is None or task.done():
                self._idle.clear()
                batch = (first or {}).get((platform, room))
                self._workers[key] = asyncio.create_task(
                    self._room_worker(key, None if batch is None else (batch, self._added[key])),
                    name=f"outbox-{key[0]}-{key[1]}")

    async def _room_worker(self, key: Lane,
                           first: tuple[list[OutboxRow], int] | None = None) -> None:
        """Send the lane's rows in order. `first`: its first batch and the count of
        additions it holds (one added after it makes the worker read again)."""
        bridge, room, marks = self.bridges[key[0]], key[:2], key[2]
        try:
            while True:
                if first is not None:
                    (pending, seen), first = first, None
                else:
                    seen = self._added.get(key, 0)
                    pending = await self.store.pending_posts(room, limit=BATCH, marks=marks)
                if not pending:
                    return
                for post in pending:
                    due = post.next_at
                    if post.op is PostOp.POST:  # the pace is the platform's for new messages
                        due = max(due, self._last_sent.get(room, 0.0) + bridge.post_interval_s)
                    if marks:
                        await self._messages_before(room, post.id)
                    else:
                        self._messages_at(room, post.id)
                    await self.clock.sleep(due - self.clock.now())
                    if not await self._send_one(bridge, room, post):
                        break  # it waits for a retry: read the room's posts again
                    if not marks:
                        self._messages_at(room, post.id + 1)
                else:
                    if len(pending) < BATCH and self._added.get(key, 0) == seen:
                        return  # all sent, and nothing was added meanwhile: no need to look
        finally:
            if self._workers.get(key) is asyncio.current_task():
                del self._workers[key]
                if not marks:
                    self._messages_at(room, None)
            if not self._workers:
                self._idle.set()

    def _messages_at(self, room: tuple[str, str], row: int | None) -> None:
        """The room's messages are done up to `row` (None: all of them)."""
        if row is None:
            self._at.pop(room, None)
        else:
            self._at[room] = row
        self._moved.set()
        self._moved = asyncio.Event()

    async def _messages_before(self, room: tuple[str, str], row: int) -> None:
        """Wait until the room's messages queued before mark `row` are done with."""
        while (room[0], room[1], False) in self._workers and self._at.get(room, 0) < row:
            await self._moved.wait()  # 0: its worker has not read the room's rows yet

    async def add_changes(self, changes: Iterable[NewPost]) -> None:
        """Queue edits, deletions and reactions (rows with an `op`), in their rooms' order."""
        changes = [c for c in changes if c.platform in self.bridges]
        if changes:
            await self.store.add_changes(changes, self.clock.now())
            for marks in (False, True):
                self._wake({(c.platform, c.room) for c in changes if c.op in MARKS} if marks
                           else {(c.platform, c.room) for c in changes if c.op not in MARKS},
                           marks=marks)

    async def _carry_out(self, bridge: Bridge, key: tuple[str, str],
                         post: OutboxRow) -> str | None:
        """Do what the row says; the platform's id of a new post."""
        if post.op is PostOp.POST:
            return await bridge.send(post.room, await self._post_of(key, post), key=post.key,
                                     maybe_sent=post.id in self._unsure)
        ref = (await self.store.ref_in(post.message, *key)) if post.message else None
        if ref is None:
            log.debug("%s %s: no message to %s (it never reached the room)", *key, post.op)
        elif post.op is PostOp.EDIT:
            await bridge.edit(post.room, ref, await self._post_of(key, post))
        elif post.op is PostOp.DELETE:
            await bridge.delete(post.room, ref)
        else:
            await bridge.react(post.room, ref, post.text, post.op is PostOp.REACT)
        return None

    async def _send_one(self, bridge: Bridge, key: tuple[str, str], post: OutboxRow) -> bool:
        """Send one post; True when it is done with (not waiting for a retry)."""
        outcome = await self._attempt(bridge, key, post)
        self.counted(key[0], outcome)
        return outcome is not PostOutcome.RETRIED

    async def _attempt(self, bridge: Bridge, key: tuple[str, str],
                       post: OutboxRow) -> PostOutcome:
        try:
            ref = await self._carry_out(bridge, key, post)
        except RateLimited as e:  # refused before it was taken: not sent
            if post.op is PostOp.EDIT and post.kind is PostKind.STATUS:
                await self.store.post_sent(post.id)  # dropped: the next edit replaces it
                return PostOutcome.DROPPED
            wait = max(e.retry_after_s or 1.0, 0.0)
            log.info("%s %s rate limited; retrying in %.1fs", key[0], key[1], wait)
            await self.store.post_failed(post.id, self.clock.now() + wait, str(e))
            return PostOutcome.RETRIED
        except SendError as e:
            if e.permanent and post.op in (PostOp.REACT, PostOp.UNREACT):
                log.info("%s %s: reaction %s not shown (%s)", key[0], key[1], post.text, e)
                await self.store.post_sent(post.id)  # a mark is no message: nothing to keep
                return PostOutcome.DROPPED
            if e.permanent:
                log.error("cannot post to %s %s (%s); post set aside: %.200s",
                          key[0], key[1], e, post.text)
                await self.store.post_set_aside(post.id, str(e))
                self._unsure.discard(post.id)
                return PostOutcome.SET_ASIDE
            self._unsure.add(post.id)  # a timeout or a 5xx may come after the platform took it
            wait = e.retry_after_s or backoff_delay(post.attempts + 1, cap_s=300)
            log.warning("posting to %s %s failed (%s); retry %d in %.1fs",
                        key[0], key[1], e, post.attempts + 1, wait)
            await self.store.post_failed(post.id, self.clock.now() + wait, str(e))
            return PostOutcome.RETRIED
        except Exception as e:  # a bridge bug must not kill the room's worker
            log.exception("posting to %s %s crashed", key[0], key[1])
            self._unsure.add(post.id)
            wait = backoff_delay(post.attempts + 1, cap_s=300)
            await self.store.post_failed(post.id, self.clock.now() + wait, repr(e))
            return PostOutcome.RETRIED
        if post.op is PostOp.POST:
            self._last_sent[key] = self.clock.now()
        await self.store.post_sent(post.id, ref=ref)
        self._unsure.discard(post.id)
        return PostOutcome.SENT

    async def _post_of(self, key: tuple[str, str], post: OutboxRow) -> Post:
        """What the bridge is given. A thread's root in this room is known from when the
        post was read, unless the root was not there yet: its relay may be in the same batch,
        sent just before in order — then it is looked up now (R12.5)."""
        thread = None
        if post.thread is not None:
            target = post.target
            if target is None or target.root is None:
                target = await self.store.thread_target(post.thread, *key)
            if target is not None:
                thread = ThreadRef(target.root, target.number, target.latest)
        return Post(post.text, post.author, post.role, thread, post.buttons)
