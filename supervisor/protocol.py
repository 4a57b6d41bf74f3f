"""Claude Code's stream-json protocol: stdout lines in, typed events out; user messages out.

The session reads the agent's stdout line by line and hands each line here; everything
downstream (the error quarantine, the breaker, auth alerts) works on the events below and
never on raw JSON. The CLI's output is not ours to trust — a version bump can add fields,
drop them or change their types — so `parse_line` never raises: what it cannot read becomes
`Unparsed` (for the log) or nothing at all.

Errors are judged the way the CLI reports them (R10.2): an `assistant` event with a
top-level `error` field is an `ApiError` (its text must never reach a channel), and a turn
failed when its `result` says `is_error: true` — an auth failure ends with
`subtype: "success"`, so `subtype` is carried for the log only.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from crewbridge.supervisor.control import (
    PermissionAsk,
    PermissionWithdrawn,
    parse_control_cancel,
    parse_control_request,
)

UNPARSED_MAX_CHARS = 500
"""Unparsed lines go to the log; a runaway line must not flood it."""

API_ERROR_KINDS = frozenset(
    {
        "authentication_failed",
        "billing_error",
        "rate_limit",
        "invalid_request",
        "server_error",
        "unknown",
    }
)


@dataclass(frozen=True)
class Init:
    """`system`/`init`: the session is up; its id is what `--resume` takes."""

    session_id: str
    model: str


@dataclass(frozen=True)
class AssistantText:
    """One `text` block of an assistant message: candidate output for the channel."""

    text: str


@dataclass(frozen=True)
class ToolUse:
    tool_id: str
    name: str
    input: dict[str, Any] = field(default_factory=dict)  # what the live status shows (R13.7)


@dataclass(frozen=True)
class ToolResult:
    """A tool's answer; `is_error` is the tool's failure, not the turn's."""

    tool_id: str
    is_error: bool


@dataclass(frozen=True)
class ApiError:
    """An assistant event carrying `error`: the CLI's synthetic API-failure message.

    `text` is the raw error the CLI wrote as the message content (e.g. `Not logged in ·
    Please run /login`). It is for the log and the admin room, never for a channel (R5.3).
    """

    kind: str
    text: str


@dataclass(frozen=True)
class ApiRetry:
    """`system`/`api_retry`: the CLI is retrying the API; not yet a failure."""

    attempt: int
    error: str


@dataclass(frozen=True)
class RateLimit:
    """`rate_limit_event`: the plan's limit; `rejected` means no turn can run until
    `resets_at` (seconds since the epoch; None when the CLI does not say) (R13.8)."""

    status: str
    resets_at: float | None = None

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"


@dataclass(frozen=True)
class TurnResult:
    """`result`: the end of a turn. Failed iff `is_error` (never judge by `subtype`)."""

    is_error: bool
    subtype: str
    text: str
    session_id: str | None
    errors: tuple[str, ...]
    queued_turns: int | None = None  # `queued_turn_count`: messages still waiting for a turn
    answered: tuple[str, ...] | None = None
    """`user_message_uuids`: the user messages this turn answered (several when the CLI
    folded messages written during a turn into one); None when the CLI does not say."""
    total_cost_usd: float | None = None
    """The session's running total. Not a turn's cost: it goes on across `--resume` and
    into a fork, and restarts at 0 after a process was killed (CLI 2.1.332)."""
    turn_cost_usd: float | None = None
    """This turn's own cost: `model_usage_since_last_result`'s `costUSD`, summed over the
    models (R13.8); None when the CLI does not say."""
    input_tokens: int = 0  # this turn's `usage`, cache reads and writes included
    output_tokens: int = 0
    duration_s: float | None = None  # `duration_ms`: how long the turn took (R14.3)


@dataclass(frozen=True)
class Unparsed:
    """A stdout line that is not a JSON object (a stray print, a crash trace), truncated."""

    line: str


AgentEvent = (
    Init | AssistantText | ToolUse | ToolResult | ApiError | ApiRetry | RateLimit | TurnResult
    | PermissionAsk | PermissionWithdrawn | Unparsed
)


