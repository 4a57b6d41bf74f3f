"""The local control socket: how `crewbridge post|task|status` reach the running bot (R7.2).

A Unix socket in the data directory, readable only by the bot's user. One request per
connection, one JSON object per line each way: `{"op": ..., "token": ..., ...}` in,
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}` out.

Every request carries a token, and the bot acts as whom the token names (R10.4): an agent's
own token (`CREWBRIDGE_TOKEN`, given to each agent process) makes it that agent whatever the
request claims; the operator token (a file in the data directory only the bot's user can
read) makes it the host operator; anything else is refused. Agents find the socket in
`CREWBRIDGE_SOCKET`.

Every local process that can reach the socket is a client, agents among them, so the server
bounds what a client can hold (R10.6): at most `max_connections` at once, `read_timeout_s`
to send its line, `max_request` bytes in it. A client past those limits is closed with a
short error; refusals are logged once per minute at most, so a flood of connections can
neither exhaust the bot's file descriptors nor fill its log.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

OPERATOR_TOKEN_FILE = "operator.token"


@dataclass(frozen=True)
class Caller:
    """Whom a request speaks for: an agent, or (agent None) the host operator."""

    agent: str | None


Authorize = Callable[[str], Caller | None]
Handler = Callable[[dict[str, Any], Caller], Awaitable[Any]]
MAX_CONNECTIONS = 64
READ_TIMEOUT_S = 10.0
MAX_REQUEST = 1024 * 1024
SOCKET_PATH_MAX = 104  # the smallest sun_path among the platforms we run on, less the NUL
REFUSAL_LOG_INTERVAL_S = 60.0


class RefusalLog:
    """Counts refused clients and says when to log them: once per interval at most.

    Pure (time is passed in), so the rate limit is tested without waiting a minute.
    """

    def __init__(self, interval_s: float = REFUSAL_LOG_INTERVAL_S):
        self.interval_s = interval_s
        self._last: float | None = None
        self._unlogged: dict[str, int] = {}

    def refused(self, reason: str, now: float) -> str | None:
        """Record one refusal; the line to log now, or None while within the interval."""
        self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        counts, self._unlogged = self._unlogged, {}
        return "control socket refused " + ", ".join(
            f"{n} client(s): {why}" for why, n in sorted(counts.items()))


class ControlError(Exception):
    """A request the bot refused, or a bot that cannot be reached; the text says which."""


class ControlServer:
    def __init__(self, path: Path, handler: Handler, authorize: Authorize, *,
                 max_connections: int = MAX_CONNECTIONS, read_timeout_s: float = READ_TIMEOUT_S,
                 max_request: int = MAX_REQUEST):
        self.path = path
        self.handler = handler
        self.authorize = authorize
        self.max_connections = max_connections
        self.read_timeout_s = read_timeout_s
        self.max_request = max_request
        self._clients: dict[asyncio.StreamWriter, asyncio.Task | None] = {}
        self._refusals = RefusalLog()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        if len(os.fsencode(self.path)) > SOCKET_PATH_MAX:
            raise ControlError(f"control socket path is too long for a Unix socket "
                               f"({len(str(self.path))} characters): {self.path}; "
                               "use a shorter [bot] data_dir")
        if self.path.exists():
            if _alive(self.path):
                raise ControlError(f"another crewbridge is already running with this data "
                                   f"directory (socket {self.path})")
            self.path.unlink()
        old_umask = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=self.max_request)
        finally:
            os.umask(old_umask)

    @property
    def open_connections(self) -> int:
        return len(self._clients)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            clients = dict(self._clients)
            for writer in clients:  # their readers see EOF and their tasks end
                writer.close()
            await asyncio.gather(*(t for t in clients.values() if t), return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open_connections >= self.max_connections:
            await self._refuse(writer, f"more than {self.max_connections} connections at once",
                               "busy: too many connections to crewbridge; try again")
            return
        self._clients[writer] = asyncio.current_task()
        try:
            try:
                line = await asyncio.wait_for(reader.readline(), self.read_timeout_s)
            except TimeoutError:
                await self._refuse(writer, f"no request within {self.read_timeout_s:g}s",
                                   "timed out waiting for a request")
                return
            except ValueError:  # asyncio's LimitOverrunError surfaces as ValueError
                await self._refuse(writer, f"a request over {self.max_request} bytes",
                                   f"request too large (limit {self.max_request} bytes)")
                return
            except (ConnectionError, OSError):
                return  # the client went away; nothing to answer
            await self._answer(writer, await self._reply(line))
        finally:
            self._clients.pop(writer, None)
            await _close(writer)

    async def _reply(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                raise ValueError("a request is a JSON object with an \"op\"")
            token = request.pop("token", None)
            caller = self.authorize(token) if isinstance(token, str) else None
            if caller is None:
                line = self._refusals.refused("no valid token", time.monotonic())
                if line is not None:
                    log.warning("%s", line)
                return {"ok": False, "error": "not authorized: run `crewbridge` as an agent "
                        "of this bot, or as the bot's own user on its host (the operator "
                        "token is in the data directory)"}
            return {"ok": True, "result": await self.handler(request, caller)}
        except ControlError as e:
            return {"ok": False, "error": str(e)}
        except (ValueError, UnicodeDecodeError) as e:
            return {"ok": False, "error": f"bad request: {e}"}
        except Exception as e:
            log.exception("control request failed")
            return {"ok": False, "error": f"internal error: {e}"}

    async def _refuse(self, writer: asyncio.StreamWriter, reason: str, error: str) -> None:
        line = self._refusals.refused(reason, time.monotonic())
        if line is not None:
            log.warning("%s", line)
        await self._answer(writer, {"ok": False, "error": error})
        await _close(writer)

    @staticmethod
    async def _answer(writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await writer.wait_closed()


def _alive(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
        except OSError:
            return False
    return True


def read_operator_token(data_dir: Path) -> str:
    """The operator token the running bot wrote; a clear error when it cannot be read."""
    path = data_dir / OPERATOR_TOKEN_FILE
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ControlError(f"crewbridge is not running (no {path})") from None
    except OSError as e:
        raise ControlError(f"cannot read the operator token {path}: {e.strerror or e}; run "
                           "crewbridge as the bot's own user") from None


def request(path: Path, payload: dict[str, Any], timeout_s: float = 30.0) -> Any:
    """Send one request to the running bot (blocking: the CLI has nothing else to do)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout_s)
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            raise ControlError(f"crewbridge is not running (no bot listening at {path})") from None
        except OSError as e:
            raise ControlError(f"cannot reach crewbridge at {path}: {e.strerror or e}") from None
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(json.dumps(payload).encode() + b"\n")  # a refusal is still read below
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    try:
        reply = json.loads(data)
    except ValueError:
        raise ControlError("crewbridge closed the connection without an answer") from None
    if not reply.get("ok"):
        raise ControlError(reply.get("error", "request failed"))
    return reply.get("result")
