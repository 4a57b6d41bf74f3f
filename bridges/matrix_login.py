"""Matrix start-up I/O: the nio client, login, and start-up requests that wait out 429s.

Apart from the sync loop (`bridges.matrix`) because its rules are different: at start-up a
failure is an error for the operator (`MatrixStartError`, one clear line), and a 429 is
waited out for as long as it lasts, since nothing else can run before the bridge is
connected and giving up would be exit 2, which no restart loop retries (R9.1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse

from crewbridge.bridges.base import KeyValueStore, PlatformUnreachable
from crewbridge.bridges.matrix_e2ee_client import E2eeClient
from crewbridge.bridges.matrix_events import describe, http_status, is_rate_limited, retry_after_s
from crewbridge.bridges.matrix_store import crypto_store_class
from crewbridge.bridges.settings import MatrixConfig

log = logging.getLogger(__name__)

# Keys in the bot's key-value store (namespaced by the bridge).
KV_USER = "matrix.user_id"
KV_NEXT_BATCH = "matrix.next_batch"
KV_DEVICE = "matrix.device_id"
KV_DIRECT = "matrix.direct_rooms"

MAX_STARTUP_WAIT_S = 30.0  # the longest one start-up 429 is waited out, whatever it asks

T = TypeVar("T")


class MatrixStartError(RuntimeError):
    """The bridge could not log in or reach the homeserver at start-up; says which and why."""


class MatrixUnreachable(MatrixStartError, PlatformUnreachable):
    """The homeserver could not be reached, or its proxy answered 5xx: try again later."""


def new_client(config: MatrixConfig, *, encrypted: bool = False) -> AsyncClient:
    """An nio client that never retries by itself (the outbox and the sync loop do).

    `encrypted` (R15.1): nio's crypto on, with its SQLite store; the store is opened after
    login (`bridges.matrix_crypto.open_store`), not by nio's login, so its file is private
    from the start and a lost store is noticed before any key is uploaded."""
    nio_config = AsyncClientConfig(
        max_limit_exceeded=0,  # a 429 comes straight back: the outbox owns retrying
        max_timeouts=0,  # a connection error comes straight back: the loop backs off
        request_timeout=60,
        encryption_enabled=encrypted,
        # nio's login loads a store whenever crypto is installed (with no path: none); the
        # class exists only then, so a bot without it still runs unencrypted
        store=crypto_store_class(),
        store_sync_tokens=False,  # the bot's store keeps next_batch (R8.2)
    )
    return E2eeClient(config.homeserver.rstrip("/"), config.user_id, config=nio_config,
                      store_path="")


async def patient_call(call: Callable[[], Awaitable[T]], what: str,
                       max_wait_s: float = MAX_STARTUP_WAIT_S) -> T:
    """One start-up request whose 429s are waited out, however many (R9.1: a rate limit at
    start-up is never a start-up failure, which would be exit 2 and no restart); each wait
    is the server's, capped at `max_wait_s`. Network errors raise `MatrixStartError`."""
    while True:
        try:
            resp = await call()
        except (ClientError, TimeoutError, OSError) as e:
            raise MatrixUnreachable(f"cannot {what}: {describe(e)}") from None
        if isinstance(resp, ErrorResponse) and (http_status(resp) or 0) >= 500:
            raise MatrixUnreachable(f"cannot {what}: {describe(resp)}")
        if not is_rate_limited(resp):
            return resp
        assert isinstance(resp, ErrorResponse)
        wait = min(max_wait_s, retry_after_s(resp))
        log.info("matrix: rate limited while trying to %s; waiting %.1f s", what, wait)
        await asyncio.sleep(wait)


async def login(client: AsyncClient, config: MatrixConfig, kv: KeyValueStore, *,
                keep_device: Callable[[str], bool] = lambda _device: True) -> str | None:
    """Sign `client` in with the access token or the password; returns the device id.
    With a password, a saved device is reused only when `keep_device(device)` (R15.1: its
    crypto store is there; a device whose keys are lost must not be taken up again)."""
    hs = config.homeserver
    if config.access_token:
        client.access_token = config.access_token
        who = await patient_call(client.whoami, f"check the access token on {hs}")
        if not isinstance(who, WhoamiResponse):
            raise MatrixStartError(f"{hs} refused the access token for "
                                   f"{config.user_id} ({describe(who)})")
        if who.user_id != config.user_id:
            raise MatrixStartError(f"the access token belongs to {who.user_id}, "
                                   f"but matrix.user_id is {config.user_id}")
        client.user_id = who.user_id
        client.device_id = who.device_id
        return who.device_id
    # Password login: reuse one device across restarts, because Synapse scopes
    # transaction ids to the device; a new device each start would defeat R8.3.
    device = config.device_id or await kv.get_value(KV_DEVICE)
    if device and await kv.get_value(KV_USER) not in (None, config.user_id):
        device = config.device_id
    if device and device != config.device_id and not keep_device(device):
        log.warning("matrix: the crypto store of device %s is missing; signing in as a new "
                    "device (people's clients will show it as new)", device)
        device = None
    client.device_id = device or None
    resp = await patient_call(lambda: client.login(config.password, device_name="crewbridge"),
                              f"log in to {hs}")
    if not isinstance(resp, LoginResponse):
        raise MatrixStartError(f"{hs} refused the password login of "
                               f"{config.user_id} ({describe(resp)})")
    await kv.put_value(KV_DEVICE, resp.device_id)
    return resp.device_id
