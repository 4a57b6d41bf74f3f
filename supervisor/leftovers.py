"""Agent processes left running by a bot that was killed without a chance to stop them.

Agents run in process groups of their own, so a SIGKILLed (or OOM-killed) bot leaves them
running: each goes on with its turn and exits only when it next reads its closed stdin. A
restarted bot would then resume the same Claude session in a second process while the first
still writes to it. So every agent process is recorded in the store while it runs, and
the next start ends the groups that are still there (R4.9).

A process id alone could by then belong to something else, so a record holds the process's
start mark: the boot id and the start time in clock ticks from `/proc/<pid>/stat`. A group
is signalled only when its leader still has that mark. Where there is no `/proc` (macOS),
nothing is recorded and nothing is ended; the agents there still exit at their next read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

PROC = Path("/proc")
POLL_S = 0.05  # we cannot wait() for a process we did not start; we look again


def start_ticks(stat: str) -> int | None:
    """Field 22 (starttime) of a `/proc/<pid>/stat` line, or None for a zombie.

    The command name (field 2) is in parentheses and may itself hold spaces or `)`, so the
    fields are counted from the last `)`.
    """
    fields = stat[stat.rfind(")") + 2:].split()
    if len(fields) < 20 or fields[0] == "Z":
        return None
    return int(fields[19])


def start_mark(pid: int, proc: Path = PROC) -> str | None:
    """`<boot id>:<start ticks>` of a live process, None if it is gone (or a zombie)."""
    try:
        boot = (proc / "sys/kernel/random/boot_id").read_text().strip()
        ticks = start_ticks((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError):
        return None
    return f"{boot}:{ticks}" if ticks is not None else None


async def end_leftovers(recorded: list[tuple[str, int, str]], grace_s: float) -> list[str]:
    """End the recorded groups whose leader is still the process recorded: SIGTERM to the
    group, then SIGKILL to the groups whose leader is still there after `grace_s` (only while
    the leader is known can the id not belong to someone else). Returns the names of the
    agents that were still running."""
    alive = [(agent, pgid, mark) for agent, pgid, mark in recorded
             if mark and start_mark(pgid) == mark]
    for _, pgid, _ in alive:
        _signal_group(pgid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + grace_s
    waiting = alive
    while waiting and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(POLL_S)
        waiting = [(a, pgid, mark) for a, pgid, mark in waiting if start_mark(pgid) == mark]
    for _, pgid, _ in waiting:
        _signal_group(pgid, signal.SIGKILL)
    return [agent for agent, _, _ in alive]


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
