"""Messages through the whole core: rooms, relays, DMs, tasks, dedup, the agents' CLI.

In-process bot, real fake-agent processes, a recording bridge for the console and a second
recording bridge standing in for a chat platform (our own interface, so a double is fine
here; the real Slack and Matrix bridges have their own tiers).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import Inbound, RoomJoined
from tests.integration.harness import Bot, Recorder, start_bot, until
from tests.support.botproc import write_config

pytestmark = pytest.mark.timeout(60)


async def chat_bot(tmp_path: Path, **kw: object) -> tuple[Bot, Recorder]:
    """A bot with the console and a `slack` recorder bound to #webui (C1) and #ops (C0)."""
    log = tmp_path / "agents.jsonl"
    config = load_config(write_config(
        tmp_path / "c.toml", agent={"env": {"FAKE_AGENT_LOG": str(log)}},
        channels=[{"name": "webui", "slack": ["C1"]}],
        extra={"admin": {"slack": ["C0"], "users": ["U-admin"]},
               "slack": {"bot_token": "xoxb-test", "app_token": "xapp-test"}, **kw}))
    console, slack = Recorder(), Recorder(platform="slack")
    clock = FakeClock(start=time.time())
    app = App(config, clock=clock, bridges={"console": console, "slack": slack})
    await app.start()
    return Bot(app, clock, console, log), slack


def slack_msg(room: str, text: str, sender: str = "U1", name: str = "bob",
              event_id: str | None = None, direct: bool = False) -> Inbound:
    return Inbound("slack", room, sender, name, text, event_id or f"Ev{time.monotonic_ns()}",
                   time.time(), is_direct=direct)


async def test_r1_3_r1_4_person_message_relayed_to_other_rooms_not_back(tmp_path: Path) -> None:
    """R1.3, R1.4: a Slack message is stored, shown on the console attributed to its author
    and platform, never echoed to Slack; the lead's reply appears in both."""
    bot, slack = await chat_bot(tmp_path)
    try:
        await bot.app.on_event(slack_msg("C1", "hello from slack", event_id="Ev-1"))
        # Each room has its own outbox, so the two deliveries finish in either order.
        await until(lambda: any("got it" in t for t in slack.in_room("C1"))
                    and any("got it" in t for t in bot.rec.in_room("webui")), what="replies")
        assert "bob (slack): hello from slack" in bot.rec.in_room("webui")
        assert not any("hello from slack" in t and t.startswith("bob") for t in slack.posts)
        assert await bot.app.store.is_stored("slack", "Ev-1")
    finally:
        await bot.stop()


async def test_r8_1_redelivered_event_is_ignored(tmp_path: Path) -> None:
    """R8.1: the same platform event twice is stored and routed once."""
    bot, _ = await chat_bot(tmp_path)
    try:
        msg = slack_msg("C1", "only once", event_id="Ev-dup")
        await bot.app.on_event(msg)
        await bot.app.on_event(msg)
        await until(lambda: len(bot.received("webui")) == 1, what="one delivery")
        await bot.app.supervisor.wait_quiet(5)
        assert len(bot.received("webui")) == 1
        assert bot.rec.in_room("webui").count("bob (slack): only once") == 1
    finally:
        await bot.stop()


async def test_r1_5_unbound_room_gets_one_notice_and_nothing_routed(tmp_path: Path) -> None:
    """R1.5: an unbound room is told once how to bind it; its messages reach nobody."""
    bot, slack = await chat_bot(tmp_path)
    try:
        await bot.app.on_event(RoomJoined("slack", "C-new"))
        await bot.app.on_event(slack_msg("C-new", "hello?"))
        await bot.app.on_event(slack_msg("C-new", "anyone?"))
        await until(lambda: len(slack.in_room("C-new")) == 1, what="notice")
        assert "not bound" in slack.in_room("C-new")[0] and "C-new" in slack.in_room("C-new")[0]
        await bot.app.supervisor.wait_quiet(5)
        assert bot.received() == [] and len(slack.in_room("C-new")) == 1
    finally:
        await bot.stop()


async def test_r1_6_r1_7_dm_attaches_to_worker_and_reaches_only_it(tmp_path: Path) -> None:
    """R1.6, R1.7, R7.1: a task spawns its worker; a DM `@alice` attaches to it; later plain
    DM text follows; worker output goes to the DM; nothing spawns a lead."""
    bot, slack = await chat_bot(tmp_path)
    try:
        await bot.app.on_event(slack_msg("D9", "hi", direct=True))
        await until(lambda: any("Workers: none yet" in t for t in slack.in_room("D9")),
                    what="worker list")
        await bot.say("webui", "!task @alice fix the login bug")
        await until(lambda: len(bot.received("alice")) == 1, what="task prompt delivered")
        assert "fix the login bug" in bot.received("alice")[0]["text"]  # R7.1
        assert any("Task #1 for @alice" in t for t in slack.in_room("C1"))
        await bot.app.on_event(slack_msg("D9", "@alice how is it going? @webui", direct=True))
        await until(lambda: len(bot.received("alice")) == 2, what="dm delivered")
        await bot.app.on_event(slack_msg("D9", "and now?", direct=True))
        await until(lambda: len(bot.received("alice")) == 3, what="attached dm")
        await until(lambda: sum("alice: " in t for t in slack.in_room("D9")) >= 2,
                    what="worker output in the DM")
        await bot.app.supervisor.wait_quiet(5)
        assert bot.received("webui") == []  # R1.7: no lead nudged by DM text
    finally:
        await bot.stop()


