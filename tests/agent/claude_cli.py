"""The real Claude Code CLI as a subprocess, started with the flags crewbridge gives it.

Shared by the agent tests and the benchmarks that time the real CLI against the loopback
Messages API (`messages_api.py`): `Claude` is one running process with line-oriented,
time-limited reads; `session_turns`/`one_turn` run a session through some messages.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STREAM_FLAGS = (
    "-p",
    "--input-format",
    "stream-json",
    "--output-format",
    "stream-json",
    "--verbose",
)
TURN_TIMEOUT = 30.0

Events = list[dict[str, Any]]


def user_message(text: str, uuid: str | None = None) -> bytes:
    message: dict[str, Any] = {"type": "user", "message": {"role": "user", "content": text}}
    if uuid is not None:
        message["uuid"] = uuid
    return (json.dumps(message) + "\n").encode()


@dataclass
class Claude:
    """One running CLI process with line-oriented, time-limited access to its output."""

    proc: asyncio.subprocess.Process

    @classmethod
    async def start(
        cls,
        claude_bin: Path,
        env: dict[str, str],
        cwd: Path,
        *args: str,
    ) -> Claude:
        proc = await asyncio.create_subprocess_exec(
            str(claude_bin),
            *STREAM_FLAGS,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            cwd=cwd,
        )
        return cls(proc)

    async def send(self, text: str, uuid: str | None = None) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(user_message(text, uuid))
        await self.proc.stdin.drain()

    async def write(self, message: dict[str, Any]) -> None:
        """One raw stdin line: a control request or response (R13)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def until(self, wanted: Callable[[dict[str, Any]], bool]) -> Events:
        """Raw events up to and including the first for which `wanted` is true."""
        events: Events = []
        while not events or not wanted(events[-1]):
            line = await self.line()
            assert line, f"the CLI's output ended first; events so far: {events}"
            events.append(json.loads(line))
        return events

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), TURN_TIMEOUT)
        return raw.decode()

    async def turn(self) -> Events:
        """Raw events up to and including the next `result` (or the end of output)."""
        events: Events = []
        while line := await self.line():
            events.append(json.loads(line))
            if events[-1]["type"] == "result":
                break
        return events

    async def finish(self) -> tuple[Events, int, str]:
        """Close stdin, read what is left; return (events, exit status, stderr)."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()
        rest = []
        while line := await self.line():
            rest.append(json.loads(line))
        stderr = (await asyncio.wait_for(self.proc.stderr.read(), TURN_TIMEOUT)).decode()
        code = await asyncio.wait_for(self.proc.wait(), TURN_TIMEOUT)
        return rest, code, stderr

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        """Kill the process and reap it (so no transport outlives the test's event loop)."""
        self.kill()
        await asyncio.wait_for(self.proc.wait(), TURN_TIMEOUT)


async def session_turns(
    claude_bin: Path, env: dict[str, str], cwd: Path, texts: list[str], *args: str,
    session_id: str | None = None
) -> tuple[list[Events], Events, int, str]:
    """Run one session (`--session-id`, fresh unless given) through `texts`, a turn each,
    then end its input: each turn's events, what came after the last turn, exit code, stderr."""
    claude = await Claude.start(claude_bin, env, cwd, "--session-id",
                                session_id or str(uuid.uuid4()), *args)
    try:
        turns = []
        for text in texts:
            await claude.send(text)
            turns.append(await claude.turn())
        rest, code, stderr = await claude.finish()
    finally:
        claude.kill()
    return turns, rest, code, stderr


async def one_turn(
    claude_bin: Path, env: dict[str, str], cwd: Path, text: str, *args: str,
    session_id: str | None = None
) -> tuple[Events, int, str]:
    """Run a session for one message, as crewbridge spawns one (R3.3)."""
    [events], rest, code, stderr = await session_turns(claude_bin, env, cwd, [text], *args,
                                                       session_id=session_id)
    return events + rest, code, stderr
