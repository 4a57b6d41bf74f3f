"""Time, injected: the real clock in production, a fake one in tests.

Cooldowns of 120 s and breakers of 600 s must be testable in microseconds, so nothing in
the core calls `time.time()` or `asyncio.sleep()` directly for a policy timer; it asks
the clock it was given. The `Clock` Protocol itself is the supervisor's (`supervisor.ports`).
"""

from __future__ import annotations

import asyncio
import time


class SystemClock:
    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeClock:
    """A clock that moves only when a test calls `advance`; sleepers wake in time order."""

    def __init__(self, start: float = 1_000_000.0):
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self._now + max(0.0, seconds), fut))
        try:
            await fut
        finally:
            self._sleepers = [(t, f) for t, f in self._sleepers if f is not fut]

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking every sleeper whose deadline has come, in order."""
        target = self._now + seconds
        while True:
            due = sorted(((t, f) for t, f in self._sleepers if t <= target and not f.done()),
                         key=lambda pair: pair[0])
            if not due:
                break
            when, fut = due[0]
            self._now = max(self._now, when)
            fut.set_result(None)
            for _ in range(5):  # let the woken task run up to its next await
                await asyncio.sleep(0)
        self._now = target
        for _ in range(5):
            await asyncio.sleep(0)
