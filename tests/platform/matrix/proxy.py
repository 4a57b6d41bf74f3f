"""A counting HTTP reverse proxy on 127.0.0.1, for measuring a client's request rate.

Why: R9.2 says a failing sync must never become a hot loop. The honest measure is the
number of requests that actually leave the bot while the homeserver is down. Put this proxy
between the bot and Synapse and it records the time of every request; when the upstream is
unreachable it answers 502, as the reverse proxy in front of a production homeserver would.
It can also drop `retry_after_ms` from 429 bodies, leaving only the `Retry-After` header, to
check the bridge reads the header too (nio reads only the body).

Fault switches: `hang()` makes every request from then on be accepted and never answered
(a homeserver that takes the connection and says nothing, R6.3) until `answer_again()`;
`limit_next(path, times, retry_after_s)` answers the next requests whose path contains
`path` with Synapse's 429 (`M_LIMIT_EXCEEDED`, `retry_after_ms` and `Retry-After`, R9.1).
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass

import aiohttp
from aiohttp import web

FORWARD_REQUEST_HEADERS = ("Authorization", "Content-Type")
FORWARD_RESPONSE_HEADERS = ("Content-Type", "Retry-After")


@dataclass
class _Limit:
    path: str
    times: int
    retry_after_s: float


class CountingProxy:
    """`await start()`, point a client at `url`, read `requests` (monotonic times)."""

    def __init__(self, upstream: str, *, strip_retry_after_ms: bool = False):
        self.upstream = upstream.rstrip("/")
        self.strip_retry_after_ms = strip_retry_after_ms
        self.requests: list[float] = []
        self.failed_upstream: list[float] = []
        self.paths: list[str] = []  # the path of every request, in order
        self.limited: list[str] = []  # the paths answered 429 by `limit_next`
        self.hung = 0  # requests taken while hanging
        self._answering = asyncio.Event()
        self._answering.set()
        self._limits: list[_Limit] = []
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
        self.answer_again()  # hung handlers finish instead of holding the shutdown
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def hang(self) -> None:
        """Take every request from now on and answer none, until `answer_again`."""
        self._answering.clear()

    def answer_again(self) -> None:
        self._answering.set()

    def limit_next(self, path: str, times: int = 1, retry_after_s: float = 0.2) -> None:
        """Answer the next `times` requests whose path contains `path` with a 429."""
        self._limits.append(_Limit(path, times, retry_after_s))

    def count_paths(self, fragment: str) -> int:
        return sum(fragment in p for p in self.paths)

    def _limited(self, path: str) -> web.Response | None:
        limit = next((lim for lim in self._limits if lim.times > 0 and lim.path in path), None)
        if limit is None:
            return None
        limit.times -= 1
        self.limited.append(path)
        body = {"errcode": "M_LIMIT_EXCEEDED", "error": "Too Many Requests",
                "retry_after_ms": int(limit.retry_after_s * 1000)}
        return web.json_response(body, status=429,
                                 headers={"Retry-After": f"{limit.retry_after_s:g}"})

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
        self.paths.append(request.path)
        if not self._answering.is_set():
            self.hung += 1
            await self._answering.wait()  # the client gives up first, or we answer again
        if (limited := self._limited(request.path)) is not None:
            return limited
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
