"""`@all` over many open tasks under a 1,024-fd limit: spawns, loop stalls, answers (R3.7).

Set-up: this process *is* the bot (the real core in process, `bench.common.bench_app`: the
memory bridge, the real SQLite store, real stamp agents) and runs with its soft
RLIMIT_NOFILE set to `--fd-limit` (1,024) by `resource.setrlimit` before anything opens.
The crew is written into the store before the App starts, through the real `Store`:
`--workers` workers, each with an agent row, its DM channel and one open task in the
general channel — what `App.create_task` leaves — none running. The agent settings are
the defaults but for the stamp agent (`max_live_agents` 16 unless `--max-live` says).

One `@all please report` is posted in the general channel (`App.on_event`, as a bridge
does): R2.4 makes that one nudge for the general lead and one per open task, so every
worker must be started. Measured until every worker has posted an answer (or `--timeout`):

- **failed spawns**: starts counted as the agent's failure (R4.2) — the sum of the
  failure counts of every health record in the store afterwards; and spawn errors seen at
  all (`Session.start` raising), retried or not;
- **longest event-loop stall**: a ticker task awaits `asyncio.sleep(0.01)` in a loop and
  records the largest lateness (time slept minus 10 ms) from the `@all` to the last answer;
  and, apart, the longest stall counted in the loop thread's CPU time (`time.thread_time()`
  over the same sleep, capped at its lateness): what the loop itself was busy with, as
  opposed to the OS running other processes on a loaded machine;
- **answers**: workers that posted an answer (`Host.answered`, wrapped on the App);
- **total time** from the `@all` to the last answer, and per worker;
- the most agent processes alive at once (the pids `Session.start` started, looked up in
  /proc every 50 ms by the ticker).

The floor, in the same run and the same process: the same fan-out over `--floor` (16)
workers, which fit the default slots. Targets: 0 failed spawns, stall < 100 ms, every worker
answers; the per-worker time against the floor's is shown, not targeted (1,000 process
starts on a small machine cost what they cost).

Run: `.venv/bin/python -m bench.fanout_fds [--workers 1000] [--floor 16] [--fd-limit 1024]
[--max-live N] [--timeout 150]` (about a minute and a half with the defaults on 2 CPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Bench, bench_app, machine, print_table, quiet_logs, verdict
from crewbridge.bot.model import ChannelKind, dm_channel_of
from crewbridge.bot.store import Store
from crewbridge.supervisor.ports import AgentKind
from crewbridge.supervisor.session import Session, SpawnError

GENERAL = "general"
STALL_TARGET_MS = 100.0
TICK_S = 0.01


def set_fd_limit(soft: int) -> tuple[int, int]:
    """This process's soft RLIMIT_NOFILE, lowered to `soft` (the hard limit is kept)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def crew(workers: int) -> Callable[[Path], Awaitable[None]]:
    """A `bench_app(prepare=...)` hook: `workers` open tasks in #general, none running."""
    async def write(db: Path) -> None:
        store = await Store.open(db)
        try:
            now = time.time()
            await store.ensure_channel(GENERAL, ChannelKind.TOPIC, now)
            for i in range(workers):
                name = f"w{i:04d}"
                task = await store.create_task(f"task for {name}", GENERAL, name, "bench", now)
                await store.ensure_channel(dm_channel_of(name), ChannelKind.DM, now)
                await store.upsert_agent(name, AgentKind.WORKER, dm_channel_of(name), task.id)
        finally:
            await store.close()
    return write


