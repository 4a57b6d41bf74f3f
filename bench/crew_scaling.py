"""Costs that grow with the crew: the bot's work for one message, one start and one `status`,
with a small crew and a large one, compared in the same run (issue 8, item 6).

A crew is written into the store before the App starts, through the real `Store`
(`bench.common.bench_app(prepare=...)`): W workers, each with an agent row, its DM channel
and one open task, exactly what `App.create_task` leaves behind, but without starting them
(nothing is queued and no channel is `always_on`, so the supervisor starts none at
start-up). The database is written once per crew size and copied into each round's fresh
data directory. The bot is the real core in this process (`bench.common`: `App.on_event`
fed as a bridge does, the memory bridge, the real SQLite store); "bot CPU" is this
process's CPU time (`time.process_time()`: the event loop and the aiosqlite thread; the
agents are other processes and are not in it).

(a) **per-message CPU**, 0 vs `--workers` (1,000) known workers. One topic channel whose lead
    is running; `--messages` plain messages, one after another, each routed to that lead,
    which answers each (the answer is routed and posted too). Bot CPU per message from the
    first `on_event` until every answer is posted. Rounds alternate between the two crews;
    the figure is the median round. Target: ≤ 1.1× (the crew must not be rebuilt per
    message).
(b) **bot CPU per started agent for `@all`**, W = 100 vs W = `--workers` open tasks. Starting
    1,000 real agents is too much for a 2-CPU machine, and the question is the bot's cost per
    start, not the agents': so in both cases `@all` is posted in a channel that has exactly
    `--started` (100) of the W open tasks (the other W − 100 are in another channel), and
    starts those 100 workers (plus nudges the channel's lead, running already). Bot CPU from
    the `on_event` until all of them have read the nudge (stamp agents) and every answer is
    posted, divided by the agents started. The same 100 starts either way: what differs is
    only what else the store holds. Also counted: task rows the store returned per start
    (`Store.tasks`, wrapped on the instance). Target: flat (ratio ≈ 1; today each start
    reads every task ever, so it grows with W).
(c) **`status` store round trips**, 10 vs `--workers` agents. `Supervisor.status()` (what the
    admin `status` command and `crewbridge status` call) with the crew known but not
    running; every call to a `Store` method is counted by wrapping the App's `Store`
    instance, and every hand-off to the SQLite thread by `bench.common.StoreTrips`.
    Target: O(1) — the same count for both crews.

Run: `.venv/bin/python -m bench.crew_scaling [--workers 1000] [--messages 1000] [--rounds 3]
[--started 100] [--only a,b,c]` (about a minute with the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import datetime
import functools
import inspect
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from bench.common import Bench, StoreTrips, bench_app, machine, print_table, quiet_logs, verdict
from crewbridge.bot.model import ChannelKind, dm_channel_of
from crewbridge.bot.store import Store
from crewbridge.supervisor.ports import AgentKind

MESSAGE_RATIO_TARGET = 1.1
START_RATIO_TARGET = 1.1  # "flat": within noise of the small crew
TOPIC = "topic"  # (a): the channel messages go to
FAN = "fan"  # (b): the channel `@all` is posted in
ELSEWHERE = "elsewhere"  # (b), (a), (c): where the rest of the crew's tasks are


# --- the crew, written in advance --------------------------------------------------------------


class Crews:
    """One store file per crew layout, written once through the real `Store` and copied."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-crew-", dir="/tmp"))
        self._made: dict[tuple[int, int], Path] = {}

    async def _write(self, path: Path, in_fan: int, elsewhere: int) -> None:
        store = await Store.open(path)
        try:
            now = time.time()
            for channel in (FAN, ELSEWHERE):
                await store.ensure_channel(channel, ChannelKind.TOPIC, now)
            for i in range(in_fan + elsewhere):
                name = f"w{i:04d}"
                channel = FAN if i < in_fan else ELSEWHERE
                task = await store.create_task(f"task for {name}", channel, name, "bench", now)
                await store.ensure_channel(dm_channel_of(name), ChannelKind.DM, now)
                await store.upsert_agent(name, AgentKind.WORKER, dm_channel_of(name), task.id)
        finally:
            await store.close()

    def prepare(self, in_fan: int, elsewhere: int) -> Callable[[Path], Awaitable[None]]:
        """A `bench_app(prepare=...)` hook: `in_fan` workers with tasks in #fan, the rest
        with tasks elsewhere."""
        async def copy_to(db: Path) -> None:
            key = (in_fan, elsewhere)
            if key not in self._made:
                path = self.dir / f"crew-{in_fan}-{elsewhere}.db"
                await self._write(path, in_fan, elsewhere)
                self._made[key] = path
            shutil.copyfile(self._made[key], db)
        return copy_to

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def counting_store(store: Store, *, this_task_only: bool = False
                   ) -> Iterator[collections.Counter[str]]:
    """Count calls to every public coroutine method of this `Store` instance (and, under the
    key `rows:<method>`, how many items each returned list held). `this_task_only`: only
    the calls made by the task that entered (not the supervisor's tick, say)."""
    mine = asyncio.current_task() if this_task_only else None
    calls: collections.Counter[str] = collections.Counter()
    wrapped = []
    for name, _fn in inspect.getmembers(type(store), inspect.iscoroutinefunction):
        if name.startswith("_") or name in ("open", "close"):
            continue
        orig = getattr(store, name)

        @functools.wraps(orig)
        async def counted(*args: Any, __orig: Any = orig, __name: str = name, **kw: Any) -> Any:
            if mine is not None and asyncio.current_task() is not mine:
                return await __orig(*args, **kw)
            calls[__name] += 1
            result = await __orig(*args, **kw)
            if isinstance(result, list | dict):
                calls[f"rows:{__name}"] += len(result)
            return result

        setattr(store, name, counted)
        wrapped.append(name)
    try:
        yield calls
    finally:
        for name in wrapped:
            delattr(store, name)


