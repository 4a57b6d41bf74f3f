"""Forked sessions on the real Claude Code CLI, against the loopback Messages API (R12.3).

A thread under a lead's answer gets its own session forked from the lead's: the supervisor
starts `claude -p … --resume <lead id> --fork-session --session-id <new uuid>` in the lead's
working directory. These tests prove on the CLI itself what that relies on: the fork is the
new session (its init says so), its first request to the model carries the lead's history,
and the lead's own history does not learn what the fork was told; and how a fork of a
session the CLI does not have fails, which the fake agent copies. They fail, never skip,
when the CLI is missing (`conftest.claude_bin`); every read has a timeout.
"""

from __future__ import annotations

import uuid
from pathlib import Path

from tests.agent.claude_cli import Claude, Events, one_turn
from tests.agent.messages_api import MessagesAPI, Text


async def talk(claude_bin: Path, env: dict[str, str], cwd: Path, text: str,
               *args: str) -> tuple[Events, int, str]:
    """Start the CLI with `args` (which name the session), send `text`, end the input."""
    claude = await Claude.start(claude_bin, env, cwd, *args)
    try:
        await claude.send(text)
        events = await claude.turn()
        rest, code, stderr = await claude.finish()
    finally:
        claude.kill()
    return events + rest, code, stderr


def session_ids(events: Events, kind: str) -> set[str]:
    return {e["session_id"] for e in events if e["type"] == kind}


async def test_r12_3_a_fork_carries_the_leads_history_and_leaves_the_lead_alone(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R12.3: `--resume <lead> --fork-session --session-id <new>` in the lead's directory is
    session <new> (init and result say so), its turn sends the model the lead's earlier
    user text, and the lead resumed afterwards has not heard what the fork was told."""
    env = messages_api.env(claude_home)
    workdir = claude_home / "lead-work"
    workdir.mkdir()
    lead = str(uuid.uuid4())
    messages_api.reply(Text("I will remember it."), Text("The word was pelican."),
                       Text("Still here."))
    events, code, _ = await one_turn(claude_bin, env, workdir, "remember the word pelican",
                                     session_id=lead)
    assert code == 0 and session_ids(events, "result") == {lead}

    new = str(uuid.uuid4())
    forked, code, _ = await talk(claude_bin, env, workdir, "which word, in this thread?",
                                 "--resume", lead, "--fork-session", "--session-id", new)
    assert code == 0
    assert session_ids(forked, "system") == {new}
    assert session_ids(forked, "result") == {new}
    fork_request = messages_api.message_requests[1].user_texts()
    assert "remember the word pelican" in fork_request
    assert fork_request[-1] == "which word, in this thread?"

    resumed, code, _ = await talk(claude_bin, env, workdir, "back in the channel",
                                  "--resume", lead)
    assert code == 0 and session_ids(resumed, "system") == {lead}
    lead_request = messages_api.message_requests[2].user_texts()
    assert "remember the word pelican" in lead_request
    assert lead_request[-1] == "back in the channel"
    assert not any("which word" in text for text in lead_request)


async def test_r12_3_a_fork_without_a_session_id_gets_a_fresh_one(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R12.3: without `--session-id` the CLI gives the fork a fresh uuid of its own."""
    env = messages_api.env(claude_home)
    lead = str(uuid.uuid4())
    _, code, _ = await one_turn(claude_bin, env, claude_home, "hello", session_id=lead)
    assert code == 0
    forked, code, _ = await talk(claude_bin, env, claude_home, "hi", "--resume", lead,
                                 "--fork-session")
    assert code == 0
    (fork_id,) = session_ids(forked, "system")
    assert fork_id != lead and str(uuid.UUID(fork_id)) == fork_id
    assert "hello" in messages_api.message_requests[1].user_texts()


async def test_r12_3_a_fork_of_an_unknown_session_says_no_conversation_found(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R12.3/R4.10: forking a session the CLI does not have prints, before reading input,
    one error result in the *new* session whose `errors` name the parent ("No conversation
    found with session ID: <parent>"), asks the API nothing, and exits 1."""
    unknown, new = str(uuid.uuid4()), str(uuid.uuid4())
    claude = await Claude.start(claude_bin, messages_api.env(claude_home), claude_home,
                                "--resume", unknown, "--fork-session", "--session-id", new)
    try:
        events = await claude.turn()
        rest, code, stderr = await claude.finish()
    finally:
        claude.kill()
    (result,) = events + rest
    assert result["type"] == "result"
    assert result["is_error"] is True
    assert result["subtype"] == "error_during_execution"
    assert result["session_id"] == new
    assert result["errors"] == [f"No conversation found with session ID: {unknown}"]
    assert code == 1
    assert "No conversation found" in stderr
    assert messages_api.requests == []


async def test_r12_3_resume_with_a_session_id_needs_fork_session(
    claude_bin: Path, messages_api: MessagesAPI, claude_home: Path
) -> None:
    """R12.3: `--resume <id> --session-id <new>` without `--fork-session` is refused on
    stderr with exit 1 and no events — so a fork must always say `--fork-session`."""
    claude = await Claude.start(claude_bin, messages_api.env(claude_home), claude_home,
                                "--resume", str(uuid.uuid4()), "--session-id", str(uuid.uuid4()))
    try:
        rest, code, stderr = await claude.finish()
    finally:
        claude.kill()
    assert rest == []
    assert code == 1
    assert "--session-id with --continue or --resume also needs --fork-session" in stderr
