"""R6.3: a homeserver that hangs (takes the connection, then says nothing) is down, and the
whole path says so: the real `MatrixBridge` on the session's Synapse behind a proxy that
stops answering, inside the real core (`App`) whose outage alerts run on a fake clock.

Only the bridge's own timeouts are shortened (a 1 s long poll, 2 s of grace instead of
10 s), so the hang is noticed in seconds; the core's 60 s are fake time. The alert goes to
the other platform's admin room, the console here (a `Recorder`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.matrix import MatrixBridge
from tests.integration.harness import Recorder, until
from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.support import MemoryKV
from tests.platform.matrix.synapse import Account, Person, SynapseServer
from tests.support.botproc import write_config

POLL_MS = 1000
GRACE_S = 2.0
"""The bridge's knobs in this test: a sync is overdue 3 s after it was sent."""


def alerts(console: Recorder, text: str) -> int:
    return sum(text in t for t in console.in_room("ops"))


async def test_r6_3_a_hung_homeserver_is_alerted_once_and_its_return_noticed(
        synapse: SynapseServer, make_account: Callable[..., Account], alice: Person,
        matrix_room: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R6.3: once Synapse stops answering, the overdue sync makes the link down as of the
    last good sync (not as of when the hang was noticed): one "down" alert on the console
    before 60 s of fake time have passed since the report (the outage is ≥ 3 s older), none
    again while it lasts, and one "back" notice when the homeserver answers again."""
    caplog.set_level(logging.INFO, logger="crewbridge.bot.app")
    proxy = CountingProxy(synapse.url)
    await proxy.start()
    account = make_account("hung")
    await alice.invite(matrix_room, account.user_id)
    config = load_config(write_config(tmp_path / "c.toml", extra={
        "admin": {"matrix": [matrix_room]},
        "matrix": {"homeserver": proxy.url, "user_id": account.user_id,
                   "access_token": account.access_token}}))
    assert config.matrix is not None
    bridge = MatrixBridge(config.matrix, MemoryKV(), sync_timeout_ms=POLL_MS,
                          overdue_grace_s=GRACE_S, backoff_cap_s=1.0)
    console = Recorder()
    clock = FakeClock(start=time.time())
    app = App(config, clock=clock, bridges={"console": console, "matrix": bridge})
    await app.start()
    try:
        proxy.hang()
        await until(lambda: app.outages.is_down("matrix"), timeout=30,
                    what="the hung homeserver reported down")
        assert proxy.hung >= 1
        # Cut by the bridge as overdue (1 s poll + 2 s), not by nio's own timeout (16 s).
        assert "matrix connection down: no answer to a sync within 3 s" in caplog.text
        await clock.advance(50)
        assert alerts(console, "connection down") == 0
        await clock.advance(8)  # 58 s since the report: ≥ 61 s since the last good sync
        await until(lambda: alerts(console, "matrix connection down") == 1,
                    what="one outage alert")
        await clock.advance(120)
        assert alerts(console, "connection down") == 1

        proxy.answer_again()
        await until(lambda: alerts(console, "matrix connection is back") == 1, timeout=30,
                    what="one recovery notice")
        await clock.advance(120)
        assert alerts(console, "connection down") == 1
        assert alerts(console, "connection is back") == 1
    finally:
        await app.stop()
        await proxy.stop()
