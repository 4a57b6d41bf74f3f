"""The store's retention (R14.6) on a real SQLite file, with rows on both sides of the
horizon: what is older goes, with what exists only for it; what is still in use stays."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crewbridge.bot import budget_ops
from crewbridge.bot.approvals import ApprovalState
from crewbridge.bot.model import ChannelKind, Nudge, PostKind
from crewbridge.bot.retention import DAY_S, horizon
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import Said
from crewbridge.bot.store_retention import MATRIX_REACTIONS, Prune
from crewbridge.bot.store_usage import Share, utc_day
from crewbridge.bridges.base import Inbound
from crewbridge.bridges.matrix_reactions import KV_REACTIONS
from crewbridge.supervisor.breaker import Health
from crewbridge.supervisor.ports import AgentKind, AgentSpec
from crewbridge.supervisor.rules import health_key
from tests.unit.test_store_approvals import card, request

NOW = 1000 * DAY_S
H = horizon(NOW, 90)
OLD = H.cut - DAY_S
NEW = H.cut + DAY_S


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = await Store.open(tmp_path / "db.sqlite")
    yield s
    await s.close()


def said(channel: str, text: str, room: str = "C1") -> Said:
    return Said(channel, "webui", text, (("matrix", room),), PostKind.AGENT)


async def person(store: Store, text: str, ts: float, *, channel: str = "webui",
                 thread: int | None = None, roots: bool = False,
                 nudge: bool = False) -> int:
    msg = Inbound("matrix", "!r", "@bob:x", "bob", text, f"${text}", ts)
    nudges = [Nudge("webui", f"[bob] {text}", 0, "bob")] if nudge else []
    mid = await store.accept_inbound(channel, msg, nudges, ts, thread=thread,
                                     roots_thread=roots)
    assert mid is not None
    return mid


async def prune_all(store: Store, h=H, limit: int = 5000) -> dict[Prune, int]:
    counts = {}
    for kind in Prune:
        total = 0
        while (n := await store.prune(kind, h, limit)) >= limit:
            total += n
        counts[kind] = total + n
    return counts


async def count(store: Store, table: str) -> int:
    return (await store._all(f"SELECT COUNT(*) FROM {table}"))[0][0]


async def test_r14_6_old_messages_go_with_their_refs_and_reactions(store: Store) -> None:
    """R14.6, R8.1: a message older than the horizon goes with its platform ids and the
    Matrix bridge's memory of the bot's reactions to it; a newer one keeps all three; a
    re-delivery of the old event is stored again (dedup needs only recent events)."""
    old = await person(store, "old", OLD)
    new = await person(store, "new", NEW)
    for name in ("old", "new"):
        await store.put_value(f"{MATRIX_REACTIONS}!r ${name}", '{"👀": "$re"}')
    counts = await prune_all(store)
    assert counts[Prune.MESSAGES] == 1
    assert [r[0] for r in await store._all("SELECT id FROM messages")] == [new]
    assert await store._all("SELECT message FROM refs") == [(new,)]
    assert await store.get_value(f"{MATRIX_REACTIONS}!r $old") is None
    assert await store.get_value(f"{MATRIX_REACTIONS}!r $new") is not None
    assert not await store.is_stored("matrix", "$old")
    assert old != new


async def test_r14_6_a_thread_with_a_recent_reply_keeps_its_old_root(store: Store) -> None:
    """R14.6, R12: a thread rooted at an old message whose latest reply is recent keeps its
    root, so replies still find it; its old replies go. A thread with nothing recent goes
    with its root and its fork's agent row, health and breaker; the newest thread of a
    channel stays, so no thread number (no fork name) is given twice."""
    alive_root = await person(store, "alive", OLD, roots=True)
    [alive] = await store._all("SELECT id, number FROM threads WHERE root = ?", (alive_root,))
    await person(store, "old-reply", OLD, thread=alive[0])
    await person(store, "new-reply", NEW, thread=alive[0])
    dead_root = await person(store, "dead", OLD - DAY_S, roots=True)
    [dead] = await store._all("SELECT id, number FROM threads WHERE root = ?", (dead_root,))
    last_root = await person(store, "last", OLD, roots=True)  # the channel's newest thread
    fork = AgentSpec(f"webui/{dead[1]}", AgentKind.FORK, "webui", thread=dead[0])
    await store.upsert_agent(fork.name, fork.kind, fork.channel, None)
    await store.put_health(health_key(fork), Health(failures=2))
    await store.open_escalation(f"breaker:{fork.name}", "broken", OLD)
    await store._all("DELETE FROM queue")  # answered
    counts = await prune_all(store)
    assert counts[Prune.THREADS] == 1
    threads = {r[0] for r in await store._all("SELECT root FROM threads")}
    assert threads == {alive_root, last_root}
    texts = {r[0] for r in await store._all("SELECT text FROM messages")}
    assert texts == {"alive", "new-reply", "last"}
    assert await store.agent(fork.name) is None
    assert health_key(fork) not in await store.healths()
    assert await store.escalations() == {}
    reply = await store.thread_of_reply("webui", "matrix", "!r", "$alive", NOW)
    assert reply.id == alive[0]


async def test_r14_6_a_running_fork_keeps_its_thread(store: Store) -> None:
    """R14.6: a fork running in an old thread keeps it (and its root)."""
    root = await person(store, "busy", OLD, roots=True)
    await person(store, "newest", OLD, roots=True)
    await store._all("DELETE FROM queue")
    [number] = (await store._all("SELECT number FROM threads WHERE root = ?", (root,)))[0]
    await prune_all(store, horizon(NOW, 90, frozenset({f"webui/{number}"})))
    assert await store.thread_by_number("webui", number) is not None
    await prune_all(store)
    assert await store.thread_by_number("webui", number) is None


async def test_r14_6_what_waits_keeps_what_it_names(store: Store) -> None:
    """R14.6, R8.3, R8.5, R13.3: a post still in the outbox, a pending approval and a queued
    nudge keep the old messages they name (and the nudge its thread); a decided old approval
    and a post set aside long ago go, with the card's message."""
    queued = await person(store, "queued", OLD, roots=True, nudge=True)
    await person(store, "filler", NEW, roots=True)  # the channel's newest thread
    [shown] = await store.add_said([said("general", "shown")], OLD)
    pending = await store.add_approval(request("r-1"), card, OLD)
    decided = await store.add_approval(request("r-2"), card, OLD)
    await store.settle_approval(decided.id, ApprovalState.ALLOWED, "bob", "", OLD)
    for post in await store.pending_posts():
        if post.kind is PostKind.CARD:
            await store.post_sent(post.id, ref=f"$card{post.id}")
    [refused] = await store.add_posts(said("general", "refused").posts(None), OLD)
    await store.post_set_aside(refused, "channel_not_found")
    counts = await prune_all(store)
    assert (counts[Prune.APPROVALS], counts[Prune.SET_ASIDE]) == (1, 1)
    assert [a.id for a in await store.pending_approvals()] == [pending.id]
    assert await store.approval(decided.id) is None
    kept = {r[0] for r in await store._all("SELECT id FROM messages")}
    assert {queued, shown, pending.message} <= kept and decided.message not in kept
    [nudge] = await store.queued("webui")
    assert nudge.thread is not None and await store.thread(nudge.thread) is not None
    assert [p.text for p in await store.pending_posts()] == ["shown"]


