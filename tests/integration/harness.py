"""An in-process bot with a fake clock and real fake-agent processes.

Policy timers (cooldowns of 120 s, breakers of 600 s, idle stops of 30 min) run on a
`FakeClock` that the test advances; the agents are real subprocesses answering in real
time. Tests wait on conditions (`until`), never for a fixed time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import EventSink, Inbound, Post, ThreadRef
from tests.support.botproc import write_config

_ids = itertools.count(1)
SETTLE_ROUNDS = 20
"""Event-loop rounds that let the bot read a pipe's waiting lines (no time passes)."""


@dataclass
class Recorder:
    """A bridge that records what the bot posts. As `console` it is bound to every channel."""

    platform: str = "console"
    post_interval_s: float = 0.0
    posts: list[tuple[str, str]] = field(default_factory=list)  # (room, `author: text`)
    sent: list[tuple[str, Post]] = field(default_factory=list)

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def resolve_room(self, ref: str) -> str:
        return ref.lstrip("#")

    edits_per_minute: float | None = None
    edits: list[tuple[str, str, Post]] = field(default_factory=list)  # (room, ref, post)
    deleted: list[tuple[str, str]] = field(default_factory=list)
    reactions: list[tuple[str, str, str, bool]] = field(default_factory=list)
    told: list[tuple[str, str, str]] = field(default_factory=list)  # (room, user, text)
    typed: list[tuple[str, bool]] = field(default_factory=list)

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        self.posts.append((room, post.line))
        self.sent.append((room, post))
        return f"{self.platform}-{len(self.sent)}"

    async def edit(self, room: str, ref: str, post: Post) -> None:
        self.edits.append((room, ref, post))

    async def delete(self, room: str, ref: str) -> None:
        self.deleted.append((room, ref))

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        self.reactions.append((room, ref, emoji, on))

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        self.told.append((room, user, text))

    async def typing(self, room: str, on: bool) -> None:
        self.typed.append((room, on))

    def ref_of(self, room: str, text: str) -> str:
        """The id `send` gave the latest post in `room` whose text contains `text`."""
        for i in range(len(self.sent) - 1, -1, -1):
            if self.sent[i][0] == room and text in self.sent[i][1].text:
                return f"{self.platform}-{i + 1}"
        raise AssertionError(f"no post with {text!r} in {room}")

    async def stop(self) -> None:
        return None

    def in_room(self, room: str) -> list[str]:
        return [t for r, t in self.posts if r == room]


async def until(cond: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Wait for a condition that real processes will make true; fail clearly on timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await asyncio.sleep(0.01)


class Bot:
    """An `App` under test, with its clock and its recorded posts."""

    def __init__(self, app: App, clock: FakeClock, recorder: Recorder, log: Path):
        self.app = app
        self.clock = clock
        self.rec = recorder
        self.log = log

    async def say(self, room: str, text: str, sender: str = "alice") -> None:
        await self.app.on_event(Inbound("console", room, sender, sender, text,
                                        f"t-{next(_ids)}", time.time()))

    def received(self, agent: str | None = None) -> list[dict]:
        """What agents read on stdin, in order (the fake agent's FAKE_AGENT_LOG)."""
        if not self.log.exists():
            return []
        rows = []
        for line in self.log.read_text().splitlines(keepends=True):
            if line.endswith("\n"):  # the last line may still be being written
                rows.append(json.loads(line))
        return [r for r in rows if agent is None or r.get("agent") == agent]

    async def tick(self, seconds: float) -> None:
        """Advance fake time and let the supervisor's timers run.

        Output the agents wrote before the jump is read first: read during it, it would be
        stamped with a time inside the jump (the timer's sleep wakes at its deadlines there)
        and look like output that came later, so a hung turn would seem to have just spoken.
        """
        for _ in range(SETTLE_ROUNDS):
            await asyncio.sleep(0)
        await self.clock.advance(seconds)
        await self.app.supervisor.tick()

    async def stop(self) -> None:
        await self.app.stop()


async def start_bot(tmp_path: Path, *, agent: dict | None = None,
                    channels: list[dict] | None = None, extra: dict | None = None,
                    data_dir: Path | None = None, clock: FakeClock | None = None) -> Bot:
    log = tmp_path / "agents.jsonl"
    agent_cfg = {"env": {"FAKE_AGENT_LOG": str(log)}, **(agent or {})}
    config = load_config(write_config(tmp_path / "crewbridge.toml", data_dir=data_dir,
                                      agent=agent_cfg, channels=channels, extra=extra))
    clock = clock or FakeClock(start=time.time())
    recorder = Recorder()
    app = App(config, clock=clock, bridges={"console": recorder})
    await app.start()
    return Bot(app, clock, recorder, log)
