"""The fake agent, run as a real subprocess, prints what the real CLI prints (R10.1–R10.3).

The supervisor's tests lean on the fake agent to show every failure mode quickly; they are
only worth something if each mode's output has the shapes of Claude Code's stream-json.
So each test here starts `python -m crewbridge.supervisor.fake_agent` with the flags crewbridge
gives the real CLI, writes user messages on its stdin, and parses its stdout line by line with
`json.loads`. Nothing sleeps to wait: every read has a timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import textwrap
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

READ_TIMEOUT = 10.0
HEADER = "[alice via console in #general]"


class FakeAgentProcess:
    """One running fake agent with line-oriented, time-limited access to its pipes."""

    def __init__(self, proc: asyncio.subprocess.Process, session_id: str) -> None:
        self.proc = proc
        self.session_id = session_id

    async def send(self, content: str | list[dict[str, str]], uuid: str | None = None) -> None:
        assert self.proc.stdin is not None
        message: dict[str, Any] = {"type": "user", "message": {"role": "user",
                                                               "content": content}}
        if uuid is not None:
            message["uuid"] = uuid
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def write(self, message: dict[str, Any]) -> None:
        """One raw stdin line, such as a control request or response (R13)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        await self.proc.stdin.drain()

    async def until(self, wanted: Any) -> list[dict[str, Any]]:
        """Events up to and including the first for which `wanted(event)` is true."""
        events: list[dict[str, Any]] = []
        while not events or not wanted(events[-1]):
            events.append(await self.event())
        return events

    async def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    async def line(self, timeout: float = READ_TIMEOUT) -> str:
        """The next stdout line ('' at end of output); fails the test after `timeout`."""
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        return raw.decode()

    async def event(self, timeout: float = READ_TIMEOUT) -> dict[str, Any]:
        line = await self.line(timeout)
        assert line, "stdout closed while an event was expected"
        event = json.loads(line)
        assert isinstance(event, dict)
        return event

    async def turn(self, timeout: float = READ_TIMEOUT) -> list[dict[str, Any]]:
        """Events up to and including the next `result`."""
        events: list[dict[str, Any]] = []
        while True:
            event = await self.event(timeout)
            events.append(event)
            if event["type"] == "result":
                return events

    async def rest(self, timeout: float = READ_TIMEOUT) -> list[dict[str, Any]]:
        """Every remaining event until stdout closes."""
        events = []
        while line := await self.line(timeout):
            events.append(json.loads(line))
        return events

    async def exit_code(self, timeout: float = READ_TIMEOUT) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), READ_TIMEOUT)).decode()

    async def no_output_for(self, seconds: float) -> bool:
        """True when nothing arrives on stdout within `seconds` (a bounded negative check)."""
        try:
            await self.line(timeout=seconds)
        except TimeoutError:
            return True
        return False


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator[Any]:
    """Start fake agents as crewbridge would; every one still running is killed at the end."""
    procs: list[asyncio.subprocess.Process] = []

    async def _start(
        *extra: str,
        env: dict[str, str] | None = None,
        name: str | None = "general",
        resume: str | None = None,
    ) -> FakeAgentProcess:
        session_id = resume or str(uuid.uuid4())
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_", "CREW"))}
        if name is not None:
            full_env["CREWBRIDGE_AGENT"] = name
        full_env.update(env or {})
        args = [
            "-p",
            "--input-format",
            "stream-json",
            "--output-format",
            "stream-json",
            "--verbose",
            *(["--resume", resume] if resume else ["--session-id", session_id]),
            "--append-system-prompt",
            "You lead the general channel.",
            *extra,
        ]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "crewbridge.supervisor.fake_agent",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            cwd=tmp_path,
        )
        procs.append(proc)
        return FakeAgentProcess(proc, session_id)

    yield _start
    for proc in procs:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def texts(events: list[dict[str, Any]]) -> list[str]:
    return [
        block["text"]
        for e in events
        if e["type"] == "assistant"
        for block in e["message"]["content"]
        if block["type"] == "text"
    ]


def assert_init(event: dict[str, Any], session_id: str) -> None:
    assert event["type"] == "system"
    assert event["subtype"] == "init"
    assert event["session_id"] == session_id
    assert event["model"] == "fake-1"


def assert_success(result: dict[str, Any], session_id: str) -> None:
    assert result["type"] == "result"
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["session_id"] == session_id
    assert result["total_cost_usd"] == 0
    assert isinstance(result["num_turns"], int)
    assert isinstance(result["duration_ms"], int)


def assert_api_error_event(event: dict[str, Any], kind: str, text: str) -> None:
    """The synthetic assistant event Claude Code prints for an API failure (R10.2)."""
    assert event["type"] == "assistant"
    assert event["error"] == kind
    assert event["is_api_error_message"] is True
    assert event["message"]["model"] == "<synthetic>"
    assert event["message"]["content"] == [{"type": "text", "text": text}]


# --- default turn --------------------------------------------------------------------------


