"""The bot's Matrix posts: sent, edited, taken back, and notices to one person (R5, R13).

Apart from `bridges.matrix` (the connection and the sync loop) because posting has rules of
its own: every request has a transaction id that makes a retry harmless (R8.3), every
failure comes back as `RateLimited` or `SendError` for the outbox (the bridge never
sleeps on one), and a post's buttons are the bot's own reactions on the message that
carries them (`bridges.matrix_reactions`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, RoomSendResponse

from crewbridge.bridges.base import Post, SendError, ThreadRef
from crewbridge.bridges.matrix_cards import edit_contents, edit_txn_id, notice_to
from crewbridge.bridges.matrix_events import (
    EventType,
    ThreadRefused,
    post_contents,
    send_failure,
)
from crewbridge.bridges.matrix_reactions import BotReactions, redact
from crewbridge.bridges.render import rendered

log = logging.getLogger(__name__)


async def rendered_contents(post: Post) -> list[dict[str, Any]]:
    """`post_contents(post)`, off the event loop when the post is long (`rendered`)."""
    return await rendered(post.text, lambda _text: post_contents(post))


class MatrixPosts:
    """`send`, `edit`, `delete` and `tell` for `bridges.matrix.MatrixBridge`, through the
    bridge's client (`client()` raises `SendError` while it is not started)."""

    def __init__(self, client: Callable[[], AsyncClient], reactions: BotReactions):
        self._client = client
        self.reactions = reactions

    async def send(self, room: str, post: Post, key: str) -> str | None:
        """R5.5/R5.6/R5.7/R12.1/R8.3: post as `m.notice` parts (see `post_contents`: the
        author's name line, HTML and a plain body, the thread relation), part `i` under
        transaction id `<key>.<i>` so a retried post is never doubled. Returns the first
        part's event id: a reply in the thread names it (or its thread's root) later.

        R13.1: a post with buttons gets the bot's reaction of each button's emoji on its
        last part (the message that carries them), and `send` returns that part's id: the
        core edits it when the card is decided. A retry after a failed reaction sends the
        same parts again (the same events come back) and adds only the missing reactions.

        A thread the homeserver refuses (`ThreadRefused`) does not lose the post (R5.1): it
        goes to the top level under `<key>.top.<i>`, and a retry after a crash meets the
        same refusal and the same transaction ids, so it is still posted once."""
        try:
            sent = await self._send_parts(room, await rendered_contents(post), key)
        except ThreadRefused as e:
            log.warning("matrix: %s; posting it at the top level instead of in the thread "
                        "of %s", e, post.thread.root if post.thread else None)
            sent = await self._send_parts(
                room, await rendered_contents(replace(post, thread=None)), f"{key}.top")
        if not sent:
            return None
        if not post.buttons:
            return sent[0]
        for button in post.buttons:
            await self.reactions.add(room, sent[-1], button.emoji)
        return sent[-1]

    async def _send_parts(self, room: str, contents: list[dict[str, Any]],
                          key: str) -> list[str]:
        return [await self._send_event(room, content, f"{key}.{i}", in_thread=i == 0)
                for i, content in enumerate(contents)]

    async def _send_event(self, room: str, content: dict[str, Any], tx_id: str, *,
                          in_thread: bool = False) -> str:
        """One `m.room.message`; its event id, or `RateLimited`/`SendError` (a refused
        thread relation: `ThreadRefused`, when `in_thread` says it may be one)."""
        try:
            resp = await self._client().room_send(room, EventType.MESSAGE, content,
                                                  tx_id=tx_id)
        except (ClientError, TimeoutError, OSError) as e:
            raise send_failure(room, e) from None
        if not isinstance(resp, RoomSendResponse):
            raise send_failure(room, resp, in_thread=in_thread and "m.relates_to" in content)
        return resp.event_id

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """R13.3/R13.7: replace the text of the bot's post `ref` (see `edit_contents`),
        under a transaction id derived from `ref` and the new content so a retried edit is
        applied once (`edit_txn_id`); then make the bot's reactions on it the post's
        buttons (a decided card drops them)."""
        contents = edit_contents(ref, post)
        if not contents:
            raise SendError(f"Matrix: an edit of {ref} in {room} to a blank post",
                            permanent=True)
        if len(contents) > 1:
            log.warning("matrix: the edit of %s in %s is longer than one message; the rest "
                        "is cut", ref, room)
        await self._send_event(room, contents[0], edit_txn_id(ref, contents[0]))
        await self.reactions.keep_only(room, ref, (b.emoji for b in post.buttons))

    async def delete(self, room: str, ref: str) -> None:
        """R13.7: redact the bot's post `ref`; one gone already is no error."""
        await redact(self._client(), room, ref)

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        """R13.2: a notice naming `user` in the thread (`notice_to`); best effort, so a
        failure is logged, not raised."""
        try:
            await self._send_event(room, notice_to(user, text, thread),
                                   f"tell.{uuid.uuid4().hex}")
        except SendError as e:
            log.warning("matrix: could not tell %s in %s: %s", user, room, e)