def parse_line(line: str | bytes) -> list[AgentEvent]:
    """Turn one stdout line into the events it carries, in order; never raises.

    One line can carry several events: an assistant message may hold several text and
    tool-use blocks, a user message several tool results. Types this module does not know
    yield nothing, so a newer CLI's extra events are ignored rather than fatal.
    """
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")  # R5.8: bad bytes become U+FFFD
    stripped = line.strip()
    if not stripped:
        return []
    try:
        obj = json.loads(stripped)
    except (ValueError, RecursionError):
        return [_unparsed(stripped)]
    if not isinstance(obj, dict):
        return [_unparsed(stripped)]
    if _UNCLEAN_ESCAPE.search(stripped):
        obj = _clean(obj)
    kind = obj.get("type")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    return parser(obj) if parser else []


def encode_user_message(text: str, message_id: str | None = None) -> bytes:
    """One stream-json user message as exactly one line for the agent's stdin (R3.1).

    `message_id` is the message's `uuid`: the CLI lists it in the `user_message_uuids` of
    the `result` that answers it, which is how the bot knows which messages a turn answered
    (R8.5). `json.dumps` escapes newlines and (with ASCII output) every non-ASCII
    character, so any text — including lone surrogates a bridge might hand over — stays one
    encodable line.
    """
    message: dict[str, Any] = {"type": "user", "message": {"role": "user", "content": text}}
    if message_id is not None:
        message["uuid"] = message_id
    return (json.dumps(message, separators=(",", ":")) + "\n").encode("ascii")


_AUTH_FAILURE = re.compile(
    r"Not logged in|OAuth token has expired|Invalid API key|authentication_error"
    r"|(?:API Error|HTTP|status(?: code)?)\W{0,3}401\b",
    re.IGNORECASE,
)
_UNKNOWN_SESSION = "No conversation found"


def is_auth_failure(event: AgentEvent) -> bool:
    """Whether an event shows the agent's credentials are missing or expired (R6.2).

    Only error events count: a successful turn whose text discusses "Invalid API key" is
    the agent talking about someone else's bug, not a reason to stop restarting it.
    """
    if isinstance(event, ApiError):
        return event.kind == "authentication_failed" or bool(_AUTH_FAILURE.search(event.text))
    if isinstance(event, TurnResult) and event.is_error:
        return any(_AUTH_FAILURE.search(text) for text in (event.text, *event.errors))
    return False


def is_unknown_session(result: TurnResult) -> bool:
    """Whether a failed resume means the CLI no longer has the session (R4.10)."""
    return result.is_error and any(
        _UNKNOWN_SESSION in text for text in (result.text, *result.errors)
    )


# --- one parser per event type -----------------------------------------------------------


