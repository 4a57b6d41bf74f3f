"""Conversations where people have them: threads, forked sessions, tasks as threads (R12,
R3.6, R5.1), through the whole core.

An in-process bot with real fake-agent processes, the console, and two recording bridges
standing in for Slack and Matrix (our own `Bridge` interface, so a double is fine here;
each hands out platform ids for what it posts, as the real ones do). The real bridges'
threads are tested against the Slack emulator and a real Synapse in tests/platform.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import Inbound
from tests.integration.harness import Bot, Recorder, until
from tests.support.botproc import cleanup_data_dir, short_data_dir, write_config

pytestmark = pytest.mark.timeout(60)
_ids = itertools.count(1)


async def crew_bot(tmp_path: Path, *, channel: dict | None = None,
                   env: dict | None = None, data_dir: Path | None = None,
                   admin_users: tuple[str, ...] = ()) -> tuple[Bot, Recorder, Recorder]:
    """#webui bound to Slack C1 and Matrix !m, plus the console."""
    log = tmp_path / "agents.jsonl"
    config = load_config(write_config(
        tmp_path / "c.toml", data_dir=data_dir,
        agent={"env": {"FAKE_AGENT_LOG": str(log), **(env or {})}},
        channels=[{"name": "webui", "slack": ["C1"], "matrix": ["!m"], **(channel or {})}],
        extra={"admin": {"users": list(admin_users)},
               "slack": {"bot_token": "xoxb-test", "app_token": "xapp-test"},
               "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@crew:test",
                          "access_token": "t"}}))
    console = Recorder()
    slack, matrix = Recorder(platform="slack"), Recorder(platform="matrix")
    app = App(config, clock=FakeClock(start=time.time()),
              bridges={"console": console, "slack": slack, "matrix": matrix})
    await app.start()
    return Bot(app, app.clock, console, log), slack, matrix  # type: ignore[arg-type]


def person(platform: str, room: str, text: str, *, thread: str | None = None,
           name: str = "bob") -> Inbound:
    """A person's message; on Slack its `ts` (what a reply names as root) is its ref."""
    n = next(_ids)
    ref = f"1700000000.{n:06d}" if platform == "slack" else ""
    return Inbound(platform, room, f"U-{name}", name, text,
                   f"Ev{n}" if platform == "slack" else f"$ev{n}", time.time(),
                   thread=thread, ref=ref)


def in_thread(rec: Recorder, room: str, root: str | None) -> list[str]:
    """`author: text` of what `rec` was given for `room` in the thread under `root`."""
    return [p.line for r, p in rec.sent if r == room and p.thread and p.thread.root == root]


def top_level(rec: Recorder, room: str) -> list[str]:
    return [p.line for r, p in rec.sent if r == room and p.thread is None]


def sent_id(rec: Recorder, room: str, text: str) -> str:
    """The platform id the recorder gave the first post in `room` containing `text`."""
    i = next(i for i, (r, p) in enumerate(rec.sent) if r == room and text in p.text)
    return f"{rec.platform}-{i + 1}"


async def test_r12_1_r12_5_an_answer_goes_in_the_thread_of_its_message_on_every_platform(
        tmp_path: Path) -> None:
    """R12.1, R12.5: a top-level message on Slack is answered in its thread there, in the
    thread of its relay on Matrix, and in #webui/1 on the console."""
    bot, slack, matrix = await crew_bot(tmp_path)
    try:
        msg = person("slack", "C1", "hello lead")
        await bot.app.on_event(msg)
        await until(lambda: in_thread(slack, "C1", msg.ref), what="the answer on Slack")
        assert in_thread(slack, "C1", msg.ref) == ["webui: got it — `hello lead`"]
        assert top_level(matrix, "!m") == ["bob (slack): hello lead"]
        relay = sent_id(matrix, "!m", "hello lead")
        await until(lambda: in_thread(matrix, "!m", relay), what="the answer on Matrix")
        assert [(p.thread.number if p.thread else None, p.line)
                for _, p in bot.rec.sent] == [(None, "bob (slack): hello lead"),
                                               (1, "webui: got it — `hello lead`")]
        assert top_level(slack, "C1") == []  # nothing echoed, nothing at the top level
    finally:
        await bot.stop()


