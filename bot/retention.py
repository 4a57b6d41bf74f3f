"""Retention (R14.6): once at start-up and then daily, what is older than `[bot]
retain_days` is deleted — messages, finished tasks, decided approvals, usage and audit rows,
the day's budget flags — and a worker with no open task and no activity for that long is
forgotten, so nothing the bot keeps per worker or per message grows without bound.

The decisions are the pure functions here (the horizon, who is running, who may be
forgotten); what may go row by row is decided in SQL (`bot.store_retention`), in batches
of `BATCH_ROWS` per transaction, so a first prune of a year's history lets the bot's own
writes through between batches. The dedup of R8.1 needs only recent events: a platform
re-delivers within minutes, not months.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from crewbridge.bot.crew import Crew
from crewbridge.bot.rooms import Rooms
from crewbridge.bot.store import Store
from crewbridge.bot.store_retention import Horizon, Prune
from crewbridge.bot.store_usage import utc_day
from crewbridge.supervisor.executor import RunView
from crewbridge.supervisor.ports import Clock
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.supervisor import Supervisor

log = logging.getLogger(__name__)

DAY_S = 86_400
BATCH_ROWS = 1000
"""Rows of one kind per transaction: the longest the bot's own writes wait behind a pass.
A message goes with its refs and reactions; 1,000-row batches took at most 0.29 s in the
first pass over a busy year's store, 5,000 of them over half a second (docs/benchmarks.md)."""


def horizon(now: float, retain_days: float, running: frozenset[str] = frozenset()) -> Horizon:
    """What is kept: the last `retain_days` days (usage by whole UTC days: the day the
    cut falls in is kept). A span longer than the epoch keeps everything."""
    cut = max(0.0, now - retain_days * DAY_S)
    return Horizon(cut, utc_day(cut), running)


def is_running(view: RunView | None) -> bool:
    """Whether a run is anything but stopped and idle: starting, running, stopping, in a
    turn or waiting for a process slot. None: the supervisor never had to do with it."""
    return view is not None and (view.state is not RunState.STOPPED or view.in_turn
                                 or view.waiting_for_slot)


def running_agents(views: Mapping[str, RunView]) -> frozenset[str]:
    return frozenset(name for name, view in views.items() if is_running(view))


def may_forget(view: RunView | None, has_open_task: bool) -> bool:
    """A worker is asked of the store (its activity) only when it has no open task and
    is not running: a running worker is never forgotten, whatever its history says."""
    return not has_open_task and not is_running(view)


@dataclass(frozen=True)
class Pruned:
    """What one pass deleted: rows per kind, and the workers forgotten."""

    rows: Mapping[Prune, int] = field(default_factory=dict)
    forgotten: tuple[str, ...] = ()

    def summary(self) -> str:
        parts = [f"{n} {kind}" for kind, n in self.rows.items() if n]
        if self.forgotten:
            parts.append(f"workers {', '.join(self.forgotten)} forgotten")
        return ", ".join(parts) or "nothing"


class Retention:
    def __init__(self, store: Store, supervisor: Supervisor, crew: Crew, rooms: Rooms,
                 retain_days: float, clock: Clock, *, batch: int = BATCH_ROWS):
        self.store = store
        self.supervisor = supervisor
        self.crew = crew
        self.rooms = rooms
        self.retain_days = retain_days
        self.clock = clock
        self.batch = batch

    async def run_daily(self) -> None:
        """Prune now, then every day. A failed pass is logged and tried again the next day:
        nothing depends on it but the store's size."""
        while True:
            try:
                pruned = await self.prune_once()
                log.info("retention (%g days): %s", self.retain_days, pruned.summary())
            except Exception:
                log.exception("retention failed; trying again in a day")
            await self.clock.sleep(DAY_S)

    async def prune_once(self) -> Pruned:
        h = horizon(self.clock.now(), self.retain_days,
                    running_agents(self.supervisor.run_views()))
        forgotten = tuple([name for name in await self.store.worker_names()
                           if await self._forget(name, h)])
        rows = {kind: await self._prune(kind, h) for kind in Prune}
        await self._drop_forgotten_runs()
        return Pruned(rows, forgotten)

    async def _forget(self, name: str, h: Horizon) -> bool:
        if not may_forget(self.supervisor.run_view(name), self.crew.has_open_task(name)):
            return False
        if not await self.store.forget_worker(name, h):
            return False
        self.crew.forget_worker(name)
        self.rooms.detach(name)
        return True

    async def _prune(self, kind: Prune, h: Horizon) -> int:
        total = 0
        while (n := await self.store.prune(kind, h, self.batch)) >= self.batch:
            total += n
        return total + n

    async def _drop_forgotten_runs(self) -> None:
        """The supervisor's runs of agents whose rows are gone (forgotten workers, forks of
        pruned threads) leave its memory too."""
        known = {a.name for a in await self.store.agents()}
        for name, view in self.supervisor.run_views().items():
            if name not in known and not is_running(view):
                self.supervisor.forget(name)
