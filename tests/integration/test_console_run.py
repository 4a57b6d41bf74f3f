"""The bot as a real subprocess on the console bridge with the fake agent (R9.3, R11.3)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.harness import until
from tests.support.botproc import BotProcess, crewbridge, write_config


def test_r11_3_scripted_run_prints_lead_reply_and_exits_0(tmp_path: Path) -> None:
    """R11.3/R9.3: `printf '#general hello\\n' | crewbridge run` is a complete run."""
    config = write_config(tmp_path / "c.toml")
    result = crewbridge("run", "--config", str(config), stdin="#general hello\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.match(r"#general/\d+ general: ", line) and "hello" in line for line in lines), (
        result.stdout)


def test_r11_3_multiline_posts_are_indented(tmp_path: Path) -> None:
    """R11.3: further lines of a post are indented by two spaces."""
    config = write_config(tmp_path / "c.toml")
    result = crewbridge("run", "--config", str(config), stdin="#general fake:tool\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    first = next(i for i, line in enumerate(out) if re.match(r"#general/\d+ general: ", line))
    assert out[first + 1].startswith("  "), result.stdout


def test_r12_6_the_console_shows_and_accepts_threads(tmp_path: Path) -> None:
    """R12.6: an answer in a thread prints as `#general/1 …`; typing `#general/1 <text>`
    replies in that thread (a fork of the lead answers it there, R12.3); a thread number
    the channel does not have gets a notice."""
    config = write_config(tmp_path / "c.toml")
    bot = BotProcess(config)
    try:
        bot.send("#general remember the pelican")
        bot.wait_for(r"^#general/1 general: got it — `remember the pelican`")
        bot.send("#general/1 fake:history")
        line = bot.wait_for(r"^#general/1 general/1: history: ")
        assert "remember the pelican" in line
        bot.send("#general/9 anyone?")
        bot.wait_for(r"^#general crewbridge: #general has no thread 9\.")
    finally:
        bot.close()


def test_r1_1_unknown_channel_gets_a_clear_notice(tmp_path: Path) -> None:
    """R1.1/R11.3: `#nosuch hi` names the channels that exist; nothing crashes."""
    config = write_config(tmp_path / "c.toml")
    result = crewbridge("run", "--config", str(config), stdin="#nosuch hi\n#general ok\n")
    assert result.returncode == 0, result.stderr
    assert "#nosuch crewbridge: No channel #nosuch. Channels: #general, #ops." in result.stdout
    assert re.search(r"^#general/\d+ general: ", result.stdout, re.M)


def test_r4_9_sigterm_stops_agents_and_exits_cleanly(tmp_path: Path) -> None:
    """R4.9: SIGTERM ends every agent process and the bot exits 0 with no orphans."""
    config = write_config(tmp_path / "c.toml", channels=[{"name": "webui"}])
    bot = BotProcess(config)
    try:
        bot.send("#general hello")
        bot.send("#webui fake:hang")
        bot.wait_for(r"^#general/\d+ general: ")
        status = crewbridge("status", "--config", str(config))
        assert status.returncode == 0, status.stderr
        assert "webui" in status.stdout and "running" in status.stdout
        pids = _agent_pids(bot.stderr)
        assert len(pids) == 2
        assert bot.terminate() == 0
        for pid in pids:
            assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"agent {pid} survived"
    finally:
        bot.close()


async def test_r4_9_agents_left_by_a_killed_bot_are_ended_at_the_next_start(
        tmp_path: Path) -> None:
    """R4.9: SIGKILL gives the bot no chance to stop its agents, and one busy in a turn goes
    on running. The next start ends it before anything else and says so in #ops; the lead
    then answers again. (R8.5: the message it was busy with is delivered again, with the
    note, to the resumed session.)"""
    received = tmp_path / "agents.jsonl"
    config = write_config(tmp_path / "c.toml", agent={"env": {"FAKE_AGENT_LOG": str(received)}},
                          channels=[{"name": "webui"}])
    first = BotProcess(config)
    try:
        first.send("#webui fake:hang")
        await until(lambda: received.exists() and "fake:hang" in received.read_text(),
                    what="the agent busy with its turn")
        [pid] = _agent_pids(first.stderr)
        first.kill()
        assert not _is_zombie(pid), "the busy agent should outlive a SIGKILLed bot"
    finally:
        first.close()
    second = BotProcess(config)
    try:
        await second.await_line(r"^#ops crewbridge: .*not stopped cleanly.*\(webui\)")
        assert _is_zombie(pid), f"agent {pid} left over from the killed bot still runs"
        second.send("#general hello again")
        await second.await_line(r"^#general/\d+ general: .*hello again")
        await until(lambda: received.read_text().count("fake:hang") == 2,
                    what="the unanswered message delivered again")
        assert "cut short" in received.read_text().splitlines()[-1] or any(
            "cut short" in line and "fake:hang" in line
            for line in received.read_text().splitlines())
        assert second.terminate() == 0
    finally:
        second.close()


def _agent_pids(stderr: str) -> list[int]:
    import re

    return [int(p) for p in re.findall(r"spawned \S+ \(pid (\d+)\)", stderr)]


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True
