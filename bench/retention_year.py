"""A busy team's year in the store, with retention on and off (R14.6).

What a year of use leaves in the SQLite store: 30 channels, each bound to a Slack and a Matrix
room; every day 2,000 stored messages — people's (60 %), each relayed into the channel's
other room, a third of them opening a thread and most of the rest replying in one, and the
agents' answers (40 %), shown in both rooms — with the bot's Matrix status marks on people's
messages; 50 tasks a day (each its "Task #N" thread, its worker's health record, finished the
next day), by workers of whom a few are new each week and the rest fall idle; usage rows
per (day, lead, channel, person); 110 audit rows and 20 decided approvals a day; the daily
budget caps. Rows are written with the store's own row helpers (`bot.store_threads`), in
one transaction per simulated day, as the bot would have written them over the year.

With retention on, the bot's daily pass (`bot.retention.Retention.prune_once`, 90 days) runs
at the end of each simulated day; off, nothing is deleted. Recorded each way: the database
file's size (after a checkpoint), and the start-up time on it — `Store.open`, then the whole
`App.start` (the bot's own start-up) with a memory bridge. Floors: the size with retention is
compared with the same rows written compactly (`VACUUM INTO`: what 90 days cannot go below),
and with the year without retention; start-up with retention against start-up without.
Also: the first pass of a bot switched to retention on the year-old store — its length and
its longest transaction (what the bot's own writes wait behind, at worst) — and the first
`Store.open` of that store by this release (migration 8 builds the indexes retention reads).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

from bench.common import MemoryBridge, machine, print_table, quiet_logs
from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bot.retention import DAY_S, Retention
from crewbridge.bot.store import Store
from crewbridge.bot.store_retention import Prune
from crewbridge.bot.store_threads import add_ref, bot_message, insert_message, new_thread
from tests.support.botproc import write_config

START = 1_735_689_600.0  # 2025-01-01 00:00 UTC
CHANNELS = 30
PEOPLE = 40
TASKS_PER_DAY = 50
AUDIT_PER_DAY = 110
APPROVALS_PER_DAY = 20
NEW_WORKERS_PER_WEEK = 10
WORKERS_ACTIVE = 60  # tasks go to the newest this many workers; older ones fall idle


@dataclass
class Team:
    """What the simulation remembers between days: open threads per channel, open tasks."""

    rng: random.Random
    threads: dict[str, list[int]] = field(default_factory=dict)  # channel -> recent thread ids
    open_tasks: list[tuple[int, str]] = field(default_factory=list)  # (task id, worker)
    workers: list[str] = field(default_factory=list)


def channel(i: int) -> str:
    return f"ch{i:02d}"


def rooms(ch: str) -> tuple[tuple[str, str], tuple[str, str]]:
    return ("slack", f"C{ch}"), ("matrix", f"!{ch}:team")


def write_day(conn: sqlite3.Connection, team: Team, day: int, per_day: int) -> None:
    """One simulated day of the bot's writes, in one transaction."""
    rng, t0 = team.rng, START + day * DAY_S
    people_msgs = per_day * 6 // 10
    for n in range(people_msgs):
        ts = t0 + n * (DAY_S / people_msgs)
        ch = channel(rng.randrange(CHANNELS))
        own, other = rooms(ch)[::-1] if rng.random() < 0.5 else rooms(ch)
        recent = team.threads.setdefault(ch, [])
        opens = rng.random() < 1 / 3 or not recent
        thread = None if opens else rng.choice(recent[-20:])
        person = f"person{rng.randrange(PEOPLE)}"
        mid = insert_message(conn, channel=ch, platform=own[0], room=own[1], sender=person,
                             sender_name=person, event_id=f"ev-{uuid.uuid4().hex}",
                             text=f"message {n} of day {day} " + "x" * rng.randrange(20, 200),
                             ts=ts, thread=thread)
        assert mid is not None
        add_ref(conn, *own, f"{own[0]}-{mid}", mid)
        add_ref(conn, *other, f"{other[0]}-relay-{mid}", mid)
        if own[0] == "matrix" or other[0] == "matrix":  # the bot's 👀/✅ on it
            ref = f"{own[0]}-{mid}" if own[0] == "matrix" else f"{other[0]}-relay-{mid}"
            conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                         (f"matrix.reactions.{rooms(ch)[1][1]} {ref}", '{"✅": "$r"}'))
        if opens:
            recent.append(thread := new_thread(conn, ch, mid).id)
            del recent[:-50]
        if n < per_day - people_msgs:  # an agent's answer, in the message's thread
            aid = bot_message(conn, ch, ch, "answer " + "y" * rng.randrange(100, 600),
                              ts + 30, thread)
            for platform, room in rooms(ch):
                add_ref(conn, platform, room, f"{platform}-{aid}", aid)
    write_tasks(conn, team, day, t0)
    write_usage_and_audit(conn, rng, day, t0)


