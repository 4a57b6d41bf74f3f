"""Claude Code's control protocol on the real CLI, against the loopback Messages API (R13).

The bot's approvals (R13.1, R13.3) and its stop (R13.6) are built on what the real CLI does
with `--permission-prompt-tool stdio`: it answers `initialize`, asks `can_use_tool` before a
tool it may not run on its own, runs the tool on `allow`, tells the model on `deny`, answers
`interrupt` with a receipt and ends the turn with an error result, and stays usable. These
tests pin each of those facts (written up in /work/wt/CLI-FACTS.md, "control protocol"), so
a CLI upgrade that changes them fails here rather than in a chat room. The fake agent
(`supervisor.fake_agent`) copies what they assert. They fail, never skip, when the CLI is
missing; every read has a timeout and nothing sleeps to wait.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.agent.claude_cli import Claude
from tests.agent.messages_api import MessagesAPI, Text, ToolCall

STDIO = ("--permission-prompt-tool", "stdio")
INTERRUPTED = "[Request interrupted by user]"
INTERRUPTED_FOR_TOOL = "[Request interrupted by user for tool use]"


def of_type(kind: str) -> Any:
    return lambda event: event["type"] == kind


def is_result(event: dict[str, Any]) -> bool:
    return event["type"] == "result"


def control_request(request_id: str, subtype: str, **fields: Any) -> dict[str, Any]:
    return {"type": "control_request", "request_id": request_id,
            "request": {"subtype": subtype, **fields}}


def answer(request_id: str, response: dict[str, Any]) -> dict[str, Any]:
    return {"type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response}}


def receipt(request_id: str, still_queued: list[str]) -> dict[str, Any]:
    return answer(request_id, {"still_queued": still_queued})


def user_texts(events: list[dict[str, Any]]) -> list[str]:
    return [block["text"] for e in events if e["type"] == "user"
            and isinstance(e["message"]["content"], list)
            for block in e["message"]["content"] if block.get("type") == "text"]


def tool_results(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for e in events if e["type"] == "user"
            and isinstance(e["message"]["content"], list)
            for block in e["message"]["content"] if block.get("type") == "tool_result"]


def assert_interrupted(result: dict[str, Any], reason: str, message_uuid: str) -> None:
    """An interrupted turn's result: an error without text that still names its message."""
    assert result["subtype"] == "error_during_execution"
    assert result["is_error"] is True
    assert result["terminal_reason"] == reason
    assert "result" not in result
    assert result["user_message_uuids"] == [message_uuid]


async def started(claude_bin: Path, api: MessagesAPI, home: Path, work: Path,
                  *args: str) -> Claude:
    work.mkdir(exist_ok=True)
    return await Claude.start(claude_bin, api.env(home), work,
                              "--session-id", str(uuid.uuid4()), *args)


async def initialized(claude_bin: Path, api: MessagesAPI, home: Path, work: Path) -> Claude:
    """A CLI asking on stdio, `initialize`d first as the SDKs (and the bot) do."""
    claude = await started(claude_bin, api, home, work, *STDIO)
    await claude.write(control_request("init_1", "initialize", hooks=None))
    [response] = await claude.until(of_type("control_response"))
    assert response["response"]["subtype"] == "success"
    assert response["response"]["request_id"] == "init_1"
    init = response["response"]["response"]
    assert init["claude_code_version"] and init["session_state"] == "idle"
    assert init["current_permission_mode"] == "default"
    return claude


async def ask_for(claude: Claude, api: MessagesAPI, command: str, then: str,
                  message_uuid: str = "") -> tuple[ToolCall, dict[str, Any]]:
    """Script a Bash tool use of `command`, send a message, read up to `can_use_tool`."""
    call = ToolCall("Bash", {"command": command, "description": "touch a file"})
    api.reply(call, Text(then))
    await claude.send("please run it", uuid=message_uuid or str(uuid.uuid4()))
    request = (await claude.until(of_type("control_request")))[-1]
    return call, request


