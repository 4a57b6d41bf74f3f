"""The command line's conventions (R14.2, R14.4): `--version`, where the config is found,
host commands that need no secret, `--json`, exit codes, log levels and formats, and
channels that are not made by a typo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.botproc import BotProcess, crewbridge, write_config

pytestmark = pytest.mark.timeout(120)

NO_CONFIG = {"CREWBRIDGE_CONFIG": None, "CREWBRIDGE_SOCKET": None}


def test_r14_2_version() -> None:
    result = crewbridge("--version")
    assert result.returncode == 0 and result.stdout.startswith("crewbridge 0.")


def test_r14_2_the_config_is_found_by_env_then_in_the_working_directory(tmp_path: Path) -> None:
    config = write_config(tmp_path / "elsewhere.toml")
    by_env = crewbridge("check", env={**NO_CONFIG, "CREWBRIDGE_CONFIG": str(config)},
                        cwd=tmp_path)
    assert by_env.returncode == 0 and by_env.stdout.startswith(f"{config}: ok")
    here = tmp_path / "here"
    here.mkdir()
    write_config(here / "crewbridge.toml")
    in_cwd = crewbridge("check", env=NO_CONFIG, cwd=here)
    assert in_cwd.returncode == 0 and in_cwd.stdout.startswith("crewbridge.toml: ok")
    none = crewbridge("check", env=NO_CONFIG, cwd=tmp_path)
    assert none.returncode == 2 and none.stderr.count("\n") == 1
    assert "CREWBRIDGE_CONFIG" in none.stderr and "/etc/crewbridge/crewbridge.toml" in none.stderr


@pytest.mark.parametrize(("flag", "env"), [
    (["--log-level", "LOUD"], {}), ([], {"CREWBRIDGE_LOG_LEVEL": "verbose"}),
    (["--log-format", "xml"], {}),
])
def test_r14_4_a_bad_log_level_or_format_is_one_line_and_exit_2(
        tmp_path: Path, flag: list[str], env: dict[str, str]) -> None:
    config = write_config(tmp_path / "c.toml")
    result = crewbridge("run", "--config", str(config), *flag, env=env, stdin="")
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_r14_2_r14_4_host_commands_need_no_secret_and_speak_json(tmp_path: Path) -> None:
    """R14.2: the bot's config reads a secret from its environment; the admin's shell has
    none of it, and `status`, `task list` and `post` still reach the bot (only `[bot]` is
    read); `--json` prints data; a post to an unknown channel is refused unless
    `--create`. R14.4: `--log-format json` writes one object per line, level in any case."""
    config = write_config(tmp_path / "c.toml", channels=[{"name": "webui"}],
                          agent={"env": {"API_KEY": "${CREWBRIDGE_TEST_SECRET}"}})
    bot = BotProcess(config, env={"CREWBRIDGE_TEST_SECRET": "s3cr3t-value"},
                     log_level="INFO", log_format="json")
    try:
        bot.wait_ready()
        shell = {"CREWBRIDGE_TEST_SECRET": None}
        status = crewbridge("status", "--json", "--config", str(config), env=shell)
        assert status.returncode == 0, status.stderr
        assert isinstance(json.loads(status.stdout), list)
        tasks = crewbridge("task", "list", "--json", "--config", str(config), env=shell)
        assert tasks.returncode == 0 and json.loads(tasks.stdout) == []
        typo = crewbridge("post", "--config", str(config), "webiu", "hello", env=shell)
        assert typo.returncode == 1 and "no channel #webiu" in typo.stderr
        assert "--create" in typo.stderr
        made = crewbridge("post", "--create", "--config", str(config), "design", "hi",
                          env=shell)
        assert made.returncode == 0, made.stderr
        reserved = crewbridge("post", "--create", "--config", str(config), "all", "hi",
                              env=shell)
        assert reserved.returncode == 1 and "reserved" in reserved.stderr
    finally:
        bot.close()
    lines = [line for line in bot.stderr.splitlines() if line.strip()]
    assert lines and all(json.loads(line)["level"] in ("info", "warning", "error")
                         for line in lines)
