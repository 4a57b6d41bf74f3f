"""`auth login` with the real CLI's `claude auth login` (R6.5). Offline it cannot finish, but
on a headless host under the bot its URL and its prompt must reach the admin room, and
`auth cancel` must end it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.integration.harness import start_bot, until

pytestmark = pytest.mark.timeout(90)


async def test_r6_5_real_claude_auth_login_shows_its_url_and_prompt_in_the_admin_room(
        tmp_path: Path, claude_bin: Path, claude_home: Path) -> None:
    bot = await start_bot(tmp_path, agent={
        "login_command": [str(claude_bin), "auth", "login"], "login_timeout_s": 60,
        "env": {"HOME": str(claude_home)}})

    def relayed() -> str:
        return "\n".join(t for t in bot.rec.in_room("ops") if "🔑" in t)

    try:
        await bot.say("ops", "auth login")
        await until(lambda: "Paste code here if prompted" in relayed(), timeout=45,
                    what="the CLI's prompt in the admin room")
        urls = re.findall(r"https://\S+", relayed())
        assert urls and all(u.startswith("https://claude.ai/oauth/authorize?") for u in urls)
        assert "\x1b" not in relayed() and "\x07" not in relayed()
        await bot.say("ops", "auth cancel")
        await until(lambda: any("auth login failed: cancelled" in t
                                for t in bot.rec.in_room("ops")), what="cancelled")
    finally:
        await bot.stop()
