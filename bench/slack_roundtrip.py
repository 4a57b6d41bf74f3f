"""Slack round trip: a person's message → the bot → the fake agent → the bot's answer in that
message's thread, through the tests' Slack emulator, beside bare slack-bolt bots on the same
emulator, in one run (issue 10, R12.1).

Why floors: a Slack round trip is mostly the Socket Mode envelope in, bolt's dispatch and
the `chat.postMessage` out, which any bolt app pays. The thinnest bolt app on the same
emulator, interleaved message by message, isolates what crewbridge adds and gives a ratio
that does not depend on the machine. Two floors, because crewbridge's answer comes from an
agent process and a bare echo has none:

- **echo**: a bare slack-bolt `AsyncApp` in Socket Mode whose `message` listener answers
  `echo: <text>` in the message's thread with `chat_postMessage` (the issue's floor; target
  crewbridge ≤ 1.3× its median);
- **echo+agent**: the same app, which hands each message to the same fake agent crewbridge
  runs (`crewbridge-fake-agent`, one long-lived stream-json session, as crewbridge keeps
  one) and posts the agent's answer: the fair floor, since the agent's own time is in both.
  It reports the agent's time (stdin written → `result` read), so what crewbridge adds on
  top of the agent is printed as well.

Set-up, all on 127.0.0.1 and in one process for the people side:
- three instances of the tests' emulator (`tests/platform/slack/emulator.py`: one app per
  workspace, so one per bot), Slack's per-channel limit of 1 post/s burst 3 in each; like
  Slack, each echoes every bot post back to its app as an event, which each bot drops;
- crewbridge: `crewbridge run` as a subprocess, Socket Mode, one channel bound, the fake
  agent as its lead, `post_interval_s` at its default of 1 s, `replies = "thread"` (the
  default), `flush_interval_s` at the spec's default of 2 s (a turn's text is posted at
  turn end, never on the timer);
- the floors: each a subprocess (this module with `--echo-bot`), like crewbridge, so none
  shares the emulators' event loop.

Each sample is closed-loop: the clock starts just before the emulator sends the person's
message (`ping rt-<n>`) over the socket, and stops when the emulator accepts the bot's
`chat.postMessage` whose `thread_ts` is that message's `ts`. The bots alternate message by
message (the order rotating every round), after an uncounted warm-up (it spawns the
agents). A person writes to a channel at most once per `post_interval_s`: crewbridge's
outbox paces each channel at that interval (R8.3), which a bare bot does not, and a round
trip that waited on pacing would measure the pace, not the bot.

On loopback the emulator answers in a fraction of a millisecond; Slack, seen from a
server, takes tens to hundreds. `--latency-ms N` makes each emulator wait N ms before every
Web API answer and every event it sends (the same for all three bots): the ratio read
against a platform that takes time. The default, 0, is bare loopback, where the bot's own
milliseconds weigh the most.

Run: `.venv/bin/python -m bench.slack_roundtrip [--count 50] [--warmup 3] [--latency-ms 0]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import FloorBot, machine, percentile, print_table
from tests.platform.slack.emulator import SlackEmulator
from tests.support.botproc import (
    FAKE_AGENT,
    BotProcess,
    cleanup_data_dir,
    short_data_dir,
    write_config,
)

TARGET_RATIO = 1.3
REPLY_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
PERSON = "U0PERSON"
CHANNEL = "C0BENCH"
BOTS = ("crewbridge", "echo", "echo+agent")
BOT_TOKEN_ENV, APP_TOKEN_ENV = "BENCH_SLACK_BOT_TOKEN", "BENCH_SLACK_APP_TOKEN"


# --- the floors: bare slack-bolt bots (each runs in its own process) ---------------------


class StreamAgent:
    """The fake agent as crewbridge runs it: one stream-json session, one message a turn."""

    def __init__(self, work: Path) -> None:
        self._work = work
        self._proc: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(
            FAKE_AGENT, "-p", "--input-format", "stream-json", "--output-format",
            "stream-json", "--verbose", "--session-id", str(uuid.uuid4()),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=self._work,
            env={**os.environ, "FAKE_AGENT_SESSIONS": str(self._work / "sessions")},
            limit=1 << 20)

    async def ask(self, text: str) -> tuple[str, float]:
        """The agent's answer to `text`, and the seconds from writing it to the result."""
        assert self._proc is not None and self._proc.stdin and self._proc.stdout
        async with self._lock:
            t0 = time.perf_counter()
            line = {"type": "user", "message": {"role": "user", "content": text},
                    "uuid": str(uuid.uuid4())}
            self._proc.stdin.write((json.dumps(line) + "\n").encode())
            await self._proc.stdin.drain()
            while True:
                event = json.loads(await self._proc.stdout.readline())
                if event.get("type") == "result":
                    return str(event.get("result", "")), time.perf_counter() - t0

    async def stop(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            await self._proc.wait()


async def echo_bot(api_url: str, with_agent: bool, times: Path | None) -> int:
    """The thinnest bolt bot that answers in the thread: Socket Mode, one `message`
    listener, `chat_postMessage(thread_ts=…)`; with `with_agent`, the fake agent's answer,
    each agent time (ms) appended to `times`."""
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_bolt.app.async_app import AsyncApp
    from slack_sdk.web.async_client import AsyncWebClient

    client = AsyncWebClient(base_url=api_url, token=os.environ[BOT_TOKEN_ENV])
    app = AsyncApp(client=client)
    work = Path(tempfile.mkdtemp(prefix="bench-echo-", dir="/tmp"))
    agent = StreamAgent(work) if with_agent else None

    @app.event("message")
    async def on_message(event: dict[str, Any]) -> None:
        if event.get("bot_id") or event.get("subtype") not in (None, "thread_broadcast"):
            return
        text = str(event.get("text", ""))
        if agent is None:
            answer = f"echo: {text}"
        else:
            answer, took = await agent.ask(text)
            if times is not None:
                with times.open("a") as f:
                    f.write(f"{took * 1e3:.3f}\n")
        await client.chat_postMessage(channel=event["channel"], text=answer,
                                      thread_ts=event.get("thread_ts") or event["ts"])

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    handler = AsyncSocketModeHandler(app, os.environ[APP_TOKEN_ENV], web_client=client)
    try:
        if agent is not None:
            await agent.start()
        await handler.connect_async()
        print("ready", flush=True)
        await stop.wait()
        return 0
    finally:
        await handler.close_async()
        if agent is not None:
            await agent.stop()
        cleanup_data_dir(work)


# --- the run ---------------------------------------------------------------------------------


class TimedEmulator(SlackEmulator):
    """The tests' emulator, also noting when it accepted the bot's first post in each
    thread (bench only)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answered_at: dict[str, float] = {}  # thread root ts -> monotonic time
        self.answered = asyncio.Condition()

    async def _post_message(self, params: dict[str, Any]) -> web.Response:
        response = await super()._post_message(params)
        thread = params.get("thread_ts")
        posts = self.posts(str(params.get("channel", "")))
        if thread and posts and posts[-1].thread_ts == thread:
            self.answered_at.setdefault(str(thread), time.perf_counter())
            async with self.answered:
                self.answered.notify_all()
        return response


class EchoProcess(FloorBot):
    """A floor bot as a subprocess, like crewbridge."""

    def __init__(self, emulator: SlackEmulator, with_agent: bool, times: Path) -> None:
        super().__init__("bench.slack_roundtrip", [
            "--echo-bot", emulator.api_url,
            *(["--with-agent", str(times)] if with_agent else [])],
            {BOT_TOKEN_ENV: emulator.bot_token, APP_TOKEN_ENV: emulator.app_token})


async def round_trip(emulator: TimedEmulator, token: str) -> float:
    """The person writes `ping <token>`; seconds until the bot's answer is in its thread."""
    t0 = time.perf_counter()
    delivery = await emulator.post_as(PERSON, CHANNEL, f"ping {token}")
    root = delivery.payload["event"]["ts"]
    async with emulator.answered:
        await asyncio.wait_for(emulator.answered.wait_for(lambda: root in emulator.answered_at),
                               REPLY_TIMEOUT_S)
    return emulator.answered_at[root] - t0


def new_emulator(latency_s: float) -> TimedEmulator:
    emulator = TimedEmulator()
    emulator.latency_s = latency_s
    emulator.add_user(PERSON, "person", display_name="person")
    emulator.add_channel(CHANNEL, "bench")
    return emulator


async def measure(work: Path, count: int, warmup: int, interval: float,
                  latency_s: float) -> int:
    emulators = {name: await new_emulator(latency_s).start() for name in BOTS}
    data_dir = short_data_dir()
    crew = emulators["crewbridge"]
    config = write_config(
        work / "crewbridge.toml", data_dir=data_dir, agent={"flush_interval_s": 2},
        channels=[{"name": "bench", "slack": [CHANNEL]}],
        extra={"slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                         "app_token": "${SLACK_APP_TOKEN}", "api_url": crew.api_url,
                         "post_interval_s": interval}})
    agent_times = work / "agent-times.txt"
    bot: BotProcess | None = None
    floors: list[EchoProcess] = []
    samples: dict[str, list[float]] = {name: [] for name in BOTS}
    try:
        bot = BotProcess(config, env={"SLACK_BOT_TOKEN": crew.bot_token,
                                      "SLACK_APP_TOKEN": crew.app_token})
        floors = [EchoProcess(emulators["echo"], False, agent_times),
                  EchoProcess(emulators["echo+agent"], True, agent_times)]
        await asyncio.to_thread(bot.wait_ready, READY_TIMEOUT_S)
        for floor in floors:
            await asyncio.to_thread(floor.wait_ready)
        for emulator in emulators.values():
            await emulator.wait_connected(timeout=READY_TIMEOUT_S)
        last: dict[str, float] = {}
        for i in range(warmup + count):
            for name in BOTS[i % 3:] + BOTS[:i % 3]:
                # a person's pace: never within the channel's post interval (module doc)
                await asyncio.sleep(max(0.0, last.get(name, 0.0) + interval
                                        - time.perf_counter()))
                try:
                    took = await round_trip(emulators[name], f"rt-{i}")
                except TimeoutError:
                    stderr = bot.stderr[-3000:] if name == "crewbridge" else ""
                    print(f"{name}: no answer to message {i}\n{stderr}", file=sys.stderr)
                    return 1
                last[name] = time.perf_counter()
                if i >= warmup:
                    samples[name].append(took)
    finally:
        for floor in floors:
            await asyncio.to_thread(floor.stop)
        if bot is not None:
            code = await asyncio.to_thread(bot.terminate)
            await asyncio.to_thread(bot.close)
            if code != 0:
                print(f"crewbridge exited {code}: {bot.stderr[-2000:]}", file=sys.stderr)
        for emulator in emulators.values():
            await emulator.stop()
        cleanup_data_dir(data_dir)
    agent_ms = [float(x) for x in agent_times.read_text().split()][warmup:]
    report(samples, agent_ms, emulators)
    return 0


