"""The local control socket: how `crewbridge post|task|status` reach the running bot (R7.2).

A Unix socket in the data directory, readable only by the bot's user. One request per
connection, one JSON object per line each way: `{"op": ..., ...}` in,
`{"ok": true, "result": ...}` or `{"ok": false, "error": "..."}` out. Agents find the
socket and their own name in `CREWBRIDGE_SOCKET` and `CREWBRIDGE_AGENT` (R10.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]
MAX_REQUEST = 4 * 1024 * 1024
SOCKET_PATH_MAX = 104  # the smallest sun_path among the platforms we run on, less the NUL


class ControlError(Exception):
    """A request the bot refused, or a bot that cannot be reached; the text says which."""


class ControlServer:
    def __init__(self, path: Path, handler: Handler):
        self.path = path
        self.handler = handler
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
                                                           limit=MAX_REQUEST)
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            try:
                request = json.loads(line)
                if not isinstance(request, dict) or not isinstance(request.get("op"), str):
                    raise ValueError("a request is a JSON object with an \"op\"")
                reply = {"ok": True, "result": await self.handler(request)}
            except ControlError as e:
                reply = {"ok": False, "error": str(e)}
            except (ValueError, UnicodeDecodeError) as e:
                reply = {"ok": False, "error": f"bad request: {e}"}
            except Exception as e:
                log.exception("control request failed")
                reply = {"ok": False, "error": f"internal error: {e}"}
            writer.write(json.dumps(reply).encode() + b"\n")
            await writer.drain()
        finally:
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
        s.sendall(json.dumps(payload).encode() + b"\n")
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
