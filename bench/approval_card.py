"""Approval cards against the plain paths, in one run (issue 11, R13.1).

Two figures a person feels when an agent asks to use a tool:

- **card**: from the agent writing its `can_use_tool` request to the card accepted by the
  platform, against a plain post: from the agent writing a turn's `result` (the line that
  makes its answer due) to that answer accepted by the platform;
- **decision**: from a click on the card's Allow to the agent reading the
  `control_response`, against a plain message: from a person's message to the agent
  reading it.

The agent is the bundled fake agent with its control protocol (`bench/ask_agent.py`: it
stamps every line it writes and reads, so both ends of each figure are real times of one
clock, `CLOCK_MONOTONIC`). Two set-ups (`--platform`):

- `slack` (default): `crewbridge run` as a subprocess with the real Slack bridge (slack-bolt,
  Socket Mode) against the tests' Slack emulator (`tests/platform/slack/emulator.py`) in
  this process, which notes when it accepted each `chat.postMessage`; a person's message is
  `post_as` (an `events_api` envelope), a click `click` (an `interactive` envelope with
  `block_actions`). The emulator's rate limits are lifted and the bot's `post_interval_s`
  is 0.01 s, so neither side waits on pacing (a person writes at most once per interval);
- `recorder`: the App in-process, its one bridge the tests' recording bridge
  (`tests.integration.harness.Recorder`, platform `slack`, no pacing): the core alone.

Each round is one plain message (`ping bid-p<n>`, answered by an echo) and one that asks
(`fake:ask=Bash:touch_bid-c<n>`, allowed by a click once its card is there, then answered
`ran Bash: …`), in an order that alternates, each waited to its end; uncounted warm-up
rounds first (they spawn the agent).

Run: `.venv/bin/python -m bench.approval_card [--platform slack|recorder] [--rounds 30]
[--warmup 2]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench.common import REPO, machine, ms, percentile, print_table, quiet_logs
from crewbridge.bot.app import App
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import Post
from tests.integration.harness import Recorder
from tests.integration.test_approvals import click
from tests.integration.test_threads import person
from tests.platform.slack.emulator import SlackEmulator
from tests.support.botproc import BotProcess, short_data_dir, write_config

ROOM = "C1"
ASK_AGENT = [sys.executable, str(REPO / "bench" / "ask_agent.py")]
TIMEOUT = 30.0


@dataclass
class StampedRecorder(Recorder):
    """The tests' recording bridge, noting when it accepted each post."""

    accepted: list[tuple[int, str]] = field(default_factory=list)  # (monotonic ns, text)

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        ref = await super().send(room, post, key=key, maybe_sent=maybe_sent)
        self.accepted.append((time.monotonic_ns(), post.text))
        return ref


