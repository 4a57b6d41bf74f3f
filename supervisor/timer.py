"""The supervisor's one timer: it sleeps until the earliest deadline of any run and ticks
then, instead of polling (issue 8: an idle bot wakes about as often as a bare matrix-nio
client). Nothing is due: it sleeps until woken. A change that brings a deadline earlier
than the one it sleeps until wakes it (`maybe_earlier`); one that moves a deadline later
costs a wakeup, not a tick. A deadline still due right after a tick (its work is in
flight, say an exit not yet reported) is looked at again `min_gap_s` later, so the loop
cannot spin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from crewbridge.supervisor.ports import Clock

log = logging.getLogger(__name__)

MIN_GAP_S = 0.5


class DeadlineTimer:
    def __init__(self, clock: Clock, next_deadline: Callable[[], float | None],
                 tick: Callable[[], Awaitable[None]], min_gap_s: float = MIN_GAP_S):
        self.clock = clock
        self._next_deadline = next_deadline
        self._tick = tick
        self.min_gap_s = min_gap_s
        self._wake = asyncio.Event()
        self._wake_at: float | None = None  # when it sleeps until; None: no deadline
        self._ticked_at = float("-inf")

    def ticked(self, now: float) -> None:
        """A tick ran at `now` (from this loop, or from a test calling it directly)."""
        self._ticked_at = now

    def maybe_earlier(self, deadline: float | None) -> None:
        """Wake the loop if `deadline` comes before the one it sleeps until."""
        if deadline is not None and (self._wake_at is None or deadline < self._wake_at):
            self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            self._wake_at = self._next_deadline()
            if self._wake_at is not None and self._wake_at <= self._ticked_at:
                self._wake_at = self._ticked_at + self.min_gap_s  # due work still in flight
            await self._sleep(self._wake_at)
            due = self._next_deadline()  # a deadline may have moved later while it slept
            now = self.clock.now()
            if self._wake_at is not None and now >= self._wake_at and due is not None \
                    and due <= now:
                try:
                    await self._tick()
                except Exception:
                    log.exception("supervisor tick failed")

    async def _sleep(self, until: float | None) -> None:
        """Sleep on the injected clock until `until` (None: for ever), or until woken."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep(until - self.clock.now())))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()
