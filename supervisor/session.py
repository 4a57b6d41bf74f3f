"""One agent process speaking stream-json: spawn, write, read, stop. No policy lives here.

The process runs in its own process group so that stopping it also stops whatever it
started (a tool's shell, a build), which is how a shutdown leaves no orphans (R4.9).
stdout and stderr are read by their own tasks so a full pipe never blocks the agent; the
last lines of stderr are kept for alerts. Lines are parsed by `supervisor.protocol` and
handed to the owner in order; the owner is told exactly once when the process has exited
and all of its output has been read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path

from crewbridge.supervisor import process
from crewbridge.supervisor.control import encode_initialize, encode_interrupt
from crewbridge.supervisor.protocol import AgentEvent, encode_user_message, parse_line

log = logging.getLogger(__name__)

STREAM_FLAGS = ("-p", "--input-format", "stream-json", "--output-format", "stream-json",
                "--verbose")
LINE_LIMIT = 64 * 1024 * 1024  # one stream-json line can carry a whole tool result


STDERR_TAIL_BYTES = 64 * 1024
STDERR_LINE_CHARS = 500


class StderrTail:
    """The last `STDERR_TAIL_BYTES` of an agent's stderr, as lines (R5.8).

    An agent may print megabytes of warnings; what an alert needs is the end. Each line is
    cut to `STDERR_LINE_CHARS`, and the oldest lines go once the total passes the bound.
    """

    def __init__(self, limit_bytes: int = STDERR_TAIL_BYTES) -> None:
        self.limit_bytes = limit_bytes
        self._lines: deque[str] = deque()
        self._bytes = 0

    def append(self, line: str) -> None:
        line = line[:STDERR_LINE_CHARS]
        self._lines.append(line)
        self._bytes += len(line.encode("utf-8", "replace"))
        while self._bytes > self.limit_bytes and len(self._lines) > 1:
            self._bytes -= len(self._lines.popleft().encode("utf-8", "replace"))

    def __iter__(self) -> Iterator[str]:
        return iter(self._lines)

    def __len__(self) -> int:
        return len(self._lines)


class SpawnError(Exception):
    """The agent command could not be started at all (R4.2: a failure)."""


class OutOfResources(SpawnError):
    """The bot is out of file descriptors or processes for now (EMFILE, ENFILE, EAGAIN):
    not the agent's failure; the start is tried again when a process exits (R3.7)."""


EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.EAGAIN})


def find_command(program: str) -> str:
    """`program` as given, or found on PATH or beside our own interpreter.

    The second place matters for a virtualenv that is not activated: `make run` starts the
    bot as `.venv/bin/crewbridge`, and the bundled fake agent sits right beside it.
    """
    if os.sep in program:
        return program
    search = os.pathsep.join([os.environ.get("PATH", os.defpath), str(Path(sys.executable).parent)])
    return shutil.which(program, path=search) or program


def agent_argv(command: Sequence[str], *, session_id: str | None, resume: str | None,
               prompt: str, fork: bool = False, flags: Sequence[str] = ()) -> list[str]:
    """The command line for a fresh session (`--session-id`), a resumed one (`--resume`), or
    one forked from `resume` under the new id `session_id` (R12.3: `--fork-session` copies
    the parent's history into a new session and leaves the parent's untouched)."""
    argv = [find_command(command[0]), *command[1:], *STREAM_FLAGS]
    if resume and fork:
        argv += ["--resume", resume, "--fork-session", "--session-id", session_id or ""]
    elif resume:
        argv += ["--resume", resume]
    elif session_id:
        argv += ["--session-id", session_id]
    if prompt:
        argv += ["--append-system-prompt", prompt]
    return [*argv, *flags]


