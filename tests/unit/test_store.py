"""The durable store: SQLite through aiosqlite in WAL mode (R1.3, R3.4, R4.6, R6.1, R8.1,
R8.3, R8.4). Every test works on a fresh file in a temporary directory.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import random
import signal
import sqlite3
import sys
import textwrap
import tomllib
import warnings
from pathlib import Path

import aiosqlite
import pytest

from crewbridge.bot.model import Nudge
from crewbridge.bot.schema import MIGRATIONS
from crewbridge.bot.store import AIOSQLITE_PIN, Store, StoreError
from crewbridge.bot.store_outbox import NewPost, Said
from crewbridge.bridges.base import Inbound
from crewbridge.supervisor.breaker import BreakerState, Health
from crewbridge.supervisor.ports import AgentKind

REPO = Path(__file__).resolve().parents[2]


def inbound(event_id: str, text: str = "hello", platform: str = "slack") -> Inbound:
    return Inbound(platform, "C0123", "U1", "Dana", text, event_id, 100.0)


def nudge(agent: str, text: str, hops: int = 0, origin: str = "webui") -> Nudge:
    return Nudge(agent, text, hops, origin)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "crewbridge.db"


@pytest.fixture
async def store(db_path: Path):
    s = await Store.open(db_path)
    yield s
    await s.close()


def pragma(path: Path, name: str) -> object:
    con = sqlite3.connect(path)
    try:
        return con.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        con.close()


# --- file, mode and schema ---------------------------------------------------------------------


async def test_r8_4_store_is_in_wal_mode(db_path: Path) -> None:
    """R8.4: the store runs in WAL mode (persistent in the file), in a created directory."""
    s = await Store.open(db_path)
    try:
        assert db_path.exists()
        assert pragma(db_path, "journal_mode") == "wal"
    finally:
        await s.close()


async def test_r8_4_schema_version_is_the_number_of_migrations_and_reopen_keeps_data(
        db_path: Path) -> None:
    """R8.4: `PRAGMA user_version` counts the applied migrations; reopening does not run them
    again (it would fail on existing tables or lose rows)."""
    s = await Store.open(db_path)
    await s.put_value("cursor", "s123")
    await s.close()
    assert pragma(db_path, "user_version") == len(MIGRATIONS) >= 1
    for _ in range(2):
        s = await Store.open(db_path)
        assert await s.get_value("cursor") == "s123"
        await s.close()
    assert pragma(db_path, "user_version") == len(MIGRATIONS)


async def test_r8_4_a_store_of_an_older_schema_is_migrated_and_keeps_its_data(
        db_path: Path) -> None:
    """R8.4: a file from the first release (schema 1) opens: the later migrations run in
    order and what it held is still there."""
    db_path.parent.mkdir(parents=True)
    con = sqlite3.connect(db_path)
    con.executescript(f"BEGIN; {MIGRATIONS[0]} PRAGMA user_version = 1; COMMIT;")
    con.execute("INSERT INTO kv (key, value) VALUES ('matrix.next_batch', 's9')")
    con.commit()
    con.close()
    s = await Store.open(db_path)
    try:
        assert await s.get_value("matrix.next_batch") == "s9"
        await s.record_process("webui", 4242, "boot:77")
        assert await s.take_processes() == [("webui", 4242, "boot:77")]
    finally:
        await s.close()
    assert pragma(db_path, "user_version") == len(MIGRATIONS)


async def test_r4_9_running_processes_are_recorded_until_they_exit(store: Store) -> None:
    """R4.9: a record per agent, replaced by its next process, removed only by the exit of
    the process it names; taking them at start-up empties the table."""
    await store.record_process("webui", 100, "b:1")
    await store.record_process("alice", 200, "b:2")
    await store.record_process("webui", 101, "b:3")  # restarted before the old exit was seen
    await store.forget_process("webui", 100)  # the old one's exit: not the current record
    await store.forget_process("alice", 200)
    assert await store.take_processes() == [("webui", 101, "b:3")]
    assert await store.take_processes() == []


async def test_r8_4_newer_schema_is_refused_with_a_clear_error(db_path: Path) -> None:
    """R8.4: a file written by a newer crewbridge is not touched: StoreError names it."""
    s = await Store.open(db_path)
    await s.close()
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="newer") as info:
        await Store.open(db_path)
    assert str(db_path) in str(info.value)
    del info
    gc.collect()
    assert pragma(db_path, "user_version") == len(MIGRATIONS) + 1


async def test_r8_4_unusable_data_dir_is_a_store_error(tmp_path: Path) -> None:
    """R8.4: a data directory that cannot be created is a StoreError naming the path."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the store"):
        await Store.open(blocker / "sub" / "crewbridge.db")


