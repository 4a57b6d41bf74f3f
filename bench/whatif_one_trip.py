"""What if the store made one round trip per call? Run a benchmark with that change patched in.

Not product code and not a fix: a measurement aid for the fix proposed in
docs/benchmarks.md ("Bottleneck"). It patches, in this process only:

- `Store._one` / `Store._all`: one `execute_fetchall` (one trip) instead of execute, fetch
  and close (three trips);
- `Store._write`, `Store._run`, `Store.accept_inbound`: the whole transaction — `BEGIN
  IMMEDIATE`, every statement, `COMMIT` — as one function run on aiosqlite's thread (one
  trip) instead of `2 + 2 x statements` trips; same statements, same atomicity, same
  single writer;
- `Supervisor._health` / `_put_health`: a write-through cache of `Health` records (the
  supervisor is their only writer), so delivering a nudge does not read SQLite for it.

It uses aiosqlite's `Connection._execute` (private) to run a function on the connection's
thread. Delete this file once the store has the change.

Run: `.venv/bin/python -m bench.whatif_one_trip inbound_throughput [--messages 5000]`
(any benchmark name and its flags; `--no-health-cache` leaves the supervisor unpatched).
"""

from __future__ import annotations

import runpy
import sqlite3
import sys
from collections.abc import Iterable
from typing import Any

from bot import store as store_mod
from bot.model import Inbound, Nudge
from supervisor import breaker
from supervisor import supervisor as supervisor_mod

Statement = tuple[str, tuple]


def _run_sync(conn: sqlite3.Connection, statements: list[Statement]) -> list[int | None]:
    results: list[int | None] = []
    for sql, args in statements:
        cur = conn.execute(sql, args)
        if cur.rowcount <= 0:
            results.append(None)
        elif sql.lstrip().upper().startswith("INSERT"):
            results.append(cur.lastrowid)
        else:
            results.append(cur.rowcount)
        cur.close()
    return results


def _transaction_sync(conn: sqlite3.Connection, first: list[Statement],
                      rest: list[Statement], need_first: bool) -> list[int | None] | None:
    """BEGIN, `first`, then `rest` unless `need_first` and `first[0]` changed nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = _run_sync(conn, first)
        if need_first and results[0] is None:
            conn.execute("ROLLBACK")
            return None
        results += _run_sync(conn, rest)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return results


async def _one(self: Any, sql: str, args: Iterable = ()) -> tuple | None:
    rows = await self._db.execute_fetchall(sql, tuple(args))
    return rows[0] if rows else None


async def _all(self: Any, sql: str, args: Iterable = ()) -> list[tuple]:
    return list(await self._db.execute_fetchall(sql, tuple(args)))


async def _run(self: Any, statements: list[Statement]) -> list[int | None]:
    return await self._db._execute(_run_sync, self._db._conn, list(statements))


async def _write(self: Any, statements: list[Statement]) -> list[int | None]:
    async with self._lock:
        return await self._db._execute(_transaction_sync, self._db._conn, list(statements),
                                       [], False)


async def accept_inbound(self: Any, channel: str, msg: Inbound, nudges: Iterable[Nudge],
                         now: float) -> bool:
    stored = ("INSERT OR IGNORE INTO messages (channel, platform, room, sender, sender_name, "
              "event_id, text, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
              (channel, msg.platform, msg.room, msg.sender, msg.sender_name, msg.event_id,
               msg.text, msg.ts))
    queue = [self._enqueue_sql(n, now) for n in nudges]
    async with self._lock:
        done = await self._db._execute(_transaction_sync, self._db._conn, [stored], queue, True)
    return done is not None


def patch_store() -> None:
    store_mod.Store._one = _one
    store_mod.Store._all = _all
    store_mod.Store._run = _run
    store_mod.Store._write = _write
    store_mod.Store.accept_inbound = accept_inbound


def patch_health_cache() -> None:
    cache: dict[str, breaker.Health] = {}

    async def _health(self: Any, rt: Any) -> breaker.Health:
        h = cache.get(rt.health_key)
        if h is None:
            h = cache[rt.health_key] = await self.store.health(rt.health_key)
        return h

    async def _put_health(self: Any, rt: Any, h: breaker.Health) -> None:
        cache[rt.health_key] = h
        await self.store.put_health(rt.health_key, h)

    supervisor_mod.Supervisor._health = _health
    supervisor_mod.Supervisor._put_health = _put_health


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0].startswith("-"):
        sys.exit("usage: python -m bench.whatif_one_trip <benchmark> [--no-health-cache] "
                 "[its flags]")
    name, rest = args[0], args[1:]
    patch_store()
    if "--no-health-cache" in rest:
        rest.remove("--no-health-cache")
    else:
        patch_health_cache()
    sys.argv = [f"bench.{name}", *rest]
    runpy.run_module(f"bench.{name}", run_name="__main__")


if __name__ == "__main__":
    main()
