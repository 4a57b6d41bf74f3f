"""The real Claude Code CLI, run exactly as crewbridge runs it, against a loopback Messages API.

crewbridge's parser, error quarantine and supervisor are written against what `claude`
prints. These tests run the CLI bundled in `claude-agent-sdk` as a subprocess —
`claude -p --input-format stream-json --output-format stream-json --verbose
--session-id <uuid>` with one user message on stdin — against the stand-in of
`messages_api.py`, and check that the events it prints are what our parser expects
(R10.1, R10.2) for each situation crewbridge must tell apart: a good turn, no credentials,
a 401, a 500, an unknown session on resume, and a tool call. They also check that the
recorded fixtures in `tests/fixtures/claude/` (used by the replay tests of the parser and
the quarantine, R5.3) still have the shapes the CLI prints.

They fail, never skip, when the CLI is missing: see `conftest.claude_bin`. No test sleeps
to wait; every read has a timeout.
"""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from crewbridge.supervisor.protocol import (
    AgentEvent,
    ApiError,
    AssistantText,
    Init,
    ToolResult,
    ToolUse,
    TurnResult,
    is_auth_failure,
    is_unknown_session,
    parse_line,
)
from tests.agent.claude_cli import Claude, one_turn, session_turns
from tests.agent.messages_api import (
    MessagesAPI,
    Text,
    ToolCall,
    claude_env,
    server_error,
    unauthorized,
)

T = TypeVar("T")
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude"


def parsed(events: list[dict[str, Any]]) -> list[AgentEvent]:
    """What crewbridge's parser makes of the CLI's output, line by line."""
    out: list[AgentEvent] = []
    for event in events:
        out.extend(parse_line(json.dumps(event)))
    return out


def of_type(events: list[AgentEvent], kind: type[T]) -> list[T]:
    return [e for e in events if isinstance(e, kind)]


# --- (a) a good turn -----------------------------------------------------------------------