async def test_r14_6_finished_tasks_go_with_their_health(store: Store) -> None:
    """R14.6, R4.3: a task finished before the horizon goes with its breaker's health
    record; an open task, however old, and one finished since stay."""
    done = await store.create_task("old", "webui", "alice", "webui", OLD - DAY_S)
    await store.finish_task(done.id, OLD)
    recent = await store.create_task("recent", "webui", "alice", "webui", OLD)
    await store.finish_task(recent.id, NEW)
    still = await store.create_task("open", "webui", "alice", "webui", OLD)
    for t in (done, recent, still):
        spec = AgentSpec("alice", AgentKind.WORKER, "dm-alice", task_id=t.id)
        await store.put_health(health_key(spec), Health(failures=1))
    counts = await prune_all(store)
    assert counts[Prune.TASKS] == 1
    assert [t.id for t in await store.tasks()] == [recent.id, still.id]
    assert set(await store.healths()) == {f"task:{recent.id}", f"task:{still.id}"}


async def test_r14_6_usage_audit_and_daily_flags_go_by_day(store: Store) -> None:
    """R14.6, R13.8, R13.9: usage of days before the horizon's, audit rows older than it,
    and the budget's per-day caps and alerts go; the rest stays."""
    share = [Share("bob", 0.5, 10, 20)]
    for ts in (OLD, NEW):
        await store.add_usage(utc_day(ts), "webui", "webui", share)
        await store.audit(ts=ts, who="bob", platform="slack", where="ops", what="status",
                          outcome="ok")
        await store.put_value(f"budget.caps.{utc_day(ts)}", '{"webui": 5}')
        await store.open_escalation(f"budget-spent:{utc_day(ts)}:webui", "spent", ts)
    await store.open_escalation("breaker:webui", "broken", OLD)  # an open problem stays
    await store.put_value("matrix.next_batch", "s1")
    counts = await prune_all(store)
    assert (counts[Prune.USAGE], counts[Prune.AUDIT], counts[Prune.DAILY_FLAGS]) == (1, 1, 2)
    assert [u.day for u in await store.usage_since("1970-01-01")] == [utc_day(NEW)]
    assert [e.ts for e in await store.audit_entries()] == [NEW]
    assert await store.get_value(f"budget.caps.{utc_day(OLD)}") is None
    assert await store.get_value(f"budget.caps.{utc_day(NEW)}") is not None
    assert set(await store.escalations()) == {f"budget-spent:{utc_day(NEW)}:webui",
                                              "breaker:webui"}
    assert await store.get_value("matrix.next_batch") == "s1"