def calls_only(c: collections.Counter[str]) -> int:
    return sum(n for k, n in c.items() if not k.startswith("rows:"))


async def settle(b: Bench, posts: int, quiet_s: float = 0.3, timeout: float = 120) -> bool:
    """Wait until at least `posts` posts were sent and none came for `quiet_s`."""
    seen, since = -1, time.monotonic()
    deadline = since + timeout
    while time.monotonic() < deadline:
        n = b.bridge.count
        if n != seen:
            seen, since = n, time.monotonic()
        elif n >= posts and time.monotonic() - since >= quiet_s:
            return True
        await asyncio.sleep(0.02)
    return False


# --- (a) per-message CPU ---------------------------------------------------------------------


async def message_round(crews: Crews, workers: int, messages: int
                        ) -> tuple[float, float, float]:
    """Bot CPU µs per message (settled), µs per message until `on_event` returned, store
    calls per message (all of the process's, the supervisor's tick among them)."""
    async with bench_app(channels=[{"name": TOPIC}],
                         prepare=crews.prepare(0, workers)) as b:
        await b.warm_up([TOPIC], lambda a: a)
        await settle(b, 1)
        posts0 = b.bridge.count
        with counting_store(b.app.store) as calls:
            cpu0 = time.process_time()
            for i in range(messages):
                await b.send(TOPIC, f"a question for the lead, number {i} bench#m{i}")
            cpu_core = time.process_time()
            # one post per message: the lead's answer (the console is where it came from, so
            # the person's message is not relayed back to it)
            if not await settle(b, posts0 + messages):
                raise RuntimeError(f"(a) {workers} workers: answers missing "
                                   f"({b.bridge.count - posts0} of {messages} posts)")
            cpu1 = time.process_time()
        return ((cpu1 - cpu0) / messages * 1e6, (cpu_core - cpu0) / messages * 1e6,
                calls_only(calls) / messages)


async def part_a(crews: Crews, workers: int, messages: int, rounds: int) -> None:
    cpu: dict[int, list[float]] = {0: [], workers: []}
    core: dict[int, list[float]] = {0: [], workers: []}
    calls: dict[int, float] = {}
    for r in range(rounds):
        for w in ((0, workers) if r % 2 == 0 else (workers, 0)):
            settled_us, core_us, n = await message_round(crews, w, messages)
            cpu[w].append(settled_us)
            core[w].append(core_us)
            calls[w] = n
    med = {w: statistics.median(v) for w, v in cpu.items()}
    ratio = med[workers] / med[0]
    rows = [[f"{w} known workers", f"{med[w]:.0f} us",
             f"rounds {', '.join(f'{x:.0f}' for x in cpu[w])}; to on_event return "
             f"{statistics.median(core[w]):.0f} us; {calls[w]:.1f} store calls/msg"]
            for w in (0, workers)]
    rows.append([f"ratio {workers} / 0", f"{ratio:.2f}x",
                 f"<= {MESSAGE_RATIO_TARGET}x ({verdict(ratio <= MESSAGE_RATIO_TARGET)})"])
    print_table(f"(a) bot CPU per message routed to a lead ({messages} messages x {rounds} "
                f"rounds per crew, median round)", rows)


# --- (b) bot CPU per started agent for @all --------------------------------------------------


async def fan_round(crews: Crews, total: int, started: int) -> tuple[float, float, float]:
    """Bot CPU ms per started agent, wall s for all to read it, task rows read per start."""
    async with bench_app(channels=[{"name": FAN}],
                         prepare=crews.prepare(started, total - started)) as b:
        await b.warm_up([FAN], lambda a: a)
        await settle(b, 1)
        agents = [FAN, *(f"w{i:04d}" for i in range(started))]
        posts0 = b.bridge.count
        with counting_store(b.app.store) as calls:
            cpu0, t0 = time.process_time(), time.monotonic()
            await b.send(FAN, "@all please report bench#go")
            if not await b.stamps.wait(((a, "go") for a in agents), timeout=120, interval=0.05):
                raise RuntimeError(f"(b) W={total}: not every agent read the @all nudge")
            t_read = time.monotonic() - t0
            # one answer per agent
            if not await settle(b, posts0 + len(agents)):
                raise RuntimeError(f"(b) W={total}: answers missing")
            cpu1 = time.process_time()
        return ((cpu1 - cpu0) / started * 1e3, t_read, calls["rows:tasks"] / started)