async def test_r8_4_refused_store_closes_its_connection(db_path: Path) -> None:
    """R8.4, R11.2: refusing a newer store must close what it opened — otherwise
    `crewbridge run` prints 'Exception in thread ... Event loop is closed' after the error.
    (Found by this suite as an xfail; fixed in b3f673c.)"""
    s = await Store.open(db_path)
    await s.close()
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA user_version = 999")
    con.commit()
    con.close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        refused = False
        try:
            await Store.open(db_path)
        except StoreError:
            refused = True
        gc.collect()
    assert refused
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# --- the private aiosqlite API the store relies on (see Store._tx) --------------------------------


def test_r8_4_aiosqlite_still_has_the_private_call_store_tx_relies_on() -> None:
    """R8.4: `Store._tx` runs a whole transaction in one hand-off through aiosqlite's private
    `Connection._execute(fn, *args)` and its `_conn`. An aiosqlite that drops or changes them
    must fail here, by name, before it fails in production."""
    why = (f"aiosqlite {aiosqlite.__version__}: Connection._execute(fn, *args, **kwargs) "
           "is gone or changed; bot/store.py Store._tx needs it (or a new way to run one "
           f"function on the connection's thread). Pinned aiosqlite{AIOSQLITE_PIN}.")
    execute = getattr(aiosqlite.Connection, "_execute", None)
    assert execute is not None and inspect.iscoroutinefunction(execute), why
    params = list(inspect.signature(execute).parameters.values())
    kinds = [p.kind for p in params[1:]]
    assert kinds == [inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL,
                     inspect.Parameter.VAR_KEYWORD], why


def test_r8_4_the_aiosqlite_pin_is_the_one_the_store_names() -> None:
    """The upper pin in pyproject.toml is the one `Store.open` tells a user to install."""
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"aiosqlite{AIOSQLITE_PIN}" in deps


async def test_r8_4_a_transaction_is_one_hand_off(store: Store, monkeypatch) -> None:
    """R8.4: a store call that writes several statements is one trip to the SQLite thread
    (the store's main cost, docs/benchmarks.md) — and it reaches `_conn` on that thread."""
    calls: list[object] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: object, *args: object, **kw: object):
        calls.append(fn)
        return await original(self, fn, *args, **kw)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    await store.enqueue([nudge("webui", "one"), nudge("webui", "two"), nudge("ops", "x")], 1.0)
    assert len(calls) == 1
    assert [q.text for q in await store.queued("webui")] == ["one", "two"]


async def test_r8_4_an_aiosqlite_without_it_is_refused_with_a_clear_error(
        db_path: Path, monkeypatch) -> None:
    """R8.4, R11.2: without `_execute` the store refuses to open, naming the version to
    install, instead of failing on the first write."""
    monkeypatch.delattr(aiosqlite.Connection, "_execute")
    with pytest.raises(StoreError, match=r"_execute.*install aiosqlite>=0\.20,<0\.23"):
        await Store.open(db_path)


# --- inbox: R1.3, R8.1 -------------------------------------------------------------------------


async def test_r8_5_the_queue_a_message_leaves_is_the_queue_read_after_it(store: Store) -> None:
    """R8.5, R3.5: right after a person's message queued nudges the agents' queues are known
    without a read (the transaction left them so) — and are read afresh once any other
    transaction began, so an answer, a drop or a new nudge is never missed."""
    await store.enqueue([nudge("webui", "earlier")], 0.5)
    await store.accept_inbound("webui", inbound("Ev1"), [nudge("webui", "[Dana] hi")], 1.0)
    known = await store.queued("webui")
    assert [q.text for q in known] == ["earlier", "[Dana] hi"]
    assert known[1].message is not None  # the marks of R13.7 go on it
    store._queues[1]["webui"].clear()  # were the cache used after a write, this would show
    await store.enqueue([nudge("webui", "later")], 2.0)
    assert [q.text for q in await store.queued("webui")] == ["earlier", "[Dana] hi", "later"]
    await store.accept_inbound("webui", inbound("Ev2"), [nudge("alice", "[Dana] yo")], 3.0)
    first = (await store.queued("webui"))[0]
    await store.answer([], [], [first.id], 4.0)
    assert [q.text for q in await store.queued("webui")] == ["[Dana] hi", "later"]


