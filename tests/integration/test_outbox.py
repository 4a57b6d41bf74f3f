"""The durable outbox (R8.3): order per room, pacing, rate limits, retries, restarts."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from crewbridge.bot.clock import FakeClock
from crewbridge.bot.model import PostOp
from crewbridge.bot.outbox import Outbox, PostOutcome
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import NewPost, Said
from crewbridge.bridges.base import Inbound, Post, RateLimited, SendError
from tests.integration.harness import until

pytestmark = pytest.mark.timeout(30)


class WatchedClock(FakeClock):
    """A FakeClock that tells the test each time the outbox goes to sleep on it, so a test
    advances time once the worker waits, instead of guessing how long that takes."""

    def __init__(self) -> None:
        super().__init__()
        self._asleep: asyncio.Queue[float] = asyncio.Queue()

    async def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._asleep.put_nowait(self.now() + seconds)  # before it waits: see FakeClock
        await super().sleep(seconds)

    async def wake_next_sleeper(self) -> float:
        """Wait until the next sleep starts, then advance to its deadline; return it."""
        until_ = await asyncio.wait_for(self._asleep.get(), 10)
        await self.advance(until_ - self.now())
        return until_


@dataclass
class FlakyBridge:
    """Records (time, room, text) of accepted posts; fails the next calls as scripted."""

    clock: WatchedClock
    platform: str = "chat"
    post_interval_s: float = 0.0
    failures: list[Exception] = field(default_factory=list)
    sent: list[tuple[float, str, str]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    unsure: list[tuple[str, bool]] = field(default_factory=list)  # (text, maybe_sent) per try
    given: list[Post] = field(default_factory=list)  # what each accepted send was given

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        text = post.line
        self.keys.append(key)
        self.unsure.append((text, maybe_sent))
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((self.clock.now(), room, text))
        self.given.append(post)
        return f"id-{len(self.sent)}"  # as a platform names what it took

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((self.clock.now(), room, f"{'+' if on else '-'}{emoji} {ref}"))

    def texts(self, room: str) -> list[str]:
        return [t for _, r, t in self.sent if r == room]


async def outbox_with(tmp_path: Path, **bridge: object) -> tuple[Outbox, FlakyBridge, Store]:
    store = await Store.open(tmp_path / "s.db")
    clock = WatchedClock()
    chat = FlakyBridge(clock, **bridge)  # type: ignore[arg-type]
    return Outbox(store, {"chat": chat}, clock), chat, store


def posts(room: str, *texts: str) -> list[Said]:
    return [Said("c", "", t, (("chat", room),)) for t in texts]


async def test_r8_3_rate_limit_waits_retry_after_and_keeps_order(tmp_path: Path) -> None:
    """R8.3: a 429 waits exactly Retry-After, then the posts go out in order."""
    outbox, chat, store = await outbox_with(tmp_path, failures=[RateLimited(5.0)])
    try:
        await outbox.add(posts("A", "one", "two", "three"))
        await until(lambda: len(chat.keys) == 1, what="first attempt")
        await chat.clock.advance(4.9)
        assert chat.sent == []
        await chat.clock.advance(0.2)
        await until(lambda: len(chat.sent) == 3, what="all sent")
        assert chat.texts("A") == ["one", "two", "three"]
        assert chat.sent[0][0] >= chat.clock.now() - 0.2
        assert await store.pending_posts() == []
    finally:
        await outbox.stop()
        await store.close()


async def test_r8_3_transient_errors_back_off_and_retry_same_key(tmp_path: Path) -> None:
    """R8.3: a failing send is retried with backoff, with the same idempotency key."""
    outbox, chat, store = await outbox_with(
        tmp_path, failures=[SendError("502"), SendError("timeout")])
    try:
        await outbox.add(posts("A", "hello", "world"))
        for _ in range(2):  # each of the two failed tries is followed by one backoff wait
            await chat.clock.wake_next_sleeper()
        await until(lambda: len(chat.sent) == 2, what="both sent")
        assert chat.texts("A") == ["hello", "world"]
        assert chat.keys[0] == chat.keys[1] == chat.keys[2]  # the same post, three tries
    finally:
        await outbox.stop()
        await store.close()


async def test_r8_3_permanent_error_sets_post_aside_without_blocking(tmp_path: Path) -> None:
    """A post the platform will never take is set aside; the room's next post goes out."""
    outbox, chat, store = await outbox_with(
        tmp_path, failures=[SendError("channel_not_found", permanent=True)])
    try:
        await outbox.add(posts("A", "lost", "next"))
        await until(lambda: chat.texts("A") == ["next"], what="next post")
        assert await store.pending_posts() == []
    finally:
        await outbox.stop()
        await store.close()


