"""Messages the bot cannot decrypt (R15.3): it asks the sender's devices for the key, routes
the message if the key comes, and otherwise, after `wait_s` (30 s), posts one notice asking
the sender to write it again. Nothing is routed from a message while it is unreadable.

Why the request is made here and not with nio's `request_room_key`: nio addresses it to the
bot's *own* devices (`as_key_request(own user id)`), and the bot has no other device that
could answer. The `m.room_key_request` goes to every device of the sender instead, the
only ones that hold the session. A key that comes back as an `m.room_key` is taken by nio
and the message is read after the next sync; nio 0.26 takes an `m.forwarded_room_key` only
from the bot's own verified devices, so a client that answers with a forward is still not
read, and the notice asks the person to write again.

What is pending lives in memory: after a restart an unreadable message of before is past
the saved sync position and is not asked about again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from aiohttp import ClientError
from nio import AsyncClient, EncryptionError, MegolmEvent, ToDeviceResponse

from crewbridge.bridges.base import ThreadRef
from crewbridge.bridges.matrix_events import RelType, describe

log = logging.getLogger(__name__)

WAIT_S = 30.0
REMEMBERED = 1000  # events already asked about, so a batch delivered again asks once
ASK_AGAIN = ("I could not decrypt your message: its key never reached this bot's device. "
             "Please write it again.")

Tell = Callable[[str, str, str, ThreadRef | None], Awaitable[None]]
Readable = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class _Pending:
    room: str
    event: MegolmEvent
    timer: asyncio.Task[None]


def thread_of(source: dict[str, Any]) -> ThreadRef | None:
    """The thread an encrypted event is in: its relation stays outside the ciphertext."""
    relates = (source.get("content") or {}).get("m.relates_to") or {}
    root = relates.get("event_id")
    if relates.get("rel_type") != RelType.THREAD or not isinstance(root, str):
        return None
    return ThreadRef(root=root, number=0, latest=str(source.get("event_id") or root))


class Unreadable:
    """`seen(room, source)` for each event nio could not decrypt, `retry(readable)` after
    each sync, `stop()` at the end."""

    def __init__(self, client: Callable[[], AsyncClient], own_user_id: str, tell: Tell, *,
                 wait_s: float = WAIT_S):
        self._client = client
        self.own_user_id = own_user_id
        self._tell = tell
        self.wait_s = wait_s
        self._pending: dict[str, _Pending] = {}
        self._asked: deque[str] = deque(maxlen=REMEMBERED)

    async def seen(self, room: str, source: dict[str, Any]) -> None:
        event = MegolmEvent.from_dict(source)
        if not isinstance(event, MegolmEvent) or event.sender == self.own_user_id \
                or event.event_id in self._asked:
            return
        event.room_id = room
        self._asked.append(event.event_id)
        log.warning("matrix: cannot decrypt %s from %s in %s; asking their devices for the "
                    "key", event.event_id, event.sender, room)
        self._pending[event.event_id] = _Pending(room, event, asyncio.create_task(
            self._expire(event.event_id, thread_of(source)), name="matrix-unreadable"))
        await self._request_key(event)

    async def _request_key(self, event: MegolmEvent) -> None:
        client = self._client()
        assert client.device_id
        message = event.as_key_request(event.sender, client.device_id,
                                       request_id=uuid4().hex)
        try:
            resp = await client.to_device(message)
        except (ClientError, TimeoutError, OSError) as e:
            resp = e
        if not isinstance(resp, ToDeviceResponse):
            log.info("matrix: the key request for %s failed: %s", event.event_id,
                     describe(resp))

    async def retry(self, readable: Readable) -> None:
        """Hand on each pending event nio can now decrypt (its key came in a sync); one is
        dropped only once `readable` took it, so a refused batch tries it again."""
        client = self._client()
        for event_id, pending in list(self._pending.items()):
            try:
                decrypted = client.decrypt_event(pending.event)
            except EncryptionError:
                continue
            await readable(pending.room, decrypted.source)
            self._pending.pop(event_id, None)
            pending.timer.cancel()
            log.info("matrix: %s became readable", event_id)

    async def _expire(self, event_id: str, thread: ThreadRef | None) -> None:
        await asyncio.sleep(self.wait_s)
        pending = self._pending.pop(event_id, None)
        if pending is None:
            return
        log.warning("matrix: %s in %s is still unreadable after %g s; asking %s to write it "
                    "again", event_id, pending.room, self.wait_s, pending.event.sender)
        await self._tell(pending.room, pending.event.sender, ASK_AGAIN, thread)

    async def stop(self) -> None:
        pending, self._pending = list(self._pending.values()), {}
        for p in pending:
            p.timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await p.timer