def write_tasks(conn: sqlite3.Connection, team: Team, day: int, t0: float) -> None:
    """Yesterday's tasks finish; today's open, each in a thread under its "Task #N" post."""
    for task_id, _ in team.open_tasks:
        conn.execute("UPDATE tasks SET status = 'done', done_at = ? WHERE id = ?",
                     (t0 + 3600, task_id))
    team.open_tasks.clear()
    if day % 7 == 0:
        first = len(team.workers)
        team.workers += [f"worker{first + i}" for i in range(NEW_WORKERS_PER_WEEK)]
    for n in range(TASKS_PER_DAY):
        ts, ch = t0 + 7200 + n * 60, channel(team.rng.randrange(CHANNELS))
        worker = team.rng.choice(team.workers[-WORKERS_ACTIVE:])
        cur = conn.execute("INSERT INTO tasks (subject, channel, assignee, status, created_by, "
                           "created_at) VALUES (?, ?, ?, 'open', ?, ?)",
                           (f"task of day {day}", ch, worker, ch, ts))
        task_id = cur.lastrowid or 0
        root = bot_message(conn, ch, "crewbridge", f"Task #{task_id} for @{worker}", ts, None)
        thread = new_thread(conn, ch, root, owner=worker, task_id=task_id)
        conn.execute("UPDATE tasks SET thread = ? WHERE id = ?", (thread.id, task_id))
        for platform, room in rooms(ch):
            add_ref(conn, platform, room, f"{platform}-{root}", root)
        dm = f"dm-{worker}"
        conn.execute("INSERT OR IGNORE INTO channels (name, kind, created_at) "
                     "VALUES (?, 'dm', ?)", (dm, ts))
        conn.execute("INSERT INTO agents (name, kind, channel, task_id) VALUES (?, 'worker', "
                     "?, ?) ON CONFLICT(name) DO UPDATE SET task_id = excluded.task_id",
                     (worker, dm, task_id))
        conn.execute("INSERT OR REPLACE INTO health (key, json) VALUES (?, '{}')",
                     (f"task:{task_id}",))
        answer = bot_message(conn, dm, worker, f"done with #{task_id}", ts + 1800, None)
        add_ref(conn, "slack", f"D{worker}", f"slack-{answer}", answer)
        team.open_tasks.append((task_id, worker))


def write_usage_and_audit(conn: sqlite3.Connection, rng: random.Random, day: int,
                          t0: float) -> None:
    date = time.strftime("%Y-%m-%d", time.gmtime(t0))
    rows = {(channel(rng.randrange(CHANNELS)), f"person{rng.randrange(PEOPLE)}")
            for _ in range(400)}
    conn.executemany("INSERT OR IGNORE INTO usage (day, agent, channel, person, cost_usd, "
                     "input_tokens, output_tokens, turns) VALUES (?, ?, ?, ?, 0.12, 4000, "
                     "800, 3)", [(date, ch, ch, p) for ch, p in rows])
    conn.executemany("INSERT INTO audit (ts, who, platform, place, what, outcome) VALUES "
                     "(?, 'person1 (U1)', 'slack', ?, ?, 'ok')",
                     [(t0 + i * 60, channel(i % CHANNELS), f"task create {i}")
                      for i in range(AUDIT_PER_DAY)])
    conn.executemany("INSERT INTO approvals (agent, channel, request_id, tool, input, state, "
                     "decided_by, created_at, deadline, decided_at) VALUES (?, ?, ?, 'Bash', "
                     "'{}', 'allowed', 'person1', ?, ?, ?)",
                     [(channel(i), channel(i), f"r-{day}-{i}", t0 + i, t0 + 900 + i, t0 + 60)
                      for i in range(APPROVALS_PER_DAY)])
    conn.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, '{}')",
                 (f"budget.caps.{date}",))


