"""A counting HTTP reverse proxy on 127.0.0.1, for measuring a client's request rate.

Why: R9.2 says a failing sync must never become a hot loop. The honest measure is the
number of requests that actually leave the bot while the homeserver is down. Put this proxy
between the bot and Synapse and it records the time of every request; when the upstream is
unreachable it answers 502, as the reverse proxy in front of a production homeserver would.
It can also drop `retry_after_ms` from 429 bodies, leaving only the `Retry-After` header, to
check the bridge reads the header too (nio reads only the body).
"""

from __future__ import annotations

import json
import time

import aiohttp
from aiohttp import web

FORWARD_REQUEST_HEADERS = ("Authorization", "Content-Type")
FORWARD_RESPONSE_HEADERS = ("Content-Type", "Retry-After")


class CountingProxy:
    """`await start()`, point a client at `url`, read `requests` (monotonic times)."""

    def __init__(self, upstream: str, *, strip_retry_after_ms: bool = False):
        self.upstream = upstream.rstrip("/")
        self.strip_retry_after_ms = strip_retry_after_ms
        self.requests: list[float] = []
        self.failed_upstream: list[float] = []
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def count_between(self, start: float, end: float) -> int:
        return sum(1 for t in self.requests if start <= t < end)

    @staticmethod
    def _without_retry_after_ms(data: bytes) -> bytes:
        """A 429 as some homeservers send it: the wait only in the `Retry-After` header."""
        try:
            body = json.loads(data)
        except ValueError:
            return data
        body.pop("retry_after_ms", None)
        return json.dumps(body).encode()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(time.monotonic())
        assert self._session is not None
        headers = {k: request.headers[k] for k in FORWARD_REQUEST_HEADERS if k in request.headers}
        body = await request.read()
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             data=body or None, headers=headers) as upstream:
                data = await upstream.read()
                if upstream.status == 429 and self.strip_retry_after_ms:
                    data = self._without_retry_after_ms(data)
                out = {k: upstream.headers[k] for k in FORWARD_RESPONSE_HEADERS
                       if k in upstream.headers}
                return web.Response(status=upstream.status, body=data, headers=out)
        except (aiohttp.ClientError, OSError):
            self.failed_upstream.append(time.monotonic())
            return web.Response(status=502, text="502 Bad Gateway: homeserver unavailable",
                                content_type="text/html")
