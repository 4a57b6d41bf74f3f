"""/healthz and /metrics of an in-process bot with the fake agent (R14.3), scraped over HTTP
with aiohttp's client and parsed as Prometheus text."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bot.http_health import ListenError
from crewbridge.bridges.base import ConnectionChanged, EventSink, PlatformUnreachable
from crewbridge.supervisor.ports import Conversation, TurnUsage
from tests.integration.harness import Recorder, start_bot, until
from tests.support.botproc import crewbridge, write_config

pytestmark = pytest.mark.timeout(60)

LISTEN = {"http": {"listen": "127.0.0.1:0"}}  # port 0: any free one, read from app.http.port
NAMES = ("crewbridge_platform_up", "crewbridge_inbound_messages", "crewbridge_posts",
         "crewbridge_outbox_pending", "crewbridge_agents", "crewbridge_breakers_open",
         "crewbridge_turn_seconds", "crewbridge_approvals_pending", "crewbridge_cost_usd")


async def get(app: App, path: str) -> tuple[int, str, str]:
    """GET `path` from the bot's health server: status, content type and body."""
    assert app.http.port is not None
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{app.http.port}{path}") as response:
        return response.status, response.headers["Content-Type"], await response.text()


async def healthz(app: App) -> tuple[int, dict[str, Any]]:
    assert app.http.port is not None
    async with aiohttp.ClientSession() as session, session.get(
            f"http://127.0.0.1:{app.http.port}/healthz") as response:
        return response.status, await response.json()