async def test_r1_3_r8_1_accept_inbound_stores_once_and_queues_its_nudges(store: Store) -> None:
    """R1.3, R8.1: a message is stored with its nudges queued; the same platform event again
    (Slack retry, Matrix re-delivery) returns False and queues nothing."""
    msg = inbound("Ev001")
    nudges = [nudge("webui", "[Dana] hello"), nudge("alice", "[Dana] hello")]
    assert await store.accept_inbound("webui", msg, nudges, 1.0) is not None
    assert await store.is_stored("slack", "Ev001")
    assert await store.accept_inbound("webui", msg, nudges, 2.0) is None
    assert await store.accept_inbound("webui", inbound("Ev001", "edited"), nudges, 3.0) is None
    assert [q.text for q in await store.queued("webui")] == ["[Dana] hello"]
    assert [q.text for q in await store.queued("alice")] == ["[Dana] hello"]
    assert await store.queue_lengths() == {"webui": 1, "alice": 1}


async def test_r8_1_same_event_id_on_another_platform_is_another_message(store: Store) -> None:
    """R8.1: de-duplication is on (platform, event id)."""
    assert await store.accept_inbound("webui", inbound("$ev", platform="slack"), [], 1.0)
    assert await store.accept_inbound("webui", inbound("$ev", platform="matrix"), [], 1.0)
    assert not await store.is_stored("console", "$ev")


async def test_r1_3_message_and_nudges_are_one_transaction(store: Store) -> None:
    """R1.3, R8.4: if queueing a nudge fails, the message is not stored either, so the
    platform's re-delivery is accepted later — nothing half-written."""
    broken = Nudge("alice", None, 0, "webui")  # type: ignore[arg-type]  # NOT NULL violation
    with pytest.raises(sqlite3.IntegrityError):
        await store.accept_inbound("webui", inbound("Ev9"), [nudge("webui", "a"), broken], 1.0)
    assert not await store.is_stored("slack", "Ev9")
    assert await store.queue_lengths() == {}
    assert await store.accept_inbound("webui", inbound("Ev9"), [nudge("webui", "a")], 2.0)
    assert await store.queue_lengths() == {"webui": 1}


# --- queues: R3.4, R3.5 -------------------------------------------------------------------------


async def test_r3_4_queue_keeps_order_per_agent(store: Store) -> None:
    """R3.4/R3.5: queued messages are delivered in order."""
    await store.enqueue([nudge("webui", "one"), nudge("alice", "a1")], 1.0)
    await store.accept_inbound("webui", inbound("E2"), [nudge("webui", "two")], 2.0)
    await store.enqueue([nudge("webui", "three", hops=3, origin="general")], 3.0)
    q = await store.queued("webui")
    assert [x.text for x in q] == ["one", "two", "three"]
    assert (q[2].hops, q[2].origin, q[2].agent) == (3, "general", "webui")
    assert await store.agents_with_queue() == ["alice", "webui"]
    await store.enqueue([], 4.0)


async def test_r8_5_answer_posts_queues_and_dequeues_in_one_transaction(store: Store) -> None:
    """R8.5: a turn's posts enter the outbox, the nudges its text routes are queued, and
    the nudges it answered leave the queue — all of it or, when a part fails, none."""
    await store.enqueue([nudge("webui", f"m{i}") for i in range(1, 4)], 1.0)
    m1, m2, m3 = await store.queued("webui")
    post = Said("webui", "webui", "done", (("console", "webui"), ("slack", "C1")))
    await store.answer([post], [nudge("alice", "@alice look")], [m1.id, m2.id], 2.0)
    assert [q.text for q in await store.queued("webui")] == ["m3"]
    assert [q.text for q in await store.queued("alice")] == ["@alice look"]
    pending = await store.pending_posts()
    assert [(p.author, p.text, p.room) for p in pending] == [("webui", "done", "webui"),
                                                             ("webui", "done", "C1")]
    assert pending[0].message == pending[1].message is not None  # one message, two rooms
    broken = Nudge("alice", None, 0, "webui")  # type: ignore[arg-type]  # NOT NULL violation
    with pytest.raises(sqlite3.IntegrityError):
        await store.answer([post], [broken], [m3.id], 3.0)
    assert [q.text for q in await store.queued("webui")] == ["m3"]  # still queued...
    assert len(await store.pending_posts()) == 2  # ...and its answer not half-written
    await store.answer([], [], [], 4.0)  # nothing to do is fine