async def test_echo_turn_has_init_text_and_success_result(start: Any) -> None:
    """R10.1/R10.3: a plain message gets init, one echo text and a success result; unknown
    flags (`--model`, `--permission-mode`) are ignored; end of input exits 0."""
    agent = await start("--model", "opus", "--permission-mode", "bypassPermissions")
    await agent.send(f"{HEADER} hello there")
    events = await agent.turn()
    assert [e["type"] for e in events] == ["system", "assistant", "result"]
    assert_init(events[0], agent.session_id)
    assert texts(events) == ["got it — `hello there`"]
    assert events[1]["session_id"] == agent.session_id
    assert_success(events[2], agent.session_id)
    assert events[2]["result"] == "got it — `hello there`"

    # Like the real CLI in stream-json input mode, every turn starts with an init.
    await agent.send([{"type": "text", "text": f"{HEADER} second"}])
    events = await agent.turn()
    assert [e["type"] for e in events] == ["system", "assistant", "result"]
    assert_init(events[0], agent.session_id)
    assert texts(events) == ["got it — `second`"]

    await agent.close_stdin()
    assert await agent.rest() == []
    assert await agent.exit_code() == 0


async def test_name_defaults_to_agent_and_resume_keeps_the_session_id(start: Any) -> None:
    """R10.1/R10.4: without CREWBRIDGE_AGENT the name is "agent"; `--resume <id>` answers in
    the resumed session."""
    agent = await start(name=None, resume="resumed-session-1")
    await agent.send("plain text without a header")
    events = await agent.turn()
    assert_init(events[0], "resumed-session-1")
    assert texts(events) == ["got it — `plain text without a header`"]
    assert_success(events[-1], "resumed-session-1")
    await agent.send("fake:slow=1,0")  # a reply that carries the agent's name
    assert texts(await agent.turn()) == ["agent: part 1 of 1"]


# --- directives ----------------------------------------------------------------------------


async def test_tool_turn_has_tool_use_and_tool_result(start: Any) -> None:
    """R10.3: `fake:tool` prints text, a Bash tool_use, its tool_result, text and success."""
    agent = await start()
    await agent.send(f"{HEADER} please run fake:tool")
    events = await agent.turn()
    assert [e["type"] for e in events] == [
        "system",
        "assistant",
        "assistant",
        "user",
        "assistant",
        "result",
    ]
    tool_use = events[2]["message"]["content"][0]
    assert tool_use["type"] == "tool_use"
    assert tool_use["name"] == "Bash"
    assert tool_use["id"].startswith("toolu_")
    assert isinstance(tool_use["input"], dict)
    tool_result = events[3]["message"]["content"][0]
    assert tool_result["type"] == "tool_result"
    assert tool_result["tool_use_id"] == tool_use["id"]
    assert tool_result["is_error"] is False
    assert len(texts(events)) == 2
    assert_success(events[-1], agent.session_id)


async def test_error_turn_is_shaped_like_a_claude_api_error(start: Any) -> None:
    """R10.2: `fake:error` prints the synthetic server_error assistant event, then a result
    with is_error true whose subtype still reads "success"; the session lives on."""
    agent = await start()
    await agent.send(f"{HEADER} fake:error")
    events = await agent.turn()
    assert [e["type"] for e in events] == ["system", "assistant", "result"]
    assert_api_error_event(events[1], "server_error", "API Error: 500 Internal server error")
    assert events[2]["is_error"] is True
    assert events[2]["subtype"] == "success"

    await agent.send(f"{HEADER} still there?")
    assert texts(await agent.turn()) == ["got it — `still there?`"]


async def test_error_late_holds_the_result_back(start: Any) -> None:
    """R5.3/R10.3: `fake:error-late=<s>` leaves a gap between the error text and the error
    result, so the quarantine can be tested across a flush."""
    agent = await start()
    await agent.send(f"{HEADER} fake:error-late=1.5")
    assert (await agent.event())["subtype"] == "init"
    assert (await agent.event())["error"] == "server_error"
    assert await agent.no_output_for(0.5)
    result = await agent.event()
    assert result["type"] == "result"
    assert result["is_error"] is True


async def test_text_then_error_prints_normal_text_then_an_error_result(start: Any) -> None:
    """R5.3/R10.3: a normal-looking text (no `error` field), a pause, then is_error true."""
    agent = await start()
    await agent.send(f"{HEADER} fake:text-then-error=1")
    assert (await agent.event())["subtype"] == "init"
    text_event = await agent.event()
    assert text_event["type"] == "assistant"
    assert "error" not in text_event
    assert text_event["message"]["content"][0]["type"] == "text"
    assert await agent.no_output_for(0.3)
    result = await agent.event()
    assert result["type"] == "result"
    assert result["is_error"] is True


async def test_auth_directive_is_the_real_not_logged_in_turn(start: Any) -> None:
    """R10.2: `fake:auth` prints authentication_failed / "Not logged in · Please run /login",
    an is_error result with subtype "success", and exits 1 right after."""
    agent = await start()
    await agent.send(f"{HEADER} fake:auth")
    events = await agent.rest()
    assert [e["type"] for e in events] == ["system", "assistant", "result"]
    assert_api_error_event(events[1], "authentication_failed", "Not logged in · Please run /login")
    assert events[2]["is_error"] is True
    assert events[2]["subtype"] == "success"
    assert events[2]["result"] == "Not logged in · Please run /login"
    assert await agent.exit_code() == 1


async def test_crash_prints_text_then_exits_3_without_result(start: Any) -> None:
    """R10.3: `fake:crash` is a crash in the middle of a turn."""
    agent = await start()
    await agent.send(f"{HEADER} fake:crash")
    events = await agent.rest()
    assert [e["type"] for e in events] == ["system", "assistant"]
    assert await agent.exit_code() == 3


