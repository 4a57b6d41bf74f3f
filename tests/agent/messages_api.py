"""A loopback stand-in for the Anthropic Messages API, so the real Claude Code CLI runs offline.

The agent tier of the tests (R10.1, R10.2) runs the real `claude` binary; that binary talks
to `ANTHROPIC_BASE_URL`. This module is what it talks to: an aiohttp server on 127.0.0.1
that answers `POST /v1/messages` the way the real API does — a server-sent-event stream
(`message_start`, `ping`, `content_block_start`, `content_block_delta` with `text_delta` or
`input_json_delta`, `content_block_stop`, `message_delta` with the stop reason and usage,
`message_stop`) when the request says `"stream": true`, a JSON message otherwise — and
lets each test script what comes back: text, a tool call, a 401, a 500 or 529.

What Claude Code 2.1.330 sends, learnt by running it against this server: in `-p` mode with
`CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1` one `POST /v1/messages?beta=true` per model
round trip (stream true; headers `x-api-key`, `anthropic-version: 2023-06-01`,
`anthropic-beta`, `X-Claude-Code-Session-Id`; body keys `model`, `messages`, `system`,
`tools`, `metadata`, `max_tokens`, `thinking`, `stream`, …). After a tool call it sends the
next request with the `tool_result` in `messages`. Nothing else is requested, but
`/v1/messages/count_tokens` and health probes are answered anyway, and any other path is
recorded in `unknown` (and answered 404 like the real API) so a test can see it.

Every request is recorded (`requests`), so a test can assert what the CLI sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import itertools
import json
import logging
import os
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)


# --- scripted replies ----------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """An assistant reply made of one text block, streamed in `chunks` deltas, `delay`
    seconds apart (a slow stream, so a test can interrupt the turn mid-reply)."""

    text: str
    chunks: int = 3
    delay: float = 0.0


@dataclass(frozen=True)
class ToolCall:
    """An assistant reply that calls a tool (`stop_reason: tool_use`), after optional text."""

    name: str
    input: dict[str, Any]
    text: str | None = None
    id: str = field(default_factory=lambda: f"toolu_{uuid.uuid4().hex[:24]}")


@dataclass(frozen=True)
class HttpError:
    """An error answer, in the API's shape `{"type":"error","error":{"type":…,"message":…}}`."""

    status: int
    type: str
    message: str


def unauthorized() -> HttpError:
    """What the API answers for a bad or expired key."""
    return HttpError(401, "authentication_error", "invalid x-api-key")


def server_error() -> HttpError:
    return HttpError(500, "api_error", "Internal server error")


def overloaded() -> HttpError:
    return HttpError(529, "overloaded_error", "Overloaded")


Reply = Text | ToolCall | HttpError


@dataclass(frozen=True)
class Request:
    """One request as the CLI sent it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw text when it is not JSON

    def user_texts(self) -> list[str]:
        """Every text the request carries in user turns (strings and text blocks)."""
        out: list[str] = []
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        for message in messages:
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                out.append(content)
            elif isinstance(content, list):
                out.extend(b["text"] for b in content if b.get("type") == "text")
        return out

    def tool_results(self) -> list[dict[str, Any]]:
        """The `tool_result` blocks of the request's messages."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return [
            block
            for message in messages
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]


# --- the server ----------------------------------------------------------------------------


