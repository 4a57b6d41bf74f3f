"""What every benchmark shares: an in-process App on a memory bridge, stamps, small stats.

The App is the real one (`bot.app.App`), started with a config written by the test suite's
`write_config`, the real SQLite store in a private temp directory and real agent processes.
The only bridge is `MemoryBridge`, whose `platform` is `"console"`: the core treats the console
as bound to every channel by name (`bot.rooms.channel_of`), so any channel can be written to
without binding rooms, and every post of every channel reaches `MemoryBridge.send`
(`bot.rooms.rooms_of`), where it is recorded instead of printed. It is registered under the
key `"console"` because the outbox finds a post's bridge by its platform.

Agents are `bench/stamp_agent.py` — the bundled fake agent plus a receive timestamp — unless a
channel overrides its `command`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from crewbridge.bot.app import App
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import EventSink, Inbound, Post
from crewbridge.supervisor.ports import Clock
from crewbridge.supervisor.session import Session
from tests.support.botproc import FAKE_AGENT, short_data_dir, write_config

REPO = Path(__file__).resolve().parents[1]
STAMP_AGENT = [sys.executable, str(REPO / "bench" / "stamp_agent.py")]
FAKE_AGENT_CMD = [FAKE_AGENT]


def quiet_logs(level: int = logging.ERROR) -> None:
    """Benchmarks print tables; the bot's info and warning logs would drown them."""
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


# --- the bridge ------------------------------------------------------------------------------


class MemoryBridge:
    """A console-like bridge that records every post with the time it was sent.

    With `keep=False` it only counts them, so that the memory benchmark measures the bot's
    memory and not this record.
    """

    platform = "console"
    post_interval_s = 0.0

    def __init__(self, keep: bool = True) -> None:
        self.sink: EventSink | None = None
        self.keep = keep
        self.count = 0
        self.sent: list[tuple[int, str, str]] = []  # (monotonic ns, room, text)

    async def start(self, sink: EventSink) -> None:
        self.sink = sink

    async def resolve_room(self, ref: str) -> str:
        return ref.lstrip("#")

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        self.count += 1
        if self.keep:
            self.sent.append((time.monotonic_ns(), room, post.line))
        return None

    async def stop(self) -> None:
        return None

    def posts_to(self, room: str) -> list[str]:
        return [text for _ns, r, text in self.sent if r == room]


_event_ids = iter(range(1, 1 << 62))


def inbound(channel: str, text: str, *, sender: str = "bench") -> Inbound:
    """A person's message in `channel`, as a console bridge would hand it to the core."""
    return Inbound("console", channel, sender, sender, text, f"bench-{next(_event_ids)}",
                   time.time())


# --- receive stamps --------------------------------------------------------------------------


