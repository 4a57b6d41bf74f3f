"""End to end: `crewbridge run` driving the real Claude Code CLI, through the console bridge.

The other agent tests prove the parser on what `claude` prints; these prove the whole
path a team relies on — console line in, routing, a real `claude` session spawned with the
flags crewbridge adds, its output batched, quarantined and printed — with the real CLI
against the loopback Messages API (R10.1, R11.3, R5.1), and that with no credentials the
CLI's "Not logged in" error text never reaches a team channel (R5.3, R6.2).

The bot runs as a subprocess exactly as a user runs it (`printf '#general hello\\n' |
crewbridge run --config …`); end of input makes it finish the turns in progress and stop
(R11.3), so the test reads its output to the end with a timeout and never sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from tests.agent.messages_api import MessagesAPI, Text, claude_env

RUN_TIMEOUT = 60.0


def crewbridge_bin() -> Path:
    """The `crewbridge` console script of this virtualenv; missing is a failure (R11.2)."""
    path = Path(sys.executable).parent / "crewbridge"
    assert path.is_file(), f"the crewbridge command is not installed beside {sys.executable}"
    return path


def write_config(tmp_path: Path, claude_bin: Path, agent_env: dict[str, str]) -> Path:
    """A console-only config whose agent is the real CLI with an offline environment."""
    workdir = tmp_path / "work"
    workdir.mkdir(exist_ok=True)
    env_items = ", ".join(f"{k} = {json.dumps(v)}" for k, v in sorted(agent_env.items()))
    config = tmp_path / "crewbridge.toml"
    config.write_text(
        f"""\
[bot]
data_dir = {json.dumps(str(tmp_path / "var"))}

[agent]
command = [{json.dumps(str(claude_bin))}]
workdir = {json.dumps(str(workdir))}
env = {{ {env_items} }}

[console]
enabled = true
"""
    )
    return config


async def run_bot(config: Path, stdin: str, home: Path) -> tuple[str, str, int]:
    """`crewbridge run --config <config>` with `stdin` as its input; (stdout, stderr, status).

    The bot itself gets a clean environment too (PATH and an empty HOME), so neither it nor
    the agents it starts can see credentials of the machine running the tests.
    """
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    proc = await asyncio.create_subprocess_exec(
        str(crewbridge_bin()),
        "run",
        "--config",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=config.parent,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), RUN_TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return out.decode(), err.decode(), proc.returncode


@contextlib.asynccontextmanager
async def interactive_bot(config: Path, home: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    """`crewbridge run` with pipes a test writes to and reads from as it goes (a person who
    waits for an answer before replying), killed on the way out if it has not exited."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}
    proc = await asyncio.create_subprocess_exec(
        str(crewbridge_bin()), "run", "--config", str(config), "--log-level", "info",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=env, cwd=config.parent)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def channel_lines(stdout: str) -> dict[str, list[str]]:
    """The console's posts by channel (`#<channel> <author>: <text>`, R11.3)."""
    posts: dict[str, list[str]] = {}
    channel = None
    for line in stdout.splitlines():
        if line.startswith("#"):
            channel, _, rest = line[1:].partition(" ")
            posts.setdefault(channel, []).append(rest)
        elif line.startswith("  ") and channel is not None:
            posts[channel][-1] += "\n" + line[2:]
    return posts


async def test_bot_posts_the_real_clis_reply_in_general(
    claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path
) -> None:
    """R10.1/R11.3/R5.1/R2.1: `#general hello` nudges the general lead, a real `claude`
    session answers from the stand-in, and the reply is printed in the message's thread,
    `#general/1 general: …` (R12.1, R12.6)."""
    messages_api.reply(Text("Hello team, the real CLI is here."))
    agent_home = tmp_path / "agent-home"
    config = write_config(tmp_path, claude_bin, claude_env(agent_home, base_url=messages_api.url))
    stdout, stderr, code = await run_bot(config, "#general hello\n", tmp_path / "bot-home")

    assert "#general/1 general: Hello team, the real CLI is here." in stdout.splitlines(), (
        stdout + stderr
    )
    assert code == 0, stderr
    (request,) = messages_api.message_requests
    assert any("hello" in text for text in request.user_texts())