async def test_r8_5_attempted_marks_survive_and_keep_the_queue_order(store: Store) -> None:
    """R8.5: a nudge written to an agent is marked, stays in its place, and reads back
    marked (the next delivery adds its note)."""
    await store.enqueue([nudge("webui", "m1"), nudge("webui", "m2")], 1.0)
    m1, _ = await store.queued("webui")
    await store.mark_attempted([m1.id])
    await store.mark_attempted([])
    assert [(q.text, q.attempted) for q in await store.queued("webui")] == [
        ("m1", True), ("m2", False)]
    [dropped] = await store.drop_queued("webui", [m1.id])
    assert dropped.attempted


# --- tasks: R7 ------------------------------------------------------------------------------------


async def test_r7_1_tasks_create_and_finish_once(store: Store) -> None:
    """R7.1, R7.3: a task is created open with an id; finishing it twice finishes it once."""
    t1 = await store.create_task("fix the login bug", "webui", "alice", "Dana", 1.0)
    t2 = await store.create_task("load data", "backend", "bob", "backend", 2.0)
    assert (t1.status, t1.assignee, t1.channel, t1.created_by) == ("open", "alice", "webui",
                                                                   "Dana")
    assert t2.id > t1.id > 0
    done = await store.finish_task(t1.id, 3.0)
    assert done is not None and (done.id, done.status) == (t1.id, "done")
    assert await store.finish_task(t1.id, 4.0) is None
    assert await store.finish_task(9999, 4.0) is None
    assert [t.id for t in await store.tasks(open_only=True)] == [t2.id]
    assert [t.status for t in await store.tasks()] == ["done", "open"]
    assert await store.task(t1.id) == done


# --- health and escalations: R4.6, R6.1 ----------------------------------------------------------


async def test_r4_6_health_defaults_and_round_trip(store: Store) -> None:
    """R4.6: an agent without a record is healthy; a stored record comes back equal."""
    assert await store.health("lead:webui") == Health()
    h = Health(failures=3, cooldown_until=220.5, state=BreakerState.OPEN, retry_at=700.0,
               wait_s=600, last_error="exit 1 «boom»", auth_failed=True, noticed_until=700.0)
    await store.put_health("lead:webui", h)
    await store.put_health("lead:webui", h)
    assert await store.health("lead:webui") == h
    assert await store.health("task:1") == Health()


async def test_r6_1_escalation_opens_once_and_closes_once(store: Store) -> None:
    """R6.1: an alert is sent once per open problem, and "recovered" once."""
    assert await store.open_escalation("breaker:webui", "3 failures", 1.0) is True
    assert await store.open_escalation("breaker:webui", "4 failures", 2.0) is False
    assert await store.escalations() == {"breaker:webui": "3 failures"}
    assert await store.close_escalation("breaker:webui") is True
    assert await store.close_escalation("breaker:webui") is False
    assert await store.open_escalation("breaker:webui", "again", 3.0) is True


async def test_r1_5_put_value_once(store: Store) -> None:
    """R1.5: one-time flags (one notice per unbound room, ever)."""
    assert await store.put_value_once("unbound:slack:C9", "noticed") is True
    assert await store.put_value_once("unbound:slack:C9", "noticed") is False
    await store.put_value("k", "1")
    await store.put_value("k", "2")
    assert await store.get_value("k") == "2"
    assert await store.get_value("missing") is None
    await store.delete_value("k")
    await store.delete_value("missing")  # deleting what is not there is fine
    assert await store.get_value("k") is None


# --- outbox: R8.3 ---------------------------------------------------------------------------------