async def test_r13_1_real_cli_asks_can_use_tool_and_allow_runs_the_command(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.1: with `--permission-prompt-tool stdio` a Bash tool use becomes a can_use_tool
    request in the documented shape; `allow` with the input runs the command."""
    work = tmp_path / "work"
    claude = await initialized(claude_bin, messages_api, claude_home, work)
    try:
        touched = work / "allowed.txt"
        call, request = await ask_for(claude, messages_api, f"touch {touched}", "done")
        assert uuid.UUID(request["request_id"])
        body = request["request"]
        assert body["subtype"] == "can_use_tool"
        assert body["tool_name"] == body["display_name"] == "Bash"
        assert body["input"] == call.input
        assert body["tool_use_id"] == call.id
        assert {"type": "addRules", "behavior": "allow", "destination": "localSettings",
                "rules": [{"toolName": "Bash", "ruleContent": f"touch {touched}"}]
                } in body["permission_suggestions"]
        assert not touched.exists()

        await claude.write(answer(request["request_id"],
                                  {"behavior": "allow", "updatedInput": body["input"]}))
        events = await claude.until(is_result)
        assert touched.exists()
        [ran] = tool_results(events)
        assert ran["is_error"] is False and ran["tool_use_id"] == call.id
        assert events[-1]["subtype"] == "success" and events[-1]["result"] == "done"
        assert events[-1]["permission_denials"] == []
    finally:
        await claude.stop()


async def test_r13_1_real_cli_deny_does_not_run_and_tells_the_model(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.1: `deny` does not run the command; the model's next request carries the denial
    message, verbatim, as an error tool_result; the turn goes on to a success result that
    lists the denial."""
    work = tmp_path / "work"
    claude = await initialized(claude_bin, messages_api, claude_home, work)
    try:
        touched = work / "denied.txt"
        call, request = await ask_for(claude, messages_api, f"touch {touched}", "understood")
        message = "Denied from chat by @alice: not now"
        await claude.write(answer(request["request_id"],
                                  {"behavior": "deny", "message": message, "interrupt": False}))
        events = await claude.until(is_result)
        assert not touched.exists()
        [told] = messages_api.message_requests[1].tool_results()
        assert told["tool_use_id"] == call.id
        assert told["is_error"] is True and told["content"] == message
        result = events[-1]
        assert result["subtype"] == "success" and result["result"] == "understood"
        assert result["terminal_reason"] == "completed"
        assert [d["tool_use_id"] for d in result["permission_denials"]] == [call.id]
    finally:
        await claude.stop()


async def test_r13_1_real_cli_deny_with_interrupt_ends_the_turn(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.1: a deny with `interrupt: true` ends the turn at once (no further model request);
    the model is told the generic rejection, not the deny's message."""
    work = tmp_path / "work"
    claude = await initialized(claude_bin, messages_api, claude_home, work)
    try:
        _call, request = await ask_for(claude, messages_api, f"touch {work / 'x'}", "never",
                                       message_uuid="u-deny")
        await claude.write(answer(request["request_id"],
                                  {"behavior": "deny", "message": "stop it", "interrupt": True}))
        events = await claude.until(is_result)
        assert user_texts(events) == [INTERRUPTED_FOR_TOOL]
        [told] = tool_results(events)
        assert told["is_error"] is True and "stop it" not in told["content"]
        assert_interrupted(events[-1], "aborted_tools", "u-deny")
        assert len(messages_api.message_requests) == 1
    finally:
        await claude.stop()


async def test_r13_6_real_cli_interrupt_ends_a_streaming_turn_and_the_process_lives_on(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.6: `interrupt` while the reply streams slowly: a receipt listing the message still
    queued behind the turn, the part so far marked `aborted`, `[Request interrupted by
    user]`, an error result (`aborted_streaming`) that lists the interrupted message's uuid;
    then the queued message gets a turn of its own, a new one is answered by the same
    process, and an interrupt with no turn running gets only its receipt."""
    claude = await initialized(claude_bin, messages_api, claude_home, tmp_path / "work")
    try:
        messages_api.reply(Text("slow " * 60, chunks=60, delay=0.5), Text("the queued one"))
        await claude.send("stream slowly", uuid="u-slow")
        await messages_api.wait_for_requests(1)
        await claude.send("queued behind it", uuid="u-queued")
        await claude.until(lambda e: e.get("command_uuid") == "u-queued")  # it is queued
        await claude.write(control_request("int_1", "interrupt"))
        events = await claude.until(is_result)
        assert receipt("int_1", ["u-queued"]) in events
        assert all(e.get("aborted") for e in events if e["type"] == "assistant")
        assert user_texts(events) == [INTERRUPTED]
        assert_interrupted(events[-1], "aborted_streaming", "u-slow")
        cost = events[-1]["total_cost_usd"]

        events = await claude.until(is_result)
        assert events[-1]["result"] == "the queued one"
        assert events[-1]["user_message_uuids"] == ["u-queued"]
        assert {"command_uuid": "u-slow", "state": "cancelled"}.items() <= next(
            e for e in events if e.get("command_uuid") == "u-slow").items()

        messages_api.reply(Text("still here"))
        await claude.send("are you there?", uuid="u-next")
        events = await claude.until(is_result)
        assert events[-1]["subtype"] == "success" and events[-1]["result"] == "still here"
        assert events[-1]["total_cost_usd"] > cost  # one process: the total goes on
        assert claude.proc.returncode is None

        await claude.write(control_request("int_idle", "interrupt"))
        events = await claude.until(of_type("control_response"))
        assert events[-1] == receipt("int_idle", [])
    finally:
        await claude.stop()


async def test_r13_3_real_cli_interrupt_while_asking_withdraws_the_request(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.3/R13.6: an interrupt while can_use_tool waits: `control_cancel_request` for it
    comes before the receipt, the turn ends `aborted_tools`, and a late allow runs nothing."""
    work = tmp_path / "work"
    claude = await initialized(claude_bin, messages_api, claude_home, work)
    try:
        touched = work / "pending.txt"
        _call, request = await ask_for(claude, messages_api, f"touch {touched}", "later",
                                       message_uuid="u-ask")
        await claude.write(control_request("int_1", "interrupt"))
        events = await claude.until(is_result)
        assert events[:2] == [
            {"type": "control_cancel_request", "request_id": request["request_id"]},
            receipt("int_1", []),
        ]
        assert user_texts(events) == [INTERRUPTED_FOR_TOOL]
        assert_interrupted(events[-1], "aborted_tools", "u-ask")

        late = {"behavior": "allow", "updatedInput": request["request"]["input"]}
        await claude.write(answer(request["request_id"], late))
        await claude.send("carry on")
        events = await claude.until(is_result)
        assert events[-1]["result"] == "later"
        assert not touched.exists()
    finally:
        await claude.stop()


async def test_r13_1_real_cli_without_stdio_refuses_and_still_answers_control_requests(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.1/R13.6: without `--permission-prompt-tool stdio` nobody is asked — a
    `system`/`permission_denied` event and an error tool_result — but `initialize` and
    `interrupt` are answered all the same."""
    work = tmp_path / "work"
    claude = await started(claude_bin, messages_api, claude_home, work)
    try:
        touched = work / "refused.txt"
        messages_api.reply(ToolCall("Bash", {"command": f"touch {touched}", "description": "t"}),
                           Text("ok"))
        await claude.send("please run it")
        events = await claude.until(is_result)
        assert not [e for e in events if e["type"] == "control_request"]
        [denied] = [e for e in events if e.get("subtype") == "permission_denied"]
        assert denied["tool_name"] == "Bash" and denied["message"]
        assert not touched.exists()

        await claude.write(control_request("init_1", "initialize", hooks=None))
        response = (await claude.until(of_type("control_response")))[-1]
        assert response["response"]["request_id"] == "init_1"
        await claude.write(control_request("int_1", "interrupt"))
        assert (await claude.until(of_type("control_response")))[-1] == receipt("int_1", [])
    finally:
        await claude.stop()


async def test_r13_4_real_cli_initialize_while_asking_lists_no_pending_requests(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.4: on 2.1.332 an `initialize` while can_use_tool waits reports
    `session_state: requires_action` but no `pending_permission_requests` (the key DESIGN
    expected): a bot that restarts cannot learn its pending requests from the CLI. An unknown
    subtype gets an error with `error_code: unsupported_request`."""
    work = tmp_path / "work"
    claude = await initialized(claude_bin, messages_api, claude_home, work)
    try:
        await ask_for(claude, messages_api, f"touch {work / 'x'}", "later")
        await claude.write(control_request("init_2", "initialize", hooks=None))
        response = (await claude.until(of_type("control_response")))[-1]["response"]
        assert response["subtype"] == "success"
        assert response["response"]["session_state"] == "requires_action"
        assert "pending_permission_requests" not in response["response"]

        await claude.write(control_request("x1", "no_such_thing"))
        response = (await claude.until(of_type("control_response")))[-1]["response"]
        assert response == {"subtype": "error", "request_id": "x1",
                            "error": "Unsupported control request subtype: no_such_thing",
                            "error_code": "unsupported_request"}
    finally:
        await claude.stop()


def turn_cost(result: dict[str, Any]) -> float:
    return sum(m["costUSD"] for m in result["model_usage_since_last_result"].values())


async def test_r13_8_real_cli_total_cost_is_the_sessions_across_resume_and_fork(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.8: `total_cost_usd` is the SESSION's running total, not the process's: a resumed
    process's first result goes on from the last one, and a fork starts from its parent's.
    `model_usage_since_last_result` holds the turn's own cost, which is what to store.
    (The total is saved when the process ends cleanly: see CLI-FACTS.md for a killed one.)"""
    work = tmp_path / "work"
    work.mkdir()
    env = messages_api.env(claude_home)
    lead = str(uuid.uuid4())
    results = []
    for args in (("--session-id", lead), ("--resume", lead),
                 ("--resume", lead, "--fork-session")):
        claude = await Claude.start(claude_bin, env, work, *args)
        try:
            await claude.send("hello")
            results.append((await claude.until(is_result))[-1])
            _rest, code, _stderr = await claude.finish()  # a clean end saves the total
            assert code == 0
        finally:
            await claude.stop()
    totals = [r["total_cost_usd"] for r in results]
    costs = [turn_cost(r) for r in results]
    assert all(c > 0 for c in costs)
    assert totals[0] == costs[0]
    assert abs(totals[1] - (totals[0] + costs[1])) < 1e-9
    assert abs(totals[2] - (totals[1] + costs[2])) < 1e-9
    assert results[2]["session_id"] != lead


async def test_r13_6_real_cli_exits_1_when_input_ends_after_an_interrupted_turn(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path, tmp_path: Path
) -> None:
    """R13.6: closing stdin after an interrupted last turn ends the CLI with status 1 and
    nothing on stderr — not a crash of the agent."""
    claude = await started(claude_bin, messages_api, claude_home, tmp_path / "work")
    try:
        messages_api.reply(Text("slow " * 60, chunks=60, delay=0.5))
        await claude.send("stream slowly", uuid="u-slow")
        await messages_api.wait_for_requests(1)
        await claude.write(control_request("int_1", "interrupt"))
        assert_interrupted((await claude.until(is_result))[-1], "aborted_streaming", "u-slow")
        rest, code, stderr = await claude.finish()
        assert code == 1
        assert stderr == ""
        assert not [e for e in rest if e["type"] == "result"]
    finally:
        await claude.stop()