async def test_r14_6_pruning_goes_in_batches(store: Store) -> None:
    """R14.6: one call deletes at most `limit` rows (one transaction each), and says so."""
    for i in range(5):
        await store.audit(ts=OLD + i, who="bob", platform="slack", where="ops", what=f"{i}",
                          outcome="ok")
    assert [await store.prune(Prune.AUDIT, H, 2) for _ in range(4)] == [2, 2, 1, 0]


async def worker(store: Store, name: str, active: float) -> None:
    await store.ensure_channel(f"dm-{name}", ChannelKind.DM, active)
    await store.upsert_agent(name, AgentKind.WORKER, f"dm-{name}", None)
    await store.add_said([said(f"dm-{name}", "done", room=f"!dm-{name}")], active)
    await store._all("UPDATE messages SET ts = ? WHERE channel = ?", (active, f"dm-{name}"))
    await store.put_health(f"worker:{name}", Health(failures=1))
    await store.open_escalation(f"breaker:{name}", "broken", active)
    await store.attach_dm("matrix", f"!dm-{name}", name)


async def test_r14_6_an_idle_worker_is_forgotten_an_active_or_tasked_one_not(
        store: Store) -> None:
    """R14.6, R7: a worker with no open task and nothing newer than the horizon loses its
    channel, agent row, health, breaker, queue and DM rooms; one active since, one with an
    open task and one whose thread has a recent reply stay."""
    for name in ("idle", "active", "tasked", "threaded"):
        await worker(store, name, NEW if name == "active" else OLD)
    await store.enqueue([Nudge("idle", "[bob] hello?", 0, "bob")], OLD)
    await person(store, "in a thread", OLD, channel="dm-idle", roots=True)
    await store.create_task("long", "webui", "tasked", "webui", OLD)
    t = await store.create_task("thread", "webui", "threaded", "webui", OLD - DAY_S)
    await store.finish_task(t.id, OLD)
    root = await person(store, "the task's thread", OLD, roots=True)
    [(thread,)] = await store._all("SELECT id FROM threads WHERE root = ?", (root,))
    await store.set_thread_owner(thread, "threaded")
    await person(store, "later", NEW, thread=thread)
    assert await store.worker_names() == ["active", "idle", "tasked", "threaded"]
    assert [n for n in await store.worker_names() if await store.forget_worker(n, H)] == [
        "idle"]
    assert await store.worker_names() == ["active", "tasked", "threaded"]
    assert "dm-idle" not in await store.channels()
    assert await store.agent("idle") is None and await store.queued("idle") == []
    assert "worker:idle" not in await store.healths()
    assert "breaker:idle" not in await store.escalations()
    assert [w for _, _, w in await store.dm_attachments()] == ["active", "tasked", "threaded"]
    for post in await store.pending_posts():
        await store.post_sent(post.id)
    await prune_all(store)
    assert await store._all("SELECT id FROM threads WHERE channel = 'dm-idle'") == []
    assert await store._all("SELECT id FROM messages WHERE channel = 'dm-idle'") == []


def test_r14_6_the_keys_named_are_their_writers_keys() -> None:
    """R14.6: the store names other modules' keys as they write them."""
    assert MATRIX_REACTIONS == KV_REACTIONS
    spec = AgentSpec("alice", AgentKind.WORKER, "dm-alice")
    assert health_key(spec) == "worker:alice"
    ops = budget_ops.BudgetOps.__new__(budget_ops.BudgetOps)
    ops.day = "2026-01-02"
    assert ops._caps_key() == "budget.caps.2026-01-02"


async def test_r14_6_messages_are_pruned_through_an_index(store: Store) -> None:
    """R14.6: the daily pass finds old messages by an index, not by reading them all."""
    plan = await store._all("EXPLAIN QUERY PLAN SELECT id FROM messages WHERE ts < ? "
                            "ORDER BY ts LIMIT 5", (H.cut,))
    assert any("messages_ts" in str(row) for row in plan), plan
