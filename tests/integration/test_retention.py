"""Retention through the whole core (R14.6): the in-process bot with `retain_days = 2`, its
fake clock moved on a day at a time, the daily pass seen to run each time."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bot.retention import DAY_S
from crewbridge.bridges.base import Inbound
from tests.integration.harness import Bot, Recorder, until
from tests.support.botproc import write_config

pytestmark = pytest.mark.timeout(90)
PASS = "retention (2 days)"


async def retaining_bot(tmp_path: Path) -> Bot:
    log = tmp_path / "agents.jsonl"
    path = write_config(tmp_path / "crewbridge.toml", agent={"env": {"FAKE_AGENT_LOG": str(log)}},
                        channels=[{"name": "webui"}])
    path.write_text(path.read_text().replace("[bot]\n", "[bot]\nretain_days = 2\n", 1))
    clock = FakeClock(start=time.time())
    recorder = Recorder()
    app = App(load_config(path), clock=clock, bridges={"console": recorder})
    await app.start()
    return Bot(app, clock, recorder, log)


async def message_texts(bot: Bot) -> list[str]:
    return [r[0] for r in await bot.app.store._all("SELECT text FROM messages ORDER BY id")]


async def test_r14_6_a_day_at_a_time_old_talk_goes_idle_workers_are_forgotten_threads_live(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R14.6: a pass at start-up and one a day. Two days on, the first day's talk is gone,
    and a finished task with it; its worker, idle since, is forgotten (row, channel, crew),
    while a worker with an open task stays. A thread whose root is that old but which had a
    reply since keeps its root and goes on working: a new reply there is answered in it."""
    caplog.set_level(logging.INFO, logger="crewbridge.bot.retention")
    bot = await retaining_bot(tmp_path)
    clock = bot.clock

    async def next_day(passes: int) -> None:
        await bot.tick(DAY_S)
        await until(lambda: caplog.text.count(PASS) >= passes, what=f"pass {passes}")

    async def say(text: str, thread: str | None = None) -> None:
        await bot.app.on_event(Inbound("console", "webui", "bob", "bob", text,
                                       f"c-{text}", clock.now(), thread=thread))

    try:
        await until(lambda: PASS in caplog.text, what="the start-up pass")
        await say("first question")
        await say("!task @alice fix login")
        await say("!task @carol long job")
        await until(lambda: bot.received("webui") and bot.received("alice")
                    and bot.received("carol"), what="the lead and both workers")
        await say("!done 1")
        await until(lambda: any("got it — `first question`" in t
                                for t in bot.rec.in_room("webui")), what="the answer")
        await bot.app.supervisor.wait_quiet(10)
        await next_day(2)
        await say("a reply a day later", thread="1")
        await until(lambda: any("a reply a day later" in r["text"] for r in bot.received()),
                    what="the reply delivered")
        await bot.app.supervisor.wait_quiet(10)
        await next_day(3)
        await next_day(4)

        texts = await message_texts(bot)
        assert "first question" in texts  # it roots thread 1, which had a reply since
        assert "a reply a day later" in texts
        assert not any("fix login" in t for t in texts)
        assert [t.assignee for t in await bot.app.store.tasks()] == ["carol"]
        assert await bot.app.store.agent("alice") is None
        assert "dm-alice" not in await bot.app.store.channels()
        assert not bot.app.crew.is_worker("alice") and bot.app.crew.is_worker("carol")
        assert bot.app.supervisor.run_view("alice") is None
        assert "alice forgotten" in caplog.text

        await say("still there?", thread="1")
        await until(lambda: any("got it — `still there?`" in p.text and p.thread is not None
                                for _, p in bot.rec.sent), what="answered in the old thread")
    finally:
        await bot.stop()