async def test_r8_3_outbox_pending_per_room_in_order(store: Store) -> None:
    """R8.3: posts wait in order per room; a failure keeps the post (retry later, counted);
    a post set aside is no longer pending; a sent post is gone."""
    ids = await store.add_posts([NewPost("slack", "C1", "a"), NewPost("matrix", "!r", "x"),
                                 NewPost("slack", "C1", "b"), NewPost("slack", "C2", "c")], 5.0)
    assert len(ids) == 4 and ids == sorted(ids)
    assert [p.text for p in await store.pending_posts(("slack", "C1"))] == ["a", "b"]
    assert [p.text for p in await store.pending_posts()] == ["a", "x", "b", "c"]
    assert [p.text for p in await store.pending_posts(limit=2)] == ["a", "x"]
    first = (await store.pending_posts(("slack", "C1")))[0]
    assert (first.attempts, first.next_at, first.kind) == (0, 5.0, "agent")
    await store.post_failed(first.id, 65.0, "429 Retry-After: 60")
    again = (await store.pending_posts(("slack", "C1")))[0]
    assert (again.id, again.attempts, again.next_at) == (first.id, 1, 65.0)
    assert again.key == first.key == f"crewbridge-{first.id}"
    await store.post_set_aside(ids[2], "channel_not_found")
    assert [p.text for p in await store.pending_posts(("slack", "C1"))] == ["a"]
    await store.post_sent(first.id)
    assert await store.pending_posts(("slack", "C1")) == []
    assert await store.add_posts([], 6.0) == []


# --- everything survives a restart: R4.6, R8.4 ----------------------------------------------------


async def test_r4_6_r8_4_everything_survives_close_and_reopen(db_path: Path) -> None:
    """R1.1, R1.6, R3.2, R4.6, R6.1, R8.2, R8.3, R8.4: what the bot stored is there after a
    restart — channels, DM attachments, agents with session ids, tasks, the inbox, queues,
    health, escalations, the outbox and bridge cursors."""
    s = await Store.open(db_path)
    await s.ensure_channel("webui", "topic", 1.0)
    await s.ensure_channel("webui", "dm", 2.0)  # first kind wins
    await s.attach_dm("slack", "D1", "alice")
    await s.attach_dm("slack", "D1", "bob")
    await s.upsert_agent("webui", AgentKind.LEAD, "webui", None)
    await s.upsert_agent("alice", AgentKind.WORKER, "dm-alice", 7)
    await s.upsert_agent("alice", AgentKind.WORKER, "dm-alice", None)  # keeps the task id
    await s.set_session_id("webui", "sess-1")
    await s.set_agent_error("webui", "exit 1")
    task = await s.create_task("fix", "webui", "alice", "Dana", 1.0)
    await s.accept_inbound("webui", inbound("E1"), [nudge("webui", "q1")], 1.0)
    h = Health(failures=2, cooldown_until=99.0)
    await s.put_health("lead:webui", h)
    await s.open_escalation("auth", "401", 1.0)
    post_ids = await s.add_posts([NewPost("slack", "C1", "out")], 1.0)
    await s.put_value("matrix:next_batch", "s72595_4483")
    await s.close()

    s = await Store.open(db_path)
    try:
        assert await s.channels() == {"webui": "topic"}
        assert await s.dm_attachments() == [("slack", "D1", "bob")]
        webui, alice = await s.agent("webui"), await s.agent("alice")
        assert webui is not None and alice is not None
        assert (webui.session_id, webui.last_error) == ("sess-1", "exit 1")
        assert (alice.kind, alice.channel, alice.task_id) == (AgentKind.WORKER, "dm-alice", 7)
        assert [a.name for a in await s.agents()] == ["webui", "alice"]
        assert await s.task(task.id) == task
        assert await s.is_stored("slack", "E1")
        assert await s.accept_inbound("webui", inbound("E1"), [nudge("webui", "dup")], 2.0) \
            is None
        assert [q.text for q in await s.queued("webui")] == ["q1"]
        assert await s.health("lead:webui") == h
        assert await s.open_escalation("auth", "401", 2.0) is False
        assert [p.id for p in await s.pending_posts()] == post_ids
        assert await s.get_value("matrix:next_batch") == "s72595_4483"
    finally:
        await s.close()


