"""The command line (R11.2): help everywhere, one clear line and a non-zero exit on failure."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.botproc import BotProcess, crewbridge, write_config

COMMANDS = [["run"], ["check"], ["status"], ["post"], ["task"], ["task", "create"],
            ["task", "done"], ["task", "list"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: "-".join(c))
def test_r11_2_every_command_has_help(command: list[str]) -> None:
    result = crewbridge(*command, "--help")
    assert result.returncode == 0 and "usage: crewbridge" in result.stdout


def test_r11_1_r11_2_check_reports_every_problem_without_traceback(tmp_path: Path) -> None:
    """R11.1: file, key and expectation per problem; secrets never echoed; exit 2."""
    bad = tmp_path / "bad.toml"
    bad.write_text('[agent]\nhealthy_after_s = "soon"\nmax_hops = 0\n[slack]\n'
                   'bot_token = 12345678901\nmode = "socket"\n[extra]\n')
    result = crewbridge("check", "--config", str(bad))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert all(line.startswith(f"crewbridge: {bad}: ") for line in lines), lines
    assert any("agent.healthy_after_s: expected a number" in line for line in lines)
    assert any("agent.max_hops: expected a number greater than 0" in line for line in lines)
    assert any("slack.app_token" in line or "slack.bot_token" in line for line in lines)
    assert any("extra: unknown section" in line for line in lines)
    assert "Traceback" not in result.stderr and "12345678901" not in result.stderr


def test_r11_2_check_ok_and_missing_file(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.toml")
    ok = crewbridge("check", "--config", str(good))
    assert ok.returncode == 0 and "ok" in ok.stdout
    missing = crewbridge("check", "--config", str(tmp_path / "nope.toml"))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"crewbridge: {tmp_path / 'nope.toml'}: no such file"


def test_r11_2_talking_to_a_bot_that_is_not_running_is_one_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml")
    for args in (["status"], ["post", "general", "hi"], ["task", "list"]):
        result = crewbridge(*args, "--config", str(config))
        assert result.returncode == 1
        assert result.stderr.count("\n") == 1 and "not running" in result.stderr
    result = crewbridge("status", env={"CREWBRIDGE_SOCKET": "", "CREWBRIDGE_CONFIG": None},
                        cwd=tmp_path)
    assert result.returncode == 2 and "--config" in result.stderr  # R14.2: a usage error
    assert result.stderr.count("\n") == 1


def test_r7_2_r11_2_task_and_post_commands_against_a_running_bot(tmp_path: Path) -> None:
    """R7.2, R11.2: a person on the host creates, lists and finishes tasks, and posts."""
    config = write_config(tmp_path / "c.toml", channels=[{"name": "webui"}])
    bot = BotProcess(config)
    try:
        bot.wait_ready()
        create = crewbridge("task", "create", "--config", str(config), "--assignee", "alice",
                            "--channel", "webui", "fix", "the", "login")
        assert create.returncode == 0, create.stderr
        assert "Task #1 for @alice: fix the login" in create.stdout
        bot.wait_for(r"^#dm-alice alice: got it")
        listed = crewbridge("task", "list", "--config", str(config))
        assert "#1" in listed.stdout and "@alice" in listed.stdout
        post = crewbridge("post", "--config", str(config), "webui", "hello", "lead")
        assert post.returncode == 0, post.stderr
        bot.wait_for(r"^#webui/\d+ webui: got it — `hello lead`")
        done = crewbridge("task", "done", "--config", str(config), "1")
        assert done.returncode == 0 and "Task #1 done" in done.stdout
        again = crewbridge("task", "done", "--config", str(config), "1")
        assert again.returncode == 1 and "no open task #1" in again.stderr
        bad = crewbridge("task", "create", "--config", str(config), "--assignee", "general",
                         "x")
        assert bad.returncode == 1 and "lead" in bad.stderr
        status = crewbridge("status", "--config", str(config))
        assert status.returncode == 0 and "alice" in status.stdout
    finally:
        bot.close()
