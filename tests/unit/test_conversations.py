"""Where an agent's text goes (R5.1, R1.6, R12.4): `bot.conversations.Conversations`.

A real store in a temporary directory (the look-ups are the point), the crew and the rooms
as plain data: Slack C1 bound to #webui, a Slack DM attached to alice, no console.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crewbridge.bot.config import AdminConfig, BotConfig, ChannelConfig, Config, ConsoleConfig
from crewbridge.bot.conversations import Conversations
from crewbridge.bot.crew import Crew
from crewbridge.bot.model import ChannelKind, Nudge, RoomRef
from crewbridge.bot.rooms import Rooms, Wanted
from crewbridge.bot.store import Store
from crewbridge.bridges.base import AuthorRole
from crewbridge.supervisor.ports import AgentConfig, Conversation

CONFIG = Config(Path("c.toml"), BotConfig(), AgentConfig(), (ChannelConfig("webui"),),
                AdminConfig(), None, None, ConsoleConfig())
CHANNELS = {"general": ChannelKind.GENERAL, "ops": ChannelKind.ADMIN,
            "webui": ChannelKind.TOPIC, "dm-alice": ChannelKind.DM, "dm-carol": ChannelKind.DM}


@pytest.fixture
async def convs(tmp_path: Path) -> AsyncIterator[Conversations]:
    store = await Store.open(tmp_path / "s.db")
    rooms = Rooms(console=False, dms={RoomRef("slack", "D-alice"): "alice"})
    assert rooms.bind(Wanted("webui", "slack", "C1"), "C1") is None
    crew = Crew(CONFIG, CHANNELS, workers=["alice", "carol"])
    try:
        yield Conversations(store, rooms, crew, CONFIG)
    finally:
        await store.close()


async def open_task(c: Conversations, assignee: str) -> int:
    """A task in #webui for `assignee`, from the CLI (its thread under its own post)."""
    def first(task):  # type: ignore[no-untyped-def]
        return Nudge(assignee, "do it", 0, "webui"), c.said(Conversation("webui"), "crewbridge",
                                                            "Task", only=RoomRef("slack", "C1"))
    task = await c.store.create_task("do it", "webui", assignee, "webui", 1.0, first=first)
    c.crew.task_opened(assignee, "webui")
    assert task.thread is not None
    return task.thread


def rooms_of(said: list) -> list[tuple[str, int | None, tuple]]:
    return [(s.channel, s.thread, s.rooms) for s in said]


async def test_r5_1_a_leads_turn_goes_to_its_conversation(convs: Conversations) -> None:
    where, said = await convs.agent_said("webui", Conversation("webui", 5), "hi")
    assert where == Conversation("webui", 5)
    assert rooms_of(said) == [("webui", 5, (("slack", "C1"),))]
    assert said[0].role is AuthorRole.LEAD


async def test_r12_4_r1_6_a_workers_turn_goes_to_its_thread_and_her_dms(
        convs: Conversations) -> None:
    """R12.4, R1.6: the task thread in the topic room, and her attached DM at the top level;
    a turn that answers no one goes to her task thread (her home)."""
    thread = await open_task(convs, "alice")
    for asked in (Conversation("webui", thread), None):
        where, said = await convs.agent_said("alice", asked, "working")
        assert where == Conversation("webui", thread)
        assert rooms_of(said) == [("webui", thread, (("slack", "C1"),)),
                                  ("dm-alice", None, (("slack", "D-alice"),))]
        assert {s.role for s in said} == {AuthorRole.WORKER}
    _, cli = await convs.agent_said("alice", Conversation("webui"), "posted", turn=False)
    assert rooms_of(cli) == [("webui", None, (("slack", "C1"),))]  # her `crewbridge post`


async def test_r5_1_output_no_room_would_show_goes_to_the_task_thread_else_general(
        convs: Conversations, caplog: pytest.LogCaptureFixture) -> None:
    """R5.1: carol's DM channel is shown nowhere; her answer there goes to her task's thread
    in the topic room; an agent with no task and nowhere to post goes to #general's top
    level (here also shown nowhere: the post is stored and the log says how to fix it)."""
    thread = await open_task(convs, "carol")
    where, said = await convs.agent_said("carol", Conversation("dm-carol"), "hello?")
    assert where == Conversation("dm-carol")
    assert rooms_of(said) == [("webui", thread, (("slack", "C1"),))]
    _, lost = await convs.agent_said("nobody", Conversation("dm-nobody"), "x")
    assert rooms_of(lost) == [("general", None, ())]
    assert "bind the general channel" in caplog.text