async def test_crash_now_exits_3_at_once(start: Any) -> None:
    """R10.3: `fake:crash-now` prints no events for the turn and exits 3."""
    agent = await start()
    await agent.send(f"{HEADER} fake:crash-now")
    assert [e["type"] for e in await agent.rest()] == ["system"]
    assert await agent.exit_code() == 3


async def test_hang_prints_nothing_and_dies_on_sigterm(start: Any) -> None:
    """R4.8/R10.3: `fake:hang` goes silent mid-turn but SIGTERM still ends it."""
    agent = await start()
    await agent.send(f"{HEADER} fake:hang")
    assert (await agent.event())["subtype"] == "init"
    assert await agent.no_output_for(0.3)
    agent.proc.terminate()
    assert await agent.exit_code() == -signal.SIGTERM


async def test_slow_prints_n_texts_then_success(start: Any) -> None:
    """R5.2/R10.3: `fake:slow=<n>,<interval>` is a long turn with output spread over time."""
    agent = await start()
    await agent.send(f"{HEADER} fake:slow=3,0.05")
    events = await agent.turn()
    assert texts(events) == [f"general: part {i} of 3" for i in (1, 2, 3)]
    assert_success(events[-1], agent.session_id)


async def test_flood_prints_n_separate_assistant_events(start: Any) -> None:
    """R5.2/R10.3: `fake:flood=<n>` gives n assistant events as fast as it can."""
    agent = await start()
    await agent.send(f"{HEADER} fake:flood=200")
    events = await agent.turn()
    assert sum(e["type"] == "assistant" for e in events) == 200
    assert texts(events)[-1] == "general: flood 200 of 200"
    assert_success(events[-1], agent.session_id)


async def test_big_prints_one_text_of_exact_length_in_paragraphs(start: Any) -> None:
    """R5.2/R10.3: `fake:big=<chars>` is one long text made of ~500-character paragraphs."""
    agent = await start()
    await agent.send(f"{HEADER} fake:big=12345")
    (text,) = texts(await agent.turn())
    assert len(text) == 12345
    paragraphs = text.split("\n\n")
    assert len(paragraphs) >= 24
    assert all(len(p) <= 500 for p in paragraphs)


async def test_say_replies_with_exactly_that_text(start: Any) -> None:
    """R2.6/R10.3: `fake:say=` lets a test make an agent write a mention."""
    agent = await start()
    await agent.send(f"{HEADER} fake:say=@alice_please_look")
    events = await agent.turn()
    assert texts(events) == ["@alice please look"]
    assert events[-1]["result"] == "@alice please look"


def recording_cli(tmp_path: Path, status: int) -> tuple[Path, Path]:
    """A stand-in `crewbridge` CLI that records its argv and agent name, then exits."""
    record = tmp_path / "cli-calls.jsonl"
    script = tmp_path / "crewbridge"
    script.write_text(
        textwrap.dedent(
            f"""\
            #!{sys.executable}
            import json, os, sys
            with open({str(record)!r}, "a") as f:
                f.write(json.dumps({{"argv": sys.argv[1:],
                                     "agent": os.environ.get("CREWBRIDGE_AGENT")}}) + "\\n")
            sys.exit({status})
            """
        )
    )
    script.chmod(0o755)
    return script, record


async def test_post_runs_the_crewbridge_cli_and_reports_its_status(
    start: Any, tmp_path: Path
) -> None:
    """R7.2/R10.4: `fake:post=<channel>` runs `crewbridge post` as this agent."""
    cli, record = recording_cli(tmp_path, status=0)
    agent = await start(env={"FAKE_AGENT_CREWBRIDGE": str(cli)})
    await agent.send(f"{HEADER} fake:post=webui")
    events = await agent.turn()
    assert texts(events) == ["general: crewbridge post webui exited 0"]
    call = json.loads(record.read_text())
    assert call == {"argv": ["post", "--create", "webui", "general posted via CLI"],
                    "agent": "general"}


async def test_task_runs_crewbridge_task_create_with_the_rest_of_the_text(
    start: Any, tmp_path: Path
) -> None:
    """R7.2/R10.4: `fake:task=<assignee>` creates a task whose subject is the rest."""
    cli, record = recording_cli(tmp_path, status=4)
    agent = await start(env={"FAKE_AGENT_CREWBRIDGE": str(cli)})
    await agent.send(f"{HEADER} fake:task=alice fix the login bug")
    events = await agent.turn()
    assert texts(events) == ["general: crewbridge task create for alice exited 4"]
    call = json.loads(record.read_text())
    assert call["argv"] == ["task", "create", "--assignee", "alice", "fix the login bug"]


async def test_garbage_prints_a_non_json_line_then_echoes(start: Any) -> None:
    """R10.1: a line that is not JSON must be survivable; the fake prints one on demand."""
    agent = await start()
    await agent.send(f"{HEADER} fake:garbage")
    assert (await agent.event())["subtype"] == "init"
    line = await agent.line()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    events = await agent.turn()
    assert texts(events) == ["got it — `fake:garbage`"]


# --- modes chosen by the environment -------------------------------------------------------


