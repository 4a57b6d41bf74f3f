"""R9.1: bound rooms at start-up on the session's Synapse, behind the proxy that can answer
Synapse's 429 (`M_LIMIT_EXCEEDED` with `retry_after_ms` and `Retry-After`) on demand.

A rate limit while the bridge logs in or resolves its rooms is waited out, however many
times it comes (it used to be given up after three, and `crewbridge run` exited 2, which a
restart loop does not retry); a room once resolved is remembered in the store, so the next
start asks the homeserver nothing about it.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from crewbridge.bridges.matrix import MatrixBridge
from crewbridge.bridges.settings import MatrixConfig
from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.support import MemoryKV
from tests.platform.matrix.synapse import Account, Person, SynapseServer

RESOLVING = ("/directory/room/", "/joined_rooms", "/join/")
"""The paths of the requests that resolve and join a room."""


@pytest.fixture
async def proxy(synapse: SynapseServer) -> AsyncIterator[CountingProxy]:
    proxy = CountingProxy(synapse.url)
    await proxy.start()
    yield proxy
    await proxy.stop()


async def test_r9_1_start_up_429s_are_waited_out_and_rooms_remembered(
        proxy: CountingProxy, make_account: Callable[..., Account], alice: Person,
        make_bridge: Callable[..., Awaitable[MatrixBridge]]) -> None:
    """R9.1: five 429s on the alias look-up, two on the join and two on the token check
    are each waited out (the bridge starts and the alias resolves to the room, joined); a
    second start with the same store resolves it again without a single request."""
    account = make_account("limited")
    server = account.user_id.split(":", 1)[1]
    alias = f"hq{uuid.uuid4().hex[:8]}"
    room = await alice.create_room(alias=alias, name="hq", invite=(account.user_id,))
    config = MatrixConfig(homeserver=proxy.url, user_id=account.user_id,
                          access_token=account.access_token)
    kv = MemoryKV()
    proxy.limit_next("/account/whoami", 2)
    proxy.limit_next("/directory/room/", 5)
    proxy.limit_next("/join/", 2)

    first = await make_bridge(config, kv)
    assert await first.resolve_room(f"#{alias}:{server}") == room
    assert len(proxy.limited) == 9, proxy.limited
    await alice.wait_for_membership(room, account.user_id, "join")
    await first.stop()

    before = sum(proxy.count_paths(p) for p in RESOLVING)
    second = await make_bridge(config, kv)
    assert await second.resolve_room(f"#{alias}:{server}") == room
    assert sum(proxy.count_paths(p) for p in RESOLVING) == before