def report(samples: dict[str, list[float]], agent_ms: list[float],
           emulators: dict[str, TimedEmulator]) -> None:
    def row(name: str) -> list[str]:
        s = samples[name]
        return [name, str(len(s)), f"{percentile(s, 50) * 1e3:.1f}",
                f"{percentile(s, 90) * 1e3:.1f}", f"{min(s) * 1e3:.1f}", f"{max(s) * 1e3:.1f}"]

    print_table("Slack round trip, person -> bot -> answer in the message's thread (ms)",
                [row(name) for name in ("echo", "echo+agent", "crewbridge")]
                + [["(the fake agent's own time, in echo+agent)", str(len(agent_ms)),
                    f"{percentile(agent_ms, 50):.1f}", f"{percentile(agent_ms, 90):.1f}",
                    f"{min(agent_ms):.1f}", f"{max(agent_ms):.1f}"]],
                ["bot", "n", "median", "p90", "min", "max"])
    median = {name: percentile(s, 50) for name, s in samples.items()}
    p90 = {name: percentile(s, 90) for name, s in samples.items()}
    ratio = median["crewbridge"] / median["echo"]
    verdict = "met" if ratio <= TARGET_RATIO else "MISSED"
    limited = sum(e.rate_limited for e in emulators.values())
    print_table("crewbridge against the floors", [
        ["median ratio (crewbridge / echo)", f"{ratio:.2f}x", f"<= {TARGET_RATIO}x ({verdict})"],
        ["p90 ratio (crewbridge / echo)", f"{p90['crewbridge'] / p90['echo']:.2f}x", ""],
        ["median ratio (crewbridge / echo+agent)",
         f"{median['crewbridge'] / median['echo+agent']:.2f}x", "the fair floor"],
        ["median added by crewbridge over echo+agent",
         f"{(median['crewbridge'] - median['echo+agent']) * 1e3:.1f} ms", ""],
        ["429s from the emulators", str(limited), "0"]])


