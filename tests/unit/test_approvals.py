"""Approval cards decided without doing anything (R13.1-R13.3): `bot.approvals` and the
control protocol's shapes in `supervisor.control`."""

from __future__ import annotations

import json

import pytest

from crewbridge.bot.approvals import (
    Approval,
    ApprovalState,
    TypedVerdict,
    buttons,
    card_text,
    may_decide,
    parse_decision,
    summary,
    verdict_of,
)
from crewbridge.supervisor.control import (
    PermissionAsk,
    PermissionWithdrawn,
    Verdict,
    encode_verdict,
)
from crewbridge.supervisor.protocol import parse_line
from crewbridge.supervisor.terminal import plain
from tests.support.cards import CARD_BUTTONS

ASK_LINE = json.dumps({
    "type": "control_request", "request_id": "r-1",
    "request": {"subtype": "can_use_tool", "tool_name": "Bash", "display_name": "Bash",
                "input": {"command": "touch x", "description": "Create x"},
                "permission_suggestions": [
                    {"type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "touch x"}],
                     "behavior": "allow", "destination": "localSettings"},
                    {"type": "addDirectories", "directories": ["/w"], "destination": "session"}],
                "decision_reason": "\x1b[1mneeds approval\x1b[0m", "tool_use_id": "toolu_1"}})


def approval(**kw: object) -> Approval:
    base = dict(id=3, agent="webui", channel="webui", thread=None, request_id="r-1",
                tool="Bash", input={"command": "touch x"}, rule="Bash(touch x)",
                askers=("bob",), deadline=0.0)
    return Approval(**{**base, **kw})  # type: ignore[arg-type]


def test_r13_1_can_use_tool_is_parsed_with_its_rule_and_reason() -> None:
    """R13.1: the CLI's request as DESIGN.md captured it; the rule Always allow would add."""
    assert parse_line(ASK_LINE) == [PermissionAsk(
        "r-1", "Bash", {"command": "touch x", "description": "Create x"}, rule="Bash(touch x)",
        reason="\x1b[1mneeds approval\x1b[0m", tool_use_id="toolu_1")]
    assert parse_line('{"type":"control_cancel_request","request_id":"r-1"}') == [
        PermissionWithdrawn("r-1")]


@pytest.mark.parametrize(("extra", "rule", "safety"), [
    ({"default_to_no": True}, "", False),  # R13.2: no Always allow where forbidden
    ({"suppress_always_allow_rule": True}, "", False),
    ({"decision_reason_type": "safetyCheck"}, "Bash(touch x)", True),
    ({"permission_suggestions": None}, "", False),
])
def test_r13_2_what_a_request_forbids_or_marks(extra: dict, rule: str, safety: bool) -> None:
    obj = json.loads(ASK_LINE)
    obj["request"].update(extra)
    [ask] = parse_line(json.dumps(obj))
    assert isinstance(ask, PermissionAsk) and (ask.rule, ask.safety) == (rule, safety)


@pytest.mark.parametrize("line", [
    '{"type":"control_request","request_id":"r","request":{"subtype":"can_use_tool"}}',
    '{"type":"control_request","request":{"subtype":"can_use_tool","tool_name":"Bash"}}',
    '{"type":"control_request","request_id":"r","request":{"subtype":"hook_callback"}}',
    '{"type":"control_cancel_request"}',
])
def test_r13_1_malformed_control_requests_are_ignored(line: str) -> None:
    assert parse_line(line) == []


def test_r13_1_answers_on_the_control_protocol() -> None:
    """R13.1: allow with the input; Always also adds the rule to the session only (the
    bot keeps it per channel and never writes the project's settings); deny with the
    message, the turn going on."""
    [ask] = parse_line(ASK_LINE)
    assert isinstance(ask, PermissionAsk)
    allow = json.loads(encode_verdict(ask, Verdict.ALLOW, ""))
    assert allow["response"] == {"subtype": "success", "request_id": "r-1", "response": {
        "behavior": "allow", "updatedInput": ask.input}}
    always = json.loads(encode_verdict(ask, Verdict.ALWAYS, ""))["response"]["response"]
    assert always["updatedPermissions"] == [{
        "type": "addRules", "rules": [{"toolName": "Bash", "ruleContent": "touch x"}],
        "behavior": "allow", "destination": "session"}]
    deny = json.loads(encode_verdict(ask, Verdict.DENY, "Denied from chat by bob."))
    assert deny["response"]["response"] == {"behavior": "deny",
                                            "message": "Denied from chat by bob.",
                                            "interrupt": False}