async def test_r2_3_all_in_topic_reaches_lead_and_its_workers(tmp_path: Path) -> None:
    """R2.3 end to end: `@all` in #webui reaches webui and the worker of a #webui task, but
    not a worker whose task belongs to another channel."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}, {"name": "infra"}])
    try:
        await bot.say("webui", "!task @alice fix login")
        await bot.say("infra", "!task @carol patch servers")
        await until(lambda: bot.received("alice") and bot.received("carol"), what="workers")
        await bot.say("webui", "@all standup in 5")
        await until(lambda: any("standup" in r["text"] for r in bot.received("webui")) and
                    any("standup" in r["text"] for r in bot.received("alice")), what="fan-out")
        await bot.app.supervisor.wait_quiet(5)
        assert not any("standup" in r["text"] for r in bot.received("carol"))
        assert not any("standup" in r["text"] for r in bot.received("infra"))
    finally:
        await bot.stop()


async def test_r7_2_r7_3_r10_4_agents_create_tasks_and_post_over_the_control_socket(
        tmp_path: Path) -> None:
    """R7.2, R10.4: a lead runs `crewbridge task create` and `crewbridge post` as itself;
    R7.3: `!done` stops the worker and posts one line in the topic channel."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}])
    try:
        await bot.say("webui", "fake:task=dave write the docs")
        await until(lambda: bot.received("dave"), what="worker spawned by the lead")
        assert "[task #1 from webui in #webui] write the docs" in bot.received("dave")[0]["text"]
        await bot.say("webui", "fake:post=newroom")
        await until(lambda: "webui: webui posted via CLI" in bot.rec.in_room("newroom"),
                    what="post to a new channel")
        assert "newroom" in bot.app.crew.channels  # R1.1: created at run time
        await until(lambda: any("exited 0" in t for t in bot.rec.in_room("webui")), what="ok")
        await bot.say("webui", "!done 1")
        await until(lambda: any("Task #1 done: write the docs" in t
                                for t in bot.rec.in_room("webui")), what="done line")
        await until(lambda: bot.app.supervisor.run_view("dave").state.value == "stopped",
                    what="worker stopped")
        await bot.say("webui", "!done 1")
        await until(lambda: any("no open task #1" in t for t in bot.rec.in_room("webui")),
                    what="second done refused")
    finally:
        await bot.stop()


async def test_r2_6_agent_chain_stops_after_max_hops(tmp_path: Path) -> None:
    """R2.6: two agents that keep mentioning each other stop after max_hops, with a notice."""
    bot = await start_bot(tmp_path, agent={"max_hops": 3}, channels=[
        {"name": "ping", "env": {"FAKE_AGENT_REPLY": "@pong your turn"}},
        {"name": "pong", "env": {"FAKE_AGENT_REPLY": "@ping your turn"}}])
    try:
        await bot.say("ping", "start")
        await until(lambda: any("Stopped a chain" in t for r in ("ping", "pong")
                                for t in bot.rec.in_room(r)), what="hop-limit notice")
        await bot.app.supervisor.wait_quiet(5)
        total = len(bot.received("ping")) + len(bot.received("pong"))
        assert total <= 4, total  # the person's nudge plus at most 3 agent hops
    finally:
        await bot.stop()


async def test_r4_2_missing_agent_command_is_a_clear_failure_not_a_crash(tmp_path: Path) -> None:
    """Bad input: an agent command that does not exist is a counted failure with a notice."""
    bot = await start_bot(tmp_path, agent={"command": ["/nonexistent/claude"]})
    try:
        await bot.say("general", "hello")
        await until(lambda: any("cooling down" in t for t in bot.rec.in_room("general")),
                    what="notice")
        h = await bot.app.store.health("lead:general")
        assert h.failures == 1 and "not found" in h.last_error
    finally:
        await bot.stop()


async def test_r10_1_r5_8_garbage_lines_and_a_1mb_message(tmp_path: Path) -> None:
    """Bad input: a non-JSON stdout line is skipped; a 1 MB message is delivered whole (R10.1),
    and its 1 MB echo posts at most the turn's 40,000 characters, then one line saying how
    much was withheld (R5.8)."""
    bot = await start_bot(tmp_path)
    try:
        await bot.say("general", "fake:garbage hello")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="echo")
        big = "x" * 1_000_000
        await bot.say("general", big)
        await until(lambda: len(bot.received("general")) == 2, what="big delivered")
        assert big in bot.received("general")[1]["text"]
        await until(lambda: any("were withheld" in t for t in bot.rec.in_room("general")),
                    what="the withheld line")
        posted = "".join(bot.rec.in_room("general"))
        assert 39_000 <= posted.count("x") <= 40_000
        assert "more characters of this answer were withheld" in posted
    finally:
        await bot.stop()


async def test_r1_6_a_persons_dm_is_not_copied_into_another_persons_dm(tmp_path: Path) -> None:
    """R1.6: worker output reaches every attached DM, but one person's DM text is not
    relayed into another person's DM with the same worker."""
    bot, slack = await chat_bot(tmp_path)
    try:
        await bot.say("webui", "!task @alice fix the login bug")
        await until(lambda: bot.received("alice"), what="worker")
        await bot.app.on_event(slack_msg("D1", "@alice", sender="U1", name="bob", direct=True))
        await bot.app.on_event(slack_msg("D2", "@alice", sender="U2", name="eve", direct=True))
        await bot.app.on_event(slack_msg("D1", "my password is hunter2", direct=True))
        await until(lambda: any("hunter2" in r["text"] for r in bot.received("alice")),
                    what="delivered to alice")
        await until(lambda: any("got it" in t for t in slack.in_room("D2")),
                    what="alice's answer in eve's DM too")
        assert not any(t.startswith("bob (slack)") for t in slack.in_room("D2"))
        assert "bob (slack): my password is hunter2" in bot.rec.in_room("dm-alice")
    finally:
        await bot.stop()
