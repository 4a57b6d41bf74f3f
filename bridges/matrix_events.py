"""Matrix, pure: sync payloads → the core's events, nio error responses → `SendError` (R9.2).

The matrix-nio split, one level up: nio parses HTTP into response values, this module turns
those values (and the raw event dicts of a sync) into crewbridge's records and decides what
each event is, and only `bridges.matrix` touches the network. Nothing here awaits, reads the
clock (callers pass `now`) or keeps state, so every rule is a table test away:

- only a person's `m.text`/`m.emote` becomes `Inbound`; the bot's own events, every
  `m.notice` (bot output, ours or another bot's), edits, media and empty bodies do not (R5.5);
- a room joined within a batch starts its news after the bot's invite, else its join (R8.2);
- a message in a thread (`m.thread`) names its root; a plain reply (`m.in_reply_to` alone)
  is a top-level message, as Element shows it in the main timeline (R12.2); a real reply
  (not a thread's fallback) names the event it answers (R13.1);
- a post is `m.notice` parts, each with the author's bold name line (R5.7) and, in a
  thread, the `m.thread` relation with the reply fallback (R12.1);
- invites are accepted from `allow_invites_from` only (R1.5); `is_direct` on the invite marks
  a direct room (R1.6);
- a 429 or `M_LIMIT_EXCEEDED` is `RateLimited` with the server's wait (`retry_after_ms`, else
  the `Retry-After` header); a refusal no retry can fix is a permanent `SendError` (R8.3),
  and a refused thread relation is `ThreadRefused`, so the post goes to the top level (R5.1).
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from nio import ErrorResponse, InviteMemberEvent

from crewbridge.bridges.base import Inbound, Post, RateLimited, SendError, ThreadRef, clean_text
from crewbridge.bridges.render import MATRIX_LIMIT_BYTES, matrix_measure, to_matrix_html
from crewbridge.bridges.split import split_message

PLATFORM = "matrix"
MAX_EVENT_BYTES = 65_536  # Synapse refuses larger events; parts stay far below (render.py)
HTML_FORMAT = "org.matrix.custom.html"
DEFAULT_RETRY_AFTER_S = 5.0  # nio's own fallback when a 429 names no wait
PERMANENT_STATUSES = frozenset({400, 403, 404, 413})
"""HTTP statuses of a refused post that no retry can fix; the outbox gives these up."""


class EventType(StrEnum):
    MESSAGE = "m.room.message"
    MEMBER = "m.room.member"
    ENCRYPTED = "m.room.encrypted"
    REACTION = "m.reaction"


class MsgType(StrEnum):
    TEXT = "m.text"
    EMOTE = "m.emote"
    NOTICE = "m.notice"  # bot output: never a prompt (R5.5)


INBOUND_MSGTYPES = frozenset({MsgType.TEXT, MsgType.EMOTE})


class Membership(StrEnum):
    INVITE = "invite"
    JOIN = "join"


class RelType(StrEnum):
    REPLACE = "m.replace"  # an edit
    THREAD = "m.thread"
    ANNOTATION = "m.annotation"  # a reaction


# --- errors ------------------------------------------------------------------------------


def http_status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    return getattr(transport, "status", None)


def describe(resp: Any) -> str:
    """A short, token-free description of a failed nio call (a response or an exception)."""
    if isinstance(resp, ErrorResponse):
        status = http_status(resp)
        code = resp.status_code or (f"HTTP {status}" if status else "error")
        if resp.message and resp.message != "unknown error":
            return f"{code}: {resp.message}"
        return code if status is None or code.startswith("HTTP") else f"{code} (HTTP {status})"
    if isinstance(resp, BaseException):
        return f"{type(resp).__name__}: {resp}" if str(resp) else type(resp).__name__
    return type(resp).__name__


def is_rate_limited(resp: Any) -> bool:
    return isinstance(resp, ErrorResponse) and (
        resp.status_code == "M_LIMIT_EXCEEDED" or http_status(resp) == 429)


def retry_after_s(resp: ErrorResponse) -> float:
    """Seconds to wait from a 429: `retry_after_ms` in the body, else the `Retry-After`
    header (nio reads only the former), else nio's 5 s."""
    if resp.retry_after_ms:
        return max(0.001, resp.retry_after_ms / 1000)
    transport = resp.transport_response
    header = transport.headers.get("Retry-After") if transport is not None else None
    if header:
        with contextlib.suppress(ValueError):
            return max(0.001, float(header))
    return DEFAULT_RETRY_AFTER_S


class ThreadRefused(SendError):
    """The homeserver refused a post's thread relation (HTTP 400: the root is itself a
    relation, or unknown). The bridge then posts it at the top level: shown out of its
    thread is better than not shown (R5.1)."""

    def __init__(self, message: str):
        super().__init__(message, permanent=True)


