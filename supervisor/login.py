"""`auth login` on a headless host (R6.5): the login command under a pseudo-terminal, what it
prints relayed as it prints it, what the admin types fed to its prompt.

`claude auth login` will not run without a terminal, prints a URL to open elsewhere (there
is no browser on a server) and waits at `Paste code here if prompted >` — a prompt with no
newline after it. So the command gets a pseudo-terminal (wide, so nothing wraps a URL), its
output is read as it comes, lines are relayed in batches at most `RELAY_EVERY_S` apart, a
partial line left quiet for `PROMPT_AFTER_S` is relayed as a prompt, and escapes are removed
(the URL comes wrapped in an OSC 8 hyperlink). Secrets are redacted, and so is whatever the
admin typed, which the program may echo back.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import fcntl
import logging
import os
import pty
import signal
import struct
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from crewbridge.supervisor.redact import redact
from crewbridge.supervisor.terminal import screen_line

log = logging.getLogger(__name__)

RELAY_EVERY_S = 0.5
"""Lines printed together go in one post, sent at most this long after the first of them."""
PROMPT_AFTER_S = 0.3
"""A partial line this long without more output is a prompt waiting for input: shown."""
COLUMNS = 1000  # the terminal's width: a URL is one line however long
TAIL_LINES = 6  # of the output, what the outcome repeats


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    detail: str


class LineBuffer:
    """Terminal output in, whole lines out; a partial line on request (a prompt)."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._partial = ""

    def feed(self, data: bytes) -> list[str]:
        text = self._partial + self._decoder.decode(data)
        *lines, self._partial = text.split("\n")
        return [screen_line(line) for line in lines]

    def take_partial(self) -> str:
        """The line printed so far without its newline, now shown; "" when none."""
        partial, self._partial = screen_line(self._partial), ""
        return partial


Relay = Callable[[str], Awaitable[None]]


class LoginRun:
    """One run of the login command: start it, feed it, cancel it, wait for its outcome."""

    def __init__(self, command: tuple[str, ...], *, cwd: Path, env: dict[str, str],
                 relay: Relay):
        self.command = command
        self.cwd = cwd
        self.env = env
        self._relay = relay
        self._master = -1
        self._proc: asyncio.subprocess.Process | None = None
        self._lines = LineBuffer()
        self._pending: list[str] = []
        self._tail: list[str] = []
        self._typed: list[str] = []
        self._posts: asyncio.Queue[str | None] = asyncio.Queue()
        self._eof = asyncio.Event()
        self._flush_at: asyncio.TimerHandle | None = None
        self._prompt_at: asyncio.TimerHandle | None = None
        self.cancelled = False

    async def start(self) -> str | None:
        """Start the command; why it could not, or None."""
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.command, cwd=self.cwd, stdin=slave, stdout=slave, stderr=slave,
                env={**os.environ, **self.env, "TERM": "dumb"}, start_new_session=True)
        except OSError as e:
            os.close(master)
            return f"cannot run {self.command[0]}: {e.strerror or e}"
        finally:
            os.close(slave)
        self._master = master
        os.set_blocking(master, False)
        asyncio.get_running_loop().add_reader(master, self._readable)
        self._sender = asyncio.create_task(self._send_posts(), name="login-relay")
        return None

    def type(self, text: str) -> bool:
        """Type `text` and Enter into the command's prompt; False when it has ended."""
        if self._proc is None or self._proc.returncode is not None or self._master < 0:
            return False
        self._typed.append(text)
        try:
            os.write(self._master, text.encode() + b"\r")
        except OSError:
            return False
        return True

    def cancel(self) -> None:
        self.cancelled = True
        self._signal(signal.SIGTERM)

    async def finished(self, timeout_s: float) -> LoginResult:
        """Wait for the command's end (killing it after `timeout_s`); every line it printed
        has been relayed when this returns."""
        assert self._proc is not None
        try:
            code = await asyncio.wait_for(self._proc.wait(), timeout_s)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            code = await self._proc.wait()
            return await self._ended(LoginResult(False, f"no login within {timeout_s:.0f}s; "
                                                        f"the login command was stopped"))
        if self.cancelled:
            return await self._ended(LoginResult(False, "cancelled"))
        tail = " | ".join(self._tail[-TAIL_LINES:])
        if code == 0:
            return await self._ended(LoginResult(True, tail or "logged in"))
        return await self._ended(LoginResult(False, f"exit status {code}: {tail}" if tail
                                             else f"exit status {code}"))

    async def _ended(self, result: LoginResult) -> LoginResult:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._eof.wait(), 2)  # the output after the exit
        self._close()
        self._flush()
        self._posts.put_nowait(None)
        await self._sender
        return LoginResult(result.ok, self._clean(result.detail))

    # --- output ---------------------------------------------------------------------------

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO: the command and every child of it closed the terminal
            data = b""
        if not data:
            self._close()
            return
        lines = [line for line in self._lines.feed(data) if line.strip()]
        self._pending += lines
        self._tail = (self._tail + lines)[-TAIL_LINES:]
        loop = asyncio.get_running_loop()
        if self._pending and self._flush_at is None:
            self._flush_at = loop.call_later(RELAY_EVERY_S, self._flush)
        if self._prompt_at is not None:
            self._prompt_at.cancel()
        self._prompt_at = loop.call_later(PROMPT_AFTER_S, self._prompt)

    def _prompt(self) -> None:
        self._prompt_at = None
        if partial := self._lines.take_partial().strip():
            self._pending.append(partial)
            self._flush()

    def _flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        if self._pending:
            self._posts.put_nowait(self._clean("\n".join(self._pending)))
            self._pending = []

    def _clean(self, text: str) -> str:
        for typed in self._typed:  # a program may echo what was typed: it is a secret
            if typed:
                text = text.replace(typed, "[typed]")
        return redact(text)

    async def _send_posts(self) -> None:
        """Relay in order, one post at a time; a failed post loses only itself."""
        while (text := await self._posts.get()) is not None:
            try:
                await self._relay(text)
            except Exception:
                log.exception("relaying the login's output failed")

    def _close(self) -> None:
        if self._master >= 0:
            asyncio.get_running_loop().remove_reader(self._master)
            os.close(self._master)
            self._master = -1
        if self._prompt_at is not None:
            self._prompt_at.cancel()
            self._prompt_at = None
        if partial := self._lines.take_partial().strip():
            self._pending.append(partial)
        self._eof.set()

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, sig)
