"""Posting to Slack: a post's parts in order, under its author's name, in its thread, never
twice (R5.2, R5.6, R5.7, R8.3, R12.1).

Apart from the bridge's connection because posting has rules of its own:

* **The author is the sender, not text.** `username` and an icon per role (scope
  `chat:write.customize`), so a post that starts with a code fence or a heading renders as
  that block (R5.7). A post with a thread goes under its root (`thread_ts`, R12.1), and
  `send` returns the first part's `ts`: the core stores it, and a later reply under that
  message is recognised as this post's thread.
* **Sending never sleeps (R8.3).** The Web API client has no rate-limit retry handler, so a
  429 surfaces at once as `RateLimited(Retry-After)`; the outbox paces and retries. A split
  post remembers how many of its parts were accepted, and the first one's `ts` (in the
  `KeyValueStore`, by `key`), so a retry after a 429 on part 3 does not post parts 1 and 2
  again, even after a restart, and still returns part 1's `ts`.
* **A post is not made twice (R8.3).** Slack has no idempotency key. Each part carries
  message metadata naming it; a post the outbox marks `maybe_sent` is first looked for among
  the channel's latest messages (`conversations.history`) or, for a post in a thread, the
  thread's (`conversations.replies`: a reply is not in the channel's history), and the parts
  found are skipped — their `ts` stands for them.
* **A card's buttons go on its last part** (Block Kit, `bridges.slack_cards`), and `send`
  returns *that* part's `ts` for a post with buttons, since the core edits the card later
  (R13.3); cards are short, so that is nearly always the one part, the thread root too.
* **Edits are paced here as well as by the core (R13.7).** `chat.update` is Tier 3 for the
  whole workspace; an edit the bucket has no token for is `RateLimited` at once, without a
  call Slack would refuse. `edit`, `delete` and `react` fail like `send`; what is already
  so (a post gone, a reaction there or not there) is no error, and `tell` is best effort.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from crewbridge.bridges.base import KeyValueStore, Post, RateLimited, SendError, ThreadRef
from crewbridge.bridges.render import rendered
from crewbridge.bridges.slack_cards import (
    SECTION_TEXT_LIMIT,
    card_blocks,
    one_message,
    reaction_name,
)
from crewbridge.bridges.slack_events import (
    EDIT_PERMANENT_ERRORS,
    PERMANENT_ERRORS,
    SLACK_TEXT_LIMIT,
    error_code,
    parse_progress,
    part_metadata,
    part_name,
    post_fields,
    post_texts,
    posted_parts,
    progress_key,
    progress_value,
    rate_limit,
    refusal,
)
from crewbridge.bridges.slack_pace import TokenBucket
from crewbridge.bridges.slack_rooms import NETWORK_ERRORS

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 200  # messages per page searched for a post that may be there
MAX_THREAD_PAGES = 10  # pages of a thread read for one post (2,000 replies)

Exchange = Callable[[str], contextlib.AbstractContextManager[None]]
"""The bridge's watch on the Web API (R6.3): wraps every call, named for its log line."""


