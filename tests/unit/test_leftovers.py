"""R4.9: agent processes a killed bot left running are ended at the next start, and nothing
else is (real processes, real signals)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crewbridge.supervisor.leftovers import end_leftovers, start_mark, start_ticks

IGNORES_TERM = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
               "print('ready', flush=True); time.sleep(600)"


@pytest.mark.parametrize(
    ("stat", "ticks"),
    [
        ("4242 (claude) S 1 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 0 0", 777),
        ("9 (a b) c) S 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 31337 1 2", 31337),
        ("9 (node) Z 1 9 9 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 31337 1 2", None),
        ("9 (short) S 1", None),
    ],
)
def test_r4_9_start_ticks_from_proc_stat(stat: str, ticks: int | None) -> None:
    """The command name may hold spaces and `)`; a zombie has no start worth matching."""
    assert start_ticks(stat) == ticks


def test_r4_9_start_mark_of_a_live_and_a_missing_process() -> None:
    mine = start_mark(os.getpid())
    assert mine is not None and mine == start_mark(os.getpid())
    assert start_mark(2**22 + 12345) is None  # above any pid_max: never a process


@pytest.fixture
def spawn() -> Iterator:
    procs: list[subprocess.Popen] = []

    def start(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                                start_new_session=True, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _running(proc: subprocess.Popen) -> bool:
    """Still running: not reaped and not a zombie (we are its parent, so it stays one)."""
    return proc.poll() is None and start_mark(proc.pid) is not None


async def test_r4_9_recorded_groups_are_ended_and_a_reused_pid_is_left_alone(spawn) -> None:
    """A recorded agent still running gets SIGTERM; one that ignores it gets SIGKILL after
    the grace period; a process whose start mark differs from the record (its pid was
    given to someone else) is not touched."""
    polite = spawn("import time; print('ready', flush=True); time.sleep(600)")
    stubborn = spawn(IGNORES_TERM)
    stranger = spawn("import time; print('ready', flush=True); time.sleep(600)")
    recorded = [("webui", polite.pid, start_mark(polite.pid)),
                ("alice", stubborn.pid, start_mark(stubborn.pid)),
                ("bob", stranger.pid, "another-boot:1")]
    ended = await end_leftovers(recorded, grace_s=0.5)  # type: ignore[arg-type]
    assert sorted(ended) == ["alice", "webui"]
    assert polite.wait(5) == -15 and stubborn.wait(5) == -9
    assert _running(stranger)


async def test_r4_9_a_record_of_a_process_that_is_gone_ends_nothing(spawn) -> None:
    gone = spawn("import time; print('ready', flush=True); time.sleep(600)")
    mark = start_mark(gone.pid)
    gone.kill()
    gone.wait(5)
    assert await end_leftovers([("x", gone.pid, mark)], grace_s=0.5) == []  # type: ignore
    assert await end_leftovers([], grace_s=0.5) == []


def test_r4_9_boot_id_is_part_of_the_mark() -> None:
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    mark = start_mark(os.getpid())
    assert mark is not None and mark.startswith(boot + ":")