async def test_r12_2_r12_3_a_reply_starts_a_fork_of_the_lead_answering_that_thread_only(
        tmp_path: Path) -> None:
    """R12.2, R12.3, R12.5: the first reply in a thread under a lead's answer starts
    `webui/1`, forked from the lead's session (it knows the lead's history), in the lead's
    working directory; it answers in the thread on both platforms, whichever side the reply
    was written on; the lead is not nudged; the fork shows in `status`."""
    bot, slack, matrix = await crew_bot(tmp_path)
    try:
        root = person("slack", "C1", "plan the login page")
        await bot.app.on_event(root)
        await until(lambda: in_thread(slack, "C1", root.ref), what="the lead's answer")
        relay = sent_id(matrix, "!m", "plan the login page")
        await bot.app.on_event(person("matrix", "!m", "and the logout? fake:history",
                                      thread=relay, name="alice"))
        await until(lambda: len(in_thread(slack, "C1", root.ref)) == 3, what="the fork's answer")
        relay_reply, answer = in_thread(slack, "C1", root.ref)[1:]
        assert relay_reply == "alice (matrix): and the logout? fake:history"
        assert answer.startswith("webui/1: history:") and "plan the login page" in answer
        await until(lambda: any(t.startswith("webui/1: ") for t in in_thread(matrix, "!m", relay)),
                    what="the fork's answer on Matrix")
        assert [r["text"] for r in bot.received("webui")] == [
            "[bob via slack in #webui] plan the login page"]
        lead, fork = (await bot.app.store.agent("webui")), (await bot.app.store.agent("webui/1"))
        assert lead is not None and fork is not None and fork.session_id != lead.session_id
        status = {s.name: s for s in await bot.app.supervisor.status()}
        assert status["webui/1"].kind == "fork" and status["webui/1"].channel == "webui"
    finally:
        await bot.stop()


async def test_r12_3_two_forked_threads_are_answered_in_parallel(tmp_path: Path) -> None:
    """R12.3: replies in two threads run in two sessions at the same time; neither waits."""
    bot, slack, _ = await crew_bot(tmp_path)
    try:
        roots = [person("slack", "C1", f"topic {i}") for i in (1, 2)]
        for root in roots:
            await bot.app.on_event(root)
        await until(lambda: all(in_thread(slack, "C1", r.ref) for r in roots),
                    what="both answered by the lead")
        for root in roots:
            await bot.app.on_event(person("slack", "C1", "go on fake:slow=4,0.5",
                                          thread=root.ref))
        views = bot.app.supervisor.run_view
        await until(lambda: all((v := views(f"webui/{n}")) and v.in_turn for n in (1, 2)),
                    what="both forks in a turn at once")
        await until(lambda: all(any("part 4 of 4" in t for t in in_thread(slack, "C1", r.ref))
                                for r in roots), what="both threads answered")
        for n, root in enumerate(roots, 1):
            _lead, *fork = in_thread(slack, "C1", root.ref)
            assert fork and all(t.startswith(f"webui/{n}: webui/{n}: part") for t in fork)
    finally:
        await bot.stop()


async def test_r12_2_shared_threads_go_to_the_lead_and_replies_channel_answers_top_level(
        tmp_path: Path) -> None:
    """R12.2: with `threads = "shared"` a reply reaches the lead's own session, answered in
    the thread; R12.1: with `replies = "channel"` a top-level message is answered at the top
    level, as the first release did."""
    bot, slack, _ = await crew_bot(tmp_path, channel={"threads": "shared"})
    try:
        root = person("slack", "C1", "first")
        await bot.app.on_event(root)
        await until(lambda: in_thread(slack, "C1", root.ref), what="the answer")
        await bot.app.on_event(person("slack", "C1", "second", thread=root.ref))
        await until(lambda: len(in_thread(slack, "C1", root.ref)) == 2, what="the lead again")
        assert in_thread(slack, "C1", root.ref)[1] == "webui: got it — `second`"
        assert bot.app.supervisor.run_view("webui/1") is None
    finally:
        await bot.stop()
    (tmp_path / "channel").mkdir()
    bot, slack, _ = await crew_bot(tmp_path / "channel", channel={"replies": "channel"})
    try:
        await bot.app.on_event(person("slack", "C1", "top level please"))
        await until(lambda: top_level(slack, "C1"), what="the answer")
        assert top_level(slack, "C1") == ["webui: got it — `top level please`"]
    finally:
        await bot.stop()


async def test_r12_4_r5_1_a_task_is_a_thread_nobody_has_to_open_a_dm(tmp_path: Path) -> None:
    """R12.4, R5.1: "Task #1" is posted in the thread of the `!task` message; the worker's
    output goes into that thread in every bound room with no DM ever opened; a reply there
    reaches the worker; `!done` there, without an id, finishes the task."""
    bot, slack, matrix = await crew_bot(tmp_path)
    try:
        cmd = person("slack", "C1", "!task @alice fix the login bug")
        await bot.app.on_event(cmd)
        await until(lambda: any(t.startswith("alice: ") for t in in_thread(slack, "C1", cmd.ref)),
                    what="the worker's output in the task thread")
        assert in_thread(slack, "C1", cmd.ref)[:2] == [
            "crewbridge: Task #1 for @alice: fix the login bug",
            "alice: got it — `fix the login bug`"]
        relay = sent_id(matrix, "!m", "!task @alice")
        await until(lambda: any(t.startswith("alice: ") for t in in_thread(matrix, "!m", relay)),
                    what="the worker's output on Matrix")
        await bot.app.on_event(person("matrix", "!m", "how is it going?", thread=relay))
        await until(lambda: len(bot.received("alice")) == 2, what="the reply reached alice")
        assert "how is it going?" in bot.received("alice")[1]["text"]
        assert bot.received("webui") == []  # neither the task nor its thread nudged the lead
        await until(lambda: len([t for t in in_thread(slack, "C1", cmd.ref)
                                 if t.startswith("alice: ")]) == 2, what="her second answer")
        await bot.app.on_event(person("slack", "C1", "!done", thread=cmd.ref))
        await until(lambda: any("Task #1 done" in t for t in top_level(slack, "C1")),
                    what="the task done")
        assert (await bot.app.store.task(1)).status == "done"  # type: ignore[union-attr]
    finally:
        await bot.stop()