async def test_mode_crash_start_exits_2_before_reading(start: Any) -> None:
    """R4.2/R10.3: a command that fails at start: exit 2, a reason on stderr, no events."""
    agent = await start(env={"FAKE_AGENT_MODE": "crash-start"})
    assert await agent.exit_code() == 2
    assert await agent.rest() == []
    assert "crash at start" in await agent.stderr()


async def test_mode_auth_fails_every_turn_and_exits_1(start: Any) -> None:
    """R6.2/R10.2: FAKE_AGENT_MODE=auth makes the first turn an auth failure, then exit 1."""
    agent = await start(env={"FAKE_AGENT_MODE": "auth"})
    await agent.send(f"{HEADER} hello")
    events = await agent.rest()
    assert_api_error_event(events[1], "authentication_failed", "Not logged in · Please run /login")
    assert events[-1]["is_error"] is True
    assert await agent.exit_code() == 1


async def test_mode_forget_sessions_fails_a_resume_like_the_real_cli(start: Any) -> None:
    """R4.10: a resume of an unknown session prints, before reading any input, one error
    result (subtype error_during_execution) whose errors say "No conversation found",
    and exits 1 — as Claude Code 2.1.330 does."""
    agent = await start(env={"FAKE_AGENT_MODE": "forget-sessions"}, resume="old-session")
    events = await agent.rest()
    assert len(events) == 1
    (result,) = events
    assert result["type"] == "result"
    assert result["is_error"] is True
    assert result["subtype"] == "error_during_execution"
    assert result["session_id"] == "old-session"
    assert result["errors"] == ["No conversation found with session ID: old-session"]
    assert await agent.exit_code() == 1


async def test_mode_forget_sessions_still_starts_fresh_sessions(start: Any) -> None:
    """R4.10: after the id is cleared, a fresh `--session-id` spawn works."""
    agent = await start(env={"FAKE_AGENT_MODE": "forget-sessions"})
    await agent.send(f"{HEADER} hi")
    assert_success((await agent.turn())[-1], agent.session_id)


async def test_mode_exit_after_turn_exits_0_after_the_result(start: Any) -> None:
    """R4.7: a healthy session that stops by itself after a turn."""
    agent = await start(env={"FAKE_AGENT_MODE": "exit-after-turn"})
    await agent.send(f"{HEADER} hi")
    events = await agent.rest()
    assert_success(events[-1], agent.session_id)
    assert await agent.exit_code() == 0


async def test_mode_hang_start_never_answers(start: Any) -> None:
    """R4.8/R4.9: a session that never answers, not even at end of input, until killed."""
    agent = await start(env={"FAKE_AGENT_MODE": "hang-start"})
    await agent.send(f"{HEADER} hi")
    await agent.close_stdin()
    assert await agent.no_output_for(0.3)
    agent.proc.terminate()
    assert await agent.exit_code() == -signal.SIGTERM


async def test_log_records_every_message_in_order(start: Any, tmp_path: Path) -> None:
    """R3.1/R3.4: FAKE_AGENT_LOG shows exactly what an agent received, in order."""
    log = tmp_path / "received.jsonl"
    agent = await start(env={"FAKE_AGENT_LOG": str(log)})
    for word in ("one", "two", "three"):
        await agent.send(f"{HEADER} {word}")
        await agent.turn()
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert entries == [
        {"agent": "general", "session_id": agent.session_id, "text": f"{HEADER} {word}"}
        for word in ("one", "two", "three")
    ]


async def test_r8_5_each_result_lists_the_uuids_of_the_messages_it_answered(start: Any) -> None:
    """R8.5: like the real CLI, a result names the user messages its turn answered."""
    agent = await start()
    await agent.send(f"{HEADER} first", uuid="u-1")
    await agent.send(f"{HEADER} second", uuid="u-2")
    first, second = await agent.turn(), await agent.turn()
    assert first[-1]["user_message_uuids"] == ["u-1"]
    assert second[-1]["user_message_uuids"] == ["u-2"]


async def test_r8_5_fold_answers_the_messages_that_came_during_a_turn_in_one_turn(
        start: Any) -> None:
    """R3.6/R8.5: with FAKE_AGENT_FOLD=1 the messages written while a turn runs are folded
    into the next turn, as Claude Code 2.1.332 does: one answer, every uuid listed."""
    agent = await start(env={"FAKE_AGENT_FOLD": "1"})
    await agent.send(f"{HEADER} fake:slow=2,1.5", uuid="u-1")
    assert (await agent.event())["type"] == "system"  # the slow turn has begun
    await agent.send(f"{HEADER} second", uuid="u-2")
    await agent.send(f"{HEADER} third", uuid="u-3")
    slow, folded = await agent.turn(), await agent.turn()
    assert slow[-1]["user_message_uuids"] == ["u-1"]
    assert folded[-1]["user_message_uuids"] == ["u-2", "u-3"]
    assert await agent.no_output_for(0.5)  # two messages, one turn: nothing more comes


async def test_r10_3_fake_agent_delay_makes_every_turn_slow(start: Any) -> None:
    """R10.3: FAKE_AGENT_DELAY=<min>,<max> holds each answer back, so a test can land a kill
    or a stop mid-turn: the turn has begun (init) and nothing more comes for a while."""
    agent = await start(env={"FAKE_AGENT_DELAY": "1.5,1.5"})
    await agent.send(f"{HEADER} hello")
    assert (await agent.event())["type"] == "system"
    assert await agent.no_output_for(0.5)
    assert (await agent.turn())[-1]["type"] == "result"