def fake_supervisor() -> SimpleNamespace:
    """No agent runs in the simulation: the supervisor's answers when none does."""
    return SimpleNamespace(run_views=dict, run_view=lambda name: None,
                           forget=lambda name: False)


def fake_crew() -> SimpleNamespace:
    """The store itself refuses to forget a worker with an open task."""
    return SimpleNamespace(has_open_task=lambda name: False, forget_worker=lambda name: None)


def file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())


async def simulate(path: Path, days: int, per_day: int, retain: bool) -> dict[str, float]:
    store = await Store.open(path)
    clock = FakeClock(start=START)
    retention = Retention(store, fake_supervisor(), fake_crew(),  # type: ignore[arg-type]
                          SimpleNamespace(detach=lambda name: None), 90, clock)  # type: ignore[arg-type]
    team = Team(random.Random(12))
    sizes: dict[str, float] = {}
    prune_s = 0.0
    for day in range(days):
        await store._tx(lambda conn, d=day: write_day(conn, team, d, per_day))
        if retain:
            await clock.advance(START + (day + 1) * DAY_S - clock.now())
            t = time.perf_counter()
            await retention.prune_once()
            prune_s += time.perf_counter() - t
        if (day + 1) % 91 == 0 or day + 1 == days:
            await store._all("PRAGMA wal_checkpoint(TRUNCATE)")
            sizes[f"day {day + 1}"] = file_size(path)
    sizes["prune_s_per_day"] = prune_s / days if retain else 0.0
    sizes["messages"] = (await store._all("SELECT COUNT(*) FROM messages"))[0][0]
    await store.close()
    return sizes


async def first_pass(path: Path) -> tuple[float, float, int]:
    """A bot switched to retention on a year-old store: the pass's length, its longest
    transaction and its number of transactions."""
    store = await Store.open(path)
    clock = FakeClock(start=START + 365 * DAY_S)
    retention = Retention(store, fake_supervisor(), fake_crew(),  # type: ignore[arg-type]
                          SimpleNamespace(detach=lambda name: None), 90, clock)  # type: ignore[arg-type]
    longest, count, prune = 0.0, 0, store.prune

    async def timed(kind: Prune, h, limit: int) -> int:  # type: ignore[no-untyped-def]
        nonlocal longest, count
        t = time.perf_counter()
        n = await prune(kind, h, limit)
        longest, count = max(longest, time.perf_counter() - t), count + 1
        return n

    store.prune = timed  # type: ignore[method-assign]
    t = time.perf_counter()
    await retention.prune_once()
    total = time.perf_counter() - t
    await store.close()
    return total, longest, count


async def start_up(path: Path, tmp: Path, retain_days: float) -> tuple[float, float]:
    """`Store.open` on the file, then the bot's whole start-up on it (retention's own pass
    runs after start-up, in the background: `retain_days` off-scale for the store kept
    whole)."""
    t = time.perf_counter()
    store = await Store.open(path)
    open_s = time.perf_counter() - t
    await store.close()
    config = write_config(tmp / "crewbridge.toml", data_dir=path.parent,
                          channels=[{"name": channel(i)} for i in range(CHANNELS)])
    config.write_text(config.read_text().replace(
        "[bot]\n", f"[bot]\nretain_days = {retain_days}\n", 1))
    app = App(load_config(config), bridges={"console": MemoryBridge(keep=False)})
    t = time.perf_counter()
    await app.start()
    start_s = time.perf_counter() - t
    await app.stop()
    return open_s, start_s