def send_failure(room: str, failure: Any, *, in_thread: bool = False) -> SendError:
    """What a failed `room_send` means to the outbox: a network exception or an error
    response in, `RateLimited` or `SendError` (permanent when no retry can help) out; a
    400 for the first event of a post in a thread is `ThreadRefused`."""
    if is_rate_limited(failure):
        return RateLimited(retry_after_s(failure), f"Matrix: rate limited in {room}")
    message = f"Matrix: sending to {room} failed: {describe(failure)}"
    if isinstance(failure, BaseException):
        return SendError(message)
    if in_thread and http_status(failure) == 400:
        return ThreadRefused(message)
    return SendError(message, permanent=http_status(failure) in PERMANENT_STATUSES)


# --- requests ----------------------------------------------------------------------------


def sync_filter(timeline_limit: int) -> dict[str, Any]:
    """Only room timelines and state: no presence or typing, which would wake an idle bot."""
    return {
        "presence": {"not_types": ["*"]},
        "room": {
            "timeline": {"limit": timeline_limit},
            "ephemeral": {"not_types": ["*"]},
        },
    }


def name_lines(author: str) -> tuple[str, str]:
    """R5.7: the author's name as a line of its own, plain and HTML, to go before each part.

    HTML: a bold paragraph (`<p><strong>name</strong></p>`), so the rendered text after it
    starts a block of its own: a post that opens with a code fence, a heading or a table
    renders as that block, not glued to the name. Plain: `name:` and a line break — the
    plain `body` is what notifications, room-list previews and clients without HTML show
    (a preview folds the break into a space: "webui: got it"), and the markdown after it
    keeps its first line, so a fence still opens a fence. No `**name**`: in plain text the
    asterisks would show. An empty author has no name line.
    """
    if not author:
        return "", ""
    return f"{author}:\n", f"<p><strong>{html.escape(author, quote=False)}</strong></p>"


def thread_relation(thread: ThreadRef | None) -> dict[str, Any] | None:
    """R12.1: the `m.relates_to` of a post in a thread: `m.thread` to the root, with the
    reply fallback (`is_falling_back`, `m.in_reply_to` the thread's latest post, else the
    root) that clients without threads show as a reply. None for a top-level post."""
    if thread is None or thread.root is None:
        return None
    return {"rel_type": str(RelType.THREAD), "event_id": thread.root, "is_falling_back": True,
            "m.in_reply_to": {"event_id": thread.latest or thread.root}}


def post_contents(post: Post) -> list[dict[str, Any]]:
    """The `m.room.message` contents of one post, one per part, each an `m.notice` so no bot
    takes it as input (R5.5), with a plain body and its HTML (R5.6).

    Every part carries the author's name line (R5.7: whoever reads part 2 alone still sees
    who wrote it) and the post's thread relation (R12.1: every part is in the thread).
    `matrix_measure` counts body and HTML, and the name line's bytes are taken off the
    budget, so each event stays well under Synapse's limit (R5.2).
    """
    plain_name, html_name = name_lines(post.author)
    limit = MATRIX_LIMIT_BYTES - len(plain_name.encode("utf-8", "surrogatepass")) \
        - len(html_name.encode("utf-8", "surrogatepass"))
    relation = thread_relation(post.thread)
    contents: list[dict[str, Any]] = []
    for part in split_message(post.text, limit, measure=matrix_measure):
        content: dict[str, Any] = {"msgtype": str(MsgType.NOTICE), "body": plain_name + part,
                                   "format": HTML_FORMAT,
                                   "formatted_body": html_name + to_matrix_html(part)}
        if relation is not None:
            content["m.relates_to"] = relation
        contents.append(content)
    return contents


# --- invites and rooms -------------------------------------------------------------------


def allowed_inviter(user_id: str, allow: Iterable[str]) -> bool:
    """R1.5: an entry is a full user id (`@alice:example.org`) or a server suffix
    (`:example.org`); an empty list allows no one (bound rooms are still joined at start-up)."""
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith(":"):
            if user_id.endswith(entry):
                return True
        elif user_id == entry:
            return True
    return False


@dataclass(frozen=True)
class Invite:
    """Who invited the bot to a room, and whether as a direct room (R1.6)."""

    inviter: str | None
    is_direct: bool

    def accepted(self, allow: Iterable[str]) -> bool:
        return self.inviter is not None and allowed_inviter(self.inviter, allow)


