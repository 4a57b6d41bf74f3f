"""Matrix rooms: a configured reference (room id or alias) → a joined room id at start-up;
the events a `limited` timeline left out (R8.2); the names of the people in a room.

Resolving is apart from the sync loop because of two rules of its own (R9.1):

- **A 429 is waited out, never a start-up failure.** Resolving a dozen bound rooms against a
  homeserver at its default rate limits meets `M_LIMIT_EXCEEDED`; `patient_call` honours
  the wait it names (`retry_after_ms`, else `Retry-After`), capped a time, for as long as
  the server keeps asking. Exiting instead would be exit 2, which no restart loop retries.
- **A resolved room is remembered** (`matrix.room.<ref>` in the bot's store), so a restart
  makes no request for it: a bot restarted in a crash loop does not meet the limit again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    JoinedRoomsResponse,
    JoinResponse,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    RoomMessagesResponse,
    RoomResolveAliasResponse,
)

from crewbridge.bridges.base import KeyValueStore, RoomUnresolvable, remembered
from crewbridge.bridges.matrix_events import Invite, describe, localpart, read_invite
from crewbridge.bridges.matrix_login import MatrixStartError, patient_call

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


async def accept_invite(client: AsyncClient, room_id: str, invite_state: Iterable[Any],
                        own_user_id: str, allow: Iterable[str]) -> Invite | None:
    """R1.5/R1.6: join `room_id` when an allowed user invited the bot; the invite (who, and
    whether as a direct room) once joined, else None."""
    invite = read_invite(invite_state, own_user_id)
    if not invite.accepted(allow):
        log.info("matrix: not joining %s: inviter %s is not in allow_invites_from",
                 room_id, invite.inviter)
        return None
    joined, _ = await join(client, room_id)
    if joined is None:
        return None
    log.info("matrix: joined %s (invited by %s%s)", room_id, invite.inviter,
             ", direct" if invite.is_direct else "")
    return invite


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


async def fill_gap(client: AsyncClient, room_id: str, prev_batch: str,
                   since: str) -> list[dict[str, Any]]:
    """The events the server left out of a `limited` timeline, oldest first (R8.2): page
    backwards from the timeline's start to our saved position. nio decrypts what it can
    on the way (R15.1)."""
    chunks: list[dict[str, Any]] = []
    token = prev_batch
    for _ in range(100):  # at most 10,000 events; beyond that the gap is history
        resp = await client.room_messages(room_id, start=token, end=since,
                                          direction=MessageDirection.back, limit=100)
        if not isinstance(resp, RoomMessagesResponse):
            raise RuntimeError(f"filling the gap in {room_id} failed: {describe(resp)}")
        chunks.extend(e.source for e in resp.chunk)
        if not resp.chunk or not resp.end or resp.end == token:
            break
        token = resp.end
    chunks.reverse()
    log.info("matrix: fetched %d events missing from a limited timeline in %s",
             len(chunks), room_id)
    return chunks


async def display_name(client: AsyncClient, cache: dict[str, str], room_id: str,
                       user_id: str) -> str:
    """A sender's display name: from the room state nio tracks, else their profile (kept
    in `cache`), else the localpart."""
    room = client.rooms.get(room_id)
    if room is not None and user_id in room.users:
        name = room.users[user_id].display_name
        if name:
            return name
    if user_id not in cache:
        found = None
        with contextlib.suppress(ClientError, TimeoutError, OSError):
            resp = await client.get_displayname(user_id)
            if isinstance(resp, ProfileGetDisplayNameResponse):
                found = resp.displayname
        cache[user_id] = found or localpart(user_id)
    return cache[user_id]