async def test_r12_4_a_task_from_the_command_line_roots_its_own_thread(tmp_path: Path) -> None:
    """R12.4: a task created through the CLI gets a top-level "Task #N" post, and the
    worker's output goes into the thread under it; `!done` outside a task's thread asks for
    an id."""
    bot, slack, _ = await crew_bot(tmp_path)
    try:
        await bot.app.tasks.create("write the docs", "webui", "carol", "webui")
        await until(lambda: top_level(slack, "C1"), what="the task post")
        assert top_level(slack, "C1") == ["crewbridge: Task #1 for @carol: write the docs"]
        root = sent_id(slack, "C1", "Task #1")
        await until(lambda: in_thread(slack, "C1", root), what="carol's output")
        assert in_thread(slack, "C1", root) == ["carol: got it — `write the docs`"]
        await bot.app.on_event(person("slack", "C1", "!done"))
        await until(lambda: any("without a task id" in t for t in top_level(slack, "C1")),
                    what="the refusal")
    finally:
        await bot.stop()


async def test_r12_4_a_workers_answer_to_all_goes_to_the_thread_of_the_message(
        tmp_path: Path) -> None:
    """R12.4, R2.3: carol's answer to `@all` is shown in the thread of the `@all` message,
    not stored and lost."""
    bot, slack, _ = await crew_bot(tmp_path)
    try:
        await bot.app.tasks.create("write the docs", "webui", "carol", "webui")
        await until(lambda: len(bot.received("carol")) == 1, what="carol working")
        msg = person("slack", "C1", "@all status please")
        await bot.app.on_event(msg)
        await until(lambda: len(in_thread(slack, "C1", msg.ref)) == 2, what="both answers")
        assert sorted(t.split(":")[0] for t in in_thread(slack, "C1", msg.ref)) == [
            "carol", "webui"]
    finally:
        await bot.stop()


async def test_r3_6_a_turn_answers_one_conversation_the_next_waits(tmp_path: Path) -> None:
    """R3.6: while the lead's turn answers one thread, a top-level message (another
    conversation) waits in the queue; it is written only when that turn has ended."""
    bot, slack, _ = await crew_bot(tmp_path)
    try:
        slow = person("slack", "C1", "think hard fake:slow=3,0.4")
        await bot.app.on_event(slow)
        await until(lambda: bot.app.supervisor.run_view("webui") is not None
                    and bot.app.supervisor.run_view("webui").in_turn, what="the slow turn")
        other = person("slack", "C1", "meanwhile")
        await bot.app.on_event(other)
        await until(lambda: len(bot.received("webui")) == 2, what="the second delivered")
        assert any("part 3 of 3" in t  # written only after the slow turn's end
                   for t in in_thread(slack, "C1", slow.ref))
        await until(lambda: in_thread(slack, "C1", other.ref), what="its own answer")
        assert in_thread(slack, "C1", other.ref) == ["webui: got it — `meanwhile`"]
    finally:
        await bot.stop()


async def test_r12_3_r8_4_a_fork_and_its_thread_survive_a_restart(tmp_path: Path) -> None:
    """R12.3, R8.4: after a restart a reply in the thread reaches the same fork, which
    resumes its own session (it remembers the thread so far) instead of forking again."""
    data_dir = short_data_dir()
    try:
        bot, slack, _ = await crew_bot(tmp_path, data_dir=data_dir)
        root = person("slack", "C1", "plan the release")
        try:
            await bot.app.on_event(root)
            await until(lambda: in_thread(slack, "C1", root.ref), what="the lead's answer")
            await bot.app.on_event(person("slack", "C1", "first reply", thread=root.ref))
            await until(lambda: len(in_thread(slack, "C1", root.ref)) == 2, what="the fork")
        finally:
            await bot.stop()
        bot, slack, _ = await crew_bot(tmp_path, data_dir=data_dir)
        try:
            await bot.app.on_event(person("slack", "C1", "again fake:history", thread=root.ref))
            await until(lambda: in_thread(slack, "C1", root.ref), what="the fork after restart")
            (answer,) = in_thread(slack, "C1", root.ref)
            assert answer.startswith("webui/1: history:")
            assert "plan the release" in answer and "first reply" in answer
            assert bot.app.supervisor.run_view("webui") is None  # the lead was not needed
        finally:
            await bot.stop()
    finally:
        cleanup_data_dir(data_dir)