async def test_r10_5_fake_env_replies_with_its_environment(start: Any) -> None:
    """R10.5: `fake:env` posts what a careless agent would: its whole environment."""
    agent = await start(env={"SOME_SETTING": "visible"})
    await agent.send(f"{HEADER} fake:env")
    events = await agent.turn()
    assert "SOME_SETTING=visible" in events[-1]["result"]
    assert "CREWBRIDGE_AGENT=general" in events[-1]["result"]


# --- sessions with a history (R3.2, R12.3) ---------------------------------------------------


async def history_of(agent: FakeAgentProcess) -> str:
    """What `fake:history` says in `agent`'s session (the directive itself is not in it)."""
    await agent.send(f"{HEADER} fake:history")
    (text,) = texts(await agent.turn())
    return text


async def run_turns(agent: FakeAgentProcess, *words: str) -> None:
    """One turn per word, then end of input and a clean exit."""
    for word in words:
        await agent.send(f"{HEADER} {word}")
        assert_success((await agent.turn())[-1], agent.session_id)
    await agent.close_stdin()
    assert await agent.exit_code() == 0


async def test_r3_2_resume_continues_the_history_kept_in_private_files(
        start: Any, tmp_path: Path) -> None:
    """R3.2/R8.6: a session's received texts are kept per session id under the working
    directory (files 0600 in a 0700 directory); `--resume <id>` continues that history, and
    an id never seen before resumes with an empty one (not refused)."""
    first = await start()
    await run_turns(first, "one", "two")
    resumed = await start(resume=first.session_id)
    assert await history_of(resumed) == f"history: `1. {HEADER} one | 2. {HEADER} two`"
    assert await history_of(resumed) == (
        f"history: `1. {HEADER} one | 2. {HEADER} two | 3. {HEADER} fake:history`")

    stranger = await start(resume="never-seen-here")
    assert await history_of(stranger) == "history: (none)"
    store = tmp_path / ".fake-agent-sessions"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in store.iterdir()}
    assert files == {f"{first.session_id}.jsonl": 0o600, "never-seen-here.jsonl": 0o600}


async def test_r12_3_a_fork_starts_with_a_copy_of_the_history_and_leaves_the_parent_alone(
        start: Any) -> None:
    """R12.3: `--resume <lead> --fork-session --session-id <new>` is a new session (its init
    and results say <new>) whose history begins with the lead's; what the fork is told
    afterwards is not in the lead's history when the lead is resumed."""
    lead = await start()
    await run_turns(lead, "remember the word pelican")
    new = str(uuid.uuid4())
    fork = await start("--fork-session", "--session-id", new, resume=lead.session_id)
    await fork.send(f"{HEADER} only the fork hears this")
    events = await fork.turn()
    assert_init(events[0], new)
    assert_success(events[-1], new)
    assert await history_of(fork) == (
        f"history: `1. {HEADER} remember the word pelican | 2. {HEADER} only the fork hears this`")

    again = await start(resume=lead.session_id)
    assert await history_of(again) == f"history: `1. {HEADER} remember the word pelican`"


async def test_r12_3_a_fork_without_a_session_id_gets_a_fresh_one(start: Any) -> None:
    """R12.3: without `--session-id` a fork is given a fresh uuid, never the parent's id."""
    lead = await start()
    await run_turns(lead, "hello")
    fork = await start("--fork-session", resume=lead.session_id)
    await fork.send(f"{HEADER} fake:history")
    events = await fork.turn()
    forked_id = events[0]["session_id"]
    assert forked_id != lead.session_id
    assert str(uuid.UUID(forked_id)) == forked_id
    assert texts(events) == [f"history: `1. {HEADER} hello`"]


@pytest.mark.parametrize("mode", ["", "forget-sessions"])
async def test_r12_3_a_fork_of_an_unknown_session_fails_like_the_real_cli(
        start: Any, tmp_path: Path, mode: str) -> None:
    """R12.3/R4.10: forking a session with no history prints, before reading input, the
    "No conversation found" error result — in the new session, naming the parent, as
    Claude Code 2.1.332 does — and exits 1; nothing is kept for the new session."""
    new = str(uuid.uuid4())
    agent = await start("--fork-session", "--session-id", new, resume="no-such-lead",
                        env={"FAKE_AGENT_MODE": mode})
    (result,) = await agent.rest()
    assert result["type"] == "result"
    assert result["is_error"] is True
    assert result["subtype"] == "error_during_execution"
    assert result["session_id"] == new
    assert result["errors"] == ["No conversation found with session ID: no-such-lead"]
    assert await agent.exit_code() == 1
    assert "No conversation found with session ID: no-such-lead" in await agent.stderr()
    assert not list(tmp_path.glob(f".fake-agent-sessions/{new}*"))


async def test_r12_3_resume_with_a_session_id_needs_fork_session(start: Any) -> None:
    """R12.3: like Claude Code 2.1.332, `--resume <id> --session-id <new>` without
    `--fork-session` is refused on stderr with exit 1 and no events."""
    agent = await start("--session-id", str(uuid.uuid4()), resume="some-lead")
    assert await agent.rest() == []
    assert await agent.exit_code() == 1
    assert "--session-id with --continue or --resume also needs --fork-session" in (
        await agent.stderr())