async def test_r14_3_each_attempt_s_outcome_is_told_with_its_platform(tmp_path: Path) -> None:
    """R14.3 (`crewbridge_posts_total`): the outbox tells each attempt's platform and
    outcome — a transient failure retried, a permanent one set aside, a success sent, a
    reaction the platform will never show dropped."""
    store = await Store.open(tmp_path / "s.db")
    clock = WatchedClock()
    never = SendError("invalid_name", permanent=True)
    chat = FlakyBridge(clock, failures=[SendError("502"),
                                        SendError("channel_not_found", permanent=True)])
    told: list[tuple[str, PostOutcome]] = []
    outbox = Outbox(store, {"chat": chat}, clock, lambda p, o: told.append((p, o)))
    try:
        await outbox.add(posts("A", "lost", "next"))
        await chat.clock.wake_next_sleeper()  # the backoff after the 502
        await until(lambda: chat.texts("A") == ["next"], what="next post")
        await until(lambda: len(told) == 3, what="three outcomes")
        assert told == [("chat", PostOutcome.RETRIED), ("chat", PostOutcome.SET_ASIDE),
                        ("chat", PostOutcome.SENT)]
        [shown] = await store.add_said(posts("A", "react to me"), clock.now())
        outbox.stored(posts("A", "react to me"))
        await until(lambda: len(told) == 4, what="the post to react to")
        chat.failures.append(never)
        await outbox.add_changes([NewPost("chat", "A", "👀", message=shown, op=PostOp.REACT)])
        await until(lambda: len(told) == 5, what="the reaction's outcome")
        assert told[3:] == [("chat", PostOutcome.SENT), ("chat", PostOutcome.DROPPED)]
        assert chat.failures == [] and await store.pending_posts() == []
    finally:
        await outbox.stop()
        await store.close()


async def test_r13_7_a_mark_follows_the_messages_queued_before_it_and_holds_none_up(
        tmp_path: Path) -> None:
    """R13.7, R8.3: ✅ on a person's message shows once the answer queued before it is in
    the room — here the answer waits out a 429 and the mark waits with it — while a mark
    never holds a message up: the 👀 queued before a paced post does not wait for it."""
    outbox, chat, store = await outbox_with(tmp_path, post_interval_s=1.0)
    try:
        [asked] = await store.add_said(posts("A", "the question"), chat.clock.now())
        outbox.stored(posts("A", "the question"))
        await until(lambda: chat.texts("A") == ["the question"], what="the question")
        chat.failures.append(RateLimited(5.0))
        await outbox.add(posts("A", "the answer"))
        await outbox.add_changes([NewPost("chat", "A", "✅", message=asked, op=PostOp.REACT)])
        await chat.clock.wake_next_sleeper()  # the room's pace, then the 429
        await until(lambda: len(chat.keys) == 2, what="the answer's first attempt")
        await chat.clock.wake_next_sleeper()  # Retry-After
        await until(lambda: len(chat.texts("A")) == 3, what="the answer and the mark")
        assert chat.texts("A") == ["the question", "the answer", "+✅ id-1"]
        assert chat.sent[-1][0] == chat.sent[-2][0] == chat.clock.now()  # after Retry-After
        await outbox.add_changes([NewPost("chat", "A", "👀", message=asked, op=PostOp.REACT)])
        await outbox.add(posts("A", "paced"))
        await until(lambda: chat.texts("A")[-1] == "+👀 id-1", what="👀 before the paced post")
        await chat.clock.wake_next_sleeper()
        await until(lambda: chat.texts("A")[-1] == "paced", what="the paced post")
    finally:
        await outbox.stop()
        await store.close()


