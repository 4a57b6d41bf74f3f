"""Test doubles of *our own* parts for the Matrix tier: the store's key-value face and the
core's event sink. The homeserver and matrix-nio stay real.

`RecordingSink` is what the core would be: it records every event the bridge hands over and
lets a test wait for one (with a timeout, never a sleep); it can be told to fail, to check
that a failed batch does not move the sync position (R8.2).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from crewbridge.bridges.base import BridgeEvent, ConnectionChanged, Inbound, RoomJoined


async def wait_on(changed: asyncio.Condition, condition: Callable[[], Any], timeout: float,
                  failure: Callable[[], str]) -> Any:
    """Wait until `condition()` is truthy, re-checked each time `changed` is notified;
    return its value, or fail with `failure()` after `timeout` seconds."""
    async def check() -> Any:
        async with changed:
            while not (value := condition()):
                await changed.wait()
            return value
    try:
        return await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        raise AssertionError(failure()) from None


class MemoryKV:
    """`bridges.base.KeyValueStore` in memory; one instance plays one bot's durable store."""

    def __init__(self) -> None:
        self.data: dict[str, str] = {}
        self.writes: list[tuple[str, str]] = []

    async def get_value(self, key: str) -> str | None:
        return self.data.get(key)

    async def put_value(self, key: str, value: str) -> None:
        self.data[key] = value
        self.writes.append((key, value))

    async def delete_value(self, key: str) -> None:
        self.data.pop(key, None)


class SinkFailure(RuntimeError):
    """Raised by a `RecordingSink` told to fail, standing in for a store error."""


class RecordingSink:
    """Records events in order; `fail_when(event)` true makes the call raise instead."""

    def __init__(self, fail_when: Callable[[BridgeEvent], bool] | None = None):
        self.events: list[BridgeEvent] = []
        self.failures: list[BridgeEvent] = []
        self.fail_when = fail_when
        self._changed = asyncio.Condition()

    async def __call__(self, event: BridgeEvent) -> None:
        async with self._changed:
            if self.fail_when is not None and self.fail_when(event):
                self.failures.append(event)
                self._changed.notify_all()
                raise SinkFailure(f"sink refused {event}")
            self.events.append(event)
            self._changed.notify_all()

    def inbound(self, room: str | None = None) -> list[Inbound]:
        return [e for e in self.events if isinstance(e, Inbound)
                and (room is None or e.room == room)]

    def texts(self, room: str | None = None) -> list[str]:
        return [e.text for e in self.inbound(room)]

    def joined(self) -> list[RoomJoined]:
        return [e for e in self.events if isinstance(e, RoomJoined)]

    def connection(self) -> list[ConnectionChanged]:
        return [e for e in self.events if isinstance(e, ConnectionChanged)]

    async def wait_until(self, condition: Callable[[], Any], *, timeout: float = 10.0,
                         what: str = "condition") -> Any:
        """Wait until `condition()` is truthy, re-checked on every event; return its value."""
        return await wait_on(self._changed, condition, timeout,
                             lambda: f"timed out after {timeout} s waiting for {what}; "
                                     f"events so far: {self.events}")

    async def wait_for_texts(self, room: str, texts: list[str], *,
                             timeout: float = 10.0) -> list[Inbound]:
        """Wait until every text in `texts` arrived from `room`; return those Inbounds."""
        def done() -> list[Inbound] | None:
            got = [e for e in self.inbound(room) if e.text in texts]
            return got if {e.text for e in got} >= set(texts) else None
        return await self.wait_until(done, timeout=timeout, what=f"texts {texts} in {room}")

    async def wait_for_join(self, room: str, *, timeout: float = 10.0) -> RoomJoined:
        return await self.wait_until(
            lambda: next((e for e in self.joined() if e.room == room), None),
            timeout=timeout, what=f"RoomJoined {room}")
