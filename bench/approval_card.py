"""Approval cards against the plain paths, in one run (issue 11, R13.1).

Two figures a person feels when an agent asks to use a tool:

- **card**: from the agent writing its `can_use_tool` request to the card accepted by the
  platform, against a plain post: from the agent writing a turn's `result` (the line that
  makes its answer due) to that answer accepted by the platform;
- **decision**: from a click on the card's Allow handed to the core to the agent reading
  the `control_response`, against a plain message: from a person's message handed to the
  core to the agent reading it.

Set-up: the real App in-process (`bot.app.App`, the real SQLite store in a private temp
directory), one channel bound to one "Slack" room whose bridge is the tests' recording
bridge (`tests.integration.harness.Recorder`, platform `slack`, no post pacing) with the
time of each accepted post added: the Slack bridge of this branch has no buttons yet, so
the emulator's `chat.postMessage` is not in the path, on either side of a comparison. The
agent is the bundled fake agent with its control protocol (`bench/ask_agent.py`: it stamps
every line it writes and reads, so both ends of each figure are real times of one clock,
`CLOCK_MONOTONIC`). Each round is one plain message (`ping bid-p<n>`, answered by an echo)
and one that asks (`fake:ask=Bash:touch_bid-c<n>`, allowed by a click once its card is
there, then answered `ran Bash: …`), in an order that alternates, each waited to its end;
uncounted warm-up rounds first (they spawn the agent).

Run: `.venv/bin/python -m bench.approval_card [--rounds 30] [--warmup 2]`
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import REPO, machine, ms, percentile, print_table, quiet_logs
from bot.app import App
from bot.config import load_config
from bridges.base import Post
from tests.integration.harness import Recorder
from tests.integration.test_approvals import click
from tests.integration.test_threads import person
from tests.support.botproc import short_data_dir, write_config

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

    def when(self, token: str, prefix: str = "") -> int | None:
        return next((ns for ns, text in self.accepted
                     if token in text and text.startswith(prefix)), None)


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


async def plain(app: App, rec: StampedRecorder, events: Events, n: int, into: Figures | None
                ) -> None:
    token = f"bid-p{n}"
    t_in = time.monotonic_ns()
    await app.on_event(person("slack", ROOM, f"ping {token}"))
    accepted = await until(lambda: rec.when(token), f"the answer to {token}")
    read = await until(lambda: events.get("read", "user", f"p{n}"), f"{token} delivered")
    result = await until(lambda: events.get("wrote", "result", f"p{n}"), f"{token}'s result")
    if into is not None:
        into.delivery.append(ms(read - t_in))
        into.post.append(ms(accepted - result))


async def card(app: App, rec: StampedRecorder, events: Events, n: int, into: Figures | None
               ) -> None:
    token = f"bid-c{n}"
    await app.on_event(person("slack", ROOM, f"fake:ask=Bash:touch_{token}"))
    shown = await until(lambda: rec.when(token, "🔐"), f"the card of {token}")
    asked = await until(lambda: events.get("wrote", "control_request", f"c{n}"),
                        f"{token}'s can_use_tool")
    t_click = time.monotonic_ns()
    await app.on_event(click("slack", ROOM, rec.ref_of(ROOM, token), "allow"))
    answered = await until(lambda: events.get("read", "control_response", f"c{n}"),
                           f"{token}'s answer")
    await until(lambda: rec.when(f"ran Bash: touch {token}"), f"{token} run")
    if into is not None:
        into.card.append(ms(shown - asked))
        into.decision.append(ms(answered - t_click))


async def run(rounds: int, warmup: int) -> Figures:
    data_dir = short_data_dir()
    stamps = data_dir / "stamps"
    stamps.mkdir()
    config = load_config(write_config(
        data_dir / "bench.toml", data_dir=data_dir,
        agent={"command": ASK_AGENT, "flush_interval_s": 2, "stop_grace_s": 2,
               "env": {"BENCH_STAMP_DIR": str(stamps)}},
        channels=[{"name": "bench", "slack": [ROOM], "replies": "channel"}],
        extra={"slack": {"bot_token": "xoxb-bench", "app_token": "xapp-bench"}}), env={})
    rec = StampedRecorder(platform="slack")
    app = App(config, bridges={"console": Recorder(), "slack": rec})
    figures = Figures()
    try:
        await app.start()
        events = Events(stamps / "bench.events")
        for n in range(warmup + rounds):
            into = figures if n >= warmup else None
            steps = (plain, card) if n % 2 else (card, plain)
            for step in steps:
                await step(app, rec, events, n, into)
    finally:
        await app.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    return figures


def row(name: str, values: list[float], floor: list[float]) -> list[str]:
    return [name, f"{percentile(values, 50):.2f} ms", f"{percentile(values, 90):.2f} ms",
            f"{percentile(floor, 50):.2f} ms", f"{percentile(floor, 90):.2f} ms",
            f"{percentile(values, 50) / percentile(floor, 50):.2f}x"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.approval_card",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args(argv)
    quiet_logs()
    f = asyncio.run(run(args.rounds, args.warmup))
    print(f"{machine()}; {args.rounds} rounds after {args.warmup} uncounted")
    print_table("approval cards vs the plain paths (fake agent, recording 'slack' bridge)", [
        row("can_use_tool -> card accepted  vs  result -> post accepted", f.card, f.post),
        row("click -> control_response read  vs  message -> message read", f.decision,
            f.delivery),
    ], headers=("figure", "median", "p90", "floor median", "floor p90", "median / floor"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
