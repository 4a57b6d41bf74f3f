"""`auth login` from the admin room on a headless host (R6.5): the login command runs under a
pseudo-terminal, what it prints reaches the admin room as it prints it (the URL intact, no
escapes), `auth code` answers its prompt, `auth cancel` ends it, one login at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.harness import Bot, start_bot, until

pytestmark = pytest.mark.timeout(60)

LOGIN = [sys.executable, str(Path(__file__).parents[1] / "fixtures" / "login" / "tty_login.py")]
URL = "https://login.example/oauth/authorize?code_challenge=abc_DEF-123&state=x%2Fy"


def ops(bot: Bot) -> list[str]:
    return bot.rec.in_room("ops")


def relayed(bot: Bot) -> str:
    return "\n".join(t for t in ops(bot) if t.startswith("crewbridge: 🔑"))


async def login_bot(tmp_path: Path, **agent: object) -> Bot:
    return await start_bot(tmp_path, agent={"login_command": LOGIN, **agent})


async def test_r6_5_the_url_and_the_prompt_reach_the_admin_room_and_the_code_logs_in(
        tmp_path: Path) -> None:
    """R6.5: a login that will not run without a terminal runs; its URL (out of its OSC 8
    wrapping) and its prompt (no newline after it) are in the admin room while it waits;
    `auth code` types the code, which is never shown; success is reported and audited
    without the code."""
    bot = await login_bot(tmp_path)
    try:
        await bot.say("ops", "auth login")
        await until(lambda: "Paste code here if prompted >" in relayed(bot), what="the prompt")
        assert URL in relayed(bot) and "\x1b" not in relayed(bot)
        assert any(line.strip() == URL for line in relayed(bot).splitlines())
        await bot.say("ops", "auth code good-code")
        await until(lambda: any("auth login succeeded" in t for t in ops(bot)), what="success")
        assert "good-code" not in relayed(bot)
        audit = [e.what for e in await bot.app.store.audit_entries()]
        assert "auth code [hidden]" in audit and not any("good-code" in w for w in audit)
    finally:
        await bot.stop()


async def test_r6_5_one_login_at_a_time_and_cancel_ends_it(tmp_path: Path) -> None:
    bot = await login_bot(tmp_path)
    try:
        await bot.say("ops", "auth code early")
        await until(lambda: any("No login is running" in t for t in ops(bot)), what="no login")
        await bot.say("ops", "auth login")
        await until(lambda: "Paste code here" in relayed(bot), what="the prompt")
        await bot.say("ops", "auth login")
        await until(lambda: any("already running" in t for t in ops(bot)), what="refused")
        await bot.say("ops", "auth cancel")
        await until(lambda: any("auth login failed: cancelled" in t for t in ops(bot)),
                    what="cancelled")
        await bot.say("ops", "auth login")  # a new one may start now
        await until(lambda: relayed(bot).count("Paste code here") == 2, what="again")
        await bot.say("ops", "auth code wrong")
        await until(lambda: any("auth login failed: exit status 1" in t and "Invalid code"
                                in t for t in ops(bot)), what="a wrong code")
    finally:
        await bot.stop()


async def test_r6_5_a_login_that_never_ends_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    bot = await login_bot(tmp_path, login_timeout_s=1)
    try:
        await bot.say("ops", "auth login")
        await until(lambda: any("no login within 1s" in t for t in ops(bot)), what="timeout")
    finally:
        await bot.stop()
