"""Matrix end-to-end encryption (R15.1, R15.2): the crypto store, the bot's one device, its
keys, and sending encrypted.

matrix-nio with its `e2e` extra (vodozemac) does the cryptography; what it leaves to its
own `sync_forever` loop — which the bridge does not use (see `bridges.matrix`) — and what it
does otherwise than Element is done here:

- **The store** is nio's `SqliteStore`, one file per device in `<data dir>/matrix-crypto`
  (the directory `0700`, the file created `0600` before SQLite opens it, so its journal
  gets the same mode). It holds the bot's Olm account, its Olm and Megolm sessions and the
  devices it has seen, so a restart is the same device with the same keys: people's clients
  keep trusting it and keep reading its posts.
- **One device.** The server's keys for the bot's device must be the store's or none: a
  device whose store was lost (or restored from another device) would upload new keys under
  an id that people's clients know with other keys, and they would refuse it. Start-up
  refuses that with what to do (`check_own_device`).
- **After each sync** (`after_sync`): nio's queued to-device messages go out, one-time keys
  are topped up, devices of people in encrypted rooms are queried (R15.2: every device is
  trusted on first use, see `bridges.matrix_trust`) and Olm sessions are claimed where one
  is missing or wedged.
- **Sending** (`bridges.matrix_e2ee_client`): everything goes to unverified devices as Element
  does (`ignore_unverified_devices`), and reactions are encrypted too in an encrypted room
  (nio 0.26 leaves them in the clear), with the relation outside the ciphertext so the
  server can still aggregate them. Redactions are never encrypted (the spec has none).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import ClientError
from nio import (
    AsyncClient,
    ErrorResponse,
    KeysQueryResponse,
    KeysUploadResponse,
    LocalProtocolError,
    RoomGetStateEventResponse,
)
from nio.crypto import ENCRYPTION_ENABLED

from crewbridge.bridges.base import DevicesChanged, KeyValueStore, Post, SendError
from crewbridge.bridges.matrix_events import PLATFORM, describe
from crewbridge.bridges.matrix_login import MatrixStartError, patient_call
from crewbridge.bridges.matrix_trust import device_changes, known_devices, query_keys

log = logging.getLogger(__name__)

Send = Callable[[str, Post, str], Awaitable[str | None]]

STORE_DIR_NAME = "matrix-crypto"
KV_UNREADABLE_NOTICE = "matrix.unreadable_notice."  # + room id: R15.4's notice was posted
UNREADABLE_NOTICE = ("This room is end-to-end encrypted, and this bot runs with `[matrix] "
                     "encryption = false`: it cannot read what is said here. Ask its "
                     "operator to turn encryption on.")
ENCRYPTION_STATE = "m.room.encryption"
DIR_MODE = 0o700
FILE_MODE = 0o600
NETWORK_ERRORS = (ClientError, TimeoutError, OSError)


class CryptoUnavailable(MatrixStartError):
    """`[matrix] encryption` is on but matrix-nio's e2e extra is not installed."""


def require_crypto() -> None:
    if not ENCRYPTION_ENABLED:
        raise CryptoUnavailable(
            "matrix: encryption = true needs matrix-nio's e2e extra (vodozemac); reinstall "
            "crewbridge (`pip install 'matrix-nio[e2e]'`) or set [matrix] encryption = false")


def store_file(store_dir: Path, user_id: str, device_id: str) -> Path:
    """The store of one device (nio's own naming, so a store nio made is found)."""
    return store_dir / f"{user_id}_{device_id}.db"


def open_store(client: AsyncClient, store_dir: Path) -> None:
    """Load (or create) the signed-in device's crypto store, private from its first byte."""
    store_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    os.chmod(store_dir, DIR_MODE)
    assert client.user_id and client.device_id
    path = store_file(store_dir, client.user_id, client.device_id)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    os.chmod(path, FILE_MODE)
    client.store_path = str(store_dir)
    client.load_store()


