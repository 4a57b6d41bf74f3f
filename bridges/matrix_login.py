"""Matrix start-up I/O: the nio client, login, and start-up requests that wait out 429s.

Apart from the sync loop (`bridges.matrix`) because its rules are different: at start-up a
failure is an error for the operator (`MatrixStartError`, one clear line), and a 429 is
waited out a few times, since nothing else can run before the bridge is connected.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import ClientError
from nio import AsyncClient, AsyncClientConfig, ErrorResponse, LoginResponse, WhoamiResponse

from bridges.base import KeyValueStore
from bridges.matrix_events import describe, is_rate_limited, retry_after_s
from bridges.settings import MatrixConfig

# Keys in the bot's key-value store (namespaced by the bridge).
KV_USER = "matrix.user_id"
KV_NEXT_BATCH = "matrix.next_batch"
KV_DEVICE = "matrix.device_id"
KV_DIRECT = "matrix.direct_rooms"

MAX_STARTUP_WAIT_S = 30.0  # the longest a start-up 429 is waited out, whatever it asks

T = TypeVar("T")


class MatrixStartError(RuntimeError):
    """The bridge could not log in or reach the homeserver at start-up; says which and why."""


def new_client(config: MatrixConfig) -> AsyncClient:
    """An nio client that never retries by itself (the outbox and the sync loop do)."""
    nio_config = AsyncClientConfig(
        max_limit_exceeded=0,  # a 429 comes straight back: the outbox owns retrying
        max_timeouts=0,  # a connection error comes straight back: the loop backs off
        request_timeout=60,
        encryption_enabled=False,
        store_sync_tokens=False,  # the bot's store keeps next_batch (R8.2)
    )
    return AsyncClient(config.homeserver.rstrip("/"), config.user_id, config=nio_config)


async def startup_call(call: Callable[[], Awaitable[T]], what: str, retries: int) -> T:
    """One start-up request; 429s are waited out `retries` times, network errors are fatal."""
    for _ in range(retries + 1):
        try:
            resp = await call()
        except (ClientError, TimeoutError, OSError) as e:
            raise MatrixStartError(f"cannot {what}: {describe(e)}") from None
        if not is_rate_limited(resp):
            return resp
        assert isinstance(resp, ErrorResponse)
        await asyncio.sleep(min(MAX_STARTUP_WAIT_S, retry_after_s(resp)))
    return resp


async def login(client: AsyncClient, config: MatrixConfig, kv: KeyValueStore,
                retries: int) -> str | None:
    """Sign `client` in with the access token or the password; returns the device id."""
    hs = config.homeserver
    if config.access_token:
        client.access_token = config.access_token
        who = await startup_call(client.whoami, f"check the access token on {hs}", retries)
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
    client.device_id = device or None
    resp = await startup_call(lambda: client.login(config.password, device_name="crewbridge"),
                              f"log in to {hs}", retries)
    if not isinstance(resp, LoginResponse):
        raise MatrixStartError(f"{hs} refused the password login of "
                               f"{config.user_id} ({describe(resp)})")
    await kv.put_value(KV_DEVICE, resp.device_id)
    return resp.device_id