async def test_r12_3_fake_agent_sessions_names_where_histories_live(
        start: Any, tmp_path: Path) -> None:
    """R12.3: FAKE_AGENT_SESSIONS puts every history in one directory, wherever the agent
    runs; nothing is written under the working directory then."""
    store = tmp_path / "elsewhere" / "sessions"
    env = {"FAKE_AGENT_SESSIONS": str(store)}
    lead = await start(env=env)
    await run_turns(lead, "kept elsewhere")
    fork = await start("--fork-session", env=env, resume=lead.session_id)
    assert await history_of(fork) == f"history: `1. {HEADER} kept elsewhere`"
    assert (store / f"{lead.session_id}.jsonl").is_file()
    assert not (tmp_path / ".fake-agent-sessions").exists()


# --- the control protocol (R13), as Claude Code 2.1.332 speaks it ----------------------------

STDIO = ("--permission-prompt-tool", "stdio")


def interrupt(request_id: str = "int_1") -> dict[str, Any]:
    return {"type": "control_request", "request_id": request_id,
            "request": {"subtype": "interrupt"}}


def answer(request_id: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response}}


def is_type(kind: str) -> Any:
    return lambda event: event["type"] == kind


def receipt(request_id: str, still_queued: list[str]) -> dict[str, Any]:
    return answer(request_id, {"still_queued": still_queued})


def user_texts(events: list[dict[str, Any]]) -> list[str]:
    return [block["text"] for e in events if e["type"] == "user"
            for block in e["message"]["content"] if block.get("type") == "text"]


def assert_interrupted(result: dict[str, Any], reason: str, uuids: list[str]) -> None:
    """The result of a turn stopped by an interrupt: an error, no text, the turn's uuids."""
    assert result["type"] == "result"
    assert result["subtype"] == "error_during_execution"
    assert result["is_error"] is True
    assert result["terminal_reason"] == reason
    assert "result" not in result
    assert result["user_message_uuids"] == uuids


@pytest.mark.parametrize("flags", [STDIO, ()])
async def test_r13_1_initialize_is_answered(start: Any, flags: tuple[str, ...]) -> None:
    """R13.1: `initialize` gets a success control_response with the same request id, with or
    without `--permission-prompt-tool stdio` (as the real CLI answers it either way)."""
    agent = await start(*flags)
    await agent.write({"type": "control_request", "request_id": "init_1",
                       "request": {"subtype": "initialize", "hooks": None}})
    event = await agent.event()
    assert event["type"] == "control_response"
    assert event["response"]["subtype"] == "success"
    assert event["response"]["request_id"] == "init_1"
    assert event["response"]["response"]["session_state"] == "idle"
    await agent.send(f"{HEADER} after init")
    assert texts(await agent.turn()) == ["got it — `after init`"]


async def test_r13_6_interrupt_stops_a_slow_turn_and_the_process_answers_the_next(
        start: Any) -> None:
    """R13.6: an interrupt mid-turn gets its receipt (listing the message still queued),
    the rest of the turn is not printed, `[Request interrupted by user]` and an interrupted
    result with the turn's uuid follow; the queued message and a later one are answered by
    the same process."""
    agent = await start(*STDIO)
    await agent.send(f"{HEADER} fake:slow=1000,0.05", uuid="u-slow")
    await agent.until(is_type("assistant"))  # the turn is running
    await agent.send(f"{HEADER} queued meanwhile", uuid="u-queued")
    await agent.write(interrupt())
    events = await agent.turn()
    assert receipt("int_1", ["u-queued"]) in events
    assert user_texts(events) == ["[Request interrupted by user]"]
    assert len(texts(events)) < 999
    assert_interrupted(events[-1], "aborted_streaming", ["u-slow"])

    events = await agent.turn()
    assert texts(events) == ["got it — `queued meanwhile`"]
    assert events[-1]["user_message_uuids"] == ["u-queued"]
    await agent.send(f"{HEADER} and then", uuid="u-next")
    assert texts(await agent.turn()) == ["got it — `and then`"]
    assert agent.proc.returncode is None


async def test_r13_6_interrupt_of_a_stream_prints_the_part_so_far_aborted(start: Any) -> None:
    """R13.6: `fake:stream` prints its reply whole at the end, like the real CLI; interrupted,
    it prints the part streamed so far marked `aborted`, then ends interrupted."""
    agent = await start("--include-partial-messages")
    await agent.send(f"{HEADER} fake:stream=3,0")
    events = await agent.turn()
    assert texts(events) == ["general: chunk 1 of 3. chunk 2 of 3. chunk 3 of 3."]
    assert_success(events[-1], agent.session_id)

    await agent.send(f"{HEADER} fake:stream=100000,0.01", uuid="u-stream")
    await agent.until(is_type("stream_event"))  # the reply has begun (not its thinking)
    await agent.write(interrupt())
    events = [e for e in await agent.turn() if e["type"] != "stream_event"]
    assert events[0] == receipt("int_1", [])
    [aborted] = [e for e in events if e["type"] == "assistant"]
    assert aborted["aborted"] is True
    assert aborted["message"]["content"][0]["text"].startswith("chunk 1 of 100000.")
    assert_interrupted(events[-1], "aborted_streaming", ["u-stream"])


