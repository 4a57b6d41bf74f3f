"""Slack, pure: event payloads → the core's events, API errors → `SendError` (R9.1).

`bridges.slack` does the I/O (bolt, the socket, the Web API); what a payload or an error
means is decided here, without awaiting, the clock or state, so each rule is a table test:

- only a person writing becomes `Inbound`: the bot's own and other bots' messages, and
  every subtype that is an edit, a deletion, a join notice or an integration post, do not
  (R5.5); Slack's markup becomes the plain text the core routes on (R2.2);
- `member_joined_channel` for the bot is `RoomJoined` (R1.5); an IM is a direct room (R1.6);
- a 429 is `RateLimited(Retry-After)`; an error no retry can fix is a permanent `SendError`
  (R8.3);
- a post is shown under its author's name, with an icon per kind of author, in its thread
  (R5.7, R12.1); each part carries metadata naming it, which is how a post that may already
  be in the channel or thread is recognised before it is posted again (R8.3).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from slack_sdk.errors import SlackApiError

from crewbridge.bridges.base import (
    AuthorRole,
    Inbound,
    Post,
    RateLimited,
    RoomJoined,
    RoomUnresolvable,
    SendError,
    clean_text,
)
from crewbridge.bridges.render import SLACK_LIMIT_CHARS, slack_measure, to_slack_mrkdwn
from crewbridge.bridges.split import split_message

PLATFORM = "slack"
SLACK_TEXT_LIMIT = SLACK_LIMIT_CHARS - 100
"""Rendered characters per post: a little headroom below Slack's advised 4,000 keeps every
part clearly under it (R5.2)."""

PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
"""Message subtypes that are a person writing; every other subtype is an edit, a deletion,
a join notice, a bot or integration post, … and is not input (R5.5)."""

PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "account_inactive", "token_revoked", "token_expired", "missing_scope", "no_permission",
    "restricted_action", "msg_too_long", "no_text", "invalid_blocks", "team_access_not_granted",
    "ekm_access_denied", "channel_is_archived", "cannot_reply_to_message",
})
"""`chat.postMessage` errors that no retry can fix; the outbox gives these up."""

EDIT_PERMANENT_ERRORS = PERMANENT_ERRORS | {
    "message_not_found", "cant_update_message", "cant_delete_message", "edit_window_closed"}
"""`chat.update`/`chat.delete` errors no retry can fix: the message is gone or not the
bot's (R13.3, R13.7)."""

POST_METADATA_TYPE = "crewbridge_post"
"""The metadata event type that names a part the bot posted (`<key>.<i>`)."""

ROLE_ICONS = {
    AuthorRole.BOT: ":robot_face:",
    AuthorRole.LEAD: ":compass:",
    AuthorRole.WORKER: ":hammer_and_wrench:",
    AuthorRole.FORK: ":thread:",
    AuthorRole.PERSON: ":bust_in_silhouette:",
}
"""The icon beside a post's `username`, by who it speaks for (R5.7)."""

USERNAME_LIMIT = 80  # Slack's longest display name; a longer `username` is cut

WANTED_SCOPES = {
    "chat:write.customize": "posts show as the app and not under each agent's name",
    "reactions:write": "people's messages get no 👀 ✅ ⏸️ ❌ saying how their turn stands",
}
"""Scopes beyond posting at all that the bridge relies on, checked at start-up (and by
`crewbridge check --online`), each with what is lost without it: without
`chat:write.customize` Slack ignores `username`, so every post shows as the app (R5.7);
without `reactions:write` the bot cannot react to a person's message (R13.7)."""

DEFAULT_RETRY_AFTER_S = 1.0  # a 429 without a usable Retry-After header
IM = "im"  # the `channel_type` of a direct conversation with the bot

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


class SocketSignal(StrEnum):
    """The Socket Mode messages that say something about the link (R6.3)."""

    HELLO = "hello"  # connected
    DISCONNECT = "disconnect"  # Slack is about to close this socket


def socket_signal(data: Any) -> SocketSignal | None:
    """What a raw websocket text message says about the link, if anything."""
    try:
        return SocketSignal(json.loads(data).get("type"))
    except (TypeError, ValueError, AttributeError):  # not JSON, not an object, another type
        return None


