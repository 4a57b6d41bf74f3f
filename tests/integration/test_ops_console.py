"""Ops scenarios as a person at the console sees them (R4.4, R6.1, R3.4), and platform
outage alerts (R6.3)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import ConnectionChanged
from tests.integration.harness import Recorder, until
from tests.integration.test_supervision import flaky_command
from tests.support.botproc import BotProcess, write_config

pytestmark = pytest.mark.timeout(90)


def test_r4_4_r6_1_console_crash_loop_one_alert_then_reset_delivers(tmp_path: Path) -> None:
    """The scripted console run of issue 3: a crashing lead opens its breaker with exactly
    one #ops alert, its queued message is delivered after `#ops reset`, and no error text
    reaches any team channel."""
    flag = tmp_path / "broken"
    flag.touch()
    config = write_config(tmp_path / "c.toml", agent={"spawn_failure_cooldown_s": 0},
                          channels=[{"name": "webui", "command": flaky_command(flag)}])
    bot = BotProcess(config)
    try:
        bot.send("#webui please build the login page")
        bot.wait_for(r"^#ops crewbridge: 🛑 Circuit breaker open: webui")
        bot.wait_for(r"^#webui/\d+ crewbridge: webui is paused")
        flag.unlink()
        bot.send("#ops reset webui")
        bot.wait_for(r"^#webui/\d+ webui: got it — `please build the login page`")
        bot.wait_for(r"^#ops crewbridge: ✅ Recovered: webui")
        bot.close_stdin()
        assert bot.wait_exit() == 0
        out = bot.output().splitlines()
        assert sum("Circuit breaker open" in line for line in out) == 1
        team = [line for line in out if not line.startswith(("#ops", "  "))]
        assert not any("boom" in line or "exited with status" in line for line in team), team
    finally:
        bot.close()


async def test_r6_3_platform_down_over_60s_alerts_other_platforms_once(tmp_path: Path) -> None:
    """R6.3: a connection down for more than 60 s gives one alert on the other platforms'
    admin rooms (not its own), and one recovery notice when it is back."""
    config = load_config(write_config(
        tmp_path / "c.toml", extra={"admin": {"slack": ["C0"]},
                                    "slack": {"bot_token": "x", "app_token": "y"}}))
    console, slack = Recorder(), Recorder(platform="slack")
    clock = FakeClock(start=time.time())
    app = App(config, clock=clock, bridges={"console": console, "slack": slack})
    await app.start()
    try:
        await app.on_event(ConnectionChanged("slack", False, clock.now(), "socket closed"))
        await clock.advance(30)
        assert not any("connection down" in t for t in console.in_room("ops"))
        await clock.advance(31)
        await until(lambda: any("slack connection down" in t for t in console.in_room("ops")),
                    what="outage alert")
        await clock.advance(120)
        assert sum("connection down" in t for t in console.in_room("ops")) == 1
        assert slack.in_room("C0") == []
        await app.on_event(ConnectionChanged("slack", True, clock.now()))
        await until(lambda: any("connection is back" in t for t in console.in_room("ops")),
                    what="recovery notice")
        await app.on_event(ConnectionChanged("slack", False, clock.now()))
        await app.on_event(ConnectionChanged("slack", True, clock.now() + 5))
        await clock.advance(120)
        assert sum("connection is back" in t for t in console.in_room("ops")) == 1  # short blip
    finally:
        await app.stop()