def read_invite(invite_state: Iterable[Any], own_user_id: str) -> Invite:
    """R1.6: only the invite's own `m.room.member` event carries `is_direct`. nio's
    `InviteMemberEvent` pops `content` out of `.source`, so its attributes are read."""
    invite = next((e for e in invite_state if isinstance(e, InviteMemberEvent)
                   and e.state_key == own_user_id and e.membership == Membership.INVITE), None)
    if invite is None:
        return Invite(None, is_direct=False)
    return Invite(invite.sender, is_direct=bool(invite.content.get("is_direct")))


def start_of_news(events: list[dict[str, Any]], own_user_id: str) -> int | None:
    """Where a room's news starts when the bot joined it within this batch: after its
    invite (what was said between invite and join was said to the bot, e.g. the first
    line of a new DM), else after its join; None when the bot was already in the room.
    Anything earlier is old history and never reaches the agents."""
    own = [(i, (e.get("content") or {}).get("membership")) for i, e in enumerate(events)
           if e.get("type") == EventType.MEMBER and e.get("state_key") == own_user_id]
    joins = [i for i, m in own if m == Membership.JOIN]
    if not joins:
        return None
    invites = [i for i, m in own if m == Membership.INVITE and i < joins[-1]]
    return (invites[-1] if invites else joins[-1]) + 1


# --- messages ----------------------------------------------------------------------------


def is_encrypted(source: dict[str, Any]) -> bool:
    return source.get("type") == EventType.ENCRYPTED


def localpart(user_id: str) -> str:
    """`@alice:example.org` → `alice`: the name of last resort."""
    return user_id.lstrip("@").split(":", 1)[0]


def strip_reply_fallback(body: str) -> str:
    """Drop the `> <@user> quoted…` lines a reply carries in its plain body. Only a quote
    that starts by naming its sender is a fallback: a person's own quote is kept."""
    lines = body.split("\n")
    if not lines[0].startswith("> <"):
        return body
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i and i < len(lines) and lines[i] == "":
        return "\n".join(lines[i + 1:])
    return body


@dataclass(frozen=True)
class Message:
    """A person's message, read from its event; it becomes an `Inbound` once the bridge
    has looked up the sender's display name (which may take a request)."""

    sender: str
    text: str
    event_id: str
    ts: float
    thread: str | None
    reply_to: str | None = None

    def inbound(self, room: str, *, sender_name: str, is_direct: bool) -> Inbound:
        return Inbound(platform=PLATFORM, room=room, sender=self.sender,
                       sender_name=sender_name, text=self.text, event_id=self.event_id,
                       ts=self.ts, is_direct=is_direct, thread=self.thread,
                       reply_to=self.reply_to)


def replied_to(relates: dict[str, Any]) -> str | None:
    """The event a person really replied to (R13.1: a reply `allow` to a card decides it),
    or None. In a thread every message carries `m.in_reply_to` as a fallback for clients
    without threads, marked `is_falling_back`: that one is no reply. A reply inside a
    thread (Element's "Reply" there) has `is_falling_back` false or absent."""
    reply = relates.get("m.in_reply_to")
    if not isinstance(reply, dict) or relates.get("is_falling_back") is True:
        return None
    event_id = reply.get("event_id")
    return event_id if isinstance(event_id, str) and event_id else None


def read_message(source: dict[str, Any], own_user_id: str, now: float) -> Message | None:
    """A person's message, or None for any event that is not one (R5.5). `now` stands in
    for a missing `origin_server_ts`.

    `thread` is the root of an `m.thread` relation (R12.2). A plain reply (`m.in_reply_to`
    without `m.thread`) is a top-level message: Element shows it in the main timeline, and
    which thread the replied-to event is in would take a request to find out. `reply_to`:
    see `replied_to`. An edit (`m.replace`, also one inside a thread) is never a new
    message (R8.1)."""
    sender = source.get("sender", "")
    if source.get("type") != EventType.MESSAGE or sender == own_user_id:
        return None
    content = source.get("content") or {}
    body = content.get("body")
    if isinstance(body, str):
        body = clean_text(body)  # R5.8: JSON may carry lone surrogates and NULs
    if content.get("msgtype") not in INBOUND_MSGTYPES or not isinstance(body, str) \
            or not body.strip():
        return None  # m.notice (bots), media, redacted events
    relates = content.get("m.relates_to") or {}
    if relates.get("rel_type") == RelType.REPLACE:
        return None  # an edit; the original was already delivered
    if "m.in_reply_to" in relates:
        body = strip_reply_fallback(body)
    thread = relates.get("event_id") if relates.get("rel_type") == RelType.THREAD else None
    return Message(sender=sender, text=body, event_id=str(source.get("event_id", "")),
                   ts=float(source.get("origin_server_ts", now * 1000)) / 1000, thread=thread,
                   reply_to=replied_to(relates))