def answered_since(baseline: float | None, last_pong: float | None) -> bool:
    """Whether a ping was answered on the socket Slack last said `hello` on (R6.3).

    The SDK's `last_ping_pong_time` is the send time of the last ping answered, but the SDK
    also sets it itself when it sends a ping while it is None; so `baseline` is its first
    value seen since the hello that is not None, and only a later ping answered (a larger
    value) is proof."""
    return baseline is not None and last_pong is not None and last_pong > baseline


def silent_s(last_pong: float | None, now: float) -> float:
    """How long the socket had been silent when it was found lost: since the last ping
    answered (0 when none was, which dates nothing back)."""
    return 0.0 if last_pong is None else max(0.0, now - last_pong)


# --- inbound -----------------------------------------------------------------------------


def slack_to_plain(text: str, names: Mapping[str, str], bot_user_id: str) -> str:
    """Turn Slack's message markup into the plain text the core routes on.

    A leading mention of the bot (`<@UBOT> do this`) is how people address it, not content,
    so it is removed, as are its other mentions; `<@U123>` becomes `@name` so routing sees
    names (R2.2); channel references, `<!here>`-style specials and links become their
    readable form; and Slack's three HTML entities are unescaped last.
    """
    text = re.sub(rf"^\s*<@{bot_user_id}(?:\|[^>]*)?>[\s:,]*", "", text)
    text = re.sub(rf"\s?<@{bot_user_id}(?:\|[^>]*)?>", "", text)
    text = _USER_MENTION.sub(lambda m: "@" + names.get(m[1], m[2] or m[1]), text)
    text = _CHANNEL_REF.sub(lambda m: "#" + (m[2] or m[1]), text)
    text = _SPECIAL.sub(lambda m: "@" + m[1], text)
    text = _LINK.sub(lambda m: m[1] if not m[2] or m[2] == m[1] else f"{m[2]} ({m[1]})", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def is_person_message(event: Mapping[str, Any], bot_user_id: str | None) -> bool:
    """R5.5: a person writing, not the bot, another bot or a subtype such as an edit."""
    return (event.get("subtype") in PERSON_SUBTYPES and not event.get("bot_id")
            and bool(event.get("user")) and event.get("user") != bot_user_id)


def names_wanted(event: Mapping[str, Any], bot_user_id: str) -> list[str]:
    """The users whose names an `Inbound` of `event` needs: the sender and those mentioned."""
    mentioned = [uid for uid, _ in _USER_MENTION.findall(str(event.get("text") or ""))
                 if uid != bot_user_id]
    return list(dict.fromkeys([event["user"], *mentioned]))


def to_inbound(body: Mapping[str, Any], event: Mapping[str, Any], names: Mapping[str, str],
               bot_user_id: str) -> Inbound | None:
    """A person's message as an `Inbound` (None when nothing is left once the bot's mention
    is removed). `names` holds `names_wanted(event)`; `event_id` is the envelope's, so a
    redelivery is recognised (R8.1), and `ref` its `ts`, by which a reply names it as its
    thread's root (R12). A reply in a thread (`thread_ts` ≠ `ts`, a `thread_broadcast`
    too) names the thread; a thread's first message is not "in" the thread. Text that is
    not valid Unicode is cleaned (R5.8): a message of NULs alone is nothing."""
    text = clean_text(slack_to_plain(str(event.get("text") or ""), names, bot_user_id)).strip()
    if not text:
        return None
    ts, thread = str(event["ts"]), event.get("thread_ts")
    event_id = str(body.get("event_id") or ts)
    return Inbound(
        platform=PLATFORM, room=event["channel"], sender=event["user"],
        sender_name=names.get(event["user"], event["user"]), text=text,
        event_id=event_id, ts=float(ts), is_direct=event.get("channel_type") == IM,
        thread=str(thread) if thread and thread != ts else None,
        ref=ts if ts != event_id else "")


def room_joined(event: Mapping[str, Any], bot_user_id: str | None) -> RoomJoined | None:
    """R1.5: the bot was added to a channel (someone else joining is no event)."""
    if event.get("user") != bot_user_id:
        return None
    return RoomJoined(PLATFORM, room=event["channel"], inviter=event.get("inviter"))


def display_name(user: Mapping[str, Any], user_id: str) -> str:
    """A person's name from `users.info`, most specific first."""
    profile = user.get("profile") or {}
    return str(profile.get("display_name") or profile.get("real_name")
               or user.get("real_name") or user.get("name") or user_id)


def channel_id(ref: str, channel: Mapping[str, Any] | None) -> str:
    """R1.2: the id of a looked-up channel the bot can use, or `RoomUnresolvable` saying
    what to do."""
    if channel is None:
        raise RoomUnresolvable(
            f"Slack channel {ref} was not found (private channels are visible only "
            "after the bot is invited)")
    if not channel.get("is_im") and not channel.get("is_member", False):
        raise RoomUnresolvable(
            f"Slack channel {ref} exists but the bot is not a member: "
            "invite it with /invite @crewbridge in that channel")
    return str(channel["id"])


def missing_scopes(granted: str | None) -> list[str]:
    """The `WANTED_SCOPES` a token lacks, from Slack's `X-OAuth-Scopes` header (absent:
    Slack did not say, so nothing is reported missing)."""
    if granted is None:
        return []
    have = {scope.strip() for scope in granted.split(",")}
    return [scope for scope in WANTED_SCOPES if scope not in have]


# --- errors ------------------------------------------------------------------------------


def error_code(e: SlackApiError) -> str:
    data = e.response.data
    return str(data.get("error", "unknown_error")) if isinstance(data, dict) else "unknown_error"


def retry_after_s(e: SlackApiError) -> float:
    try:
        return max(0.0, float(e.response.headers.get("Retry-After", DEFAULT_RETRY_AFTER_S)))
    except ValueError:
        return DEFAULT_RETRY_AFTER_S


def rate_limit(e: SlackApiError, what: str) -> RateLimited | None:
    """`RateLimited` when `e` is a 429, else None."""
    return RateLimited(retry_after_s(e), f"Slack rate-limited {what}") \
        if e.response.status_code == 429 else None


def refusal(what: str, e: SlackApiError,
            permanent: frozenset[str] = PERMANENT_ERRORS) -> SendError:
    """What a refused call (`what`: "the post to C…") means to the outbox (R8.3): a 429 is
    `RateLimited`; an error in `permanent` is given up."""
    limited = rate_limit(e, what)
    if limited is not None:
        return limited
    code = error_code(e)
    return SendError(f"Slack refused {what} ({code})", permanent=code in permanent)


# --- posts -------------------------------------------------------------------------------


def post_texts(text: str, limit: int = SLACK_TEXT_LIMIT) -> list[str]:
    """The mrkdwn of each part of a post, each at most `limit` rendered characters. The
    split is made on the markdown (R5.2), so a code block cut in two is closed and reopened
    and every part renders on its own (R5.6)."""
    return [to_slack_mrkdwn(part) for part in split_message(text, limit, measure=slack_measure)]


def post_fields(post: Post) -> dict[str, str]:
    """The `chat.postMessage` arguments that say who speaks and where: the author as the
    sender's name with its role's icon (R5.7; an empty author shows as the app itself),
    and the thread's root (R12.1; none: the top level)."""
    fields = {}
    if post.author:
        fields.update(username=post.author[:USERNAME_LIMIT], icon_emoji=ROLE_ICONS[post.role])
    if post.thread is not None and post.thread.root:
        fields["thread_ts"] = post.thread.root
    return fields


def part_name(key: str, index: int) -> str:
    return f"{key}.{index}"


def progress_key(key: str) -> str:
    """The key-value entry that keeps how far a split post got: `progress_value`."""
    return f"slack.sent_parts.{key}"


def progress_value(parts_done: int, first_ts: str | None) -> str:
    """How many parts of a split post were accepted, and the first one's `ts`: a retry
    that resumes at part 3 still returns the id of part 1, the post's thread root (R12)."""
    return f"{parts_done} {first_ts}" if first_ts else str(parts_done)


def parse_progress(value: str | None) -> tuple[int, str | None]:
    """`progress_value` read back; nothing kept is nothing done."""
    done, _, first_ts = (value or "0").partition(" ")
    return int(done), first_ts or None


def part_metadata(part: str) -> dict[str, Any]:
    return {"event_type": POST_METADATA_TYPE, "event_payload": {"part": part}}


def posted_parts(messages: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """The parts (`<key>.<i>`) the bot posted among a channel's or a thread's messages, each
    with its `ts` (R8.3)."""
    parts = {}
    for message in messages:
        metadata = message.get("metadata") or {}
        if metadata.get("event_type") == POST_METADATA_TYPE:
            parts[str((metadata.get("event_payload") or {}).get("part"))] = str(message.get("ts"))
    return parts
