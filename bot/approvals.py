"""Approval cards, decided without doing anything (R13.1–R13.3): what a card says, which
buttons it offers, who may decide it, and what a person's words or clicks mean.

`bot.approval_ops` carries these out against the store, the outbox and the supervisor.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from crewbridge.bot.model import Platform
from crewbridge.bridges.base import Button
from crewbridge.supervisor.control import Verdict
from crewbridge.supervisor.terminal import plain

SUMMARY_MAX_CHARS = 600
"""A card shows this much of a command or an input; the agent's own record has it all."""


class ApprovalState(StrEnum):
    PENDING = "pending"
    ALLOWED = "allowed"
    ALWAYS = "always"
    DENIED = "denied"
    EXPIRED = "expired"  # no one decided within approval_timeout_s (R13.3)
    WITHDRAWN = "withdrawn"  # the CLI withdrew it, the turn was stopped, the session ended

    @classmethod
    def of(cls, verdict: Verdict) -> ApprovalState:
        return {Verdict.ALLOW: cls.ALLOWED, Verdict.ALWAYS: cls.ALWAYS,
                Verdict.DENY: cls.DENIED}[verdict]


@dataclass(frozen=True)
class Approval:
    """One request a person is asked to decide, as stored (`bot.store_approvals`)."""

    id: int
    agent: str
    channel: str
    thread: int | None
    request_id: str
    tool: str
    input: dict[str, Any]
    rule: str = ""
    safety: bool = False
    askers: tuple[str, ...] = ()
    message: int | None = None
    state: ApprovalState = ApprovalState.PENDING
    decided_by: str = ""
    reason: str = ""
    deadline: float = 0.0


# --- what a card says -------------------------------------------------------------------------

def _short(text: str, limit: int = SUMMARY_MAX_CHARS) -> str:
    text = plain(text).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _size(text: str) -> str:
    lines = text.count("\n") + 1 if text else 0
    return f"{lines} line{'s' * (lines != 1)}, {len(text)} chars"


def summary(tool: str, tool_input: Mapping[str, Any]) -> tuple[str, str]:
    """A readable summary of a tool's input (R13.1): (one line of what it touches, a block
    to show as code, may be ""): the command; the file and the size of the change; the
    URL; else the input as compact JSON."""
    def field(*names: str) -> str:
        return next((str(tool_input[n]) for n in names if isinstance(tool_input.get(n), str)),
                    "")

    if tool == "Bash" and (command := field("command")):
        return _short(field("description"), 200), _short(command)
    if tool in ("Edit", "MultiEdit", "Write", "NotebookEdit") and (path := field(
            "file_path", "notebook_path")):
        if tool == "MultiEdit" and isinstance(tool_input.get("edits"), list):
            change = "".join(str(e.get("new_string", "")) for e in tool_input["edits"]
                             if isinstance(e, dict))
        else:
            change = field("new_string", "content", "new_source")
        return f"`{_short(path, 300)}` ({_size(change)})", ""
    if url := field("url"):
        return f"<{_short(url, 500)}>", ""
    if query := field("query", "pattern", "file_path", "path"):
        return f"`{_short(query, 300)}`", ""
    return "", _short(json.dumps(dict(tool_input), ensure_ascii=False, sort_keys=True))


def _code(block: str) -> str:
    fence = "~~~" if "```" in block else "```"
    return f"{fence}\n{block.replace(fence, '')}\n{fence}"


def card_text(a: Approval) -> str:
    """The card: 🔐, the agent, the tool and what it touches, how to decide; once decided,
    its outcome and who decided (R13.1, R13.3), edited in place."""
    line, block = summary(a.tool, a.input)
    what = f"**{a.agent}** wants to use **{plain(a.tool)}**" + (f": {line}" if line else "")
    body = what + (f"\n{_code(block)}" if block else "")
    if a.state is ApprovalState.PENDING:
        safety = ("\n⚠️ The CLI marks this a safety check: only an admin may decide it."
                  if a.safety else "")
        return f"🔐 {body}{safety}\n{how_to_decide(a)}"
    return f"{OUTCOME_MARK[a.state]} {body}\n{outcome_line(a)}"


def how_to_decide(a: Approval) -> str:
    always = f" · ♾️ always allow `{a.rule}`" if a.rule else ""
    words = " / `always`" if a.rule else ""
    return (f"✅ allow · ❌ deny{always} — press or react, reply `allow` / `deny <reason>`"
            f"{words}, or `/allow {a.id}` (request {a.id}, open until {_clock(a.deadline)})")


