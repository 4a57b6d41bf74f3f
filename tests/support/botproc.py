"""Run `crewbridge run` as a real subprocess and talk to it the way a person at a console does.

Used by the integration tier and by the platform tiers' end-to-end tests. Output lines are
collected by a reader thread; tests wait for a line matching a pattern (with a timeout, never
a fixed sleep). Works from sync tests (`wait_for`) and async ones (`await_line`).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
CREWBRIDGE = str(VENV_BIN / "crewbridge")
FAKE_AGENT = str(VENV_BIN / "crewbridge-fake-agent")


def short_data_dir() -> Path:
    """A data directory with a short path: a Unix socket path must fit in ~104 bytes."""
    return Path(tempfile.mkdtemp(prefix="cb-", dir="/tmp"))


def toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def write_config(path: Path, *, data_dir: Path | None = None, agent: dict | None = None,
                 channels: list[dict] | None = None, extra: dict[str, dict] | None = None) -> Path:
    """A config for a test: fake agent, short timers, a private data dir; override anything."""
    data_dir = data_dir or short_data_dir()
    agent_cfg = {"command": [FAKE_AGENT], "flush_interval_s": 0.5, "stop_grace_s": 2,
                 "shutdown_grace_s": 2}
    agent_cfg.update(agent or {})
    lines = ["[bot]", f"data_dir = {toml_value(str(data_dir))}", "", "[agent]"]
    lines += [f"{k} = {toml_value(v)}" for k, v in agent_cfg.items()]
    for ch in channels or []:
        lines += ["", "[[channel]]"] + [f"{k} = {toml_value(v)}" for k, v in ch.items()]
    for section, values in (extra or {}).items():
        lines += ["", f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class BotProcess:
    """One `crewbridge run --config FILE` process with piped stdin/stdout."""

    def __init__(self, config: Path, *, env: dict[str, str] | None = None,
                 log_level: str = "info", log_format: str = "text"):
        self.config = config
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.stderr_path = Path(tempfile.mkstemp(prefix="crewbridge-stderr-", suffix=".log")[1])
        self._stderr = self.stderr_path.open("wb")
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
        self.proc = subprocess.Popen(
            [CREWBRIDGE, "run", "--config", str(config), "--log-level", log_level,
             "--log-format", log_format],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=full_env,
            cwd=REPO, text=True, bufsize=1, start_new_session=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def close_stdin(self) -> None:
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        with self._cond:
            return "\n".join(self.lines)

    def wait_for(self, pattern: str | Callable[[str], bool], timeout: float = 20.0,
                 start: int = 0) -> str:
        """The first output line (from index `start`) matching; AssertionError on timeout."""
        match = pattern if callable(pattern) else re.compile(pattern).search
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines[start:]:
                    if match(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no output line matching {pattern!r} within {timeout}s.\n"
                        f"--- stdout ---\n{chr(10).join(self.lines)}\n--- stderr ---\n"
                        f"{self.stderr[-4000:]}")
                self._cond.wait(min(remaining, 0.5))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until the bot logged that it runs (its control socket is up)."""
        deadline = time.monotonic() + timeout
        while "crewbridge is running" not in self.stderr:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"crewbridge did not start.\n--- stderr ---\n"
                                     f"{self.stderr[-4000:]}")
            time.sleep(0.02)

    async def await_line(self, pattern: str | Callable[[str], bool], timeout: float = 20.0,
                         start: int = 0) -> str:
        return await asyncio.to_thread(self.wait_for, pattern, timeout, start)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"crewbridge did not exit within {timeout}s.\n"
                                 f"--- stderr ---\n{self.stderr[-4000:]}") from None
        self._reader.join(5)
        return code

    def terminate(self, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    async def stop_cleanly(self) -> None:
        """SIGTERM from a thread, so the event loop hosting the platform the bot talks to
        (an emulator, a person's client) keeps answering while it stops; it must exit 0
        without a traceback (R4.9)."""
        code = await asyncio.to_thread(self.terminate)
        stderr = self.stderr
        assert code == 0 and "Traceback" not in stderr, stderr[-4000:]

    def kill(self) -> None:
        """SIGKILL the bot alone (its agents are in their own groups and outlive it)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(5)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self._stderr.close()


def crewbridge(*args: str, env: dict[str, str | None] | None = None, stdin: str | None = None,
               timeout: float = 60, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run one `crewbridge` command to completion (an `env` value None: unset)."""
    full_env = {**os.environ, **(env or {})}
    full_env["PATH"] = f"{VENV_BIN}{os.pathsep}{full_env.get('PATH', '')}"
    full_env = {k: v for k, v in full_env.items() if v is not None}
    return subprocess.run([CREWBRIDGE, *args], input=stdin, capture_output=True, text=True,
                          env=full_env, cwd=cwd, timeout=timeout)


def cleanup_data_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
