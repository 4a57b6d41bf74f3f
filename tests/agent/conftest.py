"""Fixtures for the agent tier: the real Claude Code CLI against a loopback Messages API.

`claude_bin` fails (never skips) when the bundled CLI is missing; `messages_api` is a
started stand-in that is stopped when the test ends; `claude_home` is an empty home
directory so no credentials or settings of the machine running the tests are seen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.agent.messages_api import MessagesAPI, bundled_claude


@pytest.fixture(scope="session")
def claude_bin() -> Path:
    """The real CLI; a missing one is an error of the test run, not a skip (R10.1)."""
    return bundled_claude()


@pytest.fixture
async def messages_api() -> AsyncIterator[MessagesAPI]:
    async with MessagesAPI() as api:
        yield api


@pytest.fixture
def claude_home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    return home