async def test_r13_6_interrupt_with_no_turn_running_gets_only_its_receipt(start: Any) -> None:
    """R13.6: with no turn running the receipt is all (as on the real CLI)."""
    agent = await start(*STDIO)
    await agent.write(interrupt("int_idle"))
    assert await agent.event() == receipt("int_idle", [])
    assert await agent.no_output_for(0.3)
    await agent.send(f"{HEADER} still here")
    assert texts(await agent.turn()) == ["got it — `still here`"]


async def test_r13_6_an_interrupt_right_behind_a_message_interrupts_its_turn(
        start: Any) -> None:
    """R13.6: a message and an interrupt written back to back: as on the real CLI (which
    starts a message the moment it reaches an idle process) that message's turn is the one
    interrupted, even before the fake agent's turn loop took it."""
    agent = await start(*STDIO)
    message = {"type": "user", "uuid": "u-raced",
               "message": {"role": "user", "content": f"{HEADER} fake:stream=1000,0.05"}}
    assert agent.proc.stdin is not None
    agent.proc.stdin.write((json.dumps(message) + "\n" + json.dumps(interrupt()) + "\n").encode())
    await agent.proc.stdin.drain()
    events = await agent.turn()
    assert receipt("int_1", []) in events
    assert_interrupted(events[-1], "aborted_streaming", ["u-raced"])


async def test_r13_6_a_hung_agent_answers_no_control_request(start: Any) -> None:
    """R13.6: `fake:hang` is a process that answers nothing, interrupts included, so the bot's
    own deadline can be tested."""
    agent = await start(*STDIO)
    await agent.send(f"{HEADER} fake:hang")
    assert (await agent.event())["subtype"] == "init"
    await agent.write(interrupt())
    assert await agent.no_output_for(0.3)


async def ask_request(agent: FakeAgentProcess, directive: str) -> tuple[list[dict[str, Any]],
                                                                         dict[str, Any]]:
    """Send `directive` and read up to its can_use_tool request: (events before, request)."""
    await agent.send(f"{HEADER} {directive}", uuid="u-ask")
    events = await agent.until(is_type("control_request"))
    return events[:-1], events[-1]


async def test_r13_1_ask_writes_can_use_tool_in_the_real_cli_shape(start: Any) -> None:
    """R13.1: `fake:ask` prints the tool_use, then a can_use_tool request shaped as 2.1.332's."""
    agent = await start(*STDIO)
    before, request = await ask_request(agent, "fake:ask=Bash:touch_x")
    [tool_use] = [b for e in before if e["type"] == "assistant" for b in e["message"]["content"]]
    assert tool_use["type"] == "tool_use" and tool_use["name"] == "Bash"
    assert uuid.UUID(request["request_id"])
    body = request["request"]
    assert body["subtype"] == "can_use_tool"
    assert body["tool_name"] == body["display_name"] == "Bash"
    assert body["input"]["command"] == "touch x"
    assert body["tool_use_id"] == tool_use["id"]
    assert body["permission_suggestions"][0] == {
        "type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "touch x"}],
        "behavior": "allow", "destination": "localSettings"}
    assert "decision_reason_type" not in body and "suppress_always_allow_rule" not in body


@pytest.mark.parametrize(
    ("directive", "marks"),
    [
        ("fake:ask-safety=Edit:/etc/passwd", {"decision_reason_type": "safetyCheck"}),
        ("fake:ask-no-always=Bash:rm_-rf_build", {"suppress_always_allow_rule": True}),
    ],
)
async def test_r13_2_ask_variants_mark_safety_checks_and_forbid_always_allow(
        start: Any, directive: str, marks: dict[str, Any]) -> None:
    """R13.2: the marks that restrict who may decide and whether Always allow is offered."""
    agent = await start(*STDIO)
    _before, request = await ask_request(agent, directive)
    body = request["request"]
    assert marks.items() <= body.items()
    has_rule = any(s["type"] == "addRules" for s in body["permission_suggestions"])
    assert has_rule is ("suppress_always_allow_rule" not in marks)


@pytest.mark.parametrize(
    ("decision", "text", "tool_error"),
    [
        ({"behavior": "allow", "updatedInput": {"command": "touch x"}}, "ran Bash: touch x",
         False),
        ({"behavior": "allow", "updatedInput": {"command": "touch y"}}, "ran Bash: touch y",
         False),
        ({"behavior": "deny", "message": "Denied by @alice: not now", "interrupt": False},
         "denied: Denied by @alice: not now", True),
    ],
)
async def test_r13_1_allow_runs_the_tool_and_deny_tells_the_model(
        start: Any, decision: dict[str, Any], text: str, tool_error: bool) -> None:
    """R13.1: allow runs the (possibly updated) input; deny gives the model an error
    tool_result of the message, lists the denial and the turn still succeeds."""
    agent = await start(*STDIO)
    _before, request = await ask_request(agent, "fake:ask=Bash:touch_x")
    await agent.write(answer(request["request_id"], decision))
    events = await agent.turn()
    [result_block] = [b for e in events if e["type"] == "user"
                      for b in e["message"]["content"] if b["type"] == "tool_result"]
    assert result_block["is_error"] is tool_error
    assert texts(events) == [text]
    assert_success(events[-1], agent.session_id)
    assert len(events[-1]["permission_denials"]) == tool_error
    assert events[-1]["user_message_uuids"] == ["u-ask"]


