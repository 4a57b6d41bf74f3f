"""Usage by agent, channel, person and day (R13.8) and the audit (R13.9), in process and
through `crewbridge usage` / `crewbridge audit` against a running bot (R11.2, R14.2)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from crewbridge.bot.store_usage import utc_day
from crewbridge.supervisor.ports import Conversation, QueuedNudge, TurnUsage
from tests.integration.harness import Bot, start_bot, until
from tests.support.botproc import BotProcess, crewbridge, write_config

pytestmark = pytest.mark.timeout(60)


def ops(bot: Bot) -> list[str]:
    return bot.rec.in_room("ops")


def asked(*texts: str) -> tuple[QueuedNudge, ...]:
    return tuple(QueuedNudge(i, "webui", t, 0, "webui") for i, t in enumerate(texts, 1))


async def answer_in_ops(bot: Bot, command: str, marker: str) -> str:
    """Type `command` in the admin room; the bot's answer that contains `marker`."""
    seen = len(ops(bot))
    await bot.say("ops", command, sender="admin")
    await until(lambda: any(marker in t for t in ops(bot)[seen:]), what=f"answer to {command}")
    return next(t for t in ops(bot)[seen:] if marker in t)


async def test_r13_8_a_turn_s_cost_is_stored_and_shown_by_status_and_usage(
        tmp_path: Path) -> None:
    """R13.8: a real turn is counted (the fake agent reports $0); a turn's cost is split
    between the people it answered, in the channel it answered; one that answered no
    conversation counts in the agent's home channel; `status` shows each agent's cost
    today and admin `usage` the sums by channel, agent, person and day."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}])
    try:
        await bot.say("webui", "hello lead", sender="carol")
        today = utc_day(bot.clock.now())
        await until(lambda: bot.rec.in_room("webui") and any(
            "got it" in t for t in bot.rec.in_room("webui")), what="the lead's answer")
        await bot.app.supervisor.wait_quiet(10)
        (real,) = await bot.app.store.usage_since(today)
        assert (real.agent, real.channel, real.person, real.totals.turns) == (
            "webui", "webui", "carol", 1)

        await bot.app.host.record_usage("webui", Conversation("webui", None), TurnUsage(
            0.5, 1000, 100, asked("[alice via slack in #webui] a", "[bob via matrix in #webui] b")))
        await bot.app.host.record_usage("webui", None, TurnUsage(0.25, 10, 1))  # home: #webui
        await bot.app.host.record_usage("general", Conversation("general"), TurnUsage(
            2.0, 1, 1, asked("[alice via console in #general] c")))
        rows = {(r.agent, r.channel, r.person): r.totals for r in
                await bot.app.store.usage_since(today)}
        assert rows[("webui", "webui", "alice")].cost_usd == pytest.approx(0.25)
        assert rows[("webui", "webui", "bob")].input_tokens == 500
        assert rows[("webui", "webui", "")].cost_usd == pytest.approx(0.25)
        assert rows[("general", "general", "alice")].cost_usd == pytest.approx(2.0)

        status = await answer_in_ops(bot, "status", "cost today")
        webui = next(line for line in status.splitlines() if line.startswith("webui "))
        assert "$0.7500" in webui

        usage = await answer_in_ops(bot, "usage", "Usage today")
        assert f"Usage today ({today}, UTC): $2.75" in usage
        by_channel = usage.split("By channel:")[1].split("By agent:")[0]
        assert "#general" in by_channel and "$2.00" in by_channel and "#webui" in by_channel
        people = usage.split("Top people today:")[1].split("By day:")[0]
        assert people.index("alice") < people.index("bob")  # $2.25 before $0.25
        assert "carol" in people and "(no one)" in people
    finally:
        await bot.stop()


async def test_r13_9_admin_commands_and_task_commands_are_audited(tmp_path: Path) -> None:
    """R13.9: each admin command (verb and arguments, who, platform, where, its answer's
    first line), a task opened and finished from a room, a refused one, and the outcome of
    `auth login` are recorded; admin `audit [n]` lists the latest."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}],
                          agent={"login_command": ["sh", "-c", "echo denied; exit 3"],
                                 "login_timeout_s": 5})
    try:
        await answer_in_ops(bot, "reset webui", "webui")
        await bot.say("webui", "!task @bob fix the login", sender="dana")
        await until(lambda: any("Task #1 for @bob" in t for t in bot.rec.in_room("webui")),
                    what="task posted")
        await bot.say("webui", "!task bob", sender="dana")  # not well formed: not a task
        await bot.say("webui", "!done 9", sender="dana")
        await until(lambda: any("no open task #9" in t for t in bot.rec.in_room("webui")),
                    what="refusal")
        await bot.say("webui", "!done 1", sender="dana")
        await until(lambda: any("Task #1 done" in t for t in bot.rec.in_room("webui")),
                    what="task done")
        await bot.say("ops", "auth login", sender="admin")
        await until(lambda: any("auth login failed" in t for t in ops(bot)), what="login")
        await bot.say("ops", "what can I do here?", sender="admin")  # help: not an act

        entries = [(e.who, e.platform, e.where, e.what, e.outcome)
                   for e in await bot.app.store.audit_entries()]
        assert entries[0][:4] == ("admin", "console", "ops", "reset webui")
        assert entries[1] == ("dana", "console", "webui", "!task @bob fix the login",
                              "Task #1 for @bob: fix the login")
        assert entries[2][3:] == ("!done 9", "refused: there is no open task #9")
        assert entries[3][3:] == ("!done 1", "Task #1 done: fix the login (@bob)")
        assert entries[4][3].startswith("auth login") and entries[4][4].startswith("Running")
        assert entries[5][3] == "auth login (outcome)" and "failed" in entries[5][4]
        assert len(entries) == 6

        listing = await answer_in_ops(bot, "audit 2", "when (UTC)")
        assert "auth login (outcome)" in listing and "reset webui" not in listing
        assert "!done 1" not in listing
        full = await answer_in_ops(bot, "audit", "when (UTC)")
        assert "reset webui" in full and "audit 2" in full
        assert (await bot.app.store.audit_entries())[-1].what == "audit"
    finally:
        await bot.stop()


