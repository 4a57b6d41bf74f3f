"""Memory of the bot process with `--sessions` live agent sessions (the agents excluded).

The App runs in this process; the agents are separate processes and do not count. RSS is
this process's `VmRSS` from `/proc/self/status` (after a `gc.collect()`), read:

1. after importing the bot (nothing started),
2. after `App.start()` (store open, no session),
3. with `--sessions` live sessions: workers with open tasks in the general channel
   (`App.create_task` spawns each; each has read and answered its first message),
4. after `--messages` more messages to those sessions, each answered and posted,

and the peak (`VmHWM`, read before the App stops). The target is judged on the largest
of these, the peak included. With `--top N` the N largest allocation sites between readings
2 and 4 are listed (tracemalloc; slower, and its own overhead shows in RSS, so off by
default).

"kept per message" is the growth from reading 3 to 4 divided by the messages: memory the
bot still holds for messages that were answered long ago. The bench itself keeps counts, not
records, so that figure is the bot's.

Run: `.venv/bin/python -m bench.memory [--sessions 100] [--messages 3000]`
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
import tracemalloc
from pathlib import Path

from bench.common import bench_app, print_table, quiet_logs, rss_mib, verdict

TARGET_MIB = 100.0


def hwm_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure() -> float:
    gc.collect()
    return rss_mib()


async def run(sessions: int, messages: int, top: int) -> int:
    readings = [("imported, nothing started", measure())]
    names = [f"w{i:03d}" for i in range(sessions)]
    async with bench_app(keep=False) as b:  # the bench keeps counts, not records
        readings.append(("App started, no session", measure()))
        if top:
            tracemalloc.start()
            snap0 = tracemalloc.take_snapshot()
        for n in names:
            await b.app.create_task(f"stand by bench#warm-{n}", "general", n, "bench")
        if not await b.stamps.wait_count(sessions, timeout=120):
            print("not every session started within 120 s", file=sys.stderr)
            return 1
        running = sum(1 for s in (await b.app.supervisor.status()) if s.state == "running")
        readings.append((f"{sessions} live sessions", measure()))
        for i in range(messages):
            n = names[i % sessions]
            await b.send(f"dm-{n}", f"next step {i} bench#m{i}")
        if not await b.stamps.wait_count(sessions + messages, timeout=120):
            print("not every message was delivered within 120 s", file=sys.stderr)
            return 1
        deadline = time.monotonic() + 60  # a task notice and an answer per session, then
        while b.bridge.count < 2 * sessions + messages and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # an answer per message
        readings.append((f"after {messages} more messages, answered", measure()))
        peak = max(hwm_mib(), *(r[1] for r in readings))
        if top:
            snap1 = tracemalloc.take_snapshot()
            tracemalloc.stop()
    base = readings[1][1]
    with_sessions = readings[2][1]
    worst = peak
    rows = [(label, f"{mib:.1f} MiB", "") for label, mib in readings]
    rows.append(("peak (VmHWM)", f"{peak:.1f} MiB", ""))
    rows.append(("per live session", f"{(with_sessions - base) / sessions * 1024:.0f} KiB",
                 f"{running} running"))
    kept = (readings[3][1] - with_sessions) * 1024 * 1024 / messages
    rows.append(("kept per message answered", f"{kept:,.0f} B",
                 "should be ~0 once sessions are warm"))
    rows.append(("largest (peak)", f"{worst:.1f} MiB",
                 f"< {TARGET_MIB:g} MB ({verdict(worst < TARGET_MIB)})"))
    print_table(f"bot process memory with {sessions} live sessions (agents excluded)", rows)
    if top:
        print(f"\ntop {top} allocation sites, App started -> after messages:")
        for stat in snap1.compare_to(snap0, "lineno")[:top]:
            frame = stat.traceback[-1]
            print(f"  {stat.size_diff / 1024:8.0f} KiB  {stat.count_diff:7d} blocks  "
                  f"{frame.filename}:{frame.lineno}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.memory",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", type=int, default=100)
    p.add_argument("--messages", type=int, default=3000)
    p.add_argument("--top", type=int, default=0, metavar="N",
                   help="list the N largest allocation sites (tracemalloc)")
    args = p.parse_args(argv)
    quiet_logs()
    return asyncio.run(run(args.sessions, args.messages, args.top))


if __name__ == "__main__":
    sys.exit(main())
