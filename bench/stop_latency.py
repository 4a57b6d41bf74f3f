"""Time from `!stop` to the interrupted turn's `result`, with the real Claude CLI (R13.6).

A person sends `!stop` while an agent's reply streams; the bot sends the CLI `interrupt`,
the CLI ends the turn with an error `result` (`aborted_streaming`) and the bot says who
stopped it. Measured with the real Claude Code CLI bundled in `claude-agent-sdk`, against
the agent tests' loopback Messages API streaming a long reply slowly (60 chunks, 0.25 s
apart), so every stop lands mid-stream:

- **bot**: the real App in-process (`bot.app.App`, real store, the CLI as `[agent] command`
  with the flags crewbridge gives it, `--permission-prompt-tool stdio` included), one
  channel on a recording "Slack" bridge (`bench.approval_card.StampedRecorder`); from the
  person's `!stop` handed to the core to the bot reading the CLI's `result` line (a tap on
  `supervisor.session.parse_line`), and to the "⏹ … stopped by …" line accepted by the
  bridge (what the person sees);
- **floor**: the same CLI driven directly (`tests.agent.claude_cli.Claude`), `interrupt`
  written on its stdin → its `result` read: what the CLI itself takes.

Each side keeps one process for all its runs (the session lives on after a stop, which is
the point of R13.6); the sides alternate run by run after one uncounted run each.

Run: `.venv/bin/python -m bench.stop_latency [--runs 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.approval_card import ROOM, StampedRecorder, until
from bench.common import machine, ms, print_table, quiet_logs
from crewbridge.bot.app import App
from crewbridge.bot.config import load_config
from crewbridge.supervisor import session as session_module
from tests.agent.claude_cli import Claude
from tests.agent.messages_api import MessagesAPI, Text, bundled_claude
from tests.integration.harness import Recorder
from tests.integration.test_threads import person
from tests.support.botproc import short_data_dir, write_config

RESULT = re.compile(rb'"type":\s*"result"')


def essay() -> Text:
    return Text("a very long essay " * 30, chunks=60, delay=0.25)


class ResultTap:
    """When the bot's sessions read a `result` line (the product code is not changed)."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._orig: Callable | None = None

    def __enter__(self) -> ResultTap:
        orig = self._orig = session_module.parse_line
        seen = self.seen

        def parse_line(line: bytes):  # type: ignore[no-untyped-def]
            if RESULT.search(line):
                seen.append(time.monotonic_ns())
            return orig(line)

        session_module.parse_line = parse_line  # type: ignore[assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        session_module.parse_line = self._orig  # type: ignore[assignment]


class BotSide:
    def __init__(self, api: MessagesAPI, claude_bin: Path, home: Path) -> None:
        self.api = api
        self.data_dir = short_data_dir()
        work = home / "bot-work"
        work.mkdir()
        config = load_config(write_config(
            self.data_dir / "bench.toml", data_dir=self.data_dir,
            agent={"command": [str(claude_bin)], "workdir": str(work), "stop_grace_s": 5,
                   "env": api.env(home / "bot-home")},
            channels=[{"name": "bench", "slack": [ROOM], "replies": "channel"}],
            extra={"slack": {"bot_token": "xoxb-bench", "app_token": "xapp-bench"}}), env={})
        self.rec = StampedRecorder(platform="slack")
        self.app = App(config, bridges={"console": Recorder(), "slack": self.rec})
        self.tap = ResultTap()
        self.runs = 0
        self.pids: set[int | None] = set()

    async def one(self) -> tuple[float, float]:
        """(ms to the result read, ms to the stop's line accepted)."""
        self.runs += 1
        self.api.reply(essay())
        count = len(self.api.message_requests) + 1
        await self.app.on_event(person("slack", ROOM, f"write me an essay, run {self.runs}"))
        await self.api.wait_for_requests(count, timeout=60)
        view = self.app.supervisor.run_view("bench")
        self.pids.add(view.pid if view else None)
        results, shown = len(self.tap.seen), len(self.rec.accepted)
        t0 = time.monotonic_ns()
        await self.app.on_event(person("slack", ROOM, "!stop"))
        result = await until(lambda: self.tap.seen[results] if len(self.tap.seen) > results
                             else None, "the result")
        said = await until(lambda: next((ns for ns, text in self.rec.accepted[shown:]
                                         if text.startswith("⏹")), None), "the stop's line")
        return ms(result - t0), ms(said - t0)