class Crypto:
    """The bridge's end-to-end encryption: `start` after login, `after_sync` after each
    sync (returns the device changes to alert, R15.2)."""

    def __init__(self, store_dir: Path):
        self.store_dir = store_dir

    def has_store(self, user_id: str, device_id: str) -> bool:
        """Whether `device_id` has its crypto store here (a password login reuses it)."""
        return store_file(self.store_dir, user_id, device_id).exists()

    async def start(self, client: AsyncClient) -> None:
        """Open the store, make sure the server's keys for this device are the store's
        (`check_own_device`), and upload them when they are not there yet."""
        open_store(client, self.store_dir)
        assert client.olm is not None
        client.olm.users_for_key_query.add(client.user_id)
        query = await patient_call(client.keys_query, "query the bot's own device keys")
        if isinstance(query, KeysQueryResponse):
            problem = check_own_device(query.device_keys, client.user_id, client.device_id,
                                       client.olm.account.identity_keys["ed25519"],
                                       self.store_dir)
            if problem:
                raise MatrixStartError(problem)
        if client.should_upload_keys:
            upload = await patient_call(client.keys_upload, "upload the bot's device keys")
            if not isinstance(upload, KeysUploadResponse):
                raise MatrixStartError(f"matrix: uploading the device keys of "
                                       f"{client.device_id} failed ({describe(upload)})")
        log.info("matrix: end-to-end encryption on for device %s (store %s)",
                 client.device_id, self.store_dir)

    async def after_sync(self, client: AsyncClient,
                         deliver: Callable[[DevicesChanged], Awaitable[None]]) -> None:
        """The key traffic nio's `sync_forever` would do, after a sync nio has taken in; a
        known user whose devices changed is one `DevicesChanged` to `deliver` (R15.2: the
        core alerts; best effort, never retried). A failed request is logged and made
        again after the next sync."""
        changed: dict[str, str] = {}
        try:
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
            if client.should_upload_keys:
                self._failed("upload keys", await client.keys_upload())
            if client.should_query_keys:
                changed = await self._query(client)
            if client.should_claim_keys:
                self._failed("claim keys",
                             await client.keys_claim(client.get_users_for_key_claiming()))
        except (*NETWORK_ERRORS, LocalProtocolError) as e:
            log.info("matrix: key maintenance failed (%s); again after the next sync",
                     describe(e))
        for user, detail in changed.items():
            log.warning("matrix: the devices of %s changed: %s", user, detail)
            try:
                await deliver(DevicesChanged(PLATFORM, user, detail))
            except Exception as e:
                log.warning("matrix: the core did not take a device change (%s)", describe(e))

    async def _query(self, client: AsyncClient) -> dict[str, str]:
        """Query the devices nio wants to know; compare with the devices known before."""
        users = set(client.users_for_key_query)
        before = known_devices(client.device_store, users)
        resp = await client.keys_query()
        if self._failed("query keys", resp):
            return {}
        assert isinstance(resp, KeysQueryResponse)
        return device_changes(before, query_keys(resp.device_keys),
                              own=(client.user_id, client.device_id))

    @staticmethod
    def _failed(what: str, resp: Any) -> bool:
        if isinstance(resp, ErrorResponse):
            log.info("matrix: could not %s: %s", what, describe(resp))
            return True
        return False


async def encryption_problem(client: AsyncClient, room_id: str) -> str | None:
    """R15.4: a warning for `room_id` when it is encrypted (the bridge does not encrypt
    when this is asked), or None; a room whose state cannot be read is no warning here."""
    try:
        resp = await client.room_get_state_event(room_id, ENCRYPTION_STATE)
    except NETWORK_ERRORS:
        return None
    if not isinstance(resp, RoomGetStateEventResponse) or not resp.content.get("algorithm"):
        return None
    return (f"matrix: room {room_id} is end-to-end encrypted but [matrix] encryption is "
            "off: the bot cannot read what is said there; set encryption = true")


async def say_unreadable(kv: KeyValueStore, send: Send, room_id: str, problem: str) -> None:
    """R15.4, at start-up: the warning for a bound room the bot cannot read, and one notice
    in it (once: remembered in the store, so a restart does not say it again)."""
    log.warning("%s", problem)
    key = f"{KV_UNREADABLE_NOTICE}{room_id}"
    if await kv.get_value(key):
        return
    try:
        await send(room_id, Post(UNREADABLE_NOTICE), key)
    except SendError as e:
        log.warning("matrix: could not post the encryption notice in %s: %s", room_id, e)
        return
    await kv.put_value(key, "posted")


def check_own_device(device_keys: dict[str, Any], user_id: str, device_id: str,
                     own_ed25519: str, store_dir: Path) -> str | None:
    """Why the bot must not start with this store, or None: the server knows other keys
    for its device than the store holds (the store was lost or is another device's)."""
    server = query_keys(device_keys).get(user_id, {}).get(device_id)
    if server is None or server == own_ed25519:
        return None
    return (f"matrix: the homeserver has other encryption keys for device {device_id} than "
            f"the crypto store in {store_dir}: the store was lost or belongs to another "
            "device. Restore the data directory from a backup, or give the bot a new device "
            "(a new access token, or password login with matrix.device_id unset); people's "
            "clients will then show a new device")
