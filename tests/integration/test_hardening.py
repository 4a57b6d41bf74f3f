"""A hostile or careless agent, and another local user, against a real `crewbridge run`
(R8.6, R10.5)."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

UNRELATED_PLATFORM_TOKEN = "xapp-1-NOT-READ-BY-THE-CONFIG-424242"
PROMPT_SECRET = "prompt-secret-value-8675309"
CHOSEN_TOKEN = "ghp_chosen-for-agents-0123456789"


def test_r10_5_an_agent_that_prints_its_environment_leaks_no_secret(tmp_path: Path) -> None:
    """R10.5: a lead asked to print its environment (`fake:env`) shows no SLACK_*/MATRIX_*
    variable and no `${NAME}` the config reads; what `[agent] env` names explicitly is
    passed to it, yet its value is `[redacted]` in the post, the log and the store."""
    data = short_data_dir()
    config = write_config(
        tmp_path / "c.toml", data_dir=data,
        agent={"env": {"GITHUB_TOKEN": "${GH_TOKEN}"}},
        channels=[{"name": "webui", "prompt": "Be kind. ${PROMPT_SECRET}"}])
    env = {"SLACK_APP_TOKEN": UNRELATED_PLATFORM_TOKEN, "MATRIX_ACCESS_TOKEN": "syt_abcdef123",
           "PROMPT_SECRET": PROMPT_SECRET, "GH_TOKEN": CHOSEN_TOKEN}
    bot = BotProcess(config, env=env, log_level="debug")
    try:
        bot.wait_ready()
        bot.send("#webui fake:env")
        bot.wait_for(lambda line: "PATH=" in line)
        bot.wait_for(lambda line: "GITHUB_TOKEN=" in line)
        assert bot.terminate() == 0
        posted = bot.output()
        assert "CREWBRIDGE_AGENT=webui" in posted  # the agent's own identity is there
        assert "GITHUB_TOKEN=[redacted]" in posted  # passed on purpose, hidden when posted
        for leaked in ("SLACK_APP_TOKEN", "MATRIX_ACCESS_TOKEN", "PROMPT_SECRET=",
                       "GH_TOKEN=", UNRELATED_PLATFORM_TOKEN, PROMPT_SECRET, CHOSEN_TOKEN):
            assert leaked not in posted, leaked
        log = bot.stderr
        assert "crewbridge is running" in log  # the log was written
        assert PROMPT_SECRET not in log and CHOSEN_TOKEN not in log
        stored = b"".join(p.read_bytes() for p in data.iterdir() if p.is_file())
        assert PROMPT_SECRET.encode() not in stored and CHOSEN_TOKEN.encode() not in stored
    finally:
        bot.close()
        cleanup_data_dir(data)


def test_r8_6_another_local_user_cannot_read_the_data_directory(tmp_path: Path) -> None:
    """R8.6: after a run, the data directory is 0700 and the database, its WAL and the
    control socket are 0600 — whatever the umask the bot was started with."""
    data = short_data_dir()
    data.chmod(0o755)  # as an older release, or mkdir, would have left it
    config = write_config(tmp_path / "c.toml", data_dir=data)
    bot = BotProcess(config, env={})
    try:
        bot.wait_ready()
        bot.send("#general hello")
        bot.wait_for(lambda line: re.match(r"#general/\d+ general: ", line))
        modes = {p.name: stat.S_IMODE(p.lstat().st_mode) for p in data.iterdir()}
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        assert {"crewbridge.db", "crewbridge.db-wal", "control.sock"} <= set(modes), modes
        assert all(m & 0o077 == 0 for m in modes.values()), modes
        assert modes["crewbridge.db"] == 0o600
        assert bot.terminate() == 0
    finally:
        bot.close()
        cleanup_data_dir(data)


async def test_r10_4_an_agent_cannot_post_as_another_agent_or_the_bot(tmp_path: Path) -> None:
    """R10.4: the bot acts on the token an agent process was given, not on the name it
    claims: a lead that runs `CREWBRIDGE_AGENT=general crewbridge post …` posts as itself,
    and no agent may take the bot's name (a channel called `crewbridge` is refused)."""
    from tests.integration.harness import start_bot, until

    bot = await start_bot(tmp_path, channels=[{"name": "webui"}])
    try:
        await bot.say("webui", "fake:post-as=general:general")
        await until(lambda: any("exited" in t for t in bot.rec.in_room("webui")),
                    what="the forged post ran")
        await until(lambda: bot.rec.in_room("general"), what="the post arrived")
        posted = bot.rec.in_room("general")
        assert posted == ["webui: general says hello (really webui)"], posted
        await bot.say("webui", "fake:post-as=webui:crewbridge")
        await until(lambda: sum("exited" in t for t in bot.rec.in_room("webui")) == 2,
                    what="the second post ran")
        assert bot.rec.in_room("webui")[-1].endswith("crewbridge post as webui exited 1")
        assert "crewbridge" not in bot.app.crew.channels
    finally:
        await bot.stop()


def test_r10_4_a_client_without_a_token_is_refused_by_the_running_bot(tmp_path: Path) -> None:
    """R10.4: a request with no token (another local process that found the socket) does
    nothing; the host CLI, which reads the operator token, works."""
    import json
    import socket

    from tests.support.botproc import crewbridge

    data = short_data_dir()
    config = write_config(tmp_path / "c.toml", data_dir=data)
    bot = BotProcess(config, env={})
    try:
        bot.wait_ready()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(str(data / "control.sock"))
            s.sendall(json.dumps({"op": "post", "channel": "general", "text": "hi",
                                  "agent": "general"}).encode() + b"\n")
            reply = json.loads(s.makefile().readline())
        assert reply["ok"] is False and "not authorized" in reply["error"]
        result = crewbridge("post", "--config", str(config), "general", "from", "the", "host")
        assert result.returncode == 0, result.stderr
        bot.wait_for(lambda line: "from the host" in line)
        assert bot.terminate() == 0
    finally:
        bot.close()
        cleanup_data_dir(data)