class Stamps:
    """The stamp agents' `<agent>.stamps` files, read incrementally.

    With `keep=False` only the number of stamps is kept (the memory benchmark).
    """

    def __init__(self, directory: Path, keep: bool = True):
        self.dir = directory
        self.keep = keep
        self.count = 0
        self._offsets: dict[Path, int] = {}
        self.by_key: dict[tuple[str, str], int] = {}  # (agent, id) -> first receive ns

    def poll(self) -> int:
        """Read what was appended since the last call; the number of new records."""
        new = 0
        for path in self.dir.glob("*.stamps"):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1
            if not end:
                continue
            self._offsets[path] = offset + end
            agent = path.name[: -len(".stamps")]
            for line in data[:end].splitlines():
                new += 1
                if self.keep:
                    ns, _, ident = line.partition(b" ")
                    self.by_key.setdefault((agent, ident.decode()), int(ns))
        self.count += new
        return new

    def has(self, agent: str, ident: str) -> bool:
        return (agent, ident) in self.by_key

    async def wait(self, keys: Iterable[tuple[str, str]], timeout: float,
                   interval: float = 0.01) -> bool:
        """Wait until every (agent, id) in `keys` has been received; False on timeout."""
        wanted = set(keys)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if wanted <= self.by_key.keys():
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)

    async def wait_count(self, count: int, timeout: float, interval: float = 0.02) -> bool:
        """Wait until at least `count` stamps were written in all; False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if self.count >= count:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(interval)


class WriteStamps:
    """Bot-side stamps: when `Session.send` has written a nudge to an agent's stdin pipe.

    Installed around the real `Session.send` (the product code is not changed): the time is
    taken after the write and `drain()` returned, i.e. when the bytes are in the pipe.
    """

    def __init__(self) -> None:
        self.by_key: dict[tuple[str, str], int] = {}
        self._orig: Any = None

    def __enter__(self) -> WriteStamps:
        orig = self._orig = Session.send
        by_key = self.by_key

        async def send(session: Session, text: str) -> bool:
            ok = await orig(session, text)
            if ok:
                now = time.monotonic_ns()
                i = text.find("bench#")
                if i >= 0:
                    ident = text[i + 6:].split(maxsplit=1)[0] if text[i + 6:].strip() else ""
                    by_key.setdefault((session.name, ident), now)
            return ok

        Session.send = send  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        Session.send = self._orig  # type: ignore[method-assign]


class StoreTrips:
    """Counts the store's round trips to its SQLite thread (aiosqlite `Connection._execute`).

    Every `await` on the store that reaches SQLite is one trip: a hand-off to the worker
    thread and back to the event loop. Counting them is steady where timings are noisy.
    """

    def __init__(self) -> None:
        self.count = 0
        self._orig: Any = None

    def __enter__(self) -> StoreTrips:
        orig = self._orig = aiosqlite.Connection._execute
        counter = self

        async def _execute(conn: aiosqlite.Connection, fn: Any, *args: Any, **kw: Any) -> Any:
            counter.count += 1
            return await orig(conn, fn, *args, **kw)

        aiosqlite.Connection._execute = _execute  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        aiosqlite.Connection._execute = self._orig  # type: ignore[method-assign]


# --- the app ---------------------------------------------------------------------------------


@dataclass
class Bench:
    app: App
    bridge: MemoryBridge
    stamps: Stamps
    data_dir: Path
    config_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    async def send(self, channel: str, text: str) -> int:
        """Hand one message to the core like a bridge does; the monotonic ns it entered."""
        t0 = time.monotonic_ns()
        await self.app.on_event(inbound(channel, text))
        return t0

    async def warm_up(self, agents: Sequence[str], channel_of: Callable[[str], str],
                      timeout: float = 60) -> None:
        """Start each agent with one message and wait until each has received it."""
        for agent in agents:
            await self.send(channel_of(agent), f"warm up bench#warm-{agent}")
        if not await self.stamps.wait(((a, f"warm-{a}") for a in agents), timeout):
            missing = [a for a in agents if not self.stamps.has(a, f"warm-{a}")]
            raise RuntimeError(f"agents never started: {', '.join(missing[:10])}")


@contextlib.asynccontextmanager
async def bench_app(*, channels: Sequence[dict] = (), agent: dict | None = None,
                    clock: Clock | None = None, keep: bool = True,
                    prepare: Callable[[Path], Awaitable[None]] | None = None
                    ) -> AsyncIterator[Bench]:
    """A started App with the real store in a temp dir; stopped and removed afterwards.

    `keep=False`: the bridge and the stamps count instead of recording (see `MemoryBridge`).
    `prepare(db_path)` runs before the App opens its store there (a crew written in advance).
    """
    data_dir = short_data_dir()
    stamp_dir = data_dir / "stamps"
    stamp_dir.mkdir()
    agent_cfg = {"command": STAMP_AGENT, "flush_interval_s": 2, "stop_grace_s": 2,
                 "env": {"BENCH_STAMP_DIR": str(stamp_dir)}}
    agent_cfg.update(agent or {})
    config_path = write_config(data_dir / "bench.toml", data_dir=data_dir, agent=agent_cfg,
                               channels=list(channels))
    if prepare is not None:
        await prepare(data_dir / "crewbridge.db")
    bridge = MemoryBridge(keep)
    app = App(load_config(config_path, env={}), clock=clock, bridges={"console": bridge})
    try:
        await app.start()
        yield Bench(app, bridge, Stamps(stamp_dir, keep), data_dir, config_path)
    finally:
        with contextlib.suppress(Exception):
            await app.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# --- numbers ---------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def ms(ns: float) -> float:
    return ns / 1e6


def rss_mib() -> float:
    """This process's resident set size (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def agents_cpu_s(app: App) -> float:
    """CPU seconds (user + system) used so far by the agent processes now running."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for view in app.supervisor.run_views().values():
        pid = view.pid
        if pid is None:
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def print_table(title: str, rows: Sequence[Sequence[str]],
                headers: Sequence[str] = ("figure", "value", "target")) -> None:
    """A small fixed-width table (by default: figure, value, target)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)))
    sys.stdout.flush()


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


class FloorBot:
    """A bench's floor bot (`python -m <module> <args>`) as a subprocess, like crewbridge, so
    it shares no event loop with the bench; it prints `ready` once it is connected."""

    def __init__(self, module: str, args: Sequence[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, *args], cwd=Path(__file__).resolve().parents[1],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True)

    def wait_ready(self) -> None:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until "ready" or exit
        if line.strip() != "ready":
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise RuntimeError(f"floor bot did not start: {line!r} {err[-2000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()
