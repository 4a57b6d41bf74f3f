"""Inbound throughput: messages stored and routed per second through the whole core.

Set-up: `--channels` topic channels, each with its lead already running (one warm-up message
each, waited for). Then `--messages` person messages go round-robin into those channels
through `App.on_event`, one after another, as one bridge delivers them (a bridge awaits the
sink for every event in order). Each is stored (SQLite, WAL, the real store) with its nudge
before `on_event` returns, then relayed and routed; the lead gets the nudge on stdin and
answers, and that answer is posted through the outbox to the memory bridge.

Figures:
- core rate: messages / time until the last `on_event` returned (stored and routed);
- delivered rate: messages / time until the last agent has read its last nudge on stdin;
- settled rate: messages / time until every agent answer has been posted too;
- per-message wall and CPU cost (the bot process's CPU: event loop + the aiosqlite thread),
  the agents' CPU per message, and the rate this machine could reach if it were CPU-bound:
  the bot's Python runs on one core at a time (GIL) and the agents share the cores with it;
- store round trips per message: hand-offs to the SQLite thread (steadier than timings).

`--profile FILE` writes a cProfile of the timed part.

Run: `.venv/bin/python -m bench.inbound_throughput [--messages 5000] [--channels 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import sys
import time

from bench.common import StoreTrips, agents_cpu_s, bench_app, print_table, quiet_logs, verdict

TARGET = 2000.0


async def settle(b, posts: int, quiet_s: float = 0.3) -> None:
    """Wait until at least `posts` posts were sent and none came for `quiet_s`."""
    seen, since = -1, time.monotonic()
    deadline = since + 60
    while time.monotonic() < deadline:
        n = len(b.bridge.sent)
        if n != seen:
            seen, since = n, time.monotonic()
        elif n >= posts and time.monotonic() - since >= quiet_s:
            return
        await asyncio.sleep(0.02)


async def run(messages: int, channels: int, profile: str | None) -> int:
    names = [f"topic{i:02d}" for i in range(channels)]
    async with bench_app(channels=[{"name": n} for n in names]) as b:
        await b.warm_up(names, lambda a: a)
        await settle(b, channels)
        posts_before = len(b.bridge.sent)
        with StoreTrips() as trips:
            prof = cProfile.Profile() if profile else None
            if prof:
                prof.enable()
            agents0 = agents_cpu_s(b.app)
            cpu0, t0 = time.process_time(), time.monotonic_ns()
            for i in range(messages):
                await b.send(names[i % channels], f"please look at item {i} bench#m{i}")
            t_core = time.monotonic_ns()
            cpu_core = time.process_time()
            trips_core = trips.count
            keys = [(names[i % channels], f"m{i}") for i in range(messages)]
            if not await b.stamps.wait(keys, timeout=120, interval=0.02):
                print("not every message reached its agent within 120 s", file=sys.stderr)
                return 1
            t_delivered = max(b.stamps.by_key[k] for k in keys)
            # Every nudge is answered by one echo post; wait until all are posted.
            deadline = time.monotonic() + 120
            while len(b.bridge.sent) - posts_before < messages and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            answered = len(b.bridge.sent) - posts_before
            t_settled = b.bridge.sent[-1][0]
            cpu_settled = time.process_time()
            agents_cpu = agents_cpu_s(b.app) - agents0
            if prof:
                prof.disable()
                prof.dump_stats(profile)
        stored = (await b.app.store._one("SELECT COUNT(*) FROM messages"))[0]

    ncpu = os.cpu_count() or 1
    bot_cpu = (cpu_settled - cpu0) / messages  # CPU seconds per message
    # The bot's Python runs on one core at a time (the GIL); the agents share all of them.
    ceiling = min(1 / bot_cpu, ncpu / (bot_cpu + agents_cpu / messages))
    core_s = (t_core - t0) / 1e9
    rate = messages / core_s
    rows = [
        ("messages", f"{messages} into {channels} channels ({stored} stored in all)", ""),
        ("core rate (stored + routed)", f"{rate:,.0f} msg/s", f">= {TARGET:,.0f} msg/s "
                                                             f"({verdict(rate >= TARGET)})"),
        ("  per message, wall", f"{core_s / messages * 1e6:,.0f} us", ""),
        ("  per message, bot CPU", f"{(cpu_core - cpu0) / messages * 1e6:,.0f} us", ""),
        ("delivered rate (agent read it)", f"{messages / ((t_delivered - t0) / 1e9):,.0f} msg/s",
         ""),
        ("settled rate (answer posted)", f"{messages / ((t_settled - t0) / 1e9):,.0f} msg/s",
         f"({answered}/{messages} answers)"),
        ("  per message, bot CPU, settled", f"{(cpu_settled - cpu0) / messages * 1e6:,.0f} us",
         ""),
        ("  per message, agents' CPU", f"{agents_cpu / messages * 1e6:,.0f} us",
         f"{channels} fake agents, /proc/<pid>/stat"),
        ("  ceiling if CPU-bound", f"{ceiling:,.0f} msg/s",
         f"min(1 / bot CPU, {ncpu} CPUs / (bot + agents CPU)) per message"),
        ("store round trips per message", f"{trips.count / messages:.1f}",
         f"{trips_core / messages:.1f} of them before the last on_event returned"),
    ]
    print_table("inbound throughput (App.on_event, persistence on, fake agents)", rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.inbound_throughput",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=5000)
    p.add_argument("--channels", type=int, default=10)
    p.add_argument("--profile", metavar="FILE", help="write a cProfile of the timed part")
    args = p.parse_args(argv)
    quiet_logs()
    return asyncio.run(run(args.messages, args.channels, args.profile))


if __name__ == "__main__":
    sys.exit(main())