# --- crash consistency: R8.4 ----------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from crewbridge.bot.model import Nudge
    from crewbridge.bridges.base import Inbound
    from crewbridge.bot.store import Store
    from crewbridge.bot.store_outbox import NewPost
    from crewbridge.supervisor.breaker import Health

    async def main():
        s = await Store.open(Path(sys.argv[1]))
        i = 0
        while True:
            i += 1
            ev = f"ev-{i}"
            msg = Inbound("slack", "C1", "U1", "Dana", "x" * (i % 500), ev, float(i))
            nudges = [Nudge("webui", ev, 0, "webui"), Nudge("alice", ev, 0, "webui"),
                      Nudge("bob", ev, 0, "webui")]
            assert await s.accept_inbound("webui", msg, nudges, float(i))
            await s.add_posts([NewPost("slack", "C1", ev), NewPost("matrix", "!r", ev)], i)
            await s.put_health("lead:webui", Health(failures=i))
            print(i, flush=True)

    asyncio.run(main())
""")


async def _kill_writer_after(db: Path, commits: int) -> int:
    """Run the writer in a child process; SIGKILL it after `commits` acknowledged rounds.
    Returns how many rounds it had reported done when it died."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(db), cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    acknowledged = 0
    try:
        while acknowledged < commits:
            line = await proc.stdout.readline()
            if not line:
                raise AssertionError("writer died: " + (await proc.stderr.read()).decode())
            acknowledged = int(line)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # It went on while we read: the rounds it reported before it died are in the pipe still.
    for line in (await proc.stdout.read()).split():
        acknowledged = int(line)
    return acknowledged


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_r8_4_killed_at_any_moment_the_store_stays_consistent(tmp_path: Path,
                                                                     seed: int) -> None:
    """R8.4: a writer is SIGKILLed at a random moment (mid-transaction, most of the time).
    Reopening gives a consistent store: integrity_check is ok, every message has all its
    queued nudges and every nudge its message, every outbox pair is whole, and every round
    the writer saw committed is there (durable)."""
    db = tmp_path / "crash.db"
    acknowledged = await _kill_writer_after(db, random.Random(seed).randint(1, 80))

    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        messages = {r[0] for r in con.execute("SELECT event_id FROM messages")}
        per_message: dict[str, list[str]] = {}
        for agent, text in con.execute("SELECT agent, text FROM queue ORDER BY id"):
            per_message.setdefault(text, []).append(agent)
        posts: dict[str, int] = {}
        for (text,) in con.execute("SELECT text FROM outbox"):
            posts[text] = posts.get(text, 0) + 1
    finally:
        con.close()
    assert set(per_message) == messages
    assert all(agents == ["webui", "alice", "bob"] for agents in per_message.values())
    assert all(n == 2 for n in posts.values())
    # Every round it reported is there, and at most the round it was in when killed more.
    assert messages in ({f"ev-{i}" for i in range(1, last + 1)}
                        for last in (acknowledged, acknowledged + 1))

    s = await Store.open(db)  # and the bot can go on with it
    try:
        assert (await s.health("lead:webui")).failures >= acknowledged
        assert await s.accept_inbound("webui", inbound("after-crash"), [nudge("webui", "n")], 1.)
    finally:
        await s.close()


# --- secrets never reach the disk (R10.5) --------------------------------------------------


async def test_r10_5_no_secret_the_config_holds_is_written_to_the_store(tmp_path: Path) -> None:
    """R10.5: every write path of the store scrubs the config's secret values, so neither
    the database nor its WAL ever holds one (and no post, which is stored first, can)."""
    from crewbridge.bot.store_outbox import NewPost
    from crewbridge.supervisor.redact import SECRETS

    secret = "xoxb-SECRET-0123456789"
    SECRETS.add([secret])
    try:
        store = await Store.open(tmp_path / "data" / "crewbridge.db")
        msg = Inbound("slack", "C1", "U1", "alice", f"the token is {secret}", "ev-1", 1.0)
        await store.accept_inbound("general", msg, [Nudge("general", f"see {secret}")], 1.0)
        await store.enqueue([Nudge("webui", secret)], 1.0)
        await store.add_posts([NewPost("slack", "C1", f"posting {secret}")], 1.0)
        await store.upsert_agent("general", AgentKind.LEAD, "general", None)
        await store.set_agent_error("general", f"failed with {secret}")
        await store.put_health("lead:general", Health(last_error=secret))
        await store.open_escalation("auth", secret, 1.0)
        await store.put_value("k", secret)
        queued = await store.queued("general")
        await store.close()
    finally:
        SECRETS.clear()
    assert queued and queued[0].text == "see [redacted]"
    on_disk = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir())
    assert secret.encode() not in on_disk
    assert on_disk.count(b"[redacted]") >= 8


