"""`@all` fan-out: one message in the general channel, every running agent nudged.

Set-up: `--workers` workers, each given an open task in the general channel with
`App.create_task` (which spawns it, R7.1), plus the general channel's lead, all running and
warmed up (each has read its first message). Then `@all …` is posted in the general channel
through `App.on_event`; R2.4 makes that one nudge for the lead and one for every worker with
an open task. The figure is the time from the `on_event` call until the last agent has read
its nudge from stdin (`bench/stamp_agent.py` stamps), plus the bot-side "in the pipe" time
of the last nudge. `--rounds` repeats the `@all` (after the previous round has settled) and
reports each round and the median.

Run: `.venv/bin/python -m bench.fanout [--workers 100] [--rounds 5]`
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time

from bench.common import StoreTrips, WriteStamps, bench_app, ms, print_table, quiet_logs, verdict

TARGET_MS = 50.0


async def settle(b, expected_posts: int, timeout: float = 60) -> None:
    """Wait until the agents' answers are all posted and nothing more comes for 0.3 s."""
    deadline = time.monotonic() + timeout
    seen, quiet_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        n = len(b.bridge.sent)
        if n != seen:
            seen, quiet_since = n, time.monotonic()
        elif n >= expected_posts and time.monotonic() - quiet_since > 0.3:
            return
        await asyncio.sleep(0.02)


async def run(workers: int, rounds: int) -> int:
    general = "general"
    names = [f"w{i:03d}" for i in range(workers)]
    agents = [general, *names]
    results: list[tuple[float, float, float, int]] = []
    with WriteStamps() as written:
        async with bench_app() as b:
            t_spawn = time.monotonic()
            for n in names:
                await b.app.create_task(f"stand by bench#warm-{n}", general, n, "bench")
            await b.send(general, f"hello lead bench#warm-{general}")
            if not await b.stamps.wait(((a, f"warm-{a}") for a in agents), timeout=120):
                print("not every agent started within 120 s", file=sys.stderr)
                return 1
            spawn_s = time.monotonic() - t_spawn
            await settle(b, 2 * workers + 1)  # a task notice per worker, an answer per agent
            for r in range(rounds):
                ident = f"all{r}"
                before = len(b.bridge.sent)
                with StoreTrips() as trips:
                    t0 = await b.send(general, f"@all please report your status bench#{ident}")
                    t_ret = time.monotonic_ns()
                    if not await b.stamps.wait(((a, ident) for a in agents), timeout=60):
                        print(f"round {r}: not every agent got the nudge", file=sys.stderr)
                        return 1
                    await settle(b, before + len(agents))
                last_read = max(b.stamps.by_key[(a, ident)] for a in agents)
                last_pipe = max(written.by_key[(a, ident)] for a in agents)
                results.append((ms(last_read - t0), ms(last_pipe - t0), ms(t_ret - t0),
                                trips.count))
    rows = [("agents running", f"{len(agents)} (general lead + {workers} workers)",
             f"all started in {spawn_s:.1f} s")]
    for r, (read, pipe, ret, n) in enumerate(results):
        rows.append((f"round {r}: last agent read it", f"{read:.1f} ms",
                     f"in pipe {pipe:.1f}, on_event {ret:.1f} ms; {n} store trips"))
    med = statistics.median(x[0] for x in results)
    rows.append(("median: last agent read it", f"{med:.1f} ms",
                 f"< {TARGET_MS:g} ms ({verdict(med < TARGET_MS)})"))
    rows.append(("worst round", f"{max(x[0] for x in results):.1f} ms", ""))
    print_table("@all fan-out in the general channel", rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args(argv)
    quiet_logs()
    return asyncio.run(run(args.workers, args.rounds))


if __name__ == "__main__":
    sys.exit(main())
