"""`[http] listen`: `GET /healthz` and `GET /metrics` for a service manager and Prometheus
(R14.3).

/healthz answers 200 only when the bot can do its work: the store takes a write (a tiny
heartbeat, in a transaction like every other write, so a full disk or a read-only file is
seen) and every platform's connection is up as the outage tracker knows it (R6.3: down as
soon as a request failed or is overdue). Otherwise 503, and the JSON names what is down.
While the bot is starting it is 503 "starting": not ready is not healthy. /metrics is the
App's own registry (`bot.metrics`) in the Prometheus text format.

The server is aiohttp's, started right after the store opens — so a bot whose platforms
cannot be reached at start-up can already say so — and stopped first when the bot stops.
Off (no socket at all) when `listen` is "".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from crewbridge.bot.config import split_listen
from crewbridge.bot.metrics import read_snapshot
from crewbridge.supervisor.redact import redact

if TYPE_CHECKING:
    from crewbridge.bot.app import App

log = logging.getLogger(__name__)

HEARTBEAT_KEY = "http.healthz"  # the kv row each /healthz writes
STORE_TIMEOUT_S = 5.0  # a store that takes longer to write is not healthy
STORE = "store"


class Status(StrEnum):
    OK = "ok"
    DOWN = "down"
    STARTING = "starting"


@dataclass(frozen=True)
class HealthReport:
    """What /healthz found; `code` and `body` are its answer."""

    starting: bool = False
    store_error: str | None = None  # None: the store took the write
    platforms: Mapping[str, bool] = field(default_factory=dict)  # platform -> connected

    @property
    def down(self) -> list[str]:
        """What is down, by name: "store" and the platforms."""
        return ([STORE] if self.store_error is not None else []) + sorted(
            p for p, up in self.platforms.items() if not up)

    @property
    def status(self) -> Status:
        return Status.STARTING if self.starting else Status.DOWN if self.down else Status.OK

    @property
    def code(self) -> int:
        return 200 if self.status is Status.OK else 503

    def body(self) -> dict[str, Any]:
        return {"status": self.status, "down": self.down,
                "store": "ok" if self.store_error is None else self.store_error,
                "platforms": {p: "up" if up else "down"
                              for p, up in sorted(self.platforms.items())}}


async def probe(app: App) -> HealthReport:
    """Write the heartbeat and ask the outage tracker (R6.3) about every platform."""
    try:
        await asyncio.wait_for(app.store.put_value(HEARTBEAT_KEY, repr(app.clock.now())),
                               STORE_TIMEOUT_S)
        store_error = None
    except TimeoutError:
        store_error = f"no write within {STORE_TIMEOUT_S:g}s"
    except Exception as e:  # sqlite3, OSError, a closed connection: all mean "not writable"
        store_error = redact(f"{type(e).__name__}: {e}")[:200]
    if store_error is not None:
        log.warning("healthz: the store is not writable: %s", store_error)
    if not app.ready.is_set():
        return HealthReport(starting=True, store_error=store_error)
    return HealthReport(store_error=store_error,
                        platforms={p: not app.outages.is_down(p) for p in app.bridges})


class ListenError(Exception):
    """`[http] listen` names an address the bot cannot listen on."""


class HealthServer:
    """The HTTP listener of one App; `port` is the bound one (a test listens on port 0)."""

    def __init__(self, listen: str, app: App):
        self.listen = listen
        self.app = app
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        if not self.listen:
            return
        host, port = split_listen(self.listen)
        server = web.Application()
        server.router.add_get("/healthz", self._healthz)
        server.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(server, access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as e:
            await self.stop()
            raise ListenError(f"http.listen: cannot listen on {self.listen}: "
                              f"{e.strerror or e}") from None
        self.port = self._runner.addresses[0][1]
        log.info("health and metrics on http://%s:%d/ (/healthz, /metrics)", host, self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _healthz(self, _request: web.Request) -> web.Response:
        report = await probe(self.app)
        return web.json_response(report.body(), status=report.code)

    async def _metrics(self, _request: web.Request) -> web.Response:
        body = await self.app.metrics.scrape(lambda: read_snapshot(self.app))
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
