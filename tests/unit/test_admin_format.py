"""The admin room's agents table and task list (R6.4, R11.2 `crewbridge status`). Pure."""

from __future__ import annotations

import pytest

from crewbridge.bot.admin import (
    COLUMNS,
    format_status,
    format_tasks,
    format_uptime,
    status_rows,
    table,
)
from crewbridge.bot.store import TaskRow
from crewbridge.supervisor.ports import AgentStatus

AGENTS = [
    AgentStatus("general", "lead", "running", "general", None, 0, "closed", "", 3725.0, 0),
    AgentStatus("webui", "lead", "paused", "webui", None, 3, "open",
                "exit status 1 after 2.0 s:\nAPI Error: 500 " + "x" * 200, None, 4),
    AgentStatus("data_eng", "worker", "cooling down", "dm-data_eng", 12, 1, "closed",
                "crashed", None, 1),
    AgentStatus("al", "worker", "starting", "dm-al", 7, 0, "half_open", "", 59.9, 0),
]


def column_starts(header: str) -> list[int]:
    return [header.index(c) for c in COLUMNS]


def code_lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines[0] == "```" and lines[-1] == "```", "the table is a code block"
    return lines[1:-1]


def test_r6_4_status_has_every_column_the_spec_asks_for() -> None:
    """R6.4: every agent with state, channel, task, failures, breaker, last error, uptime."""
    header = code_lines(format_status(AGENTS))[0]
    for word in ("agent", "state", "channel", "task", "fails", "breaker", "last error",
                 "uptime", "cost today"):
        assert word in header, word


def test_r6_4_status_columns_line_up() -> None:
    """R6.4: in a fixed-width block every cell starts under its column's heading."""
    lines = code_lines(format_status(AGENTS))
    starts = column_starts(lines[0])
    assert starts == sorted(starts)
    rows = status_rows(AGENTS)
    assert len(lines) == 1 + len(rows)
    for line, row in zip(lines[1:], rows, strict=True):
        for start, cell in zip(starts, row, strict=True):
            assert line[start:].startswith(cell), (line, cell)
            assert start == 0 or line[start - 1] == " "


def test_r6_4_status_rows_show_each_agent() -> None:
    """R6.4: the values, readable: channel and task as #refs, uptime, failures, breaker,
    last error on one line and truncated."""
    general, webui, data_eng, al = status_rows(AGENTS)
    assert general == ("general", "lead", "running", "#general", "-", "0", "closed", "1h02m",
                       "0", "$0.00", "-")
    assert webui[:8] == ("webui", "lead", "paused", "#webui", "-", "3", "open", "-")
    assert "\n" not in webui[10] and len(webui[10]) <= 80
    assert webui[10].startswith("exit status 1 after 2.0 s: API Error: 500")
    assert data_eng[3:6] == ("#dm-data_eng", "#12", "1")
    assert al[7] == "59s"


def test_r6_4_one_line_per_agent_even_with_multiline_errors() -> None:
    """R6.4: a multi-line last error does not break the table."""
    assert len(code_lines(format_status(AGENTS))) == 1 + len(AGENTS)


def test_r6_4_status_without_agents_says_so() -> None:
    """R6.4: no agents yet is a sentence, not an empty table."""
    assert "No agents" in format_status([])


@pytest.mark.parametrize(("seconds", "shown"), [
    (None, "-"), (0, "0s"), (59.9, "59s"), (60, "1m00s"), (61, "1m01s"), (3599, "59m59s"),
    (3600, "1h00m"), (3725, "1h02m"), (90000, "25h00m"),
])
def test_r6_4_uptime_format(seconds: float | None, shown: str) -> None:
    """R6.4: uptime is short and readable."""
    assert format_uptime(seconds) == shown


def test_r6_4_table_pads_to_the_widest_cell_and_trims_line_ends() -> None:
    """R6.4: widths follow the widest cell of each column; no trailing spaces."""
    text = table([("a", "bbbbbb"), ("cccc", "")], ("x", "y"))
    assert text.splitlines() == ["x     y", "a     bbbbbb", "cccc"]


def test_r6_4_tasks_list() -> None:
    """R6.4 `tasks`: one line per open task with id, assignee, channel and subject."""
    assert format_tasks([]) == "No open tasks."
    out = format_tasks([TaskRow(12, "fix the login bug", "webui", "alice", "open", "Dana"),
                        TaskRow(13, "load", "backend", "bob", "open", "backend")])
    assert out.splitlines() == ["#12 @alice in #webui: fix the login bug",
                                "#13 @bob in #backend: load"]


# --- queue and drop (R6.6) -----------------------------------------------------------------


def test_r6_6_queue_lists_place_sender_age_and_first_line() -> None:
    from crewbridge.bot.admin import format_queue
    from crewbridge.supervisor.ports import QueuedNudge

    queued = [QueuedNudge(7, "webui", "[alice via slack in #webui] deploy it\nnow please", 0,
                          "webui", 1000.0),
              QueuedNudge(9, "webui", "[task #3 from bob in #webui] " + "y" * 80, 0, "webui",
                          1090.0),
              QueuedNudge(11, "webui", "no header at all", 0, "webui", 1100.0)]
    text = format_queue("webui", queued, now=1125.0)
    lines = text.splitlines()
    assert lines[0].startswith("3 message(s) queued for webui")
    assert lines[3].split() == ["1", "alice", "2m05s", "deploy", "it"]
    assert lines[4].split()[:3] == ["2", "bob", "35s"] and lines[4].endswith("y" * 60 + "…")
    assert lines[5].split() == ["3", "-", "25s", "no", "header", "at", "all"]


