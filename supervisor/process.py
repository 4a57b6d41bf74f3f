"""An agent process started off the event loop (R3.7).

`asyncio.create_subprocess_exec` forks in the event loop's thread, and the parent waits there
until the child has exec'd; on a loaded machine that is 30 ms per start (111 ms seen), and
every other task waits behind it. Here `subprocess.Popen` runs on a worker thread, and the
pipes and the exit are then watched by the loop (the exit through a pidfd), so a start
costs the loop next to nothing. `Process` has the shape of the
`asyncio.subprocess.Process` that `Session` uses: `pid`, `returncode`, `stdin` (a
`StreamWriter`), `stdout` and `stderr` (`StreamReader`s), `wait()`, `send_signal()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path


class Process:
    def __init__(self, popen: subprocess.Popen, stdin: asyncio.StreamWriter,
                 stdout: asyncio.StreamReader, stderr: asyncio.StreamReader,
                 exited: asyncio.Future) -> None:
        self._popen = popen
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    async def wait(self) -> int:
        await asyncio.shield(self._exited)
        assert self._popen.returncode is not None
        return self._popen.returncode

    def send_signal(self, sig: signal.Signals) -> None:
        if self._popen.returncode is None:
            self._popen.send_signal(sig)


async def start(argv: list[str], *, cwd: Path, env: Mapping[str, str], limit: int) -> Process:
    """Start `argv` in a new session with three pipes; raises what `Popen` raises."""
    loop = asyncio.get_running_loop()
    popen = await loop.run_in_executor(None, functools.partial(
        subprocess.Popen, argv, cwd=cwd, env=dict(env), stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True))
    try:
        stdout = await _reader(loop, popen.stdout, limit)
        stderr = await _reader(loop, popen.stderr, limit)
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin,
                                                            popen.stdin)
        stdin = asyncio.StreamWriter(transport, protocol, None, loop)
    except BaseException:
        popen.kill()
        popen.wait()
        for pipe in (popen.stdin, popen.stdout, popen.stderr):
            with contextlib.suppress(OSError):
                pipe.close()
        raise
    exited = loop.create_future()

    def reaped() -> None:
        popen.wait()  # the process has exited: this reaps it at once
        transport.close()  # our end of its stdin
        if not exited.done():
            exited.set_result(None)

    _on_exit(loop, popen, reaped)
    return Process(popen, stdin, stdout, stderr, exited)


async def _reader(loop: asyncio.AbstractEventLoop, pipe, limit: int) -> asyncio.StreamReader:
    reader = asyncio.StreamReader(limit=limit)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader


def _on_exit(loop: asyncio.AbstractEventLoop, popen: subprocess.Popen, callback) -> None:
    """Call `callback` on the loop once `popen` has exited: a pidfd the loop watches, or
    where there is none, a thread that waits."""
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        def wait() -> None:
            with contextlib.suppress(ChildProcessError):
                os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOWAIT)
            loop.call_soon_threadsafe(callback)
        threading.Thread(target=wait, name=f"wait-{popen.pid}", daemon=True).start()
        return

    def readable() -> None:
        loop.remove_reader(pidfd)
        os.close(pidfd)
        callback()

    loop.add_reader(pidfd, readable)