async def run(count: int, warmup: int, interval: float, latency_s: float) -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-slackrt-", dir="/tmp"))
    try:
        return await measure(work, count, warmup, interval, latency_s)
    finally:
        cleanup_data_dir(work)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slack_roundtrip",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--count", type=int, default=50, help="measured messages per bot")
    p.add_argument("--warmup", type=int, default=3, help="uncounted messages per bot first")
    p.add_argument("--interval", type=float, default=1.0,
                   help="crewbridge's post_interval_s, and the least time between two "
                        "messages to one bot (Slack's pace: 1 s)")
    p.add_argument("--latency-ms", type=float, default=0.0,
                   help="the network and Slack's own time, each way: every event and every "
                        "Web API answer of the emulators waits this long (0: loopback alone)")
    p.add_argument("--echo-bot", metavar="API_URL", help=argparse.SUPPRESS)
    p.add_argument("--with-agent", metavar="TIMES_FILE", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo_bot:
        times = Path(args.with_agent) if args.with_agent else None
        return asyncio.run(echo_bot(args.echo_bot, times is not None, times))
    if args.count < 1 or args.warmup < 1:
        p.error("--count and --warmup must be at least 1")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.slack_roundtrip, {now}\n{machine()}\n"
          f"latency each way {args.latency_ms:g} ms\n"
          f"load average at start {os.getloadavg()[0]:.2f}")
    code = asyncio.run(run(args.count, args.warmup, args.interval, args.latency_ms / 1e3))
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return code


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
