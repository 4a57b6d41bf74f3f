"""Text the admin room reads: the agents table (R6.4), the task list, usage (R13.8) and the
audit (R13.9). Pure formatting; `crewbridge` prints the same tables without code fences."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from crewbridge.bot.routing import split_nudge
from crewbridge.bot.store import TaskRow
from crewbridge.bot.store_usage import NO_ONE, AuditRow, Totals, UsageLine, UsageReport
from crewbridge.supervisor.ports import AgentStatus, QueuedNudge

COLUMNS = ("agent", "kind", "state", "channel", "task", "fails", "breaker", "uptime", "queued",
           "cost today", "last error")


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


def format_usd(usd: float) -> str:
    """Dollars as people read them: cents from a dollar up, else the fraction a turn costs."""
    return f"${usd:,.2f}" if usd >= 1 or usd == 0 else f"${usd:.4f}"


def format_tokens(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def status_rows(agents: Sequence[AgentStatus],
                cost_today: Mapping[str, float] | None = None) -> list[tuple[str, ...]]:
    """The agents table's rows; "cost today" comes from the usage table (R13.8), by name."""
    costs = cost_today or {}
    return [(a.name, a.kind, a.state, f"#{a.channel}", f"#{a.task_id}" if a.task_id else "-",
             str(a.failures), a.breaker, format_uptime(a.uptime_s), str(a.queued),
             format_usd(costs.get(a.name, 0.0)), (a.last_error or "-")[:80].replace("\n", " "))
            for a in agents]


def table(rows: Sequence[tuple[str, ...]], columns: Sequence[str] = COLUMNS) -> str:
    """A fixed-width table; chat platforms show it in a code block so columns line up."""
    all_rows = [tuple(columns), *rows]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
                     for r in all_rows)


def code_block(text: str) -> str:
    return "```\n" + text + "\n```"


def format_status(agents: Sequence[AgentStatus],
                  cost_today: Mapping[str, float] | None = None) -> str:
    if not agents:
        return "No agents yet: a lead starts on the first message to its channel."
    return code_block(table(status_rows(agents, cost_today)))


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


def _who(person: str) -> str:
    return "(no one)" if person == NO_ONE else person  # a turn that answered nobody


def _tokens(t: Totals) -> str:
    return f"{format_tokens(t.input_tokens)}/{format_tokens(t.output_tokens)}"


def _usage_table(lines: Sequence[UsageLine], label: str, days: int,
                 name: Callable[[str], str]) -> str:
    rows = [(name(u.name), format_usd(u.today.cost_usd), format_usd(u.period.cost_usd),
             str(u.period.turns), _tokens(u.period)) for u in lines]
    return table(rows, (label, "today", f"{days} days", "turns", "tokens in/out"))


def usage_text(report: UsageReport, *, fenced: bool = True) -> str:
    """Admin `usage` and `crewbridge usage` (R13.8): today and the period, by channel and by
    agent, the top people today, and each day's total."""
    head = (f"Usage today ({report.today}, UTC): {format_usd(report.total.today.cost_usd)}"
            f" · last {report.days} days: {format_usd(report.total.period.cost_usd)}")
    if not report.total.period.turns:
        return head + " — no turns recorded."
    wrap = code_block if fenced else str
    people = [(_who(u.name), format_usd(u.today.cost_usd), str(u.today.turns))
              for u in report.people]
    days = [(day, format_usd(t.cost_usd), str(t.turns), _tokens(t)) for day, t in report.by_day]
    sections = [
        ("By channel", _usage_table(report.channels, "channel", report.days, "#{}".format)),
        ("By agent", _usage_table(report.agents, "agent", report.days, str)),
        ("Top people today", table(people, ("person", "today", "turns")) if people else ""),
        ("By day", table(days, ("day", "cost", "turns", "tokens in/out"))),
    ]
    return "\n".join([head, *(f"{title}:\n{wrap(body)}" for title, body in sections if body)])


def format_when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def audit_text(rows: Sequence[AuditRow], *, fenced: bool = True) -> str:
    """Admin `audit` and `crewbridge audit` (R13.9): oldest first, times in UTC."""
    if not rows:
        return "Nothing audited yet."
    cells = [(format_when(r.ts), r.who, r.platform, f"#{r.where}" if r.where else "-", r.what,
              r.outcome[:80]) for r in rows]
    body = table(cells, ("when (UTC)", "who", "platform", "where", "what", "outcome"))
    return code_block(body) if fenced else body
