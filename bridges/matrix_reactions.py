"""The bot's own Matrix reactions: its buttons (R13.1) and status marks (R13.7), taken back
by redaction.

To take a reaction back the bot must name the reaction's own event, so every reaction it
sends is remembered per (room, target, key) — in the bridge's key-value store, one value per
target (`matrix.reactions.<room> <target>`: a JSON object key → reaction event id), so a
card decided after a restart can still drop its buttons. Both ways are idempotent: a
reaction already there is not sent again, one not there is no error. A reaction that was
sent but not remembered (the bot stopped in between) is found on the homeserver: Synapse
refuses a second identical annotation (`M_DUPLICATE_ANNOTATION`), and the event's
relations name the first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import ClientError
from nio import AsyncClient, EncryptionError, MegolmEvent, RoomRedactResponse, RoomSendResponse
from nio.api import RelationshipType

from crewbridge.bridges.base import KeyValueStore, SendError
from crewbridge.bridges.matrix_cards import reaction_content, redaction_txn_id
from crewbridge.bridges.matrix_events import EventType, describe, http_status, send_failure

log = logging.getLogger(__name__)

KV_REACTIONS = "matrix.reactions."
NOT_FOUND = "M_NOT_FOUND"
DUPLICATE = "M_DUPLICATE_ANNOTATION"
NETWORK_ERRORS = (ClientError, TimeoutError, OSError)


async def redact(client: AsyncClient, room: str, event_id: str) -> None:
    """Take back `event_id` (a post or a reaction). An event that is gone already or was
    never known is no error; others raise like `send` (R8.3). A retry is the same redaction
    (`redaction_txn_id`)."""
    try:
        resp = await client.room_redact(room, event_id, tx_id=redaction_txn_id(event_id))
    except NETWORK_ERRORS as e:
        raise send_failure(room, e) from None
    if isinstance(resp, RoomRedactResponse):
        return
    if getattr(resp, "status_code", None) == NOT_FOUND or http_status(resp) == 404:
        log.info("matrix: %s in %s is gone already", event_id, room)
        return
    raise send_failure(room, resp)


def readable(client: AsyncClient, room: str, event: Any) -> dict[str, Any]:
    """An event's source, decrypted when it is encrypted and the bot can read it."""
    if isinstance(event, MegolmEvent) and client.olm is not None:
        event.room_id = room
        with contextlib.suppress(EncryptionError):
            return client.decrypt_event(event).source
    return getattr(event, "source", {})


class BotReactions:
    """`add`, `remove` and `keep_only` the bot's reactions on one event. One lock for all:
    each call reads, changes and writes back the target's remembered reactions, and two
    calls on one target at once would lose one's change; reactions are few and fast."""

    def __init__(self, client: Callable[[], AsyncClient], kv: KeyValueStore, user_id: str):
        self._client = client
        self.kv = kv
        self.user_id = user_id
        self._lock = asyncio.Lock()

    async def add(self, room: str, target: str, key: str) -> None:
        async with self._lock:
            mine = await self._remembered(room, target)
            if key not in mine:
                mine[key] = await self._send(room, target, key)
                await self._remember(room, target, mine)

    async def remove(self, room: str, target: str, key: str) -> None:
        async with self._lock:
            await self._remove(room, target, key, await self._remembered(room, target))

    async def keep_only(self, room: str, target: str, keys: Iterable[str]) -> None:
        """Make the bot's reactions on `target` exactly `keys` (an edited card's buttons,
        R13.3): the others are taken back, the missing ones added."""
        wanted = list(dict.fromkeys(keys))
        async with self._lock:
            mine = await self._remembered(room, target)
            for key in [k for k in mine if k not in wanted]:
                await self._remove(room, target, key, mine)
            for key in wanted:
                if key not in mine:
                    mine[key] = await self._send(room, target, key)
                    await self._remember(room, target, mine)

    async def _remove(self, room: str, target: str, key: str, mine: dict[str, str]) -> None:
        event_id = mine.get(key) or await self._find(room, target, key)
        if event_id is None:
            return
        await redact(self._client(), room, event_id)
        if mine.pop(key, None) is not None:
            await self._remember(room, target, mine)

    async def _send(self, room: str, target: str, key: str) -> str:
        client = self._client()
        try:
            resp = await client.room_send(room, EventType.REACTION,
                                          reaction_content(target, key))
        except NETWORK_ERRORS as e:
            raise send_failure(room, e) from None
        if isinstance(resp, RoomSendResponse):
            return resp.event_id
        if getattr(resp, "status_code", None) == DUPLICATE:
            found = await self._find(room, target, key)
            if found is not None:
                return found
        raise send_failure(room, resp)

    async def _find(self, room: str, target: str, key: str) -> str | None:
        """The bot's reaction `key` on `target` as the homeserver has it, or None. In an
        encrypted room the bot's reactions are encrypted (R15.1): the server lists them as
        `m.room.encrypted`, so every annotation is read, decrypted where need be."""
        client = self._client()
        try:
            async for event in client.room_get_event_relations(
                    room, target, rel_type=RelationshipType.annotation):
                source = readable(client, room, event)
                relates = (source.get("content") or {}).get("m.relates_to") or {}
                if source.get("type") == EventType.REACTION \
                        and source.get("sender") == self.user_id and relates.get("key") == key:
                    return str(source.get("event_id"))  # a redacted one has no key left
        except (*NETWORK_ERRORS, AttributeError) as e:
            # nio's iterator reads `next_batch` of an error response too: AttributeError.
            raise SendError(f"Matrix: reading the reactions on {target} in {room} failed: "
                            f"{describe(e)}") from None
        return None

    @staticmethod
    def _kv_key(room: str, target: str) -> str:
        return f"{KV_REACTIONS}{room} {target}"

    async def _remembered(self, room: str, target: str) -> dict[str, str]:
        saved = await self.kv.get_value(self._kv_key(room, target))
        return dict(json.loads(saved)) if saved else {}

    async def _remember(self, room: str, target: str, mine: dict[str, str]) -> None:
        if mine:
            await self.kv.put_value(self._kv_key(room, target), json.dumps(mine))
        else:
            await self.kv.delete_value(self._kv_key(room, target))