class FloorSide:
    def __init__(self, api: MessagesAPI, claude_bin: Path, home: Path) -> None:
        self.api, self.claude_bin, self.home = api, claude_bin, home
        self.claude: Claude | None = None
        self.runs = 0

    async def start(self) -> None:
        work = self.home / "floor-work"
        work.mkdir()
        self.claude = await Claude.start(self.claude_bin, self.api.env(self.home / "floor-home"),
                                         work, "--session-id", str(uuid.uuid4()),
                                         "--permission-prompt-tool", "stdio")
        await self.claude.write({"type": "control_request", "request_id": "init_1",
                                 "request": {"subtype": "initialize", "hooks": None}})
        await self.claude.until(lambda e: e["type"] == "control_response")

    async def one(self) -> float:
        assert self.claude is not None
        self.runs += 1
        self.api.reply(essay())
        count = len(self.api.message_requests) + 1
        await self.claude.send(f"write me an essay, run {self.runs}")
        await self.api.wait_for_requests(count, timeout=60)
        t0 = time.monotonic_ns()
        await self.claude.write({"type": "control_request", "request_id": f"int_{self.runs}",
                                 "request": {"subtype": "interrupt"}})
        events = await self.claude.until(lambda e: e["type"] == "result")
        t1 = time.monotonic_ns()
        if events[-1].get("terminal_reason") != "aborted_streaming":
            raise RuntimeError(f"not an interrupted turn: {events[-1]}")
        return ms(t1 - t0)


async def run(runs: int) -> tuple[list[float], list[float], list[float], str]:
    claude_bin = bundled_claude()
    home = Path(tempfile.mkdtemp(prefix="crewbridge-stop-bench-"))
    bot_result: list[float] = []
    bot_said: list[float] = []
    floor: list[float] = []
    async with MessagesAPI() as api:
        bot, direct = BotSide(api, claude_bin, home), FloorSide(api, claude_bin, home)
        try:
            with bot.tap:
                await bot.app.start()
                await direct.start()
                for n in range(runs + 1):
                    for side in ((bot, direct) if n % 2 else (direct, bot)):
                        if side is bot:
                            result, said = await bot.one()
                            if n:
                                bot_result.append(result)
                                bot_said.append(said)
                        elif n:
                            floor.append(await direct.one())
                        else:
                            await direct.one()
        finally:
            await bot.app.stop()
            if direct.claude is not None:
                await direct.claude.stop()
            shutil.rmtree(bot.data_dir, ignore_errors=True)
            shutil.rmtree(home, ignore_errors=True)
    cli = subprocess.run([str(claude_bin), "--version"], capture_output=True, text=True,
                         check=True).stdout.strip()
    return bot_result, bot_said, floor, f"{cli}; the bot's agent pids over all runs: {bot.pids}"


def row(name: str, values: list[float]) -> list[str]:
    return [name, f"{statistics.median(values):.1f} ms", f"{max(values):.1f} ms"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.stop_latency",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    quiet_logs()
    bot_result, bot_said, floor, about = asyncio.run(run(args.runs))
    print(f"{machine()}; {about}; {args.runs} runs each after 1 uncounted")
    print_table("!stop while the real CLI streams a reply", [
        row("bot: !stop -> the CLI's result read", bot_result),
        row("bot: !stop -> '⏹ … stopped by …' accepted", bot_said),
        row("floor: interrupt written -> result read (the CLI alone)", floor),
    ], headers=("figure", "median", "max"))
    ratio = statistics.median(bot_result) / statistics.median(floor)
    print(f"(bot / floor at the median: {ratio:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
