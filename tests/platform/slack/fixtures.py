"""Pytest fixtures for the Slack tier (the local Slack emulator); registered in tests/conftest.py.

The emulator starts in milliseconds, so each test gets a fresh one: no state leaks between
tests, and every server a test starts is stopped when it ends.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import pytest

from crewbridge.bridges.slack import SlackBridge
from tests.platform.slack.bridge_support import (
    TIMEOUT,
    MemoryKV,
    Sink,
    StartBridge,
    slack_config,
)
from tests.platform.slack.emulator import SlackEmulator


@pytest.fixture
async def slack_emulator() -> AsyncIterator[SlackEmulator]:
    """A running Slack emulator with two people, two channels and an IM.

    People: `U0ALICE` (display name "alice"), `U0BOB` ("bob"). Channels: `C0GENERAL`
    (#general), `C0WEBUI` (#webui). IM with alice: `D0ALICE`.
    """
    async with SlackEmulator() as emulator:
        emulator.add_user("U0ALICE", "alice.smith", real_name="Alice Smith", display_name="alice")
        emulator.add_user("U0BOB", "bob", real_name="Bob Jones", display_name="bob")
        emulator.add_channel("C0GENERAL", "general")
        emulator.add_channel("C0WEBUI", "webui")
        emulator.add_im("D0ALICE", "U0ALICE")
        yield emulator


@pytest.fixture
async def start_bridge(slack_emulator: SlackEmulator) -> AsyncIterator[StartBridge]:
    """Start real bridges against the emulator; every one is stopped when the test ends."""
    bridges: list[SlackBridge] = []

    async def start(*, clock: Callable[[], float] = time.monotonic,
                    **changes: object) -> tuple[SlackBridge, Sink]:
        """`changes` to the bridge's config; `clock` paces its edits (R13.7)."""
        bridge = SlackBridge(slack_config(slack_emulator, **changes), MemoryKV(),
                             ping_interval_s=0.5, connect_timeout_s=TIMEOUT, clock=clock)
        bridges.append(bridge)
        sink = Sink()
        await bridge.start(sink)
        slack_emulator.events_url = bridge.events_url
        return bridge, sink

    yield start
    for bridge in bridges:
        await bridge.stop()
