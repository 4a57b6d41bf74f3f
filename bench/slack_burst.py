"""Slack burst: N agent posts to one Slack channel at once, through the bot, against a Slack
that allows about one post per second per channel with a small burst (issue 5, R8.3).

Why: an agent can print far faster than Slack accepts posts. Slack answers a channel that
goes over about one post per second with 429 and `Retry-After`; an app that leans on those
429s is throttled harder and its posts arrive late or out of order. crewbridge's outbox paces
each channel itself (`[slack] post_interval_s`, 1 s by default), so the figures to look at are:
every post delivered, in order, none twice, at the paced rate, with zero 429s.

Set-up, all on 127.0.0.1 and in one run:
- the tests' Slack emulator (`tests/platform/slack/emulator.py`), real wire protocol to the
  real slack-bolt (Socket Mode), its per-channel token bucket set to `--rate` posts per second
  with a burst of `--burst`; like Slack, it echoes every bot post back to the app as an event;
- `crewbridge run` as a subprocess with one channel bound to the emulator's channel and
  `post_interval_s = 1 / --rate` (the bot's pace and the emulator's limit scaled together);
- the burst: the channel's lead posting `--count` messages as fast as the control socket
  takes them (`{"op": "post", "agent": …}`, what `crewbridge post` run by the agent sends),
  so nothing but the outbox stands between the burst and Slack.

Times are taken where the emulator accepts each `chat.postMessage` (a bench-only subclass
records `time.monotonic()`); the achieved rate is (posts - 1) / (last - first acceptance).

Run: `.venv/bin/python -m bench.slack_burst [--count 200] [--rate 1] [--burst 3]`
(at the real rate, 200 posts take about 200 s; `--rate 10` is the same run ten times faster).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import itertools
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from bench.common import machine, print_table, verdict
from tests.platform.slack.emulator import SlackEmulator
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

CHANNEL_ID = "C0BURST"
CHANNEL = "burst"
READY_TIMEOUT_S = 30.0
NUMBER = re.compile(r"burst (\d+)")


class TimedSlackEmulator(SlackEmulator):
    """The tests' emulator, also noting when it accepted each post (bench only)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.accepted_at: list[float] = []

    async def _post_message(self, params: dict[str, Any]) -> web.Response:
        before = len(self.state.posts.get(str(params.get("channel", "")), []))
        response = await super()._post_message(params)
        if len(self.state.posts.get(str(params.get("channel", "")), [])) > before:
            self.accepted_at.append(time.monotonic())
        return response


# --- numbers and output ----------------------------------------------------------------------






# --- the run ---------------------------------------------------------------------------------


async def until(predicate: Any, what: str, bot: BotProcess, timeout: float) -> None:
    """Poll a condition the emulator cannot signal (a file appearing), failing with stderr."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline or bot.proc.poll() is not None:
            raise RuntimeError(f"timed out waiting for {what}\n{bot.stderr[-3000:]}")
        await asyncio.sleep(0.05)


async def run(count: int, rate: float, burst: int) -> int:
    interval = 1.0 / rate
    emulator = TimedSlackEmulator(posts_per_second=rate, post_burst=burst)
    await emulator.start()
    emulator.add_channel(CHANNEL_ID, CHANNEL)
    work = Path(tempfile.mkdtemp(prefix="bench-slack-", dir="/tmp"))
    data_dir = short_data_dir()
    config = write_config(
        work / "crewbridge.toml", data_dir=data_dir,
        channels=[{"name": CHANNEL, "slack": [CHANNEL_ID]}],
        extra={"slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                         "app_token": "${SLACK_APP_TOKEN}", "api_url": emulator.api_url,
                         "post_interval_s": interval}})
    bot = BotProcess(config, env={"SLACK_BOT_TOKEN": emulator.bot_token,
                                  "SLACK_APP_TOKEN": emulator.app_token})
    socket = data_dir / "control.sock"
    try:
        await until(lambda: emulator.connections > 0 and socket.exists(),
                    "the bot to connect to the emulator", bot, READY_TIMEOUT_S)

        # The lead posts the burst itself, over the control socket with its own token
        # (R10.4), as fast as the socket takes them: what `crewbridge post` in a loop does.
        await emulator.post_as("U0ALICE", CHANNEL_ID, f"please fake:burst={count},{CHANNEL}")
        expected_s = (count - 1) * interval
        try:
            await emulator.wait_until(
                lambda: sum("burst" in p.text for p in emulator.posts(CHANNEL_ID)) >= count,
                timeout=expected_s * 2 + 60)
        except TimeoutError:
            print(f"not every post arrived; bot stderr:\n{bot.stderr[-3000:]}", file=sys.stderr)
        posts = [p.text for p in emulator.posts(CHANNEL_ID)]
    finally:
        code = await asyncio.to_thread(bot.terminate)
        await asyncio.to_thread(bot.close)
        await emulator.stop()
        cleanup_data_dir(data_dir)
        cleanup_data_dir(work)
        if code != 0:
            print(f"crewbridge exited {code}: {bot.stderr[-2000:]}", file=sys.stderr)

    numbers = [int(m[1]) for p in posts if (m := NUMBER.search(p))]
    times = emulator.accepted_at
    span = times[-1] - times[0] if len(times) > 1 else float("nan")
    achieved = (len(times) - 1) / span if len(times) > 1 else float("nan")
    gaps = [b - a for a, b in itertools.pairwise(times)]
    in_order = numbers == sorted(numbers)
    delivered = len(set(numbers))
    twice = len(numbers) - delivered
    limited = emulator.rate_limited
    rows = [
        ("posts delivered", f"{delivered} of {count}", f"{count} ({verdict(delivered == count)})"),
        ("in order", str(in_order), f"True ({verdict(in_order)})"),
        ("posted twice", str(twice), f"0 ({verdict(twice == 0)})"),
        ("429s from the emulator", str(limited), f"0 ({verdict(limited == 0)})"),
        ("chat.postMessage calls", str(len(emulator.calls("chat.postMessage"))),
         f"{count + 1} (the burst, and the lead's answer)"),
        ("first to last post", f"{span:.1f} s", f"~{expected_s:.1f} s at the pace"),
        ("achieved rate", f"{achieved:.3f} posts/s", f"<= {rate:g}/s, close to it"),
        ("gap between posts min / median / max",
         f"{min(gaps):.3f} / {statistics.median(gaps):.3f} / {max(gaps):.3f} s" if gaps else "-",
         f">= {interval:g} s"),
    ]
    print_table(f"Slack burst: {count} agent posts, one channel, limit {rate:g}/s burst {burst}, "
                f"post_interval_s {interval:g}", rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.slack_burst",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--count", type=int, default=200, help="posts in the burst")
    p.add_argument("--rate", type=float, default=1.0,
                   help="posts per second per channel: the emulator's limit and the bot's "
                        "pace (post_interval_s = 1/rate); Slack's is about 1")
    p.add_argument("--burst", type=int, default=3, help="the emulator's burst allowance")
    args = p.parse_args(argv)
    if args.count < 2 or args.rate <= 0 or args.burst < 1:
        p.error("--count must be at least 2, --rate positive, --burst at least 1")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.slack_burst, {now}\n{machine()}\n"
          f"load average at start {os.getloadavg()[0]:.2f}")
    code = asyncio.run(run(args.count, args.rate, args.burst))
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