async def test_r8_3_paced_per_room_and_rooms_do_not_wait_for_each_other(
        tmp_path: Path) -> None:
    """R8.3: about one post per second per room; another room is not held up."""
    outbox, chat, store = await outbox_with(tmp_path, post_interval_s=1.0)
    try:
        await outbox.add(posts("A", "a1", "a2", "a3") + posts("B", "b1"))
        await until(lambda: len(chat.sent) == 2, what="first of each room")
        assert sorted(t for _, _, t in chat.sent) == ["a1", "b1"]
        for _ in range(2):  # a2 and a3 each wait out the room's pace
            await chat.clock.wake_next_sleeper()
        await until(lambda: len(chat.texts("A")) == 3, what="paced posts")
        times = [t for t, r, _ in chat.sent if r == "A"]
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    finally:
        await outbox.stop()
        await store.close()


async def test_r8_3_pending_posts_survive_restart_and_are_not_sent_twice(
        tmp_path: Path) -> None:
    """R8.3, R8.4: what was sent is gone from the outbox; what was not is sent after a
    restart, once."""
    outbox, chat, store = await outbox_with(
        tmp_path, failures=[SendError("down"), SendError("down")])
    await outbox.add(posts("A", "one", "two"))
    await until(lambda: len(chat.keys) == 1, what="attempt")
    await outbox.stop()
    await store.close()

    outbox2, chat2, store = await outbox_with(tmp_path)  # the bot again, on the same store
    try:
        await outbox2.resume()
        await chat2.clock.advance(600)
        await until(lambda: len(chat2.sent) == 2, what="resent after restart")
        assert chat2.texts("A") == ["one", "two"]
        await outbox2.resume()  # nothing is pending: it must not start a room's worker
        assert await outbox2.drain(10), "a resume after everything was sent sent more"
        assert len(chat2.sent) == 2
    finally:
        await outbox2.stop()
        await store.close()


async def test_r8_3_a_post_that_may_have_arrived_is_sent_as_maybe_sent(tmp_path: Path) -> None:
    """R8.3: the bridge is told when an earlier try may have reached the platform — after a
    failure that could come after the platform took it, and for what was pending when the
    bot started — and not after a 429 (refused before it was taken) or for a new post."""
    outbox, chat, store = await outbox_with(
        tmp_path, failures=[RateLimited(1.0), SendError("timeout")])
    try:
        await outbox.add(posts("A", "one"))
        await until(lambda: len(chat.unsure) == 1, what="the 429")
        await chat.clock.advance(1.1)
        await until(lambda: len(chat.unsure) == 2, what="the timeout")
        await chat.clock.advance(600)
        await until(lambda: len(chat.sent) == 1, what="sent")
        assert chat.unsure == [("one", False), ("one", False), ("one", True)]
        chat.failures.append(SendError("timeout"))
        await outbox.add(posts("A", "two"))
        await until(lambda: len(chat.unsure) == 4, what="two tried")
    finally:
        await outbox.stop()
        await store.close()

    outbox2, chat2, store = await outbox_with(tmp_path)  # the bot again, on the same store
    try:
        await outbox2.resume()
        await chat2.clock.advance(1800)  # past the retry time its failure set
        await until(lambda: len(chat2.sent) == 1, what="pending post resent")
        await outbox2.add(posts("A", "three"))
        await until(lambda: len(chat2.sent) == 2, what="new post sent")
        assert chat2.unsure == [("two", True), ("three", False)]
    finally:
        await outbox2.stop()
        await store.close()


async def test_r12_5_a_reply_queued_with_its_roots_relay_goes_under_that_relay(
        tmp_path: Path) -> None:
    """R12.5: a thread's root relayed to a room and an answer into the thread, queued
    together: the answer is sent after the relay, under the id the platform gave it."""
    outbox, chat, store = await outbox_with(tmp_path)
    try:
        root = await store.accept_inbound("webui", Inbound("slack", "C1", "U1", "bob", "hi",
                                                           "E1", 1.0), [], 1.0)
        thread = await store.thread_of_reply("webui", "slack", "C1", "E1", 1.0)
        await outbox.add([Said("webui", "bob (slack)", "hi", (("chat", "A"),), relay_of=root),
                          Said("webui", "webui", "answer", (("chat", "A"),), thread=thread.id)])
        assert await outbox.drain(5)
        relay, answer = chat.given
        assert relay.thread is None and answer.thread is not None
        assert (answer.thread.root, answer.thread.number) == ("id-1", 1)
    finally:
        await outbox.stop()
        await store.close()
