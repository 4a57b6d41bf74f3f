"""Text the admin room reads: the agents table (R6.4) and the task list. Pure formatting."""

from __future__ import annotations

from collections.abc import Sequence

from bot.routing import split_nudge
from bot.store import TaskRow
from supervisor.ports import AgentStatus, QueuedNudge

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


def format_queue(agent: str, queued: Sequence[QueuedNudge], now: float) -> str:
    """`queue <agent>` (R6.6): each waiting message's place, sender, age and first line."""
    if not queued:
        return f"Nothing is queued for {agent}."
    rows = []
    for n, q in enumerate(queued, 1):
        sender, body = split_nudge(q.text)
        first = (body.strip().splitlines() or [""])[0]
        rows.append((str(n), sender or "-", format_uptime(max(0.0, now - q.created_at)),
                     first[:60] + ("…" if len(first) > 60 else "")))
    return (f"{len(queued)} message(s) queued for {agent} (`drop {agent} <n>` or "
            f"`drop {agent} all` removes them):\n```\n"
            + table(rows, ("n", "from", "waiting", "first line")) + "\n```")


def dropped_notice(sender: str, agent: str, body: str, admin: str) -> str:
    """What the sender of a dropped message reads (R6.6)."""
    first = (body.strip().splitlines() or [""])[0][:80]
    who = f"{sender}: y" if sender else "Y"
    return (f"{who}our message to {agent} (\"{first}\") was dropped by an admin ({admin}) "
            "and will not be delivered.")


def format_tasks(tasks: Sequence[TaskRow]) -> str:
    if not tasks:
        return "No open tasks."
    return "\n".join(f"#{t.id} @{t.assignee} in #{t.channel}: {t.subject}" for t in tasks)