class SlackPoster:
    """The bridge's outbound side: `send`, `edit`, `delete`, `react` and `tell` of the
    `Bridge` protocol; `edits` is the workspace's allowance for `chat.update`."""

    def __init__(self, client: AsyncWebClient, kv: KeyValueStore, exchange: Exchange,
                 edits: TokenBucket) -> None:
        self._client = client
        self._kv = kv
        self._exchange = exchange
        self._edits = edits

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        """Split below 4,000 rendered characters (a card: below a section's 3,000), render
        each part as mrkdwn, post them in order; the first part's `ts`, or for a post with
        buttons the `ts` of the last part, which carries them (see the module docstring)."""
        limit = SECTION_TEXT_LIMIT if post.buttons else SLACK_TEXT_LIMIT
        parts = await rendered(post.text, functools.partial(post_texts, limit=limit))
        fields = post_fields(post)
        progress = progress_key(key)
        done, first = parse_progress(
            await self._kv.get_value(progress) if len(parts) > 1 else None)
        there = await self._posted_parts(room, fields.get("thread_ts")) if maybe_sent else {}
        ts: str | None = None
        for index in range(done, len(parts)):
            part = part_name(key, index)
            ts = there.get(part)
            if ts is not None:
                log.info("slack: %s is already in %s; not posting it again", part, room)
            else:
                last = index + 1 == len(parts)
                blocks = card_blocks(parts[index], post.buttons) if post.buttons and last else []
                ts = await self._post(room, parts[index], part, fields, blocks)
            first = first or ts
            if index + 1 < len(parts):
                await self._kv.put_value(progress, progress_value(index + 1, first))
        if len(parts) > 1:
            await self._kv.delete_value(progress)  # the post is whole: forget its progress
        return ts if post.buttons else first

    async def _posted_parts(self, room: str, thread: str | None) -> dict[str, str]:
        """The parts (`<key>.<i>`) the bot posted among the channel's latest messages, or
        in the thread, with their `ts`.

        If they cannot be read for good (a missing `*:history` scope), the post goes out
        anyway: a message twice is better than a message lost."""
        what = f"the thread {thread} in {room}" if thread else room
        try:
            with self._exchange("a read of recent posts"):
                messages = await (self._thread_messages(room, thread) if thread
                                  else self._channel_messages(room))
        except SlackApiError as e:
            if (limited := rate_limit(e, f"reading {what}")) is not None:
                raise limited from None
            log.warning("slack: cannot read %s to check for a post made before a restart (%s);"
                        " posting it again", what, error_code(e))
            return {}
        except NETWORK_ERRORS as e:
            raise SendError(f"cannot reach Slack to read {what}: {e}") from None
        return posted_parts(messages)

    async def _channel_messages(self, room: str) -> list[dict[str, Any]]:
        resp = await self._client.conversations_history(
            channel=room, limit=HISTORY_LOOKBACK, include_all_metadata=True)
        return list(resp.get("messages") or [])

    async def _thread_messages(self, room: str, root: str) -> list[dict[str, Any]]:
        """A thread's messages. Slack pages them oldest first and a post that may be there is
        among the latest, so the pages are read on, up to `MAX_THREAD_PAGES`."""
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        for _page in range(MAX_THREAD_PAGES):
            resp = await self._client.conversations_replies(
                channel=room, ts=root, limit=HISTORY_LOOKBACK, include_all_metadata=True,
                cursor=cursor)
            messages += resp.get("messages") or []
            cursor = (resp.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                break
        return messages

    async def _post(self, room: str, text: str, part: str, fields: dict[str, str],
                    blocks: list[dict[str, Any]]) -> str:
        """One part posted (`fields`: `post_fields`; `blocks`: a card's, or none); its `ts`."""
        resp = await self._call(f"the post to {room}", lambda: self._client.chat_postMessage(
            channel=room, text=text, metadata=part_metadata(part), unfurl_links=False,
            unfurl_media=False, **fields, **({"blocks": blocks} if blocks else {})))
        assert resp is not None  # nothing is harmless: a refusal raised
        return str(resp["ts"])

    # --- after a post: edits, deletions, reactions, private notices (R13) ----------------

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """`chat.update` of `ref` with the post's text, cut to one message, and its buttons
        (none: the `actions` block goes). Refused at once while the bucket is empty."""
        wait = self._edits.take()
        if wait:
            raise RateLimited(wait, "Slack's allowance for edits (Tier 3) is spent for now")
        text = await rendered(post.text, one_message)
        await self._call(f"the edit of {ref} in {room}", lambda: self._client.chat_update(
            channel=room, ts=ref, text=text, blocks=card_blocks(text, post.buttons)),
            permanent=EDIT_PERMANENT_ERRORS)

    async def delete(self, room: str, ref: str) -> None:
        """`chat.delete`; a post that is gone already is no error."""
        await self._call(f"the deletion of {ref} in {room}",
                         lambda: self._client.chat_delete(channel=room, ts=ref),
                         permanent=EDIT_PERMANENT_ERRORS, harmless={"message_not_found"})

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        """`reactions.add`/`.remove` by the emoji's Slack name; a reaction already there
        (or already gone) is no error."""
        name = reaction_name(emoji)
        if name is None:
            raise SendError(f"no Slack name is known for the emoji {emoji!r}", permanent=True)
        method = self._client.reactions_add if on else self._client.reactions_remove
        await self._call(f"the reaction {name} on {ref} in {room}",
                         lambda: method(channel=room, timestamp=ref, name=name),
                         harmless={"already_reacted", "no_reaction"})

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        """`chat.postEphemeral`: `text` for `user` alone, in the thread when it has a root
        here; best effort, so a failure is logged, never raised (R13.2)."""
        fields = {"thread_ts": thread.root} if thread is not None and thread.root else {}
        mrkdwn = await rendered(text, one_message)
        try:
            await self._call(f"a notice to {user} alone in {room}",
                             lambda: self._client.chat_postEphemeral(
                                 channel=room, user=user, text=mrkdwn, **fields))
        except SendError as e:
            log.warning("slack: %s; it is not shown", e)

    async def _call(self, what: str, call: Callable[[], Awaitable[AsyncSlackResponse]], *,
                    permanent: frozenset[str] = PERMANENT_ERRORS,
                    harmless: frozenset[str] | set[str] = frozenset(),
                    ) -> AsyncSlackResponse | None:
        """One Web API call through the bridge's watch (R6.3), its refusal a `SendError`
        (`refusal`), or None when the error says what was wanted is so already."""
        try:
            with self._exchange(what):
                return await call()
        except SlackApiError as e:
            if error_code(e) in harmless:
                return None
            raise refusal(what, e, permanent) from None
        except NETWORK_ERRORS as e:
            raise SendError(f"cannot reach Slack for {what}: {e}") from None
