"""Matrix, pure: the events behind the cards (R13.1-R13.3, R13.7), and people's reactions.

Matrix has no buttons, no ephemeral messages and no in-place updates of the kind Slack has;
what the cards need is built from what it does have (DESIGN.md "Matrix"):

- an edit is an `m.room.message` whose `m.new_content` is the post rendered as `send`
  renders it, with a `"* "`-prefixed fallback for clients without edits, and
  `m.relates_to` `m.replace` of the *original* (never of an earlier edit). It carries no
  thread relation: the original's thread is kept, and the spec forbids a second relation;
- a button is the bot's own `m.reaction` (`m.annotation` with the emoji as `key`), so a
  person only taps it; a person's reaction is read back as an `Acted` whose `choice` is the
  key as sent (R13.1, R13.6);
- a notice to one person (R13.2) is an `m.notice` that starts by naming them, with a
  mention pill and `m.mentions`, so their client highlights it.

Nothing here awaits or keeps state; `bridges.matrix_posts` and `bridges.matrix_reactions`
do the I/O.
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from crewbridge.bridges.base import Acted, Post, ThreadRef, clean_text
from crewbridge.bridges.matrix_events import (
    HTML_FORMAT,
    PLATFORM,
    EventType,
    MsgType,
    RelType,
    post_contents,
    thread_relation,
)
from crewbridge.bridges.render import to_matrix_html

EDIT_FALLBACK = "* "  # what clients without edits show before the new text


def edit_contents(ref: str, post: Post) -> list[dict[str, Any]]:
    """The edit of the bot's post `ref` into `post` (R13.3, R13.7), one content per part
    of `post`; only the first can replace `ref` (a card or a status line is one part: the
    caller says when more was cut). Empty for a blank post."""
    parts = post_contents(replace(post, thread=None))
    return [{**new,
             "body": EDIT_FALLBACK + new["body"],
             "formatted_body": EDIT_FALLBACK + new["formatted_body"],
             "m.new_content": new,
             "m.relates_to": {"rel_type": str(RelType.REPLACE), "event_id": ref}}
            for new in parts]


def edit_txn_id(ref: str, content: dict[str, Any]) -> str:
    """The transaction id of an edit: the same for a retry of the same edit, so the
    homeserver (which scopes transaction ids to the device) applies it once (R8.3).

    Derived from the content rather than counted: the bridge keeps no count that would
    survive a restart. So an edit back to a text `ref` showed before, within the
    homeserver's memory of transactions (Synapse: 30 min), would be taken for a retry;
    cards and status lines never go back (a status names the time elapsed)."""
    digest = hashlib.sha256(json.dumps([ref, content], sort_keys=True).encode()).hexdigest()
    return f"edit.{digest[:40]}"


def redaction_txn_id(event_id: str) -> str:
    """Taking back `event_id` again (a retry) is the same redaction, not a second one."""
    return f"redact.{hashlib.sha256(event_id.encode()).hexdigest()[:40]}"


def reaction_content(target: str, key: str) -> dict[str, Any]:
    """The bot's reaction `key` on event `target`: a button (R13.1) or a status (R13.7)."""
    return {"m.relates_to": {"rel_type": str(RelType.ANNOTATION), "event_id": target,
                             "key": key}}


def mention_pill(user: str) -> str:
    """The HTML link Matrix clients show as a pill naming `user`."""
    return (f'<a href="https://matrix.to/#/{quote(user, safe="@:")}">'
            f"{html.escape(user, quote=False)}</a>")


def notice_to(user: str, text: str, thread: ThreadRef | None) -> dict[str, Any]:
    """R13.2: a notice for `user` alone, as near as Matrix comes: an `m.notice` in the
    thread that starts by naming them (`@bob:example.org: only approvers may decide`). The
    pill goes into the first paragraph, so it reads as one line."""
    rendered = to_matrix_html(text)
    pill = mention_pill(user) + ": "
    formatted = (f"<p>{pill}{rendered[3:]}" if rendered.startswith("<p>")
                 else f"<p>{pill}</p>{rendered}")
    content: dict[str, Any] = {"msgtype": str(MsgType.NOTICE), "body": f"{user}: {text}",
                               "format": HTML_FORMAT, "formatted_body": formatted,
                               "m.mentions": {"user_ids": [user]}}
    relation = thread_relation(thread)
    if relation is not None:
        content["m.relates_to"] = relation
    return content


@dataclass(frozen=True)
class Reaction:
    """A person's reaction to an event, read from its `m.reaction`; it becomes an `Acted`
    once the bridge has looked up the sender's display name."""

    sender: str
    ref: str  # the event reacted to
    key: str
    event_id: str
    ts: float

    def inbound(self, room: str, *, sender_name: str, is_direct: bool) -> Acted:
        """The core's record of it; `is_direct` is for the same call as `Message.inbound`
        (an act on a card is decided by the card, not by the room)."""
        del is_direct
        return Acted(platform=PLATFORM, room=room, sender=self.sender,
                     sender_name=sender_name, ref=self.ref, choice=self.key,
                     event_id=self.event_id, ts=self.ts)


def read_reaction(source: dict[str, Any], own_user_id: str, now: float) -> Reaction | None:
    """A person's reaction (R13.1, R13.6), or None: the bot's own reactions (its buttons,
    its status marks) never come back as acts, as its messages never come back as input
    (R5.5); a redacted reaction has no content left and is nothing. `now` stands in for a
    missing `origin_server_ts`."""
    sender = source.get("sender", "")
    if source.get("type") != EventType.REACTION or not sender or sender == own_user_id:
        return None
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    target, key = relates.get("event_id"), relates.get("key")
    if relates.get("rel_type") != RelType.ANNOTATION or not isinstance(target, str) \
            or not target or not isinstance(key, str) or not key:
        return None
    return Reaction(sender=sender, ref=target, key=clean_text(key),
                    event_id=str(source.get("event_id", "")),
                    ts=float(source.get("origin_server_ts", now * 1000)) / 1000)