@pytest.mark.parametrize(("tool", "tool_input", "line", "block"), [
    ("Bash", {"command": "npm test", "description": "Run tests"}, "Run tests", "npm test"),
    ("Edit", {"file_path": "src/a.py", "old_string": "x", "new_string": "a\nb"},
     "`src/a.py` (2 lines, 3 chars)", ""),
    ("Write", {"file_path": "n.md", "content": ""}, "`n.md` (0 lines, 0 chars)", ""),
    ("WebFetch", {"url": "https://example.org/x", "prompt": "p"}, "<https://example.org/x>", ""),
    ("Grep", {"pattern": "TODO"}, "`TODO`", ""),
    ("mcp__x", {"a": 1}, "", '{"a": 1}'),
])
def test_r13_1_a_readable_summary_of_the_input(tool: str, tool_input: dict, line: str,
                                               block: str) -> None:
    assert summary(tool, tool_input) == (line, block)


def test_r13_1_the_card_is_cleaned_and_bounded() -> None:
    """R13.1: ANSI escapes and control characters never reach a room; a huge command is
    cut; a fence inside the command cannot close the card's code block."""
    text = card_text(approval(input={"command": "\x1b[31mecho\x1b[0m ```x``` \x07" + "y" * 5000}))
    assert text.startswith("🔐 **webui** wants to use **Bash**")
    assert "\x1b" not in text and "\x07" not in text and len(text) < 1200
    assert text.count("~~~") == 2  # a ~~~ fence, which the ``` inside cannot close
    assert plain("\x1b]0;title\x07ok") == "ok"


@pytest.mark.parametrize(("state", "by", "reason", "expected"), [
    (ApprovalState.ALLOWED, "bob", "", "✅ **webui** wants to use **Bash**"),
    (ApprovalState.DENIED, "bob", "not now", "Denied by bob: not now."),
    (ApprovalState.ALWAYS, "bob", "", "`Bash(touch x)` is allowed in #webui from now on."),
    (ApprovalState.EXPIRED, "", "", "No one decided in time; denied."),
    (ApprovalState.WITHDRAWN, "", "withdrawn by the agent", "No longer asked (withdrawn"),
])
def test_r13_3_every_card_ends_showing_its_outcome(state: ApprovalState, by: str, reason: str,
                                                   expected: str) -> None:
    text = card_text(approval(state=state, decided_by=by, reason=reason))
    assert expected in text and "/allow" not in text


def test_r13_1_buttons_offer_always_only_with_a_rule() -> None:
    assert [b.action for b in buttons(approval())] == ["allow", "deny", "always"]
    assert [b.emoji for b in buttons(approval(rule=""))] == ["✅", "❌"]


def test_r13_1_the_bridges_card_tests_show_the_buttons_the_core_offers() -> None:
    """The bridges' card tests use `tests.support.cards`: the same buttons, so they test
    what a person sees."""
    assert buttons(approval()) == CARD_BUTTONS


@pytest.mark.parametrize(("platform", "sender", "name", "kw", "may"), [
    ("console", "local", "me", {}, True),
    ("slack", "U-bob", "bob", {}, True),  # the asker, no approvers listed
    ("slack", "U-eve", "eve", {}, False),  # admins listed: not anyone
    ("slack", "U-adm", "adm", {}, True),
    ("slack", "U-bob", "bob", {"approvers": ("U-carol",)}, False),
    ("slack", "U-carol", "carol", {"approvers": ("U-carol",)}, True),
    ("slack", "U-carol", "carol", {"approvers": ("U-carol",), "safety": True}, False),
    ("slack", "U-adm", "adm", {"safety": True}, True),
    ("slack", "U-bob", "bob", {"safety": True}, False),
])
def test_r13_2_who_may_decide(platform: str, sender: str, name: str, kw: dict,
                              may: bool) -> None:
    a = approval(safety=kw.get("safety", False))
    assert may_decide(platform, sender, name, a, approvers=kw.get("approvers", ()),
                      admins=("U-adm",)) is may


def test_r13_2_with_nobody_listed_anyone_may_decide() -> None:
    assert may_decide("matrix", "@x:hs", "x", approval(), approvers=(), admins=())


@pytest.mark.parametrize(("text", "parsed"), [
    ("/allow 3", TypedVerdict(Verdict.ALLOW, 3)),
    ("!deny #3 not on prod", TypedVerdict(Verdict.DENY, 3, "not on prod")),
    ("deny too risky", TypedVerdict(Verdict.DENY, None, "too risky")),
    ("Always", TypedVerdict(Verdict.ALWAYS)),
    ("allow", TypedVerdict(Verdict.ALLOW)),
    ("allow me to explain", None),  # a sentence, not a decision
    ("allowance", None),
    ("please deny", None),
])
def test_r13_1_typed_decisions(text: str, parsed: TypedVerdict | None) -> None:
    assert parse_decision(text) == parsed


@pytest.mark.parametrize(("choice", "verdict"), [
    ("allow", Verdict.ALLOW), ("always", Verdict.ALWAYS), ("✅", Verdict.ALLOW),
    ("❌", Verdict.DENY), ("♾️", Verdict.ALWAYS), ("♾", Verdict.ALWAYS), ("🎉", None),
    ("stop", None),
])
def test_r13_1_clicks_and_reactions(choice: str, verdict: Verdict | None) -> None:
    assert verdict_of(choice) == verdict
