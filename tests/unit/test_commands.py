"""Parsing what people type: task commands (R7.2) and admin commands (R6.4). Pure."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crewbridge.bot.commands import (
    USAGE,
    Admin,
    Command,
    Invalid,
    StopTurn,
    TaskCreate,
    TaskDone,
    is_admin_command,
    parse,
)

TOPIC: dict[str, tuple[str, Command | None]] = {
    # R7.2 — !task @worker subject
    "r7_2-task": ("!task @alice fix the login bug", TaskCreate("alice", "fix the login bug")),
    "r7_2-task-colon": ("!task @alice: x", TaskCreate("alice", "x")),
    "r7_2-task-comma": ("!task @alice, fix it", TaskCreate("alice", "fix it")),
    "r7_2-task-upper-name": ("!task @Alice Fix It", TaskCreate("alice", "Fix It")),
    "r7_2-task-dash-name": ("!task @web-dev add css", TaskCreate("web-dev", "add css")),
    "r7_2-task-underscore-name": ("!task @data_eng load", TaskCreate("data_eng", "load")),
    "r7_2-task-surrounding-space": ("  !task @alice  fix it  ", TaskCreate("alice", "fix it")),
    "r7_2-task-multiline-subject": ("!task @alice fix\nand test", TaskCreate("alice",
                                                                             "fix\nand test")),
    "r7_2-task-no-at": ("!task alice fix it", Invalid(USAGE["task"])),
    "r7_2-task-only-name": ("!task alice", Invalid(USAGE["task"])),
    "r7_2-task-no-subject": ("!task @alice", Invalid(USAGE["task"])),
    "r7_2-task-no-args": ("!task", Invalid(USAGE["task"])),
    # R7.2 — !done id
    "r7_2-done": ("!done 12", TaskDone(12)),
    "r13_6-stop": ("!stop", StopTurn(None)),
    "r13_6-stop-agent": ("!stop @Carol", StopTurn("carol")),
    "r13_6-stop-fork": ("!stop webui/2", StopTurn("webui/2")),
    "r13_6-stop-two": ("!stop a b", Invalid(USAGE["stop-turn"])),
    "r7_2-done-hash": ("!done #12", TaskDone(12)),
    "r7_2-done-upper-verb": ("!DONE 7", TaskDone(7)),
    "r7_2-done-word": ("!done x", Invalid(USAGE["done"])),
    "r12_4-done-in-its-thread": ("!done", TaskDone(None)),
    "r7_2-done-two-ids": ("!done 1 2", Invalid(USAGE["done"])),
    "r7_2-done-negative": ("!done -3", Invalid(USAGE["done"])),
    # ordinary messages are not commands
    "plain-text": ("hello team", None),
    "admin-verb-without-bang-outside-admin": ("status please", None),
    "task-without-bang-outside-admin": ("task @alice fix", None),
    "unknown-bang-word": ("!wow great", None),
    "bang-alone": ("!", None),
    "empty": ("", None),
    # R6.4 — admin commands typed outside the admin room are recognised (to refuse them)
    "r6_4-status-outside-admin": ("!status", Admin("status")),
    "r6_4-tasks-outside-admin": ("!tasks", Admin("tasks")),
    "r6_4-reset-outside-admin": ("!reset webui", Admin("reset", "webui")),
    "r6_4-auth-login-outside-admin": ("!auth login", Admin("auth-login")),
    "r6_4-restart-missing-agent-outside-admin": ("!restart", Invalid(USAGE["restart"])),
    "r13_8-usage-outside-admin": ("!usage", Admin("usage")),
    "r13_9-audit-outside-admin": ("!audit 3", Admin("audit", count=3)),
}

ADMIN: dict[str, tuple[str, Command | None]] = {
    # R6.6 — queue <agent>, drop <agent> <n>|all
    "r6_6-queue": ("queue webui", Admin("queue", "webui")),
    "r6_6-queue-at-name": ("queue @WebUI", Admin("queue", "webui")),
    "r6_6-queue-missing-agent": ("queue", Invalid(USAGE["queue"])),
    "r6_6-drop-one": ("drop webui 2", Admin("drop", "webui", 2)),
    "r6_6-drop-hash": ("drop webui #2", Admin("drop", "webui", 2)),
    "r6_6-drop-all": ("drop webui ALL", Admin("drop", "webui", None)),
    "r6_6-drop-zero": ("drop webui 0", Invalid(USAGE["drop"])),
    "r6_6-drop-word": ("drop webui some", Invalid(USAGE["drop"])),
    "r6_6-drop-missing-which": ("drop webui", Invalid(USAGE["drop"])),
    "r6_6-drop-outside-admin": ("!drop webui 1", Admin("drop", "webui", 1)),
    # R6.4 — in the admin channel the `!` is optional
    "r6_4-status": ("status", Admin("status")),
    "r6_4-status-bang": ("!status", Admin("status")),
    "r6_4-status-upper": ("STATUS", Admin("status")),
    "r6_4-tasks": ("tasks", Admin("tasks")),
    "r6_4-help": ("help", Admin("help")),
    "r6_4-restart": ("restart webui", Admin("restart", "webui")),
    "r6_4-restart-bang": ("!restart webui", Admin("restart", "webui")),
    "r6_4-restart-at-name": ("restart @Alice", Admin("restart", "alice")),
    "r6_4-stop": ("stop alice", Admin("stop", "alice")),
    "r6_4-stop-bang": ("!stop alice", Admin("stop", "alice")),
    "r6_4-reset": ("reset webui", Admin("reset", "webui")),
    "r6_4-reset-bang": ("!reset webui", Admin("reset", "webui")),
    "r6_4-restart-missing-agent": ("restart", Invalid(USAGE["restart"])),
    "r6_4-stop-missing-agent": ("stop", Invalid(USAGE["stop"])),
    "r6_4-reset-missing-agent": ("!reset", Invalid(USAGE["reset"])),
    "r6_4-reset-two-agents": ("reset a b", Invalid(USAGE["reset"])),
    "r6_4-auth-login": ("auth login", Admin("auth-login")),
    "r6_4-auth-login-bang": ("!auth login", Admin("auth-login")),
    "r6_4-auth-login-upper": ("Auth Login", Admin("auth-login")),
    "r6_4-auth-alone": ("auth", Invalid(USAGE["auth"])),
    "r6_4-auth-other": ("auth logout", Invalid(USAGE["auth"])),
    "r6_4-plain-text-is-help": ("what can you do?", Admin("help")),
    "r6_4-unknown-verb-is-help": ("!frobnicate", Admin("help")),
    "r7_2-task-in-admin": ("!task @alice x", TaskCreate("alice", "x")),
    "r7_2-done-in-admin": ("done 3", TaskDone(3)),
    "empty-in-admin": ("   ", None),
    # R13.8 — usage; R13.9 — audit [<n>]
    "r13_8-usage": ("usage", Admin("usage")),
    "r13_8-usage-bang": ("!USAGE", Admin("usage")),
    "r13_9-audit": ("audit", Admin("audit")),
    "r13_9-audit-count": ("audit 5", Admin("audit", count=5)),
    "r13_9-audit-zero": ("audit 0", Invalid(USAGE["audit"])),
    "r13_8-budget": ("budget #webui $2.50", Admin("budget", "webui", amount=2.5)),
    "r13_8-budget-none": ("budget webui 0", Admin("budget", "webui", amount=0.0)),
    "r13_8-budget-word": ("budget webui lots", Invalid(USAGE["budget"])),
    "r13_8-budget-missing": ("budget webui", Invalid(USAGE["budget"])),
    "r13_9-audit-word": ("audit lots", Invalid(USAGE["audit"])),
    "r13_9-audit-two": ("audit 1 2", Invalid(USAGE["audit"])),
    "r13_9-audit-huge": ("audit 100000", Invalid(USAGE["audit"])),
}


@pytest.mark.parametrize(("text", "expected"), list(TOPIC.values()), ids=list(TOPIC))
def test_r7_2_r6_4_parse_outside_admin(text: str, expected: Command | None) -> None:
    """R7.2, R6.4: commands in topic rooms need `!`; anything else is an ordinary message."""
    assert parse(text, in_admin=False) == expected


@pytest.mark.parametrize(("text", "expected"), list(ADMIN.values()), ids=list(ADMIN))
def test_r6_4_parse_in_admin(text: str, expected: Command | None) -> None:
    """R6.4: in the admin room the `!` is optional and plain text asks for help."""
    assert parse(text, in_admin=True) == expected


@pytest.mark.parametrize(("text", "admin"), [
    ("!status", True), ("!tasks", True), ("!help", True), ("!restart webui", True),
    ("!stop", False), ("!stop @webui", False), ("!reset", True), ("!auth login", True),
    ("!auth", True), ("!usage", True), ("!audit", True), ("!audit x", True),
    ("!task @alice x", False), ("!task alice", False), ("!done 1", False), ("!done x", False),
    ("hello", False), ("status", False),
], ids=lambda v: str(v))
def test_r6_4_admin_commands_outside_admin_are_recognised_to_be_refused(
        text: str, admin: bool) -> None:
    """R6.4: an admin command anywhere else is recognised, so it is refused and nothing runs
    — and not mistaken for a message to the lead. Task commands are not admin commands."""
    assert is_admin_command(parse(text, in_admin=False)) is admin


ASCII_WORD = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), max_size=6)
VERBS = st.sampled_from(["task", "done", "status", "tasks", "help", "restart", "stop", "reset",
                         "auth", "login", "usage", "audit", "hello"])


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    st.text(max_size=40),
    st.tuples(st.sampled_from(["", "!", " !"]), VERBS, st.lists(ASCII_WORD, max_size=3)).map(
        lambda t: t[0] + " ".join([t[1], *t[2]])),
), st.booleans())
def test_r6_4_r7_2_parse_never_raises(text: str, in_admin: bool) -> None:
    """R6.4/R7.2: any text parses to a command, an Invalid usage, or None — never an error."""
    result = parse(text, in_admin=in_admin)
    assert result is None or isinstance(result, TaskCreate | TaskDone | StopTurn | Admin | Invalid)
    if not in_admin and not text.strip().startswith("!"):
        assert result is None


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from(["", "#"]), st.booleans())
def test_r7_2_done_round_trips_any_id(n: int, hash_: str, in_admin: bool) -> None:
    """R7.2: `!done <id>` and `!done #<id>` give that id."""
    assert parse(f"!done {hash_}{n}", in_admin=in_admin) == TaskDone(n)


@pytest.mark.parametrize("text", ["!done ²", "!done #²", "!done 1²", "!done ½"],
                         ids=["superscript", "hash-superscript", "mixed", "fraction"])
def test_r7_2_done_with_non_ascii_digits_is_invalid_usage(text: str) -> None:
    """R7.2: a malformed `!done` gets the usage line; it does not crash the handler
    (`'²'.isdigit()` is true but `int('²')` raises — found by this suite, fixed in ce39af2)."""
    assert parse(text, in_admin=False) == Invalid(USAGE["done"])


@pytest.mark.parametrize("text", ["!Task @alice fix it", "!TASK @alice fix it"])
def test_r7_2_task_verb_is_case_insensitive_like_the_others(text: str) -> None:
    """R7.2: `!Task @alice fix it` (phone keyboards capitalise) creates the task, as
    `!DONE 7` finishes one (found by this suite, fixed in ce39af2)."""
    assert parse(text, in_admin=False) == TaskCreate("alice", "fix it")


@pytest.mark.parametrize(("text", "words"), [
    ("status", "status"), ("reset @WebUI", "reset webui"), ("drop webui 2", "drop webui 2"),
    ("drop webui all", "drop webui all"), ("auth login", "auth login"), ("audit", "audit"),
    ("audit 5", "audit 5"), ("usage", "usage"), ("queue alice", "queue alice"),
], ids=lambda v: str(v))
def test_r13_9_an_admin_command_is_audited_as_it_is_written(text: str, words: str) -> None:
    """R13.9: the audit's "what" is the command with its arguments, read back from the parse."""
    cmd = parse(text, in_admin=True)
    assert isinstance(cmd, Admin) and cmd.words() == words
