"""Text the admin room reads: the agents table (R6.4) and the task list. Pure formatting."""

from __future__ import annotations

from collections.abc import Sequence

from bot.store import TaskRow
from supervisor.ports import AgentStatus

COLUMNS = ("agent", "kind", "state", "channel", "task", "fails", "breaker", "uptime", "queued",
           "last error")


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def status_rows(agents: Sequence[AgentStatus]) -> list[tuple[str, ...]]:
    return [(a.name, a.kind, a.state, f"#{a.channel}", f"#{a.task_id}" if a.task_id else "-",
             str(a.failures), a.breaker, format_uptime(a.uptime_s), str(a.queued),
             (a.last_error or "-")[:80].replace("\n", " ")) for a in agents]


def table(rows: Sequence[tuple[str, ...]], columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width table; chat platforms show it in a code block so columns line up."""
    all_rows = [tuple(columns), *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows)


def format_status(agents: Sequence[AgentStatus]) -> str:
    if not agents:
        return "No agents yet: a lead starts on the first message to its channel."
    return "```\n" + table(status_rows(agents)) + "\n```"


def format_tasks(tasks: Sequence[TaskRow]) -> str:
    if not tasks:
        return "No open tasks."
    return "\n".join(f"#{t.id} @{t.assignee} in #{t.channel}: {t.subject}" for t in tasks)
