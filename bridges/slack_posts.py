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
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.base import KeyValueStore, Post, SendError
from bridges.render import rendered
from bridges.slack_events import (
    error_code,
    parse_progress,
    part_metadata,
    part_name,
    post_failure,
    post_fields,
    post_texts,
    posted_parts,
    progress_key,
    progress_value,
    rate_limit,
)
from bridges.slack_rooms import NETWORK_ERRORS

log = logging.getLogger(__name__)

HISTORY_LOOKBACK = 200  # messages per page searched for a post that may be there
MAX_THREAD_PAGES = 10  # pages of a thread read for one post (2,000 replies)

Exchange = Callable[[str], contextlib.AbstractContextManager[None]]
"""The bridge's watch on the Web API (R6.3): wraps every call, named for its log line."""


class SlackPoster:
    """The bridge's outbound side: `send` of the `Bridge` protocol."""

    def __init__(self, client: AsyncWebClient, kv: KeyValueStore, exchange: Exchange) -> None:
        self._client = client
        self._kv = kv
        self._exchange = exchange

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        """Split below 4,000 rendered characters, render each part as mrkdwn, post them in
        order; the first part's `ts` (see the module docstring)."""
        parts = await rendered(post.text, post_texts)
        fields = post_fields(post)
        progress = progress_key(key)
        done, first = parse_progress(
            await self._kv.get_value(progress) if len(parts) > 1 else None)
        there = await self._posted_parts(room, fields.get("thread_ts")) if maybe_sent else {}
        for index in range(done, len(parts)):
            part = part_name(key, index)
            ts = there.get(part)
            if ts is not None:
                log.info("slack: %s is already in %s; not posting it again", part, room)
            else:
                ts = await self._post(room, parts[index], part, fields)
            first = first or ts
            if index + 1 < len(parts):
                await self._kv.put_value(progress, progress_value(index + 1, first))
        if len(parts) > 1:
            await self._kv.delete_value(progress)  # the post is whole: forget its progress
        return first

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

    async def _post(self, room: str, text: str, part: str, fields: dict[str, str]) -> str:
        """One part posted (`fields`: `post_fields`); its `ts`."""
        try:
            with self._exchange("a post"):
                resp = await self._client.chat_postMessage(
                    channel=room, text=text, metadata=part_metadata(part),
                    unfurl_links=False, unfurl_media=False, **fields)
        except SlackApiError as e:
            raise post_failure(room, e) from None
        except NETWORK_ERRORS as e:
            raise SendError(f"cannot reach Slack to post to {room}: {e}") from None
        return str(resp["ts"])
