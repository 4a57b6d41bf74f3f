"""The control socket's limits against real Unix-socket clients (R10.6)."""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from crewbridge.bot.control import (
    MAX_CONNECTIONS,
    Caller,
    ControlError,
    ControlServer,
    RefusalLog,
    request,
)
from tests.integration.harness import until


@pytest.fixture
def sock_dir() -> AsyncIterator[Path]:
    # pytest's tmp_path can be longer than a Unix socket path may be
    with tempfile.TemporaryDirectory(prefix="cb-") as d:
        yield Path(d)


STATUS = b'{"op": "status", "token": "tok-operator"}\n'
TOKENS = {"tok-operator": Caller(agent=None), "tok-webui": Caller(agent="webui")}


async def echo(req: dict, caller: Caller) -> dict:
    return {"echo": req.get("op"), "as": caller.agent}


async def start(sock_dir: Path, **limits: float) -> ControlServer:
    server = ControlServer(sock_dir / "control.sock", echo, TOKENS.get, **limits)
    await server.start()
    return server


async def ask(server: ControlServer, line: bytes) -> dict:
    reader, writer = await asyncio.open_unix_connection(str(server.path))
    writer.write(line)
    await writer.drain()
    reply = await reader.readline()
    writer.close()
    return json.loads(reply)


async def idle_clients(server: ControlServer, n: int) -> list[tuple[asyncio.StreamReader,
                                                                   asyncio.StreamWriter]]:
    clients = [await asyncio.open_unix_connection(str(server.path)) for _ in range(n)]
    await until(lambda: server.open_connections >= min(n, server.max_connections),
                what="the server to take every client")
    return clients


@pytest.mark.parametrize(("events", "logged"), [
    ([0.0], [True]),                         # the first refusal is logged at once
    ([0.0, 1.0, 30.0, 59.9], [True, False, False, False]),  # then nothing within the minute
    ([0.0, 10.0, 60.0], [True, False, True]),                # and one line after it
])
def test_r10_6_refusals_are_logged_once_per_minute(events: list[float],
                                                   logged: list[bool]) -> None:
    """R10.6: a flood of refused clients is one log line per minute, not one per client."""
    log = RefusalLog(60.0)
    assert [log.refused("busy", t) is not None for t in events] == logged


def test_r10_6_the_next_line_counts_what_was_refused_meanwhile() -> None:
    log = RefusalLog(60.0)
    log.refused("busy", 0.0)
    for t in range(1, 6):
        log.refused("busy", float(t))
    log.refused("slow", 7.0)
    assert log.refused("busy", 61.0) == ("control socket refused 6 client(s): busy, "
                                         "1 client(s): slow")


async def test_r10_6_a_request_is_answered(sock_dir: Path) -> None:
    server = await start(sock_dir)
    try:
        assert await ask(server, STATUS) == {
            "ok": True, "result": {"echo": "status", "as": None}}
    finally:
        await server.stop()


async def test_r10_6_at_most_64_connections_the_next_is_refused_and_served_later(
        sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R10.6: 64 idle clients fill the socket; the 65th is told it is busy (no traceback,
    one log line); once the idle ones are gone, requests are served again."""
    server = await start(sock_dir)
    assert server.max_connections == MAX_CONNECTIONS == 64
    clients = await idle_clients(server, 64)
    try:
        with caplog.at_level(logging.WARNING, logger="crewbridge.bot.control"):
            replies = [await ask(server, STATUS) for _ in range(20)]
        assert all(r == {"ok": False, "error": "busy: too many connections to crewbridge; "
                                                 "try again"} for r in replies)
        warnings = [r for r in caplog.records if r.name == "crewbridge.bot.control"]
        assert len(warnings) == 1 and "more than 64 connections" in warnings[0].getMessage()
        assert not any(r.exc_info for r in caplog.records)
    finally:
        for _, writer in clients:
            writer.close()
    await until(lambda: server.open_connections == 0, what="the idle clients to be gone")
    try:
        assert (await ask(server, STATUS))["ok"] is True
    finally:
        await server.stop()


async def test_r10_6_a_client_that_sends_nothing_is_closed_after_the_read_timeout(
        sock_dir: Path) -> None:
    """R10.6: a silent client holds its slot only until the read timeout."""
    server = await start(sock_dir, read_timeout_s=0.2)
    try:
        reader, writer = await asyncio.open_unix_connection(str(server.path))
        reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
        writer.close()
        assert reply == {"ok": False, "error": "timed out waiting for a request"}
        assert (await ask(server, STATUS))["ok"] is True
    finally:
        await server.stop()


async def test_r10_6_a_request_over_the_limit_is_refused_and_the_bot_goes_on(
        sock_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R10.6: a request over 1 MiB is refused with a short error; nothing is logged of its
    body, and the next request is served."""
    server = await start(sock_dir)
    try:
        big = b'{"op": "post", "text": "' + b"x" * (1024 * 1024 + 10) + b'"}\n'
        with caplog.at_level(logging.DEBUG):
            reply = await ask(server, big)
        assert reply == {"ok": False, "error": "request too large (limit 1048576 bytes)"}
        assert not any("xxxxxxxx" in r.getMessage() for r in caplog.records)
        assert (await ask(server, STATUS))["ok"] is True
    finally:
        await server.stop()


async def test_r10_6_the_cli_gets_the_refusal_as_one_clear_error(sock_dir: Path) -> None:
    """R10.6/R11.2: a host command that meets a full socket fails with the bot's reason."""
    server = await start(sock_dir, max_connections=1)
    clients = await idle_clients(server, 1)
    try:
        with pytest.raises(ControlError, match="busy"):
            await asyncio.to_thread(request, server.path, {"op": "status", "token": "x"}, 5.0)
    finally:
        for _, writer in clients:
            writer.close()
        await server.stop()


@pytest.mark.parametrize(("request_line", "reply"), [
    # R10.4: the bot acts on the token, not on a name the request claims
    (b'{"op": "post", "token": "tok-webui", "agent": "general"}\n',
     {"ok": True, "result": {"echo": "post", "as": "webui"}}),
    (b'{"op": "post", "token": "tok-operator", "agent": "general"}\n',
     {"ok": True, "result": {"echo": "post", "as": None}}),
])
async def test_r10_4_a_request_acts_as_whom_its_token_names(
        sock_dir: Path, request_line: bytes, reply: dict) -> None:
    server = await start(sock_dir)
    try:
        assert await ask(server, request_line) == reply
    finally:
        await server.stop()


@pytest.mark.parametrize("request_line", [
    b'{"op": "post", "agent": "webui"}\n',  # no token: a name alone is nobody
    b'{"op": "post", "token": "guessed"}\n',
    b'{"op": "post", "token": 12345}\n',
])
async def test_r10_4_a_request_without_a_valid_token_is_refused(
        sock_dir: Path, request_line: bytes, caplog: pytest.LogCaptureFixture) -> None:
    server = await start(sock_dir)
    try:
        with caplog.at_level(logging.WARNING, logger="crewbridge.bot.control"):
            reply = await ask(server, request_line)
            await ask(server, request_line)
        assert reply["ok"] is False and reply["error"].startswith("not authorized")
        assert len([r for r in caplog.records if "no valid token" in r.getMessage()]) == 1
    finally:
        await server.stop()
