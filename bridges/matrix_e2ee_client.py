"""nio's `AsyncClient`, sending as Element does (R15.1, R15.2).

Three differences from nio 0.26's `room_send`: every send goes to unverified devices too
(`ignore_unverified_devices`: trust on first use, as Element shares with devices nobody has
verified); a reaction in an encrypted room is encrypted like any message — nio sends
reactions in the clear — with its relation outside the ciphertext, where the homeserver
can still aggregate it; and a send to a room no sync has shown yet (just joined, or the
first sync after a restart not back) waits for the sync that shows it, up to
`room_wait_s`, because until then nio cannot tell whether to encrypt (and refuses). Still
not shown: a `SendError` the outbox retries. Everything else is nio's own path.
"""

from __future__ import annotations

import asyncio
from typing import Any
from uuid import uuid4

from nio import AsyncClient, RoomSendResponse, SyncResponse
from nio.api import Api

from crewbridge.bridges.base import SendError

REACTION = "m.reaction"
ROOM_WAIT_S = 10.0


class E2eeClient(AsyncClient):
    """nio's client, sending as Element does: to unverified devices, reactions encrypted."""

    room_wait_s = ROOM_WAIT_S

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._synced = asyncio.Condition()

    async def receive_response(self, response: Any) -> None:
        await super().receive_response(response)
        if isinstance(response, SyncResponse):
            async with self._synced:
                self._synced.notify_all()

    async def room_send(self, room_id: str, message_type: str, content: dict[Any, Any],
                        tx_id: str | None = None, ignore_unverified_devices: bool = True
                        ) -> Any:
        if self.olm is not None and room_id not in self.rooms:
            await self._room_shown(room_id)
        room = self.rooms.get(room_id)
        if self.olm is None or message_type != REACTION or room is None \
                or not room.encrypted:
            return await super().room_send(room_id, message_type, content, tx_id=tx_id,
                                           ignore_unverified_devices=ignore_unverified_devices)
        # What nio's room_send does before it encrypts (members known, keys queried, the
        # room's session shared), then the reaction encrypted like any message.
        if not room.members_synced:
            await self.joined_members(room_id)
            if self.should_query_keys:
                await self.keys_query()
        if self.olm.should_share_group_session(room_id):
            await self.share_group_session(room_id, ignore_unverified_devices=True)
        event_type, encrypted = self.encrypt(room_id, message_type, content)
        method, path, data = Api.room_send(self.access_token, room_id, event_type, encrypted,
                                           tx_id or uuid4())
        return await self._send(RoomSendResponse, method, path, data, (room_id,))

    async def _room_shown(self, room_id: str) -> None:
        async def shown() -> None:
            async with self._synced:
                await self._synced.wait_for(lambda: room_id in self.rooms)
        try:
            await asyncio.wait_for(shown(), self.room_wait_s)
        except TimeoutError:
            raise SendError(f"Matrix: no sync has shown {room_id} yet, so whether it is "
                            "encrypted is not known", retry_after_s=1.0) from None
