"""One task that hands a bridge's events to the core's sink in the order they arrived.

The Socket Mode client handles each envelope in its own task, and a message needs name
look-ups (network round trips) before it is an event, so events could overtake each other;
the sink contract says they must not. So every event goes through one queue, as the
awaitable that makes it, and a single task drains it: each is made and stored before the
next is begun. Whoever queued an event can wait until it is stored, to ack it only then.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

from crewbridge.bridges.base import BridgeEvent, EventSink

log = logging.getLogger(__name__)

Make = Coroutine[Any, Any, BridgeEvent | None]
"""An event still to be made (None: there is nothing to deliver after all)."""

_Pending = tuple[Make, asyncio.Future[None] | None]


async def ready(event: BridgeEvent) -> BridgeEvent:
    """An event that needs no look-up, in the shape the pump takes (an awaitable)."""
    return event


class OrderedPump:
    """Construct inside a running loop; `deliver`/`post` events; `await close()` once."""

    def __init__(self, sink: EventSink, *, name: str) -> None:
        self._sink = sink
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._run(), name=name)

    async def deliver(self, make: Make) -> None:
        """Queue an event and wait until the sink has taken it; raises what the sink raised."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((make, done))
        await done

    def post(self, make: Make) -> None:
        """Queue an event nobody waits for (a connection change)."""
        self._queue.put_nowait((make, None))

    async def close(self, timeout_s: float) -> None:
        """Let the events already queued reach the sink (for up to `timeout_s`), then drop
        the rest: their waiters are cancelled, so nothing is acked that was not stored."""
        self._queue.put_nowait(None)
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        except TimeoutError:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending is not None:
                make, done = pending
                make.close()
                if done is not None and not done.done():
                    done.cancel()

    async def _run(self) -> None:
        while (pending := await self._queue.get()) is not None:
            make, done = pending
            try:
                event = await make
                if event is not None:
                    await self._sink(event)
            except Exception as e:  # not stored: the platform will deliver it again
                log.warning("%s: an event was not taken by the core (%s: %s); it will be "
                            "delivered again", self._task.get_name(), type(e).__name__, e)
                if done is not None and not done.done():
                    done.set_exception(e)
            else:
                if done is not None and not done.done():
                    done.set_result(None)