_UNCLEAN_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
"""A JSON escape for NUL or a UTF-16 surrogate: only then can a parsed string be unclean."""
_UNCLEAN_CHAR = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` without NULs, and with lone surrogates as U+FFFD (R5.8).

    JSON may carry `\\ud800` or `\\u0000`; such a string cannot be encoded as UTF-8, so
    storing or posting it would fail and lose the turn. Valid surrogate pairs were already
    joined into one character by the JSON decoder, so any surrogate left is a lone one.
    """
    return _UNCLEAN_CHAR.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {clean_text(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


def _unparsed(line: str) -> Unparsed:
    return Unparsed(line[:UNPARSED_MAX_CHARS])


def _str(value: Any, default: str = "") -> str:
    return value if isinstance(value, str) else default


def _content_blocks(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The message's content as a list of blocks (a bare string is one text block)."""
    message = obj.get("message")
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


def _parse_system(obj: dict[str, Any]) -> list[AgentEvent]:
    subtype = obj.get("subtype")
    if subtype == "init" and isinstance(obj.get("session_id"), str):
        return [Init(session_id=obj["session_id"], model=_str(obj.get("model")))]
    if subtype == "api_retry":
        attempt = obj.get("attempt")
        attempt = attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0
        return [ApiRetry(attempt=attempt, error=_str(obj.get("error")))]
    return []


def _parse_assistant(obj: dict[str, Any]) -> list[AgentEvent]:
    blocks = _content_blocks(obj)
    if obj.get("error") is not None or obj.get("is_api_error_message") is True:
        kind = obj.get("error")
        text = "\n".join(
            block["text"]
            for block in blocks
            if block.get("type") == "text" and isinstance(block.get("text"), str)
        )
        known = isinstance(kind, str) and kind in API_ERROR_KINDS
        return [ApiError(kind=kind if known else "unknown", text=text)]
    events: list[AgentEvent] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "text" and isinstance(block.get("text"), str):
            events.append(AssistantText(block["text"]))
        elif kind == "tool_use":
            tool_input = block.get("input")
            events.append(ToolUse(tool_id=_str(block.get("id")), name=_str(block.get("name")),
                                  input=tool_input if isinstance(tool_input, dict) else {}))
    return events


def _parse_user(obj: dict[str, Any]) -> list[AgentEvent]:
    return [
        ToolResult(tool_id=_str(block.get("tool_use_id")), is_error=block.get("is_error") is True)
        for block in _content_blocks(obj)
        if block.get("type") == "tool_result"
    ]


def _parse_result(obj: dict[str, Any]) -> list[AgentEvent]:
    errors = obj.get("errors")
    session_id = obj.get("session_id")
    queued = obj.get("queued_turn_count")
    return [
        TurnResult(
            is_error=obj.get("is_error") is True,
            subtype=_str(obj.get("subtype")),
            text=_str(obj.get("result")),
            session_id=session_id if isinstance(session_id, str) else None,
            errors=tuple(
                error if isinstance(error, str) else json.dumps(error)
                for error in (errors if isinstance(errors, list) else ())
            ),
            queued_turns=queued if type(queued) is int and queued >= 0 else None,
            answered=_answered(obj),
            total_cost_usd=_non_negative(obj.get("total_cost_usd")),
            turn_cost_usd=_turn_cost(obj.get("model_usage_since_last_result")),
            duration_s=_duration_s(obj.get("duration_ms")),
            **_tokens(obj.get("usage")),
        )
    ]


def _non_negative(value: Any) -> float | None:
    """A finite number of at least 0, else None (a JSON int may be too big for a float)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if 0 <= number < math.inf else None


def _duration_s(ms: Any) -> float | None:
    value = _non_negative(ms)
    return None if value is None else value / 1000


def _turn_cost(by_model: Any) -> float | None:
    if not isinstance(by_model, dict):
        return None
    costs = [_non_negative(m.get("costUSD")) for m in by_model.values() if isinstance(m, dict)]
    return float(sum(c for c in costs if c is not None))


def _tokens(usage: Any) -> dict[str, int]:
    """A result's `usage`: input (with cache reads and writes) and output tokens."""
    if not isinstance(usage, dict):
        return {}

    def count(*keys: str) -> int:
        return sum(v for k in keys if type(v := usage.get(k)) is int and v >= 0)

    return {"input_tokens": count("input_tokens", "cache_creation_input_tokens",
                                  "cache_read_input_tokens"),
            "output_tokens": count("output_tokens")}


def _answered(obj: dict[str, Any]) -> tuple[str, ...] | None:
    """`user_message_uuids` (or the older single `user_message_uuid`), if well formed."""
    many, one = obj.get("user_message_uuids"), obj.get("user_message_uuid")
    if isinstance(many, list) and all(isinstance(u, str) for u in many):
        return tuple(many)
    return (one,) if isinstance(one, str) else None


def _parse_rate_limit(obj: dict[str, Any]) -> list[AgentEvent]:
    info = obj.get("rate_limit_info")
    if not isinstance(info, dict) or not isinstance(info.get("status"), str):
        return []
    resets = info.get("resetsAt")
    ok = isinstance(resets, int | float) and not isinstance(resets, bool) and resets > 0
    at = None if not ok else float(resets) / (1000 if resets > 1e12 else 1)  # ms or s
    return [RateLimit(info["status"], at)]


_PARSERS = {
    "control_request": parse_control_request,
    "control_cancel_request": parse_control_cancel,
    "rate_limit_event": _parse_rate_limit,
    "system": _parse_system,
    "assistant": _parse_assistant,
    "user": _parse_user,
    "result": _parse_result,
}