async def upgrade(path: Path) -> float:
    """`Store.open` of a year-old store written before retention: migration 8 indexes it."""
    with sqlite3.connect(path) as con:
        con.executescript("DROP INDEX messages_ts; DROP INDEX messages_channel; "
                          "DROP INDEX threads_owner; PRAGMA user_version = 7;")
    t = time.perf_counter()
    store = await Store.open(path)
    took = time.perf_counter() - t
    await store.close()
    return took


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


async def run(days: int, per_day: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="cb-retain-"))
    try:
        on_dir, off_dir = tmp / "on", tmp / "off"
        for d in (on_dir, off_dir):
            d.mkdir(mode=0o700)
        on_db, off_db = on_dir / "crewbridge.db", off_dir / "crewbridge.db"
        t = time.perf_counter()
        on = await simulate(on_db, days, per_day, retain=True)
        on_wall = time.perf_counter() - t
        t = time.perf_counter()
        off = await simulate(off_db, days, per_day, retain=False)
        off_wall = time.perf_counter() - t
        compact = tmp / "compact.db"
        with sqlite3.connect(on_db) as con:
            con.execute(f"VACUUM INTO '{compact}'")
        on_open, on_start = await start_up(on_db, tmp, 90)
        off_open, off_start = await start_up(off_db, tmp, 1_000_000)
        year_copy = off_dir / "year.db"
        shutil.copyfile(off_db, year_copy)
        pass_s, longest_s, txs = await first_pass(year_copy)
        shutil.copyfile(off_db, year_copy)
        upgrade_s = await upgrade(year_copy)
        checkpoints = [k for k in on if k.startswith("day ")]
        print_table(f"database size over {days} days, {per_day} messages/day",
                    [(k, mib(on[k]), mib(off[k])) for k in checkpoints],
                    ("day", "retention on (90 days)", "retention off"))
        size_on, size_off = on[checkpoints[-1]], off[checkpoints[-1]]
        print_table("figures", [
            ("messages kept at the end", f"{on['messages']:,.0f}", f"{off['messages']:,.0f}"),
            ("file size", mib(size_on), mib(size_off)),
            ("on / compact rows (VACUUM INTO)", f"{size_on / compact.stat().st_size:.2f}×",
             "floor 1.00×; target ≤ 1.5×"),
            ("on / off", f"{size_on / size_off:.2f}×", f"target ≤ {1.5 * 91 / days:.2f}×"),
            ("Store.open", f"{on_open * 1000:.0f} ms", f"{off_open * 1000:.0f} ms"),
            ("App.start", f"{on_start * 1000:.0f} ms", f"{off_start * 1000:.0f} ms"),
            ("daily pass (mean)", f"{on['prune_s_per_day'] * 1000:.0f} ms", "-"),
            ("simulation wall time", f"{on_wall:.0f} s", f"{off_wall:.0f} s"),
        ], ("figure", "retention on", "retention off / target"))
        print_table("first pass on the year-old store (retention switched on)", [
            ("pass", f"{pass_s:.1f} s"), ("transactions", f"{txs}"),
            ("longest transaction", f"{longest_s * 1000:.0f} ms"),
            ("Store.open upgrading it to schema 8 (its indexes)", f"{upgrade_s:.1f} s"),
        ], ("figure", "value"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.retention_year",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--days", type=int, default=365, help="simulated days (default 365)")
    p.add_argument("--per-day", type=int, default=2000,
                   help="stored messages a day, people's and agents' (default 2000)")
    args = p.parse_args(argv)
    quiet_logs()
    print(f"bench.retention_year, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n"
          f"{machine()}\nload average at start {os.getloadavg()[0]:.1f}")
    asyncio.run(run(args.days, args.per_day))
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