class MessagesAPI:
    """The stand-in server. Use as `async with MessagesAPI() as api:`; script with `reply`."""

    def __init__(self, default: Reply | None = None) -> None:
        self.default: Reply = default or Text("Hello from the loopback stand-in")
        self.replies: deque[Reply] = deque()
        self.requests: list[Request] = []
        self.unknown: list[Request] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._ids = itertools.count(1)
        self.port = 0

    # scripting and inspection

    def reply(self, *replies: Reply) -> None:
        """Queue replies for the next `POST /v1/messages`, in order; then the default."""
        self.replies.extend(replies)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def message_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path == "/v1/messages"]

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[Request]:
        """Wait until `count` message requests have arrived; fail after `timeout`."""

        async def arrived() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: len(self.message_requests) >= count)

        await asyncio.wait_for(arrived(), timeout)
        return self.message_requests

    def env(self, home: Path, *, api_key: str | None = "dummy", **extra: str) -> dict[str, str]:
        """The environment to run the real CLI offline against this server."""
        return claude_env(home, base_url=self.url, api_key=api_key, **extra)

    # lifecycle

    async def start(self) -> MessagesAPI:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> MessagesAPI:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # handlers

    async def _record(self, request: web.Request) -> Request:
        raw = await request.text()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = raw
        recorded = Request(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers=dict(request.headers),
            body=body,
        )
        async with self._changed:
            self.requests.append(recorded)
            self._changed.notify_all()
        return recorded

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        reply = self.replies.popleft() if self.replies else self.default
        if isinstance(reply, HttpError):
            return web.json_response(
                {"type": "error", "error": {"type": reply.type, "message": reply.message}},
                status=reply.status,
                headers={"request-id": f"req_stub_{next(self._ids)}"},
            )
        body = recorded.body if isinstance(recorded.body, dict) else {}
        model = str(body.get("model", "claude-stub"))
        if body.get("stream"):
            return await self._stream(request, reply, model)
        return web.json_response(self._message_json(reply, model))

    async def _count_tokens(self, request: web.Request) -> web.Response:
        await self._record(request)
        return web.json_response({"input_tokens": 10})

    async def _other(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        if request.method in ("GET", "HEAD") and request.path in ("/", "/health", "/v1"):
            return web.json_response({"ok": True})
        log.warning("messages stand-in: unknown request %s %s", request.method, request.path)
        self.unknown.append(recorded)
        return web.json_response(
            {"type": "error", "error": {"type": "not_found_error", "message": "Not found"}},
            status=404,
        )

    # reply bodies

    def _blocks(self, reply: Text | ToolCall) -> list[dict[str, Any]]:
        if isinstance(reply, Text):
            return [{"type": "text", "text": reply.text}]
        blocks: list[dict[str, Any]] = []
        if reply.text:
            blocks.append({"type": "text", "text": reply.text})
        blocks.append(
            {"type": "tool_use", "id": reply.id, "name": reply.name, "input": reply.input}
        )
        return blocks

    def _message_json(self, reply: Text | ToolCall, model: str) -> dict[str, Any]:
        blocks = self._blocks(reply)
        return {
            "id": f"msg_stub{next(self._ids):08d}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": "tool_use" if isinstance(reply, ToolCall) else "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": 5, "output_tokens": _output_tokens(blocks)},
        }

    async def _stream(
        self, request: web.Request, reply: Text | ToolCall, model: str
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        with contextlib.suppress(ConnectionResetError):  # the CLI hung up: an interrupt
            await self._stream_events(response, reply, model)
        return response

    async def _stream_events(
        self, response: web.StreamResponse, reply: Text | ToolCall, model: str
    ) -> None:
        message = self._message_json(reply, model)

        async def send(event: str, data: dict[str, Any]) -> None:
            payload = json.dumps({"type": event, **data})
            await response.write(f"event: {event}\ndata: {payload}\n\n".encode())

        start = {**message, "content": [], "stop_reason": None}
        start["usage"] = {
            "input_tokens": 5,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        }
        await send("message_start", {"message": start})
        await send("ping", {})
        chunks = reply.chunks if isinstance(reply, Text) else 2
        delay = reply.delay if isinstance(reply, Text) else 0.0
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                await send(
                    "content_block_start",
                    {"index": index, "content_block": {"type": "text", "text": ""}},
                )
                for i, part in enumerate(_split(block["text"], chunks)):
                    if delay and i:
                        await asyncio.sleep(delay)
                    await send(
                        "content_block_delta",
                        {"index": index, "delta": {"type": "text_delta", "text": part}},
                    )
            else:
                await send(
                    "content_block_start",
                    {"index": index, "content_block": {**block, "input": {}}},
                )
                for part in _split(json.dumps(block["input"]), chunks):
                    await send(
                        "content_block_delta",
                        {
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": part},
                        },
                    )
            await send("content_block_stop", {"index": index})
        await send(
            "message_delta",
            {
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
        await send("message_stop", {})
        await response.write_eof()


def _split(text: str, parts: int) -> list[str]:
    """`text` in up to `parts` consecutive pieces (at least one, possibly empty)."""
    if not text:
        return [""]
    size = max(1, -(-len(text) // max(1, parts)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _output_tokens(blocks: list[dict[str, Any]]) -> int:
    return max(1, sum(len(json.dumps(b)) for b in blocks) // 4)


# --- running the real CLI offline ----------------------------------------------------------


def bundled_claude() -> Path:
    """The real Claude Code CLI bundled in the `claude-agent-sdk` wheel.

    Raises (so a test fails, never skips) when the package or the binary is missing: the
    agent tier exists to prove crewbridge against what the production agent really prints.
    """
    spec = importlib.util.find_spec("claude_agent_sdk")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "claude-agent-sdk is not installed; `pip install -e '.[test]'` provides the real CLI"
        )
    path = Path(spec.origin).parent / "_bundled" / "claude"
    if not path.is_file() or not os.access(path, os.X_OK):
        raise RuntimeError(f"the bundled Claude Code CLI is missing or not executable: {path}")
    return path


def claude_env(
    home: Path, *, base_url: str | None, api_key: str | None = "dummy", **extra: str
) -> dict[str, str]:
    """A clean environment for the real CLI: empty HOME and config dir, no retries, no
    telemetry or update checks, PATH kept, nothing else inherited (so no real credentials
    from the developer's machine leak into a test)."""
    home.mkdir(parents=True, exist_ok=True)
    config_dir = home / ".claude"
    config_dir.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(config_dir),
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    env.update(extra)
    return env
