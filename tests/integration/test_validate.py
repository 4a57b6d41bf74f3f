"""One validation (R14.1): the configs `check` passed while `run` refused them are refused by
both, each with one line naming the file, the key and the fix — and `run` says exactly what
`check` says."""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbridge.bot.config import ConfigError, load_config
from crewbridge.bot.validate import validate
from tests.support.botproc import crewbridge, short_data_dir, write_config

pytestmark = pytest.mark.timeout(120)


def configs(tmp: Path) -> list[tuple[str, Path, str]]:
    """(what, config, the key its problem names)."""
    long_dir = tmp / ("d" * 120)
    return [
        ("rooms with no platform section", write_config(
            tmp / "a.toml", channels=[{"name": "webui", "slack": ["C0123"]}]),
         "channel[0].slack: rooms are bound on slack, but there is no [slack] section"),
        ("a socket path too long", write_config(tmp / "b.toml", data_dir=long_dir),
         "bot.data_dir: too long"),
        ("a missing working directory", write_config(
            tmp / "c.toml", channels=[{"name": "webui", "workdir": str(tmp / "nope")}]),
         "channel[0].workdir:"),
        ("an unknown agent command", write_config(
            tmp / "d.toml", agent={"command": ["claude-no-such-thing"]}),
         "agent.command: 'claude-no-such-thing' is not an executable on PATH"),
        ("swapped token prefixes", write_config(tmp / "e.toml", extra={"slack": {
            "bot_token": "xapp-1-A", "app_token": "xoxb-1-B"}}),
         "slack.bot_token: expected a bot token (starting xoxb-); it looks like the app token"),
        ("malformed admin ids", write_config(tmp / "f.toml", extra={"admin": {
            "users": ["U0ADMIN01", "alice", "@bob:example.org"]}}),
         "admin.users[1]: 'alice' is neither a Slack user id"),
        ("a malformed approver", write_config(tmp / "g.toml", channels=[{
            "name": "webui", "approvers": ["@carol"]}]), "channel[0].approvers[0]:"),
    ]


def test_r14_1_every_rule_run_applies_check_applies(tmp_path: Path) -> None:
    for what, config, key in configs(tmp_path):
        checked = crewbridge("check", "--config", str(config))
        assert checked.returncode == 2, (what, checked.stdout)
        assert f"crewbridge: {config}: {key}" in checked.stderr, (what, checked.stderr)
        assert "Traceback" not in checked.stderr
        ran = crewbridge("run", "--config", str(config), stdin="")
        assert ran.returncode == 2, (what, ran.stderr)
        assert ran.stderr == checked.stderr, what  # the same rules, the same words


def test_r14_1_a_good_config_passes_both(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ok.toml", data_dir=short_data_dir(), channels=[
        {"name": "webui", "approvers": ["U0123ABCD", "@alice:example.org"]}])
    validate(load_config(config))
    assert crewbridge("check", "--config", str(config)).returncode == 0


def test_r14_1_a_missing_workdir_is_not_called_a_missing_command(tmp_path: Path) -> None:
    config = load_config(write_config(tmp_path / "c.toml", agent={
        "workdir": str(tmp_path / "gone")}))
    with pytest.raises(ConfigError) as e:
        validate(config)
    assert [p.split(": ", 2)[1] for p in e.value.problems] == ["agent.workdir"]
