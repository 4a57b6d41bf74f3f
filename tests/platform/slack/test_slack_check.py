"""`crewbridge check --online` against the Slack emulator (R11.2, R1.2, R9.1): the tokens and
every bound room are checked; each problem is one line and the exit status is 2."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.platform.slack.emulator import SlackEmulator
from tests.support.botproc import crewbridge, short_data_dir, write_config


def slack_config(path: Path, emulator: SlackEmulator, rooms: list[str]) -> Path:
    return write_config(
        path, data_dir=short_data_dir(), channels=[{"name": "webui", "slack": rooms}],
        extra={"slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                         "app_token": "${SLACK_APP_TOKEN}", "api_url": emulator.api_url}})


async def check(config: Path, bot_token: str,
                app_token: str) -> subprocess.CompletedProcess[str]:
    env = {"SLACK_BOT_TOKEN": bot_token, "SLACK_APP_TOKEN": app_token}
    return await asyncio.to_thread(crewbridge, "check", "--config", str(config), "--online",
                                   env=env)


async def test_r11_2_check_online_passes_with_good_tokens_and_rooms(
        slack_emulator: SlackEmulator, tmp_path: Path) -> None:
    config = slack_config(tmp_path / "c.toml", slack_emulator, ["#webui", "C0GENERAL"])
    result = await check(config, slack_emulator.bot_token, slack_emulator.app_token)
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


async def test_r11_2_check_online_names_a_bad_token_in_one_line(
        slack_emulator: SlackEmulator, tmp_path: Path) -> None:
    config = slack_config(tmp_path / "c.toml", slack_emulator, ["#webui"])
    result = await check(config, "xoxb-not-a-real-token", slack_emulator.app_token)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "crewbridge: slack: Slack rejected the bot token (invalid_auth)"]
    assert "xoxb-not-a-real-token" not in result.stderr + result.stdout


async def test_r1_2_check_online_names_each_unresolvable_room(
        slack_emulator: SlackEmulator, tmp_path: Path) -> None:
    config = slack_config(tmp_path / "c.toml", slack_emulator, ["#nosuch", "C0WEBUI", "C0GONE"])
    result = await check(config, slack_emulator.bot_token, slack_emulator.app_token)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, lines
    assert "#nosuch" in lines[0] and "C0GONE" in lines[1]
    assert "Traceback" not in result.stderr
