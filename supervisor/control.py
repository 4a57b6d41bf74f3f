"""Claude Code's control protocol: the CLI asking to use a tool, and the bot's answers (R13).

With `--permission-prompt-tool stdio` the CLI does not refuse a tool its permission mode
does not allow; it asks on stdout (`control_request` / `can_use_tool`) and waits, without
a deadline of its own, for a `control_response` on stdin. It withdraws a question it no
longer needs answered (`control_cancel_request`, seen when the turn was interrupted); an
answer to a withdrawn question is ignored by the CLI. The shapes are DESIGN.md's, captured
from CLI 2.1.332; like `supervisor.protocol`, nothing here raises on what it cannot read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

INITIALIZE_ID = "init_1"


@dataclass(frozen=True)
class PermissionAsk:
    """A `can_use_tool` request: the agent waits until it is answered (R13.1).

    `rule`: the permission rule an "Always allow" would add (`Bash(touch x)`), from the
    request's `addRules` suggestion; "" when it offers none, or forbids remembering one
    (`default_to_no`, `suppress_always_allow_rule`, R13.2). `safety`: the CLI's safety
    check asks (`decision_reason_type = "safetyCheck"`), which only admins may decide.
    """

    request_id: str
    tool: str
    input: dict[str, Any] = field(default_factory=dict)
    rule: str = ""
    safety: bool = False
    reason: str = ""  # `decision_reason`: why the CLI asks (may carry ANSI escapes)
    tool_use_id: str = ""


class Verdict(StrEnum):
    """A person's (or the deadline's) answer to a `PermissionAsk`."""

    ALLOW = "allow"
    DENY = "deny"
    ALWAYS = "always"  # allow, and remember the rule for the channel


@dataclass(frozen=True)
class PermissionWithdrawn:
    """`control_cancel_request`: the CLI no longer waits for this request's answer."""

    request_id: str


def parse_control_request(obj: dict[str, Any]) -> list[PermissionAsk]:
    """A `control_request` from the CLI; only `can_use_tool` is one the bot answers."""
    request_id, request = obj.get("request_id"), obj.get("request")
    if not isinstance(request_id, str) or not isinstance(request, dict):
        return []
    if request.get("subtype") != "can_use_tool" or not isinstance(request.get("tool_name"), str):
        return []
    tool_input = request.get("input")
    remember = not (request.get("default_to_no") or request.get("suppress_always_allow_rule"))
    return [PermissionAsk(
        request_id, request["tool_name"],
        tool_input if isinstance(tool_input, dict) else {},
        rule=_suggested_rule(request.get("permission_suggestions")) if remember else "",
        safety=request.get("decision_reason_type") == "safetyCheck",
        reason=_text(request.get("decision_reason")),
        tool_use_id=_text(request.get("tool_use_id")))]


def parse_control_cancel(obj: dict[str, Any]) -> list[PermissionWithdrawn]:
    request_id = obj.get("request_id")
    return [PermissionWithdrawn(request_id)] if isinstance(request_id, str) else []


def rule_string(tool: str, content: str | None) -> str:
    """A rule as `--allowedTools` takes it: `Bash(npm test:*)`, or the bare tool name."""
    return f"{tool}({content})" if content else tool


def _suggested_rule(suggestions: Any) -> str:
    """The first `addRules` allow suggestion's first rule (the CLI offers one for the tool
    use it asks about), as a rule string."""
    if not isinstance(suggestions, list):
        return ""
    for s in suggestions:
        if (isinstance(s, dict) and s.get("type") == "addRules"
                and s.get("behavior", "allow") == "allow" and isinstance(s.get("rules"), list)):
            for r in s["rules"]:
                if isinstance(r, dict) and isinstance(r.get("toolName"), str):
                    content = r.get("ruleContent")
                    return rule_string(r["toolName"], content if isinstance(content, str)
                                       else None)
    return ""


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


# --- what the bot writes -----------------------------------------------------------------


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode("ascii")


def encode_initialize() -> bytes:
    """The first control request of a session started with `--permission-prompt-tool stdio`."""
    return _line({"type": "control_request", "request_id": INITIALIZE_ID,
                  "request": {"subtype": "initialize", "hooks": None}})


def encode_interrupt(request_id: str) -> bytes:
    """The control request that ends the running turn and keeps the process (R13.6)."""
    return _line({"type": "control_request", "request_id": request_id,
                  "request": {"subtype": "interrupt"}})


def encode_verdict(ask: PermissionAsk, verdict: Verdict, message: str) -> bytes:
    """The `control_response` that answers `ask` with `verdict` (`message`: a deny's)."""
    if verdict is Verdict.DENY:
        return encode_deny(ask.request_id, message)
    return encode_allow(ask, remember=verdict is Verdict.ALWAYS)


def encode_allow(ask: PermissionAsk, *, remember: bool) -> bytes:
    """Allow the tool use as asked. `remember` (Always allow) also adds the request's rule
    to the session, so the same process does not ask again (later sessions get it with
    `--allowedTools`, R13.1). The rule goes to the session only: the bot keeps the rule
    per channel itself, and must not write into the project's settings files."""
    response: dict[str, Any] = {"behavior": "allow", "updatedInput": ask.input}
    if remember and ask.rule:
        tool, _, content = ask.rule.partition("(")
        rule: dict[str, Any] = {"toolName": tool}
        if content:
            rule["ruleContent"] = content[:-1]
        response["updatedPermissions"] = [{"type": "addRules", "rules": [rule],
                                           "behavior": "allow", "destination": "session"}]
    return _answer(ask.request_id, response)


def encode_deny(request_id: str, message: str) -> bytes:
    """Deny: the model reads `message` as the tool's error and the turn goes on (R13.1)."""
    return _answer(request_id, {"behavior": "deny", "message": message, "interrupt": False})


def _answer(request_id: str, response: dict[str, Any]) -> bytes:
    return _line({"type": "control_response",
                  "response": {"subtype": "success", "request_id": request_id,
                               "response": response}})