# --- threads and each message's ids per room (R12.1, R12.5) -----------------------------------


async def test_r12_1_a_top_level_message_opens_a_numbered_thread_its_nudges_answer_in(
        store: Store) -> None:
    """R12.1: a person's top-level message roots a thread (numbered per channel); the
    nudges it makes are answered there; a re-delivery opens nothing."""
    first = await store.accept_inbound("webui", inbound("E1"), [nudge("webui", "a")], 1.0,
                                       roots_thread=True)
    again = await store.accept_inbound("webui", inbound("E1"), [nudge("webui", "a")], 1.0,
                                       roots_thread=True)
    await store.accept_inbound("webui", inbound("E2"), [nudge("webui", "b")], 2.0,
                               roots_thread=True)
    await store.accept_inbound("backend", inbound("E3"),
                               [nudge("backend", "c", origin="backend")], 3.0, roots_thread=True)
    assert first is not None and again is None
    numbers = []
    for agent in ("webui", "webui", "backend"):
        for q in await store.queued(agent):
            thread = await store.thread(q.thread or 0)
            assert thread is not None and thread.channel == q.origin
            numbers.append((q.text, thread.number, thread.root == first))
    assert sorted(set(numbers)) == [("a", 1, True), ("b", 2, False), ("c", 1, False)]


async def test_r12_5_a_reply_finds_its_thread_by_any_room_s_id_of_the_root(store: Store) -> None:
    """R12.5: the root has its own id where it was written and its relay's elsewhere
    (recorded when the relay was sent); a reply under either finds the same thread, and a
    post into the thread finds the root's id in each room."""
    root = await store.accept_inbound("webui", inbound("E1"), [], 1.0)
    (relay_id,) = await store.add_said([Said("webui", "bob (slack)", "hi", (("matrix", "!m"),),
                                             relay_of=root)], 1.0)
    (relay,) = await store.pending_posts()
    await store.post_sent(relay.id, ref="$relay")
    assert relay_id == root
    on_slack = await store.thread_of_reply("webui", "slack", "C0123", "E1", 2.0)
    on_matrix = await store.thread_of_reply("webui", "matrix", "!m", "$relay", 3.0)
    assert on_slack == on_matrix and on_slack.root == root and on_slack.number == 1
    targets = {room: await store.thread_target(on_slack.id, *room)
               for room in [("slack", "C0123"), ("matrix", "!m"), ("slack", "D9")]}
    assert {room: t.root for room, t in targets.items() if t} == {
        ("slack", "C0123"): "E1", ("matrix", "!m"): "$relay", ("slack", "D9"): None}
    assert await store.thread_target(999, "slack", "C0123") is None
    reply = await store.accept_inbound("webui", inbound("$reply", platform="matrix"), [], 4.0,
                                       thread=on_slack.id)
    (answer,) = await store.add_said([Said("webui", "webui", "ok", (("matrix", "C0123"),),
                                           thread=on_slack.id)], 5.0)
    assert reply is not None and answer != reply
    latest = await store.thread_target(on_slack.id, "matrix", "C0123")
    assert latest is not None and latest.latest == "$reply"  # the answer is not sent yet
    (post,) = [p for p in await store.pending_posts() if p.message == answer]
    await store.post_sent(post.id, ref="$answer")
    latest = await store.thread_target(on_slack.id, "matrix", "C0123")
    assert latest is not None and latest.latest == "$answer"  # Matrix's reply fallback


async def test_r12_2_a_reply_under_a_root_the_bot_never_saw_gets_a_stand_in(store: Store) -> None:
    """R12.2: a thread started before the bot joined still works in that room."""
    first = await store.thread_of_reply("webui", "slack", "C1", "1600000000.000100", 1.0)
    second = await store.thread_of_reply("webui", "slack", "C1", "1600000000.000100", 2.0)
    assert first == second
    target = await store.thread_target(first.id, "slack", "C1")
    assert target is not None and target.root == "1600000000.000100"
