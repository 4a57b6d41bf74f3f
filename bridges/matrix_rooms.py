"""Matrix rooms at start-up: a configured reference (room id or alias) → a joined room id.

Apart from the sync loop because of two rules of their own (R9.1):

- **A 429 is waited out, never a start-up failure.** Resolving a dozen bound rooms against a
  homeserver at its default rate limits meets `M_LIMIT_EXCEEDED`; `patient_call` honours
  the wait it names (`retry_after_ms`, else `Retry-After`), capped a time, for as long as
  the server keeps asking. Exiting instead would be exit 2, which no restart loop retries.
- **A resolved room is remembered** (`matrix.room.<ref>` in the bot's store), so a restart
  makes no request for it: a bot restarted in a crash loop does not meet the limit again.
"""

from __future__ import annotations

import logging

from nio import AsyncClient, JoinedRoomsResponse, JoinResponse, RoomResolveAliasResponse

from bridges.base import KeyValueStore, RoomUnresolvable, remembered
from bridges.matrix_events import describe
from bridges.matrix_login import MatrixStartError, patient_call

log = logging.getLogger(__name__)

KV_ROOM = "matrix.room."  # + "<user id> <configured reference>" → its room id


async def join(client: AsyncClient, room: str) -> tuple[str | None, str]:
    """Join a room id or alias: (the joined room id, "") or (None, why not), logged."""
    try:
        resp = await patient_call(lambda: client.join(room), f"join {room}")
    except MatrixStartError as e:
        log.warning("matrix: %s", e)
        return None, str(e)
    if isinstance(resp, JoinResponse):
        return resp.room_id, ""
    log.warning("matrix: cannot join %s: %s", room, describe(resp))
    return None, describe(resp)


async def resolve(client: AsyncClient, kv: KeyValueStore, ref: str, user_id: str) -> str:
    """R1.2/R11.4: a room id or `#alias:server` → room id, joining the room when the bot is
    invited (or it is public) but not yet in it; remembered once known. Raises
    `RoomUnresolvable` naming `ref` and saying what to do."""
    ref = ref.strip()
    # another account's rooms are not this one's
    return await remembered(kv, f"{KV_ROOM}{user_id} {ref}", lambda: _find(client, ref, user_id))


async def _find(client: AsyncClient, ref: str, user_id: str) -> str:
    try:
        if ref.startswith("#") and ":" in ref:
            alias = await patient_call(lambda: client.room_resolve_alias(ref), f"resolve {ref}")
            if not isinstance(alias, RoomResolveAliasResponse):
                raise RoomUnresolvable(f"Matrix room {ref}: no such alias ({describe(alias)})")
            room_id = alias.room_id
        elif ref.startswith("!"):
            room_id = ref
        else:
            raise RoomUnresolvable(f"Matrix room {ref!r}: expected a room id (!…) or an "
                                   "alias (#name:server)")
        joined = await patient_call(client.joined_rooms, "list joined rooms")
        if isinstance(joined, JoinedRoomsResponse) and room_id in joined.rooms:
            return room_id
    except MatrixStartError as e:
        raise RoomUnresolvable(f"Matrix room {ref}: {e}") from None
    # Joining by alias lets the homeserver find the room's servers over federation.
    joined_id, why = await join(client, ref if ref.startswith("#") else room_id)
    if joined_id is None:
        raise RoomUnresolvable(f"Matrix room {ref}: {user_id} is not a member and "
                               f"cannot join ({why}); invite {user_id} to the room")
    return joined_id