async def part_b(crews: Crews, workers: int, started: int, rounds: int) -> None:
    small, large = started, workers
    cpu: dict[int, list[float]] = {small: [], large: []}
    wall: dict[int, list[float]] = {small: [], large: []}
    rows_read: dict[int, float] = {}
    for r in range(rounds):
        for w in ((small, large) if r % 2 == 0 else (large, small)):
            per_start, t_read, task_rows = await fan_round(crews, w, started)
            cpu[w].append(per_start)
            wall[w].append(t_read)
            rows_read[w] = task_rows
    med = {w: statistics.median(v) for w, v in cpu.items()}
    ratio = med[large] / med[small]
    rows = [[f"W = {w} open tasks", f"{med[w]:.2f} ms",
             f"rounds {', '.join(f'{x:.2f}' for x in cpu[w])}; all read it in "
             f"{statistics.median(wall[w]):.1f} s; {rows_read[w]:.0f} task rows read/start"]
            for w in (small, large)]
    rows.append([f"ratio W={large} / W={small}", f"{ratio:.2f}x",
                 f"flat, <= {START_RATIO_TARGET}x ({verdict(ratio <= START_RATIO_TARGET)})"])
    print_table(f"(b) bot CPU per started agent, @all starting {started} workers "
                f"(+ the running lead), {rounds} rounds per W, median round", rows)


# --- (c) status ------------------------------------------------------------------------------


async def status_round(crews: Crews, agents: int, calls_n: int
                       ) -> tuple[float, float, float, dict[str, int]]:
    """Store calls, SQLite hand-offs and wall ms per `status()`; calls by method. The store
    calls are those `status()` makes; the hand-offs count the whole process (the
    supervisor's tick adds one now and then)."""
    async with bench_app(keep=False, prepare=crews.prepare(0, agents)) as b:
        await b.app.supervisor.status()  # warm: nothing cached differs between the crews
        with counting_store(b.app.store, this_task_only=True) as calls, StoreTrips() as trips:
            t0 = time.perf_counter()
            for _ in range(calls_n):
                rows = await b.app.supervisor.status()
            took = time.perf_counter() - t0
        if len(rows) < agents:
            raise RuntimeError(f"(c) status listed {len(rows)} agents, not {agents}")
        by_method = {k: v // calls_n for k, v in calls.items() if not k.startswith("rows:")}
        return (calls_only(calls) / calls_n, trips.count / calls_n, took / calls_n * 1e3,
                by_method)


async def part_c(crews: Crews, workers: int, calls_n: int) -> None:
    rows = []
    results = {}
    for n in (10, workers):
        store_calls, trips, wall_ms, by_method = await status_round(crews, n, calls_n)
        results[n] = store_calls
        detail = ", ".join(f"{k} {v}" for k, v in sorted(by_method.items()))
        rows.append([f"{n} agents", f"{store_calls:.0f} store calls",
                     f"{trips:.0f} SQLite hand-offs, {wall_ms:.1f} ms per status; {detail}"])
    ratio = results[workers] / results[10]
    rows.append([f"ratio {workers} / 10 agents", f"{ratio:.1f}x",
                 f"O(1): 1.0x ({verdict(results[workers] <= results[10])})"])
    print_table(f"(c) store round trips per status() ({calls_n} calls each)", rows)


async def run(parts: set[str], workers: int, messages: int, rounds: int, started: int) -> int:
    crews = Crews()
    try:
        if "a" in parts:
            await part_a(crews, workers, messages, rounds)
        if "b" in parts:
            await part_b(crews, workers, started, max(1, rounds - 1))
        if "c" in parts:
            await part_c(crews, workers, 10)
    finally:
        crews.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.crew_scaling",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workers", type=int, default=1000, help="the large crew (default 1000)")
    p.add_argument("--messages", type=int, default=1000, help="(a) messages per round")
    p.add_argument("--rounds", type=int, default=3,
                   help="(a) rounds per crew; (b) uses one fewer (default 3)")
    p.add_argument("--started", type=int, default=100,
                   help="(b) workers @all starts, and the small W (default 100)")
    p.add_argument("--only", default="a,b,c", help="which parts, e.g. a,c")
    args = p.parse_args(argv)
    quiet_logs()
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.crew_scaling, {now}\n{machine()}\nload average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    t0 = time.monotonic()
    code = asyncio.run(run(set(args.only.split(",")), args.workers, args.messages,
                           args.rounds, args.started))
    print(f"\n({time.monotonic() - t0:.0f} s; load average at end {os.getloadavg()[0]:.2f})")
    return code


if __name__ == "__main__":
    sys.exit(main())