def test_r6_6_an_empty_queue_says_so() -> None:
    from crewbridge.bot.admin import format_queue

    assert format_queue("webui", [], now=0.0) == "Nothing is queued for webui."


def test_r6_6_the_sender_of_a_dropped_message_is_told_who_dropped_it() -> None:
    from crewbridge.bot.admin import dropped_notice

    assert dropped_notice("alice", "webui", "deploy it\nnow", "bob") == (
        'alice: your message to webui ("deploy it") was dropped by an admin (bob) and will '
        "not be delivered.")


# --- usage (R13.8) and the audit (R13.9) ----------------------------------------------------


def test_r13_8_status_shows_each_agent_s_cost_today_by_name() -> None:
    """R13.8: the agents table's "cost today" joins the usage table by agent name; an agent
    without usage today shows $0.00."""
    rows = status_rows(AGENTS, {"webui": 1.234, "al": 0.01234})
    cost = COLUMNS.index("cost today")
    assert [r[cost] for r in rows] == ["$0.00", "$1.23", "$0.00", "$0.0123"]
    assert "$1.23" in format_status(AGENTS, {"webui": 1.234})


@pytest.mark.parametrize(("usd", "shown"), [
    (0, "$0.00"), (0.0042, "$0.0042"), (0.5, "$0.5000"), (1, "$1.00"), (1234.5, "$1,234.50")])
def test_r13_8_dollars_show_the_fraction_a_turn_costs(usd: float, shown: str) -> None:
    from crewbridge.bot.admin import format_usd

    assert format_usd(usd) == shown


def usage_report_fixture():
    from crewbridge.bot.store_usage import NO_ONE, Totals, UsageRow, usage_report

    def row(day: str, agent: str, channel: str, person: str, cost: float) -> UsageRow:
        return UsageRow(day, agent, channel, person, Totals(cost, 1500, 20, 1))

    return usage_report([row("2026-12-01", "webui", "webui", "alice", 1.5),
                         row("2026-12-01", "general", "general", NO_ONE, 0.25),
                         row("2026-11-29", "webui", "webui", "bob", 3.0)], "2026-12-01", 7)


def test_r13_8_usage_shows_channels_agents_top_people_and_days() -> None:
    """R13.8 admin `usage`: a headline with today's and the week's total, then code blocks
    by channel, by agent, the top people today and by day."""
    from crewbridge.bot.admin import usage_text

    text = usage_text(usage_report_fixture())
    lines = text.splitlines()
    assert lines[0] == "Usage today (2026-12-01, UTC): $1.75 · last 7 days: $4.75"
    for title in ("By channel:", "By agent:", "Top people today:", "By day:"):
        assert title in lines and lines[lines.index(title) + 1] == "```", title
    channels = lines[lines.index("By channel:") + 2:lines.index("By channel:") + 5]
    assert channels[0].split() == ["channel", "today", "7", "days", "turns", "tokens", "in/out"]
    assert channels[1].split() == ["#webui", "$1.50", "$4.50", "2", "3.0k/40"]
    assert channels[2].split() == ["#general", "$0.2500", "$0.2500", "1", "1.5k/20"]
    people = text.split("Top people today:")[1]
    assert "alice" in people and "(no one)" in people and "bob" not in people.split("By day")[0]
    assert text.split("By day:")[1].count("2026-1") == 2


def test_r13_8_usage_for_the_cli_has_no_code_fences_and_an_empty_one_says_so() -> None:
    from crewbridge.bot.admin import usage_text
    from crewbridge.bot.store_usage import usage_report

    assert "```" not in usage_text(usage_report_fixture(), fenced=False)
    assert usage_text(usage_report([], "2026-12-01", 7)).endswith("no turns recorded.")


def test_r13_9_audit_lists_when_who_platform_where_what_and_outcome() -> None:
    """R13.9 admin `audit`: one line per act, oldest first, the time in UTC."""
    from crewbridge.bot.admin import audit_text
    from crewbridge.bot.store_usage import AuditRow

    rows = [AuditRow(1, 0.0, "Dana (U1)", "slack", "ops", "reset webui", "Closed. " * 20),
            AuditRow(2, 61.0, "cli:ops", "cli", "", "task done #3", "Task #3 done: x")]
    lines = code_lines(audit_text(rows))
    assert lines[0].split() == ["when", "(UTC)", "who", "platform", "where", "what", "outcome"]
    assert lines[1].startswith("1970-01-01 00:00:00  Dana (U1)")
    assert "#ops" in lines[1] and "reset webui" in lines[1] and len(lines[1]) < 200
    assert lines[2].startswith("1970-01-01 00:01:01  cli:ops") and " - " in lines[2]
    assert audit_text([]) == "Nothing audited yet."