class Events:
    """The agent's stamps (`bench/ask_agent.py`), read incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.first: dict[tuple[str, str, str], int] = {}  # (way, type, id) -> ns

    def get(self, way: str, kind: str, ident: str) -> int | None:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._offset += end
            for line in data[:end].decode().splitlines():
                ns, w, k, i = line.split()
                self.first.setdefault((w, k, i), int(ns))
        return self.first.get((way, kind, ident))


async def until(value, what: str) -> int:  # type: ignore[no-untyped-def]
    """Poll `value()` until it is not None (the agent and the outbox run meanwhile)."""
    deadline = time.monotonic() + TIMEOUT
    while (got := value()) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.001)
    return got


@dataclass
class Figures:
    card: list[float] = field(default_factory=list)
    post: list[float] = field(default_factory=list)
    decision: list[float] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)


class Side(Protocol):
    """Where people act and posts are accepted: the Slack emulator, or a recording bridge."""

    accepted: list[tuple[int, str]]  # (monotonic ns, text) of each post the platform took

    async def say(self, text: str) -> None: ...

    async def allow(self, token: str) -> None: ...


def when(side: Side, *parts: str) -> int | None:
    """When the first post containing every one of `parts` was accepted."""
    return next((ns for ns, text in side.accepted if all(p in text for p in parts)), None)


class RecorderSide:
    def __init__(self, app: App, rec: StampedRecorder) -> None:
        self.app, self.rec, self.accepted = app, rec, rec.accepted

    async def say(self, text: str) -> None:
        await self.app.on_event(person("slack", ROOM, text))

    async def allow(self, token: str) -> None:
        await self.app.on_event(click("slack", ROOM, self.rec.ref_of(ROOM, token), "allow"))


class SlackSide:
    CHANNEL = "C0WEBUI"

    def __init__(self, emulator: SlackEmulator) -> None:
        self.emulator = emulator
        self.accepted: list[tuple[int, str]] = []
        post_message = emulator._post_message

        async def stamped(params: dict[str, Any]) -> Any:
            answer = await post_message(params)
            self.accepted.append((time.monotonic_ns(), str(params.get("text") or "")))
            return answer

        emulator._post_message = stamped  # type: ignore[method-assign]

    async def say(self, text: str) -> None:
        await self.emulator.post_as("U0ALICE", self.CHANNEL, text)

    async def allow(self, token: str) -> None:
        card = next(p for p in self.emulator.posts(self.CHANNEL)
                    if token in p.text and "🔐" in p.text)
        await self.emulator.click(self.CHANNEL, card.ts, "allow", "U0ALICE")


async def plain(side: Side, events: Events, n: int, into: Figures | None) -> None:
    token = f"bid-p{n}"
    t_in = time.monotonic_ns()
    await side.say(f"ping {token}")
    accepted = await until(lambda: when(side, token), f"the answer to {token}")
    read = await until(lambda: events.get("read", "user", f"p{n}"), f"{token} delivered")
    result = await until(lambda: events.get("wrote", "result", f"p{n}"), f"{token}'s result")
    if into is not None:
        into.delivery.append(ms(read - t_in))
        into.post.append(ms(accepted - result))


async def card(side: Side, events: Events, n: int, into: Figures | None) -> None:
    token = f"bid-c{n}"
    await side.say(f"fake:ask=Bash:touch_{token}")
    shown = await until(lambda: when(side, token, "🔐"), f"the card of {token}")
    asked = await until(lambda: events.get("wrote", "control_request", f"c{n}"),
                        f"{token}'s can_use_tool")
    t_click = time.monotonic_ns()
    await side.allow(token)
    answered = await until(lambda: events.get("read", "control_response", f"c{n}"),
                           f"{token}'s answer")
    await until(lambda: when(side, f"ran Bash: touch {token}"), f"{token} run")
    if into is not None:
        into.card.append(ms(shown - asked))
        into.decision.append(ms(answered - t_click))


def agent_config(stamps: Path) -> dict[str, Any]:
    return {"command": ASK_AGENT, "flush_interval_s": 2, "stop_grace_s": 2,
            "env": {"BENCH_STAMP_DIR": str(stamps)}}


@contextlib.asynccontextmanager
async def recorder_side(data_dir: Path) -> AsyncIterator[Side]:
    config = load_config(write_config(
        data_dir / "bench.toml", data_dir=data_dir, agent=agent_config(data_dir / "stamps"),
        channels=[{"name": "bench", "slack": [ROOM], "replies": "channel"}],
        extra={"slack": {"bot_token": "xoxb-bench", "app_token": "xapp-bench"}}), env={})
    rec = StampedRecorder(platform="slack")
    app = App(config, bridges={"console": Recorder(), "slack": rec})
    try:
        await app.start()
        yield RecorderSide(app, rec)
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def slack_side(data_dir: Path) -> AsyncIterator[Side]:
    lifted = 1e6
    async with SlackEmulator(posts_per_second=lifted, post_burst=int(lifted),
                             updates_per_second=lifted, update_burst=int(lifted)) as emulator:
        emulator.add_user("U0ALICE", "alice.smith", real_name="Alice Smith",
                          display_name="alice")
        emulator.add_channel(SlackSide.CHANNEL, "webui")
        side = SlackSide(emulator)
        config = write_config(
            data_dir / "bench.toml", data_dir=data_dir, agent=agent_config(data_dir / "stamps"),
            channels=[{"name": "bench", "slack": ["#webui"]}],
            extra={"slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                             "app_token": "${SLACK_APP_TOKEN}", "api_url": emulator.api_url,
                             "post_interval_s": 0.01}})
        bot = BotProcess(config, env={"SLACK_BOT_TOKEN": emulator.bot_token,
                                      "SLACK_APP_TOKEN": emulator.app_token},
                         log_level="error")
        try:
            await emulator.wait_until(lambda: emulator.connections > 0, TIMEOUT)
            yield side
            await bot.stop_cleanly()
        finally:
            await asyncio.to_thread(bot.close)


SIDES = {"slack": slack_side, "recorder": recorder_side}


async def run(platform: str, rounds: int, warmup: int) -> Figures:
    data_dir = short_data_dir()
    (data_dir / "stamps").mkdir()
    figures = Figures()
    try:
        async with SIDES[platform](data_dir) as side:
            events = Events(data_dir / "stamps" / "bench.events")
            for n in range(warmup + rounds):
                into = figures if n >= warmup else None
                for step in ((plain, card) if n % 2 else (card, plain)):
                    await step(side, events, n, into)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


def row(name: str, values: list[float], floor: list[float]) -> list[str]:
    return [name, f"{percentile(values, 50):.2f} ms", f"{percentile(values, 90):.2f} ms",
            f"{percentile(floor, 50):.2f} ms", f"{percentile(floor, 90):.2f} ms",
            f"{percentile(values, 50) / percentile(floor, 50):.2f}x"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.approval_card",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--platform", choices=sorted(SIDES), default="slack")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    quiet_logs()
    f = asyncio.run(run(args.platform, args.rounds, args.warmup))
    print(f"{machine()}; {args.rounds} rounds after {args.warmup} uncounted")
    where = {"slack": "crewbridge run, the Slack bridge, the Slack emulator",
             "recorder": "the App in-process, a recording bridge"}[args.platform]
    print_table(f"approval cards vs the plain paths (fake agent; {where})", [
        row("can_use_tool -> card accepted  vs  result -> post accepted", f.card, f.post),
        row("click -> control_response read  vs  message -> message read", f.decision,
            f.delivery),
    ], headers=("figure", "median", "p90", "floor median", "floor p90", "median / floor"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