class Session:
    def __init__(self, name: str, argv: list[str], *, cwd: Path, env: dict[str, str],
                 on_event: Callable[[AgentEvent], Awaitable[None]],
                 on_exit: Callable[[int], Awaitable[None]]):
        self.name = name
        self.argv = argv
        self.cwd = cwd
        self.env = env
        self._on_event = on_event
        self._on_exit = on_exit
        self._proc: process.Process | None = None
        self._tasks: list[asyncio.Task] = []
        self.stderr_tail = StderrTail()
        self.exited = asyncio.Event()
        self.returncode: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        if not self.cwd.is_dir():  # else the OS says "no such file", naming no directory
            raise SpawnError(f"agent working directory does not exist: {self.cwd}")
        try:
            self._proc = await process.start(self.argv, cwd=self.cwd, env=self.env,
                                             limit=LINE_LIMIT)
        except FileNotFoundError:
            raise SpawnError(f"agent command not found: {self.argv[0]}") from None
        except PermissionError:
            raise SpawnError(f"agent command is not executable: {self.argv[0]}") from None
        except NotADirectoryError:
            raise SpawnError(f"agent working directory does not exist: {self.cwd}") from None
        except OSError as e:
            if e.errno in EXHAUSTED:
                raise OutOfResources(f"cannot start {self.argv[0]} now: {e.strerror or e}"
                                     ) from None
            raise SpawnError(f"cannot start {self.argv[0]}: {e.strerror or e}") from None
        self._tasks = [asyncio.create_task(self._read_stdout(), name=f"{self.name}-stdout"),
                       asyncio.create_task(self._read_stderr(), name=f"{self.name}-stderr")]
        self._waiter = asyncio.create_task(self._wait(), name=f"{self.name}-wait")

    async def send(self, text: str, message_id: str | None = None) -> bool:
        """Write one user message (with `message_id` as its uuid); False when the process
        can no longer take input."""
        return await self._write(encode_user_message(text, message_id))

    async def interrupt(self, request_id: str) -> bool:
        """Ask the CLI to end the running turn (R13.6); False when it cannot take input."""
        return await self._write(encode_interrupt(request_id))

    async def initialize(self) -> bool:
        """Open the control protocol: a session started with `--permission-prompt-tool
        stdio` asks for tools only after `initialize` (R13.1)."""
        return await self._write(encode_initialize())

    async def control(self, line: bytes) -> bool:
        """Write one control-protocol line (an answer to a `can_use_tool`, R13.1)."""
        return await self._write(line)

    async def _write(self, line: bytes) -> bool:
        proc = self._proc
        if proc is None or proc.stdin is None or proc.returncode is not None:
            return False
        try:
            proc.stdin.write(line)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    async def stop(self, grace_s: float) -> None:
        """Terminate the group, kill it after `grace_s`; stdin closes when it has exited.

        Not stdin first: the real CLI reads the end of its input as "finish the turn
        without me", fails a `can_use_tool` that waits ("Tool permission stream closed")
        and goes on to the model, racing its own SIGTERM handler; a turn that ends in that
        race counts as answered, so a request pending at a shutdown would never be asked
        again (R13.4). Returns once the process has exited and the owner has handled its
        exit, so that a caller shutting down never closes what the exit handler needs.
        """
        proc = self._proc
        if proc is None:
            return
        if self.exited.is_set():
            await asyncio.shield(self._waiter)
            return
        self._signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.exited.wait(), grace_s)
        except TimeoutError:
            log.warning("%s did not stop within %.0fs; killing it", self.name, grace_s)
            self._signal(signal.SIGKILL)
        await asyncio.shield(self._waiter)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def _signal(self, sig: signal.Signals) -> None:
        if self._proc is None or self._proc.returncode is not None:
            return
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # the group leader changed its group: signal it alone
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)

    async def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        stream = self._proc.stdout
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than LINE_LIMIT; the reader has dropped it
                log.warning("%s wrote a line over %d bytes; skipped", self.name, LINE_LIMIT)
                continue
            if not line:
                return
            for event in parse_line(line):
                try:
                    await self._on_event(event)
                except Exception:
                    log.exception("%s: handling %r failed", self.name, type(event).__name__)

    async def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        while line := await self._proc.stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text)
                log.debug("%s stderr: %s", self.name, text[:STDERR_LINE_CHARS])

    async def _wait(self) -> None:
        assert self._proc is not None
        code = await self._proc.wait()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.returncode = code
        # The group may still hold children that outlived the agent: end them too (R4.9).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._proc.pid, signal.SIGKILL)
        self.exited.set()
        try:
            await self._on_exit(code)
        except Exception:
            log.exception("%s: exit handling failed", self.name)