class Ticker:
    """The event loop's lateness: the most an `asyncio.sleep(TICK_S)` overslept; and, every
    fifth tick, the most agent processes alive at once."""

    def __init__(self, spawns: Spawns) -> None:
        self.worst_s = 0.0
        self.worst_at = 0.0  # loop time when the worst stall ended
        self.worst_cpu_s = 0.0
        self.ticks = 0
        self.most_alive = 0
        self._spawns = spawns
        self._task: asyncio.Task | None = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            t0, cpu0 = loop.time(), time.thread_time()
            await asyncio.sleep(TICK_S)
            late = loop.time() - t0 - TICK_S
            if late > self.worst_s:
                self.worst_s, self.worst_at = late, loop.time()
            # The part of the lateness the loop's thread spent running (not descheduled by a
            # loaded machine): the loop's own blocking.
            self.worst_cpu_s = max(self.worst_cpu_s, min(late, time.thread_time() - cpu0))
            self.ticks += 1
            if self.ticks % 5 == 0:
                self.most_alive = max(self.most_alive, self._spawns.alive())

    def __enter__(self) -> Ticker:
        self._task = asyncio.ensure_future(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()


class Spawns:
    """Wraps `Session.start`: counts it raising (EMFILE and the like, retried or counted as
    failures) and keeps the pids it started, so that `alive()` can count them in /proc."""

    def __init__(self) -> None:
        self.errors = 0
        self.pids: set[int] = set()
        self._orig: Any = None

    def alive(self) -> int:
        """Agent processes that have not exited (zombies aside); the dead are forgotten."""
        for pid in list(self.pids):
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                state = "Z"
            if state == "Z":
                self.pids.discard(pid)
        return len(self.pids)

    def __enter__(self) -> Spawns:
        orig = self._orig = Session.start

        async def start(session: Session) -> None:
            try:
                await orig(session)
            except SpawnError:
                self.errors += 1
                raise
            if session.pid is not None:
                self.pids.add(session.pid)

        Session.start = start  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Session.start = self._orig  # type: ignore[method-assign]


def record_answers(b: Bench) -> set[str]:
    """The agents that have posted, filled in as they post (wraps the App's `answered`, the
    `Host` call every agent post goes through: a turn's answer and a `crewbridge post`)."""
    posted: set[str] = set()
    orig = b.app.host.answered

    async def answered(agent: str, channel: str, texts: list[str], hops: int,
                       nudge_ids: list[int]) -> None:
        if texts:
            posted.add(agent)
        await orig(agent, channel, texts, hops, nudge_ids)

    b.app.host.answered = answered  # type: ignore[method-assign]
    return posted


@dataclass
class Result:
    workers: int
    answered: int
    total_s: float
    stall_ms: float
    stall_cpu_ms: float
    spawn_errors: int
    failures: int
    most_alive: int

    @property
    def per_worker_ms(self) -> float:
        return self.total_s * 1000 / self.workers


async def fan_out(workers: int, max_live: int | None, timeout: float) -> Result:
    agent = {} if max_live is None else {"max_live_agents": max_live}
    async with bench_app(prepare=crew(workers), agent=agent, keep=False) as b:
        answered = record_answers(b)
        names = {f"w{i:04d}" for i in range(workers)}
        with Spawns() as spawns, Ticker(spawns) as ticker:
            t0 = time.monotonic()
            await b.send(GENERAL, "@all please report bench#go")
            deadline = t0 + timeout
            while not names <= answered and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            total = time.monotonic() - t0
        healths = await b.app.store.healths()
        return Result(workers, len(names & answered), total, ticker.worst_s * 1000,
                      ticker.worst_cpu_s * 1000,
                      spawns.errors, sum(h.failures for h in healths.values()),
                      ticker.most_alive)


async def run(workers: int, floor: int, fd_limit: int, max_live: int | None,
              timeout: float) -> int:
    soft, hard = set_fd_limit(fd_limit)
    started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    base = await fan_out(floor, max_live, timeout)
    big = await fan_out(workers, max_live, timeout)
    cap = "default (16)" if max_live is None else str(max_live)
    print(f"{machine()}; load {os.getloadavg()[0]:.1f}; {started}; "
          f"RLIMIT_NOFILE soft {soft}, hard {hard}; max_live_agents {cap}")
    rows = []
    for label, r in (("floor", base), ("fan-out", big)):
        rows += [
            (f"{label}: workers answered", f"{r.answered} of {r.workers}",
             f"all ({verdict(r.answered == r.workers)})"),
            (f"{label}: failed spawns (counted, R4.2)", str(r.failures),
             f"0 ({verdict(r.failures == 0)})"),
            (f"{label}: spawn errors (EMFILE..., retried)", str(r.spawn_errors), ""),
            (f"{label}: longest event-loop stall", f"{r.stall_ms:.1f} ms",
             f"< {STALL_TARGET_MS:g} ms ({verdict(r.stall_ms < STALL_TARGET_MS)})"),
            (f"{label}: longest stall, loop thread's CPU", f"{r.stall_cpu_ms:.1f} ms",
             "(the rest: the OS ran others)"),
            (f"{label}: most agent processes at once", str(r.most_alive), f"<= {cap}"),
            (f"{label}: total time", f"{r.total_s:.1f} s", ""),
            (f"{label}: per worker", f"{r.per_worker_ms:.1f} ms", ""),
        ]
    rows.append(("per worker, fan-out / floor", f"{big.per_worker_ms / base.per_worker_ms:.2f}",
                 "shown"))
    rows.append(("stall, fan-out / floor",
                 f"{big.stall_ms / base.stall_ms:.2f}" if base.stall_ms else "n/a", "shown"))
    print_table(f"@all over {workers} open tasks (floor: {floor}) under a {soft}-fd limit", rows)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fanout_fds",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--workers", type=int, default=1000)
    p.add_argument("--floor", type=int, default=16)
    p.add_argument("--fd-limit", type=int, default=1024)
    p.add_argument("--max-live", type=int, default=None,
                   help="max_live_agents (default: the config's default, 16)")
    p.add_argument("--timeout", type=float, default=150,
                   help="seconds to wait for every answer of one fan-out")
    args = p.parse_args(argv)
    quiet_logs()
    return asyncio.run(run(args.workers, args.floor, args.fd_limit, args.max_live,
                           args.timeout))


if __name__ == "__main__":
    sys.exit(main())