async def test_r13_1_deny_with_interrupt_ends_the_turn_interrupted(start: Any) -> None:
    """R13.1: a deny with `interrupt: true` ends the turn as an interrupted one."""
    agent = await start(*STDIO)
    _before, request = await ask_request(agent, "fake:ask=Bash:touch_x")
    await agent.write(answer(request["request_id"],
                             {"behavior": "deny", "message": "stop", "interrupt": True}))
    events = await agent.turn()
    assert user_texts(events) == ["[Request interrupted by user for tool use]"]
    assert_interrupted(events[-1], "aborted_tools", ["u-ask"])


async def test_r13_3_interrupt_while_asking_withdraws_the_request(start: Any) -> None:
    """R13.3/R13.6: an interrupt while a request waits withdraws it (control_cancel_request,
    before the receipt), ends the turn `aborted_tools`; a late answer is ignored and the
    next message is answered."""
    agent = await start(*STDIO)
    _before, request = await ask_request(agent, "fake:ask=Bash:touch_x")
    await agent.write(interrupt())
    events = await agent.turn()
    assert events[:2] == [
        {"type": "control_cancel_request", "request_id": request["request_id"]},
        receipt("int_1", []),
    ]
    assert user_texts(events) == ["[Request interrupted by user for tool use]"]
    assert_interrupted(events[-1], "aborted_tools", ["u-ask"])
    assert not texts(events)

    await agent.write(answer(request["request_id"], {"behavior": "allow", "updatedInput": {}}))
    await agent.send(f"{HEADER} next")
    assert texts(await agent.turn()) == ["got it — `next`"]


async def test_r13_1_ask_without_stdio_is_refused_as_the_cli_refuses(start: Any) -> None:
    """R13.1: without `--permission-prompt-tool stdio` nobody is asked: `permission_denied`,
    an error tool_result, and the turn goes on."""
    agent = await start()
    await agent.send(f"{HEADER} fake:ask=Bash:touch_x")
    events = await agent.turn()
    assert not [e for e in events if e["type"] == "control_request"]
    [denied] = [e for e in events if e.get("subtype") == "permission_denied"]
    assert denied["tool_name"] == "Bash"
    assert texts(events)[0].startswith("denied: Bash needs approval")
    assert_success(events[-1], agent.session_id)


async def test_r13_8_total_cost_adds_up_over_the_process_turns(start: Any) -> None:
    """R13.8: every result carries the process's running total_cost_usd and usage tokens;
    FAKE_AGENT_COST is each billed turn's cost, an API error costs nothing."""
    agent = await start(env={"FAKE_AGENT_COST": "0.25"})
    totals = []
    for text in ("one", "fake:error", "two", "fake:slow=2,0"):
        await agent.send(f"{HEADER} {text}")
        result = (await agent.turn())[-1]
        totals.append(result["total_cost_usd"])
        if not result["is_error"]:
            assert result["usage"]["input_tokens"] > 0
            assert result["usage"]["output_tokens"] > 0
    assert totals == [0.25, 0.25, 0.5, 0.75]


def turn_cost(result: dict[str, Any]) -> float:
    return sum(m["costUSD"] for m in result["model_usage_since_last_result"].values())


async def test_r13_8_the_total_is_the_sessions_across_resume_and_fork(start: Any) -> None:
    """R13.8: as on the real CLI, total_cost_usd goes on across `--resume` and a fork starts
    from its parent's total; `model_usage_since_last_result` holds the turn's own cost."""
    env = {"FAKE_AGENT_COST": "0.5"}
    totals: list[tuple[float, float]] = []

    async def one_turn(agent: FakeAgentProcess) -> None:
        await agent.send(f"{HEADER} hello")
        result = (await agent.turn())[-1]
        totals.append((result["total_cost_usd"], turn_cost(result)))
        await agent.close_stdin()
        assert await agent.exit_code() == 0

    lead = await start(env=env)
    await one_turn(lead)
    await one_turn(await start(env=env, resume=lead.session_id))
    await one_turn(await start("--fork-session", env=env, resume=lead.session_id))
    assert totals == [(0.5, 0.5), (1.0, 0.5), (1.5, 0.5)]


async def test_r13_6_end_of_input_after_an_interrupted_turn_exits_1(start: Any) -> None:
    """R13.6: like 2.1.332, the process exits 1 when its input ends after an interrupted
    last turn (and 0 when a later turn ended normally)."""
    agent = await start(*STDIO)
    await agent.send(f"{HEADER} fake:slow=1000,0.05")
    await agent.until(is_type("assistant"))
    await agent.write(interrupt())
    assert_interrupted((await agent.turn())[-1], "aborted_streaming", [])
    await agent.close_stdin()
    assert await agent.exit_code() == 1


async def test_r13_unknown_control_requests_get_the_clis_error(start: Any) -> None:
    """R13: a control request the fake agent does not know is refused as the CLI refuses
    one it does not know."""
    agent = await start(*STDIO)
    await agent.write({"type": "control_request", "request_id": "x1",
                       "request": {"subtype": "no_such_thing"}})
    assert await agent.event() == {"type": "control_response", "response": {
        "subtype": "error", "request_id": "x1",
        "error": "Unsupported control request subtype: no_such_thing",
        "error_code": "unsupported_request"}}