OUTCOME_MARK = {
    ApprovalState.ALLOWED: "✅", ApprovalState.ALWAYS: "♾️", ApprovalState.DENIED: "❌",
    ApprovalState.EXPIRED: "⌛", ApprovalState.WITHDRAWN: "↩️"}


def outcome_line(a: Approval) -> str:
    reason = f": {plain(a.reason)}" if a.reason else ""
    match a.state:
        case ApprovalState.ALLOWED:
            return f"Allowed by {a.decided_by}."
        case ApprovalState.ALWAYS:
            return (f"Always allowed by {a.decided_by}: `{a.rule}` is allowed in "
                    f"#{a.channel} from now on.")
        case ApprovalState.DENIED:
            return f"Denied by {a.decided_by}{reason}."
        case ApprovalState.EXPIRED:
            return f"No one decided in time{reason}; denied."
        case _:
            return f"No longer asked ({plain(a.reason) or 'withdrawn'})."


def _clock(ts: float) -> str:
    return time.strftime("%H:%M UTC", time.gmtime(ts))


def buttons(a: Approval) -> tuple[Button, ...]:
    """Allow, Deny and — where the request offers a rule and does not forbid it — Always
    allow (R13.1, R13.2)."""
    offered = [Button(Verdict.ALLOW, "Allow", "✅", "primary"),
               Button(Verdict.DENY, "Deny", "❌", "danger")]
    if a.rule:
        offered.append(Button(Verdict.ALWAYS, "Always allow", "♾️"))
    return tuple(offered)


def deny_message(by: str, reason: str) -> str:
    """What the model reads as the tool's error when a person denies (DESIGN.md)."""
    return f"Denied from chat by {by}" + (f": {reason}" if reason else "") + "."


def expired_message(timeout_s: float) -> str:
    return (f"No one decided within {timeout_s / 60:.0f} min, so the bot denied it; ask "
            f"again if it is still needed.")


# --- who may decide (R13.2) ---------------------------------------------------------------------


def may_decide(platform: str, sender: str, sender_name: str, a: Approval, *,
               approvers: Collection[str], admins: Collection[str]) -> bool:
    """The channel's approvers and the admin users; with no approvers listed, the people
    the turn answers in their place; a safety check, admins only. The console is the
    host's own and decides everything; with no approvers and no admins listed, anyone."""
    if platform == Platform.CONSOLE or sender in admins:
        return True
    if a.safety:
        return False
    if sender in approvers:
        return True
    if approvers:
        return False
    return sender_name in a.askers or not admins


def refusal(sender_name: str, a: Approval) -> str:
    who = "an admin" if a.safety else f"the people who may approve for #{a.channel}"
    return f"{sender_name}, only {who} can decide request {a.id}; nothing changed."


# --- what people's words and clicks mean ----------------------------------------------------


@dataclass(frozen=True)
class TypedVerdict:
    """A decision someone typed: the verdict, the request's number when given, a reason."""

    verdict: Verdict
    number: int | None = None
    reason: str = ""


_WORDS = re.compile(r"[/!]?(?P<verb>allow|deny|always)(?:\s+#?(?P<n>\d+)\b)?"
                    r"(?:\s+(?P<reason>.*))?", re.IGNORECASE | re.DOTALL)


def parse_decision(text: str) -> TypedVerdict | None:
    """`/allow 3`, `!deny 3 not now`, or, as a reply to a card, `allow`, `deny <reason>`,
    `always`. Only a deny has a reason; `allow` followed by other words is a sentence."""
    m = _WORDS.fullmatch(text.strip())
    if m is None:
        return None
    verdict = Verdict(m["verb"].lower())
    reason = (m["reason"] or "").strip()
    if reason and verdict is not Verdict.DENY:
        return None
    return TypedVerdict(verdict, int(m["n"]) if m["n"] else None, reason)


def is_numbered_command(text: str) -> bool:
    """`/allow 3` or `!allow 3`: meant for the bot wherever it is typed."""
    d = parse_decision(text)
    return d is not None and d.number is not None and text.strip()[0] in "/!"


_EMOJI = {"✅": Verdict.ALLOW, "✔": Verdict.ALLOW, "👍": Verdict.ALLOW, "❌": Verdict.DENY,
          "👎": Verdict.DENY, "♾": Verdict.ALWAYS}


def verdict_of(choice: str) -> Verdict | None:
    """A button's action (Slack) or a reaction's key (Matrix, with or without U+FE0F)."""
    if choice in {v.value for v in Verdict}:
        return Verdict(choice)
    return _EMOJI.get(choice.replace("\ufe0f", ""))
