"""An agent's environment holds none of the bot's secrets (R10.5) and says who it is (R10.4)."""

from __future__ import annotations

import pytest

from crewbridge.supervisor.environment import agent_environment

INHERITED = {
    "PATH": "/usr/bin", "HOME": "/home/bot", "LANG": "C.UTF-8",
    "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "MATRIX_PASSWORD": "hunter22",
    "MY_SIGNING_SECRET": "s3cret", "CREWBRIDGE_CONFIG": "/etc/crewbridge/crewbridge.toml",
    "CREWBRIDGE_TOKEN": "operator-token", "GITHUB_TOKEN": "ghp_for_agents",
}
IDENTITY = {"CREWBRIDGE_SOCKET": "/var/lib/crewbridge/control.sock",
            "CREWBRIDGE_AGENT": "webui", "CREWBRIDGE_TOKEN": "agent-token"}


@pytest.mark.parametrize(("name", "expected"), [
    ("PATH", "/usr/bin"),                 # what tools need is inherited
    ("LANG", "C.UTF-8"),
    ("GITHUB_TOKEN", "ghp_for_agents"),   # not the bot's: the config does not read it
    ("SLACK_BOT_TOKEN", None),            # read by the config through ${...}
    ("SLACK_APP_TOKEN", None),            # SLACK_* even when the config does not read it
    ("MATRIX_PASSWORD", None),            # MATRIX_* likewise
    ("MY_SIGNING_SECRET", None),          # any ${NAME} the config reads
    ("CREWBRIDGE_CONFIG", None),          # the bot's own settings stay the bot's
    ("CREWBRIDGE_TOKEN", "agent-token"),  # its own token, never the operator's
    ("CREWBRIDGE_AGENT", "webui"),
])
def test_r10_5_agents_never_receive_the_bots_secrets(name: str, expected: str | None) -> None:
    env = agent_environment(INHERITED, withheld={"SLACK_BOT_TOKEN", "MY_SIGNING_SECRET"},
                            configured={}, identity=IDENTITY)
    assert env.get(name) == expected


def test_r10_5_what_agent_env_names_explicitly_is_kept() -> None:
    """R10.5: `[agent] env = {SLACK_BOT_TOKEN = "${SLACK_BOT_TOKEN}"}` is a person's choice."""
    env = agent_environment(INHERITED, withheld={"SLACK_BOT_TOKEN"},
                            configured={"SLACK_BOT_TOKEN": "xoxb-1", "EXTRA": "1"},
                            identity=IDENTITY)
    assert env["SLACK_BOT_TOKEN"] == "xoxb-1" and env["EXTRA"] == "1"
    assert "SLACK_APP_TOKEN" not in env


def test_r10_4_identity_wins_over_anything_configured() -> None:
    env = agent_environment(INHERITED, withheld=(), configured={"CREWBRIDGE_AGENT": "bot"},
                            identity=IDENTITY)
    assert env["CREWBRIDGE_AGENT"] == "webui"


def test_r5_8_stderr_is_kept_as_a_bounded_tail() -> None:
    """R5.8: an agent that prints megabytes to stderr costs at most 64 KiB of it."""
    from crewbridge.supervisor.session import STDERR_TAIL_BYTES, StderrTail

    tail = StderrTail()
    for i in range(20_000):
        tail.append(f"warning {i}: " + "w" * 600)
    lines = list(tail)
    assert sum(len(line.encode()) for line in lines) <= STDERR_TAIL_BYTES
    assert lines[-1].startswith("warning 19999:") and all(len(x) <= 500 for x in lines)
    assert len(lines) == STDERR_TAIL_BYTES // 500