async def scrape(app: App) -> dict[tuple[str, frozenset], float]:
    """Every sample of /metrics, by name and labels; the families' names must be there."""
    status, content_type, text = await get(app, "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    parsed = list(text_string_to_metric_families(text))
    assert {f.name for f in parsed} >= set(NAMES)
    return {(s.name, frozenset(s.labels.items())): s.value for f in parsed for s in f.samples}


def sample(found: dict, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def test_r14_3_metrics_are_prometheus_text_and_move_after_a_message_and_a_turn(
        tmp_path: Path) -> None:
    """R14.3: /metrics parses as Prometheus text with every metric the spec names and
    their labels; a person's message counts as inbound, the lead's answer as a sent post,
    its turn in the histogram, the lead as a running agent, a turn's cost in its channel."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}], extra=LISTEN)
    try:
        before = await scrape(bot.app)
        assert sample(before, "crewbridge_platform_up", platform="console") == 1
        assert sample(before, "crewbridge_inbound_messages_total", platform="console") == 0
        assert sample(before, "crewbridge_posts_total", platform="console", outcome="sent") == 0
        assert sample(before, "crewbridge_turn_seconds_count") == 0
        assert sample(before, "crewbridge_agents", state="running") == 0
        for outcome in ("retried", "set_aside", "dropped"):
            assert sample(before, "crewbridge_posts_total", platform="console",
                          outcome=outcome) == 0

        await bot.say("webui", "hello lead", sender="carol")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("webui")),
                    what="the lead's answer")
        await bot.app.supervisor.wait_quiet(10)
        assert await bot.app.outbox.drain(10)
        await bot.app.host.record_usage("webui", Conversation("webui"), TurnUsage(0.5, 10, 1))

        after = await scrape(bot.app)
        assert sample(after, "crewbridge_inbound_messages_total", platform="console") == 1
        sent = sample(after, "crewbridge_posts_total", platform="console", outcome="sent")
        rec = bot.rec
        assert sent == len(rec.sent) + len(rec.edits) + len(rec.deleted) + len(rec.reactions)
        assert sent >= 1  # the lead's answer
        assert sample(after, "crewbridge_turn_seconds_count") == 1  # the fake agent's turn
        assert sample(after, "crewbridge_turn_seconds_sum") > 0
        assert sample(after, "crewbridge_agents", state="running") == 1
        assert sample(after, "crewbridge_cost_usd_total", channel="webui") == pytest.approx(0.5)
        assert sample(after, "crewbridge_outbox_pending") == 0
        assert sample(after, "crewbridge_breakers_open") == 0
        assert sample(after, "crewbridge_approvals_pending") == 0
    finally:
        await bot.stop()


async def test_r14_3_healthz_is_503_naming_a_platform_that_is_down_and_200_when_back(
        tmp_path: Path) -> None:
    """R14.3, R6.3: 200 with every platform up; a bridge reporting its connection down
    makes it 503 naming the platform (and `crewbridge_platform_up` 0) at once, before any
    outage alert is due; 200 again once it is back."""
    config = load_config(write_config(
        tmp_path / "c.toml", extra={**LISTEN, "admin": {"slack": ["C0"]},
                                    "slack": {"bot_token": "xoxb-1", "app_token": "xapp-1"}}))
    clock = FakeClock(start=time.time())
    app = App(config, clock=clock, bridges={"console": Recorder(),
                                            "slack": Recorder(platform="slack")})
    await app.start()
    try:
        assert await healthz(app) == (200, {"status": "ok", "down": [], "store": "ok",
                                            "platforms": {"console": "up", "slack": "up"}})
        await app.on_event(ConnectionChanged("slack", False, clock.now(), "socket closed"))
        code, body = await healthz(app)
        assert (code, body["status"], body["down"]) == (503, "down", ["slack"])
        assert body["platforms"] == {"console": "up", "slack": "down"}
        assert sample(await scrape(app), "crewbridge_platform_up", platform="slack") == 0
        await app.on_event(ConnectionChanged("slack", True, clock.now()))
        assert (await healthz(app))[0] == 200
        assert sample(await scrape(app), "crewbridge_platform_up", platform="slack") == 1
    finally:
        await app.stop()


@dataclass
class LateBridge(Recorder):
    """A platform not reachable at start-up; reachable once the test sets `reachable`."""

    reachable: asyncio.Event = field(default_factory=asyncio.Event)
    tries: int = 0

    async def start(self, sink: EventSink) -> None:
        self.tries += 1
        if self.tries == 1:
            raise PlatformUnreachable("connection refused")
        await self.reachable.wait()
        await super().start(sink)


async def test_r14_3_r14_2_a_platform_unreachable_at_start_up_is_down_until_it_connects(
        tmp_path: Path) -> None:
    """R14.3, R14.2: a platform the bot could not reach at start-up is running without it;
    /healthz names it down until the bot's retry connects, then answers 200."""
    config = load_config(write_config(
        tmp_path / "c.toml", extra={**LISTEN,
                                    "slack": {"bot_token": "xoxb-1", "app_token": "xapp-1"}}))
    late = LateBridge(platform="slack")
    app = App(config, bridges={"console": Recorder(), "slack": late})
    await app.start()
    try:
        code, body = await healthz(app)
        assert (code, body["down"]) == (503, ["slack"])
        late.reachable.set()
        await until(lambda: not app.outages.is_down("slack"), timeout=30,  # a real backoff
                    what="the retry connected")
        assert (await healthz(app))[0] == 200
        assert late.tries == 2
    finally:
        await app.stop()


async def test_r14_3_healthz_is_503_while_the_store_refuses_writes(tmp_path: Path) -> None:
    """R14.3: /healthz writes to the store; while SQLite refuses writes it is 503 naming the
    store, with SQLite's reason, and 200 once writes are taken again."""
    bot = await start_bot(tmp_path, extra=LISTEN)
    try:
        await bot.app.store._db.execute("PRAGMA query_only = ON")  # every write refused
        code, body = await healthz(bot.app)
        assert (code, body["down"]) == (503, ["store"])
        assert "readonly" in body["store"]
        await bot.app.store._db.execute("PRAGMA query_only = OFF")
        assert (await healthz(bot.app))[0] == 200
    finally:
        await bot.stop()


async def test_r14_3_off_by_default_and_a_busy_port_is_one_clear_error(tmp_path: Path) -> None:
    """R14.3: without `[http] listen` nothing listens; an address in use stops the start
    with an error naming `http.listen` (no traceback), and the bot's stop is clean."""
    bot = await start_bot(tmp_path)
    try:
        assert bot.app.http.port is None
    finally:
        await bot.stop()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        app = App(load_config(write_config(tmp_path / "busy.toml", extra={
            "http": {"listen": f"127.0.0.1:{port}"}})), bridges={"console": Recorder()})
        try:
            with pytest.raises(ListenError, match=rf"^http\.listen: cannot listen on "
                                                  rf"127\.0\.0\.1:{port}: "):
                await app.start()
        finally:
            await app.stop()


def test_r14_3_a_bad_listen_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    """R14.3, R11.1: `crewbridge check` refuses a listen that is no host:port, exit 2."""
    config = write_config(tmp_path / "c.toml", extra={"http": {"listen": "9464"}})
    result = crewbridge("check", "--config", str(config))
    assert result.returncode == 2
    assert f"{config}: http.listen: expected a \"host:port\"" in result.stderr