def test_r13_8_r13_9_crewbridge_usage_and_audit_against_a_running_bot(tmp_path: Path) -> None:
    """R13.8, R13.9, R14.2: `crewbridge usage --json` and `audit --json --since` from the host's
    shell (the operator token), plain tables without them; a task created on the CLI is
    audited as the host's user on platform `cli`."""
    config = write_config(tmp_path / "c.toml", channels=[{"name": "webui"}])
    bot = BotProcess(config)
    try:
        bot.wait_ready()
        bot.send("#webui hello lead")
        bot.wait_for(r"^#webui/\d+ webui: got it")
        create = crewbridge("task", "create", "--config", str(config), "--assignee", "alice",
                            "--channel", "webui", "fix", "it")
        assert create.returncode == 0, create.stderr

        usage = crewbridge("usage", "--config", str(config), "--json", "--days", "3")
        assert usage.returncode == 0, usage.stderr
        report = json.loads(usage.stdout)
        assert report["days"] == 3 and report["total"]["period"]["turns"] >= 1
        assert "webui" in [c["name"] for c in report["channels"]]
        plain = crewbridge("usage", "--config", str(config))
        assert plain.returncode == 0 and "Usage today" in plain.stdout
        assert "```" not in plain.stdout and "By agent:" in plain.stdout
        bad = crewbridge("usage", "--config", str(config), "--days", "0")
        assert bad.returncode == 2 and "--days" in bad.stderr

        audit = crewbridge("audit", "--config", str(config), "--json", "--since", "1h")
        assert audit.returncode == 0, audit.stderr
        (entry,) = json.loads(audit.stdout)
        user = os.environ.get("USER") or "operator"
        assert (entry["who"], entry["platform"], entry["where"]) == (f"cli:{user}", "cli",
                                                                    "webui")
        assert entry["what"] == "task create @alice fix it"
        assert entry["outcome"] == "Task #1 for @alice: fix it"
        future = crewbridge("audit", "--config", str(config), "--json", "--since",
                            "2999-01-01T00:00")
        assert json.loads(future.stdout) == []
        wrong = crewbridge("audit", "--config", str(config), "--since", "yesterday")
        assert wrong.returncode == 2 and "--since" in wrong.stderr
        status = crewbridge("status", "--config", str(config))
        assert status.returncode == 0 and "cost today" in status.stdout
    finally:
        bot.close()


@pytest.mark.parametrize("command", ["usage", "audit"])
def test_r11_2_usage_and_audit_have_help_and_fail_in_one_line(command: str,
                                                               tmp_path: Path) -> None:
    """R11.2: `--help` everywhere; a bot that is not running is one line and exit 1."""
    helped = crewbridge(command, "--help")
    assert helped.returncode == 0 and "--json" in helped.stdout
    result = crewbridge(command, "--config", str(write_config(tmp_path / "c.toml")))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "not running" in result.stderr
