"""What the tests of the real `SlackBridge` share: a recording sink, an in-memory key-value
store and the bridge's config for the emulator (the `start_bridge` fixture is in
`fixtures.py`)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

from crewbridge.bridges.base import BridgeEvent, ConnectionChanged, Inbound
from crewbridge.bridges.settings import SlackConfig
from crewbridge.bridges.slack import SlackBridge
from tests.platform.slack.emulator import SlackEmulator

TIMEOUT = 5.0


class MemoryKV:
    """The bridge's `KeyValueStore`, in memory (the real one is `bot.store.Store`)."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    async def get_value(self, key: str) -> str | None:
        return self.values.get(key)

    async def put_value(self, key: str, value: str) -> None:
        self.values[key] = value

    async def delete_value(self, key: str) -> None:
        self.values.pop(key, None)


class Sink:
    """Records what the bridge hands to the core, and lets a test wait for it."""

    def __init__(self) -> None:
        self.events: list[BridgeEvent] = []
        self.refuse = 0
        """Fail this many coming events, as a core whose store is unavailable would."""
        self._changed = asyncio.Condition()

    async def __call__(self, event: BridgeEvent) -> None:
        if self.refuse:
            self.refuse -= 1
            raise OSError("the store is unavailable")
        async with self._changed:
            self.events.append(event)
            self._changed.notify_all()

    @property
    def inbound(self) -> list[Inbound]:
        return [e for e in self.events if isinstance(e, Inbound)]

    @property
    def links(self) -> list[bool]:
        return [e.up for e in self.events if isinstance(e, ConnectionChanged)]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_inbound(self, text: str) -> Inbound:
        await self.wait_for(lambda: any(m.text == text for m in self.inbound))
        return next(m for m in self.inbound if m.text == text)


StartBridge = Callable[..., Awaitable[tuple[SlackBridge, Sink]]]


def slack_config(emulator: SlackEmulator, **changes: object) -> SlackConfig:
    config = SlackConfig(bot_token=emulator.bot_token, app_token=emulator.app_token,
                         signing_secret=emulator.signing_secret, http_host="127.0.0.1",
                         http_port=0, api_url=emulator.api_url)
    return dataclasses.replace(config, **changes)
