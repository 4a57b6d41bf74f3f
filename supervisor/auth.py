"""`auth login`: run the configured login command on the host and report (R6.5).

`claude auth login` opens a browser on the machine the bot runs on and waits for the person
to finish there; we wait up to the configured timeout, then kill it. Its output is kept
(redacted) so the admin room can see what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from supervisor.redact import redact


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    detail: str


async def run_login(command: tuple[str, ...], timeout_s: float, *, cwd: Path,
                    env: dict[str, str] | None = None) -> LoginResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *command, cwd=cwd, env={**os.environ, **(env or {})},
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return LoginResult(False, f"cannot run {command[0]}: {e.strerror or e}")
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        return LoginResult(False, f"no login within {timeout_s:.0f}s; the login command "
                                  "was stopped")
    tail = redact(out.decode("utf-8", "replace").strip())[-400:]
    if proc.returncode == 0:
        return LoginResult(True, tail or "logged in")
    return LoginResult(False, f"exit status {proc.returncode}: {tail}" if tail
                       else f"exit status {proc.returncode}")
