"""Idle cost: wakeups per minute of an idle crewbridge beside a bare matrix-nio bot, both
connected to the same real Synapse for the same window, in one run (issue 8, item 6).

Why: a bot that nobody talks to should sleep. Every wakeup costs a little CPU and keeps a
laptop or a small VM from idling; a bot that polls its store twice a second wakes hundreds of
times a minute for nothing. The floor is the thinnest bot matrix-nio makes (one long-poll
sync after another), on the same homeserver, measured over the same seconds, so the ratio
does not depend on the machine or the day. Target: crewbridge ≤ 3× the bare bot.

What a "wakeup" is here: a context switch of any thread of the process, voluntary (it
blocked and was woken: a timer, a socket, a queue) or involuntary (preempted), summed over
every thread in `/proc/<pid>/task/*/status` (`voluntary_ctxt_switches` +
`nonvoluntary_ctxt_switches`), taken at the start and at the end of the window. A thread
that ends inside the window takes its count with it; the table shows the threads at both
ends so that would be seen. The "main" column is the event loop's thread alone.

The processes, side by side, all on 127.0.0.1, all idle (nobody writes, no agent runs: no
channel is `always_on`, so no lead is started):
- **crewbridge**: `crewbridge run` (the console script), Matrix bridge only (with a Matrix
  section the console is off by default), one channel bound to its own room, the spec's
  default timers (`flush_interval_s = 2`, so the supervisor's tick is every 0.5 s today).
- **crewbridge, counted**: the same bot and config (its own account and room), started as
  `python -m bench.idle_cost --counted-bot CONFIG`, which is `bot.cli.main(["run", ...])`
  (what the console script calls) with a counter around the event loop's `select()`. The
  bot's code is not touched; the counter only records, per `select()` return, what woke the
  loop: a timer (named by the task that slept: `Supervisor._tick_loop`, …), a socket, or
  a thread handing back a result (`call_soon_threadsafe`: aiosqlite, an executor, named by
  the task that waited for it). Its context switches cross-check that counting costs none.
- **crewbridge, console only**: `crewbridge run` with no platform section (the console on
  a pipe that stays open): the bot's own timers without any network — elimination.
- **bare matrix-nio bot** (the floor): `bench.matrix_roundtrip`'s echo bot (join, one
  `sync(timeout=0)`, then `sync_forever(timeout=30_000)`), under the same loop counter.

The counter's own signal (one SIGUSR1 at each end of the window, to read its totals) shows
as `thread: (signal)`, about once per window.

After all are up and joined, the person who made the rooms disconnects and `--settle`
seconds pass (start-up work must not count); then the window (`--window`, 60 s by default:
a wakeup count needs a fixed window, and a minute is the unit of the figure) is measured for
all processes at once. The whole run takes about `--window` + 40 s.

Run: `.venv/bin/python -m bench.idle_cost [--window 60] [--settle 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import datetime
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import machine, print_table, verdict
from tests.platform.matrix.synapse import Person, SynapseServer, check_synapse_installed
from tests.support.botproc import (
    VENV_BIN,
    BotProcess,
    cleanup_data_dir,
    short_data_dir,
    write_config,
)

TARGET_RATIO = 3.0
READY_TIMEOUT_S = 60.0
COUNTS_ENV = "BENCH_LOOP_COUNTS"
REPO = Path(__file__).resolve().parents[1]


# --- inside a counted process: what woke the event loop --------------------------------------


def _task_label(task: Any) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", None) or task.get_name()


def _waiter_of(fut: Any) -> str:
    """The task whose wake-up `fut` carries (its `task_wakeup` callback), by coroutine name."""
    for cb, _ctx in getattr(fut, "_callbacks", None) or ():
        owner = getattr(cb, "__self__", None)
        if isinstance(owner, asyncio.Task):
            return _task_label(owner)
        name = getattr(cb, "__qualname__", None)
        if name:
            return name
    return "?"


def _handle_label(handle: Any) -> str:
    cb = handle._callback
    name = getattr(cb, "__qualname__", None) or type(cb).__name__
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return _task_label(owner)
    futs = [a for a in handle._args or () if isinstance(a, asyncio.Future)]
    if futs:
        return f"{name} -> {_waiter_of(futs[0])}"
    return name


class LoopCounter:
    """Counts `select()` returns of the running loop and labels what each one was for.

    Installed on `selectors.EpollSelector` before the loop exists; reports its totals as one
    JSON line appended to `$BENCH_LOOP_COUNTS` on SIGUSR1 (the parent sends one at each end of
    the window and subtracts).
    """

    def __init__(self, out: Path):
        self.out = out
        self.iterations = 0  # select() calls that could block: the loop slept, then woke
        self.timeouts = 0  # ... of which woke for a timer (no file descriptor was ready)
        self.polls = 0  # select(0): the loop had work ready and only looked
        self.labels: collections.Counter[str] = collections.Counter()

    def install(self) -> None:
        orig = selectors.EpollSelector.select
        counter = self

        def select(sel: selectors.EpollSelector, timeout: float | None = None) -> list:
            ready = orig(sel, timeout)
            if timeout is None or timeout > 0:  # select(0) is a poll with work ready, no wakeup
                counter.record(ready)
            else:
                counter.polls += 1
            return ready

        selectors.EpollSelector.select = select  # type: ignore[method-assign]
        signal.signal(signal.SIGUSR1, lambda *_: self.dump())

    def record(self, ready: list) -> None:
        self.iterations += 1
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if not ready:
            self.timeouts += 1
            now = loop.time()
            for h in loop._scheduled:  # type: ignore[attr-defined]
                if h._when <= now and not h._cancelled:
                    self.labels[f"timer: {_handle_label(h)}"] += 1
            return
        ssock = getattr(loop, "_ssock", None)
        self_pipe = ssock.fileno() if ssock is not None else -1
        for key, _mask in ready:
            if key.fd == self_pipe:
                woken = [_handle_label(h) for h in loop._ready]  # type: ignore[attr-defined]
                for label in woken or ["(signal)"]:
                    self.labels[f"thread: {label}"] += 1
            else:
                reader = key.data[0] if key.data else None
                label = _handle_label(reader) if reader is not None else "?"
                self.labels[f"io: {label}"] += 1

    def dump(self) -> None:
        line = json.dumps({"t": time.monotonic(), "iterations": self.iterations,
                           "timeouts": self.timeouts, "polls": self.polls,
                           "labels": dict(self.labels)})
        with self.out.open("a") as f:
            f.write(line + "\n")


def counted(target: str, args: list[str]) -> int:
    LoopCounter(Path(os.environ[COUNTS_ENV])).install()
    if target == "bot":
        from crewbridge.bot.cli import main as crewbridge_main
        return crewbridge_main(["run", "--config", args[0], "--log-level", "info"])
    from bench.matrix_roundtrip import echo_bot
    return asyncio.run(echo_bot(*args))


# --- outside: the processes and their counts -------------------------------------------------


INVOLUNTARY = -1  # the key, in a `ctxt_switches` result, of the involuntary part of the sum


def ctxt_switches(pid: int) -> dict[int, int]:
    """Voluntary + involuntary context switches of every thread of `pid`, by thread id; the
    involuntary ones of all threads together also under the key `INVOLUNTARY`."""
    counts: dict[int, int] = {INVOLUNTARY: 0}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except OSError:
            continue  # the thread ended between listing and reading
        n = 0
        for line in text.splitlines():
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                n += int(line.split()[1])
            if line.startswith("nonvoluntary_ctxt_switches"):
                counts[INVOLUNTARY] += int(line.split()[1])
        counts[int(task.name)] = n
    return counts


@dataclass
class Watched:
    name: str
    proc: subprocess.Popen
    counts_file: Path | None = None  # a counted process's loop counts
    before: dict[int, int] | None = None
    after: dict[int, int] | None = None

    def snapshot(self) -> dict[int, int]:
        if self.counts_file is not None:
            self.proc.send_signal(signal.SIGUSR1)
        return ctxt_switches(self.proc.pid)

    def loop_counts(self) -> tuple[dict, dict] | None:
        if self.counts_file is None:
            return None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = self.counts_file.read_text().splitlines() if self.counts_file.exists() else []
            if len(lines) >= 2:
                return json.loads(lines[0]), json.loads(lines[1])
            time.sleep(0.05)
        raise RuntimeError(f"{self.name}: no loop counts were written")


def counted_process(work: Path, name: str, args: list[str], env: dict[str, str]
                    ) -> tuple[subprocess.Popen, Path]:
    counts = work / f"{name}.counts"
    stderr = (work / f"{name}.stderr").open("wb")
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", COUNTS_ENV: str(counts), **env}
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    proc = subprocess.Popen([sys.executable, "-m", "bench.idle_cost", *args], cwd=REPO,
                            env=full_env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=stderr, text=True, start_new_session=True)
    return proc, counts


def wait_stderr(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while text not in path.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{path.name}: never printed {text!r}:\n"
                               f"{path.read_text(errors='replace')[-3000:]}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None and not pipe.closed:
            pipe.close()


async def measure(server: SynapseServer, work: Path, window: float, settle: float) -> int:
    person = await Person.connect(server, server.register(server.new_localpart("person")))
    accounts = {n: server.register(server.new_localpart(n), displayname=n)
                for n in ("crew", "counted", "bare")}
    rooms = {n: await person.create_room(name=f"idle-{n}", invite=(a.user_id,))
             for n, a in accounts.items()}

    def bot_config(name: str, data_dir: Path) -> Path:
        return write_config(
            work / f"{name}.toml", data_dir=data_dir, agent={"flush_interval_s": 2},
            channels=[{"name": "bench", "matrix": [rooms[name]]}],
            extra={"matrix": {"homeserver": server.url, "user_id": accounts[name].user_id,
                              "access_token": "${MATRIX_ACCESS_TOKEN}"}})

    data_dirs = [short_data_dir() for _ in range(3)]
    watched: list[Watched] = []
    bots: list[BotProcess] = []
    others: list[subprocess.Popen] = []
    try:
        crew = BotProcess(bot_config("crew", data_dirs[0]),
                          env={"MATRIX_ACCESS_TOKEN": accounts["crew"].access_token})
        bots.append(crew)
        console_cfg = write_config(work / "console.toml", data_dir=data_dirs[2],
                                   agent={"flush_interval_s": 2},
                                   channels=[{"name": "bench"}])
        console = BotProcess(console_cfg)  # stdin stays open: the console waits on it
        bots.append(console)
        cproc, ccounts = counted_process(
            work, "counted", ["--counted-bot", str(bot_config("counted", data_dirs[1]))],
            {"MATRIX_ACCESS_TOKEN": accounts["counted"].access_token})
        others.append(cproc)
        bare = accounts["bare"]
        bproc, bcounts = counted_process(
            work, "bare", ["--bare-bot", server.url, bare.user_id, rooms["bare"]],
            {"BENCH_ECHO_TOKEN": bare.access_token})
        others.append(bproc)

        await asyncio.to_thread(crew.wait_ready, READY_TIMEOUT_S)
        await asyncio.to_thread(console.wait_ready, READY_TIMEOUT_S)
        await asyncio.to_thread(wait_stderr, work / "counted.stderr", "crewbridge is running",
                                cproc, READY_TIMEOUT_S)
        assert bproc.stdout is not None
        line = await asyncio.to_thread(bproc.stdout.readline)
        if line.strip() != "ready":
            raise RuntimeError(f"bare bot did not start: {line!r} "
                               f"{(work / 'bare.stderr').read_text()[-2000:]}")
        for name, account in accounts.items():
            await person.wait_for_membership(rooms[name], account.user_id, "join",
                                             timeout=READY_TIMEOUT_S)
        await person.close()
        watched = [Watched("crewbridge (crewbridge run)", crew.proc),
                   Watched("crewbridge, counted", cproc, ccounts),
                   Watched("crewbridge, console only", console.proc),
                   Watched("bare matrix-nio bot", bproc, bcounts)]
        await asyncio.sleep(settle)
        load0 = os.getloadavg()[0]
        t0 = time.monotonic()
        for w in watched:
            w.before = w.snapshot()
        await asyncio.sleep(window)
        for w in watched:
            w.after = w.snapshot()
        elapsed = time.monotonic() - t0
        load1 = os.getloadavg()[0]
        for w in watched:
            if w.proc.poll() is not None:
                raise RuntimeError(f"{w.name} exited during the window ({w.proc.returncode})")
        report(watched, elapsed, load0, load1)
        return 0
    finally:
        for b in bots:
            await asyncio.to_thread(b.terminate)
            await asyncio.to_thread(b.close)
        for p in others:
            await asyncio.to_thread(stop, p)
        for d in data_dirs:
            cleanup_data_dir(d)


def report(watched: list[Watched], elapsed: float, load0: float, load1: float) -> None:
    per_min = 60.0 / elapsed
    rows = []
    totals: dict[str, float] = {}
    loops: dict[str, tuple[dict, dict]] = {}
    for w in watched:
        assert w.before is not None and w.after is not None
        pid = w.proc.pid
        total = sum(n - w.before.get(tid, 0) for tid, n in w.after.items()
                    if tid != INVOLUNTARY)
        main = w.after.get(pid, 0) - w.before.get(pid, 0)
        involuntary = w.after[INVOLUNTARY] - w.before[INVOLUNTARY]
        totals[w.name] = total * per_min
        lc = w.loop_counts()
        iters = ""
        if lc is not None:
            loops[w.name] = lc
            a, b = lc
            iters = (f"{(b['iterations'] - a['iterations']) * 60 / (b['t'] - a['t']):.0f} "
                     f"({(b['timeouts'] - a['timeouts']) * 60 / (b['t'] - a['t']):.0f} timers)")
        rows.append([w.name, f"{total * per_min:.0f}", f"{involuntary * per_min:.0f}",
                     f"{main * per_min:.0f}", f"{(total - main) * per_min:.0f}",
                     f"{len(w.before) - 1} -> {len(w.after) - 1}", iters or "-"])
    print_table(f"idle wakeups per minute ({elapsed:.1f} s window, load average "
                f"{load0:.2f} -> {load1:.2f})", rows,
                ["process", "wakeups/min", "of them involuntary", "main thread",
                 "other threads", "threads", "loop wake-ups/min"])
    floor = totals["bare matrix-nio bot"]
    ratio = totals["crewbridge (crewbridge run)"] / floor if floor else float("inf")
    counted_ratio = totals["crewbridge, counted"] / floor if floor else float("inf")
    console_ratio = totals["crewbridge, console only"] / floor if floor else float("inf")
    floor_table = [
        ["wakeups ratio (crewbridge run / bare bot)", f"{ratio:.1f}x",
         f"<= {TARGET_RATIO:g}x ({verdict(ratio <= TARGET_RATIO)})"],
        ["same, counted crewbridge / bare bot", f"{counted_ratio:.1f}x", "cross-check"],
        ["console-only crewbridge / bare bot", f"{console_ratio:.1f}x",
         "no network: the bot's own timers"]]
    iterations = {name: b["iterations"] - a["iterations"] for name, (a, b) in loops.items()}
    bare_iters = iterations.get("bare matrix-nio bot")
    if bare_iters:
        loop_ratio = iterations["crewbridge, counted"] / bare_iters
        floor_table.append(["loop wake-ups ratio (counted crewbridge / bare bot)",
                            f"{loop_ratio:.1f}x", "select() returns that had slept"])
    print_table("crewbridge against the floor", floor_table)
    for name, (a, b) in loops.items():
        minutes = (b["t"] - a["t"]) / 60
        labels = collections.Counter({k: v - a["labels"].get(k, 0)
                                      for k, v in b["labels"].items()})
        top = [[label, f"{n / minutes:.1f}"] for label, n in labels.most_common(12) if n > 0]
        print_table(f"what woke the loop: {name} (per minute)", top or [["nothing", "0"]],
                    ["woken for", "per minute"])


async def run(window: float, settle: float) -> int:
    try:
        python = check_synapse_installed()
    except RuntimeError as e:
        print(f"idle_cost: {e}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-idle-", dir="/tmp"))
    server = SynapseServer(work / "synapse", rate_limits="raised", python=python)
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(server.start)
        print(f"Synapse on {server.url} (started in {time.monotonic() - t0:.1f} s)", flush=True)
        return await measure(server, work, window, settle)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.idle_cost",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--window", type=float, default=60.0, help="measured seconds (default 60)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds after start-up before the window (default 10)")
    p.add_argument("--counted-bot", metavar="CONFIG", help=argparse.SUPPRESS)
    p.add_argument("--bare-bot", nargs=3, metavar=("HOMESERVER", "USER_ID", "ROOM"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.counted_bot:
        return counted("bot", [args.counted_bot])
    if args.bare_bot:
        return counted("bare", args.bare_bot)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.idle_cost, {now}\n{machine()}\nload average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    return asyncio.run(run(args.window, args.settle))


if __name__ == "__main__":
    sys.exit(main())