async def test_good_turn_parses_to_init_text_and_success(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.1: the flags crewbridge adds give one Init, the scripted text and a success
    result, in the session crewbridge chose; `--append-system-prompt` and `--model` reach
    the API, and so does the user text."""
    messages_api.reply(Text("Hello from the stand-in"))
    session_id = str(uuid.uuid4())
    [turn], _, code, _ = await session_turns(
        claude_bin, messages_api.env(claude_home), claude_home,
        ["[alice via console in #webui] hello"],
        "--append-system-prompt", "You lead the web UI channel.", "--model", "claude-stub-model",
        session_id=session_id)
    events = parsed(turn)

    assert [type(e) for e in events] == [Init, AssistantText, TurnResult]
    init, text, result = events
    assert isinstance(init, Init) and init.session_id == session_id
    assert text == AssistantText("Hello from the stand-in")
    assert isinstance(result, TurnResult)
    assert result.is_error is False
    assert result.subtype == "success"
    assert result.text == "Hello from the stand-in"
    assert result.session_id == session_id
    assert code == 0

    (request,) = messages_api.message_requests
    assert request.body["model"] == "claude-stub-model"
    assert request.body["stream"] is True
    assert request.headers["x-api-key"] == "dummy"
    assert any("[alice via console in #webui] hello" in t for t in request.user_texts())
    system = json.dumps(request.body["system"])
    assert "You lead the web UI channel." in system
    assert messages_api.unknown == []


async def test_every_turn_starts_with_init_and_the_session_lives_on(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R3.1/R10.1: a running session takes the next message on stdin; in stream-json input
    mode the CLI prints `system/init` at the start of every turn, not only the first."""
    messages_api.reply(Text("first answer"), Text("second answer"))
    turns, _, code, _ = await session_turns(
        claude_bin, messages_api.env(claude_home), claude_home, ["one", "two"])
    first, second = map(parsed, turns)
    assert [type(e) for e in first] == [Init, AssistantText, TurnResult]
    assert [type(e) for e in second] == [Init, AssistantText, TurnResult]
    assert of_type(second, AssistantText) == [AssistantText("second answer")]
    assert code == 0
    # The second request carries the whole conversation: the session really went on.
    assert messages_api.message_requests[1].user_texts()[-1] == "two"
    assert "one" in messages_api.message_requests[1].user_texts()


# --- (b)–(d) failures crewbridge must recognise ----------------------------------------------


async def test_no_credentials_is_an_auth_failure_and_exit_1(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.2/R6.2: with no API key and an empty HOME the CLI prints the
    `authentication_failed` assistant event ("Not logged in") and an is_error result whose
    subtype reads "success", sends nothing to the API, and exits 1."""
    env = messages_api.env(claude_home, api_key=None)
    events, code, _ = await one_turn(claude_bin, env, claude_home, "hello")

    raw_error = next(e for e in events if e["type"] == "assistant")
    assert raw_error["is_api_error_message"] is True
    assert raw_error["message"]["model"] == "<synthetic>"

    classified = parsed(events)
    (error,) = of_type(classified, ApiError)
    assert error.kind == "authentication_failed"
    assert "Not logged in" in error.text
    assert is_auth_failure(error)
    assert of_type(classified, AssistantText) == []  # never postable text (R5.3)
    (result,) = of_type(classified, TurnResult)
    assert result.is_error is True
    assert result.subtype == "success"
    assert code == 1
    assert messages_api.requests == []


async def test_api_401_is_an_auth_failure(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.2/R6.2: an expired or wrong key (HTTP 401) is reported as
    `authentication_failed` too, then an is_error result."""
    messages_api.reply(unauthorized())
    events, code, _ = await one_turn(claude_bin, messages_api.env(claude_home), claude_home, "hi")
    classified = parsed(events)
    (error,) = of_type(classified, ApiError)
    assert error.kind == "authentication_failed"
    assert is_auth_failure(error)
    assert of_type(classified, AssistantText) == []
    (result,) = of_type(classified, TurnResult)
    assert result.is_error is True
    assert is_auth_failure(result)
    assert code == 1
    assert len(messages_api.message_requests) == 1


async def test_auth_failure_does_not_end_a_stream_json_session(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.2/R4.2: in stream-json input mode the CLI does NOT exit after an auth failure
    while stdin stays open — it takes the next message (and exits 1 only at end of input
    when the last turn failed). The supervisor must judge the turn by its result, not wait
    for the exit."""
    messages_api.reply(unauthorized(), Text("working again"))
    turns, _, code, _ = await session_turns(
        claude_bin, messages_api.env(claude_home), claude_home, ["first", "second"])
    first, second = map(parsed, turns)
    assert of_type(first, ApiError)[0].kind == "authentication_failed"
    assert of_type(first, TurnResult)[0].is_error is True
    assert of_type(second, AssistantText) == [AssistantText("working again")]
    assert of_type(second, TurnResult)[0].is_error is False
    assert code == 0


async def test_api_500_without_retries_is_a_server_error(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.2/R5.3: HTTP 500 with CLAUDE_CODE_MAX_RETRIES=0 gives one `server_error`
    assistant event ("API Error: 500 …", never postable) and an is_error result."""
    messages_api.reply(server_error())
    events, _, _ = await one_turn(claude_bin, messages_api.env(claude_home), claude_home, "hi")
    classified = parsed(events)
    (error,) = of_type(classified, ApiError)
    assert error.kind == "server_error"
    assert "500" in error.text
    assert not is_auth_failure(error)
    assert of_type(classified, AssistantText) == []
    (result,) = of_type(classified, TurnResult)
    assert result.is_error is True
    assert result.subtype == "success"  # judged by is_error, never by subtype
    assert len(messages_api.message_requests) == 1  # no retry


# --- (e) resume of an unknown session --------------------------------------------------------


async def test_resume_of_unknown_session_says_no_conversation_found(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R4.10: `--resume <id>` of a session the CLI does not have prints, before reading any
    input, one error result (subtype error_during_execution) whose `errors` say
    "No conversation found with session ID: <id>", and exits 1."""
    unknown = str(uuid.uuid4())
    claude = await Claude.start(
        claude_bin, messages_api.env(claude_home), claude_home, "--resume", unknown
    )
    try:
        events = await claude.turn()
        rest, code, stderr = await claude.finish()
    finally:
        claude.kill()
    (result,) = of_type(parsed(events + rest), TurnResult)
    assert result.is_error is True
    assert result.subtype == "error_during_execution"
    assert result.errors == (f"No conversation found with session ID: {unknown}",)
    assert is_unknown_session(result)
    assert code == 1
    assert "No conversation found" in stderr
    assert messages_api.requests == []


async def test_resume_of_a_known_session_continues_it(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R3.2: a stopped session resumed with `--resume <id>` keeps its id and its history."""
    messages_api.reply(Text("remembered"), Text("resumed fine"))
    session_id = str(uuid.uuid4())
    env = messages_api.env(claude_home)
    events, code, _ = await one_turn(claude_bin, env, claude_home, "first", session_id=session_id)
    assert code == 0 and of_type(parsed(events), TurnResult)[0].is_error is False

    claude = await Claude.start(claude_bin, env, claude_home, "--resume", session_id)
    try:
        await claude.send("second")
        resumed = parsed(await claude.turn())
        _, code, _ = await claude.finish()
    finally:
        claude.kill()
    (init,) = of_type(resumed, Init)
    assert init.session_id == session_id
    assert of_type(resumed, AssistantText) == [AssistantText("resumed fine")]
    assert code == 0
    assert "first" in messages_api.message_requests[1].user_texts()




# --- (f) a tool call ---------------------------------------------------------------------------


async def test_tool_call_gives_tool_use_and_tool_result(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.1/R5.3: a Bash tool call scripted by the API runs (a read-only `echo` needs no
    approval even in the default permission mode) and shows as ToolUse then ToolResult,
    followed by the model's next text — the events that prove a turn goes on."""
    call = ToolCall("Bash", {"command": "echo tool-ran-ok", "description": "Say hi"}, text="On it.")
    messages_api.reply(call, Text("The tool said tool-ran-ok."))
    events, code, _ = await one_turn(
        claude_bin, messages_api.env(claude_home), claude_home, "run it"
    )
    classified = parsed(events)
    kinds = [type(e) for e in classified]
    assert kinds == [Init, AssistantText, ToolUse, ToolResult, AssistantText, TurnResult]
    (use,) = of_type(classified, ToolUse)
    assert use.tool_id == call.id
    assert use.name == "Bash"
    (tool_result,) = of_type(classified, ToolResult)
    assert tool_result.tool_id == call.id
    assert tool_result.is_error is False
    assert of_type(classified, TurnResult)[0].is_error is False
    assert code == 0
    # The CLI really ran the command and sent its output back to the model.
    (sent,) = messages_api.message_requests[1].tool_results()
    assert sent["tool_use_id"] == call.id
    assert "tool-ran-ok" in json.dumps(sent["content"])


async def test_denied_tool_call_is_an_error_tool_result_in_a_successful_turn(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.1/R5.4: in the default permission mode a command that writes files is refused
    non-interactively: the ToolResult has is_error true, yet the turn succeeds — so a tool
    error must not quarantine the turn."""
    call = ToolCall("Bash", {"command": "touch made.txt", "description": "Make a file"})
    messages_api.reply(call, Text("Could not do it."))
    events, _, _ = await one_turn(claude_bin, messages_api.env(claude_home), claude_home, "go")
    classified = parsed(events)
    (tool_result,) = of_type(classified, ToolResult)
    assert tool_result.is_error is True
    assert of_type(classified, TurnResult)[0].is_error is False
    assert not (claude_home / "made.txt").exists()


# --- (g) the recorded fixtures still match -----------------------------------------------------

RELIED_ON = {
    # the keys our parser reads (R10.1, R10.2), per event type
    "system": {"type", "subtype", "session_id", "model"},
    "assistant": {"type", "message", "session_id"},
    "api_error": {"type", "message", "session_id", "error", "is_api_error_message"},
    "result": {"type", "subtype", "is_error", "result", "session_id", "num_turns", "duration_ms"},
}


def shape(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    """The sequence (type, subtype, error) without retries: what the parser decides on."""
    return [
        (e["type"], e.get("subtype"), e.get("error"))
        for e in events
        if e.get("subtype") != "api_retry"
    ]


def assert_same_shape(recorded: list[dict[str, Any]], live: list[dict[str, Any]]) -> None:
    assert shape(recorded) == shape(live)
    for old, new in zip(
        [e for e in recorded if e.get("subtype") != "api_retry"],
        [e for e in live if e.get("subtype") != "api_retry"],
        strict=True,
    ):
        kind = "api_error" if "error" in old else old["type"]
        needed = RELIED_ON.get(kind, {"type"})
        assert needed <= old.keys(), f"fixture {kind} lacks {needed - old.keys()}"
        assert needed <= new.keys(), f"the CLI's {kind} lacks {needed - new.keys()}"
        if old["type"] == "assistant":
            assert [b["type"] for b in old["message"]["content"]] == [
                b["type"] for b in new["message"]["content"]
            ]
            assert old["message"]["model"] == "<synthetic>" or "error" not in old
            assert (new["message"]["model"] == "<synthetic>") == ("error" in new)
        if old["type"] == "result":
            assert old["is_error"] == new["is_error"]
            assert old["subtype"] == new["subtype"]
        # Events classify the same way, whatever the ids and texts.
        assert [type(e) for e in parse_line(json.dumps(old))] == [
            type(e) for e in parse_line(json.dumps(new))
        ]


def fixture(name: str) -> list[dict[str, Any]]:
    path = FIXTURES / name
    assert path.is_file(), f"recorded fixture missing: {path}"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def test_fixture_not_logged_in_is_what_the_cli_prints(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.2/R5.3: the not-logged-in fixture still has the live CLI's shape."""
    env = messages_api.env(claude_home, api_key=None)
    live, code, _ = await one_turn(claude_bin, env, claude_home, "hi")
    assert_same_shape(fixture("claude-2.1.330-not-logged-in.jsonl"), live)
    assert code == 1


async def test_fixture_one_good_turn_is_what_the_cli_prints(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R10.1/R5.2: the good-turn fixture still has the live CLI's shape."""
    messages_api.reply(Text("Hello from the loopback stub"))
    live, code, _ = await one_turn(claude_bin, messages_api.env(claude_home), claude_home, "hi")
    assert_same_shape(fixture("claude-2.1.330-one-good-turn.jsonl"), live)
    assert code == 0


async def test_fixture_api_unreachable_is_what_the_cli_prints(
    claude_bin: Path, claude_home: Path
) -> None:
    """R10.2/R5.3: the unreachable-API fixture (recorded with retries) has the live shape
    once the retries are left out: a `server_error` assistant event, then an is_error
    result."""
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = claude_env(claude_home, base_url=f"http://127.0.0.1:{port}")
    live, _, _ = await one_turn(claude_bin, env, claude_home, "hi")
    assert_same_shape(fixture("claude-2.1.330-api-unreachable.jsonl"), live)


# --- the stand-in itself -----------------------------------------------------------------------


async def test_stand_in_answers_non_streaming_and_side_endpoints(
    messages_api: MessagesAPI,
) -> None:
    """R10.1 (test harness): non-streaming requests get a JSON message, `count_tokens`
    and health probes are answered, unknown paths are logged as 404s, errors have the
    API's error shape."""
    messages_api.reply(ToolCall("Bash", {"command": "ls"}), unauthorized())
    async with aiohttp.ClientSession(base_url=messages_api.url) as http:
        async with http.post("/v1/messages", json={"model": "m", "messages": []}) as resp:
            body = await resp.json()
            assert body["stop_reason"] == "tool_use"
            assert body["content"][0]["type"] == "tool_use"
        async with http.post("/v1/messages", json={"stream": True}) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"]["type"] == "authentication_error"
        async with http.post("/v1/messages/count_tokens", json={}) as resp:
            assert (await resp.json())["input_tokens"] > 0
        async with http.head("/") as resp:
            assert resp.status == 200
        async with http.get("/v1/nothing") as resp:
            assert resp.status == 404
        async with http.post("/v1/messages", json={"model": "m", "stream": True}) as resp:
            body_text = await resp.text()
    kinds = [line[len("event: ") :] for line in body_text.splitlines() if line.startswith("event:")]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert [u.path for u in messages_api.unknown] == ["/v1/nothing"]