async def test_bot_never_posts_not_logged_in_to_a_channel(
    claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path
) -> None:
    """R5.3/R6.2: with no credentials the real CLI prints "Not logged in · Please run
    /login" as assistant text; crewbridge must keep it out of every team channel (the admin
    channel may carry the alert)."""
    agent_home = tmp_path / "agent-home"
    env = claude_env(agent_home, base_url=messages_api.url, api_key=None)
    config = write_config(tmp_path, claude_bin, env)
    stdout, stderr, _ = await run_bot(config, "#general hello\n", tmp_path / "bot-home")

    posts = channel_lines(stdout)
    for channel, lines in posts.items():
        if channel == "ops":
            continue
        for line in lines:
            assert "Not logged in" not in line, f"#{channel} leaked the auth error: {line}"
    # The person who can fix it is told, in the admin channel (R6.2).
    assert any("auth" in line.lower() for line in posts.get("ops", [])), stdout
    # The real CLI did run and did say it: its session transcript holds the error text.
    transcripts = list((agent_home / ".claude" / "projects").rglob("*.jsonl"))
    assert any("Not logged in" in t.read_text() for t in transcripts), stdout + stderr
    assert messages_api.requests == []
    assert "Traceback" not in stderr


async def test_a_reply_in_a_thread_is_answered_by_a_fork_that_knows_the_leads_history(
    claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path
) -> None:
    """R12.3 with the real CLI through the bot: the lead answers `#general` in thread 1; a
    reply typed as `#general/1 …` starts `general/1` with `--resume <lead> --fork-session`,
    whose request to the model carries the lead's conversation, and whose answer prints in
    the thread as `#general/1 general/1: …`."""
    messages_api.reply(Text("Noted: pelican."), Text("The word was pelican."))
    config = write_config(tmp_path, claude_bin,
                          claude_env(tmp_path / "agent-home", base_url=messages_api.url))
    async with interactive_bot(config, tmp_path / "bot-home") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"#general remember the word pelican\n")
        await proc.stdin.drain()
        first = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
        assert first.decode().strip() == "#general/1 general: Noted: pelican."
        proc.stdin.write(b"#general/1 which word was it?\n")
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    assert "#general/1 general/1: The word was pelican." in out.decode().splitlines(), (
        out.decode() + err.decode())
    lead, fork = messages_api.message_requests
    assert not any("which word" in t for t in lead.user_texts())
    assert any("pelican" in t for t in fork.user_texts())  # the lead's history, forked
    assert any("which word was it?" in t for t in fork.user_texts())
    assert lead.headers.get("X-Claude-Code-Session-Id") != fork.headers.get(
        "X-Claude-Code-Session-Id")


async def test_stop_ends_a_streaming_turn_and_the_same_process_answers_the_next_message(
    claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path
) -> None:
    """R13.6 with the real CLI through the bot: `#general/1 !stop` while the lead's reply
    streams sends `interrupt`; the bot says who stopped it, posts none of the cut-off
    reply, and the next message is answered by the same `claude` process (one spawn)."""
    messages_api.reply(Text("a very long essay " * 30, chunks=60, delay=0.25),
                       Text("Short answer."))
    config = write_config(tmp_path, claude_bin,
                          claude_env(tmp_path / "agent-home", base_url=messages_api.url))
    async with interactive_bot(config, tmp_path / "bot-home") as proc:
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(b"#general write me an essay\n")
        await proc.stdin.drain()
        await asyncio.wait_for(messages_api.wait_for_requests(1), RUN_TIMEOUT)
        proc.stdin.write(b"#general/1 !stop\n")
        await proc.stdin.drain()
        said = [(await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)).decode()
                for _ in range(2)]  # the answer to !stop and the turn's end, in either order
        assert any(t.startswith("#general/1 crewbridge: Stopping general") for t in said), said
        assert any(t.startswith("#general/1 crewbridge: ⏹ general stopped by ") for t in said)
        proc.stdin.write(b"#general and now a short one\n")
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    lines = out.decode().splitlines()
    assert "#general/2 general: Short answer." in lines, out.decode() + err.decode()
    assert not any("very long essay" in t for t in lines)  # the stopped turn's text
    assert err.decode().count("spawned general") == 1, err.decode()  # the same process
