"""The homeserver goes away for 10 s while the bridge syncs (R9.2, R6.3).

This test restarts the session's Synapse. It measures for real: the outage window is a
genuine 10 s, because the thing under test is what the bridge does over time while the
server is gone.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from crewbridge.bridges.matrix import MatrixBridge
from crewbridge.bridges.settings import MatrixConfig
from tests.platform.matrix.fixtures import matrix_config
from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.support import RecordingSink
from tests.platform.matrix.synapse import Account, Person, SynapseServer

OUTAGE_S = 10.0
MAX_RATE = 2.0  # requests per second while the homeserver is down (R9.2)


def count_requests(bridge: MatrixBridge) -> list[float]:
    """Record the time of every HTTP request the bridge's nio client makes (wraps `send`,
    the one method all of nio's requests go through)."""
    client = bridge._client
    assert client is not None
    times: list[float] = []
    original = client.send

    async def send(*args: Any, **kwargs: Any) -> Any:
        times.append(time.monotonic())
        return await original(*args, **kwargs)

    client.send = send  # type: ignore[method-assign]
    return times


async def test_outage_backs_off_and_recovers(
        synapse: SynapseServer, make_account: Callable[..., Account], alice: Person,
        matrix_room: str, make_bridge: Callable[..., Awaitable[MatrixBridge]]) -> None:
    """R9.2/R6.3: with Synapse stopped for 10 s, two bridges — one straight at Synapse
    (connection refused), one behind a reverse proxy (502s) — each make fewer than 2
    requests per second, report the link down once, and come back by themselves (link up)
    without a restart; a message posted after the outage is delivered."""
    proxy = CountingProxy(synapse.url)
    await proxy.start()
    bridges: list[MatrixBridge] = []
    try:
        direct_sink, proxied_sink = RecordingSink(), RecordingSink()
        direct_bot = make_account("direct")
        proxied_bot = make_account("proxied")
        allow = (alice.user_id,)
        # A short backoff cap so recovery is seen within seconds of Synapse's return; the
        # early backoff curve that the rate limit checks is the production one.
        direct = await make_bridge(matrix_config(synapse, direct_bot, allow_invites_from=allow),
                                   sink=direct_sink, backoff_cap_s=4)
        proxied_config = MatrixConfig(homeserver=proxy.url, user_id=proxied_bot.user_id,
                                      access_token=proxied_bot.access_token,
                                      allow_invites_from=allow)
        proxied = await make_bridge(proxied_config, sink=proxied_sink, backoff_cap_s=4)
        bridges += [direct, proxied]
        for bot, sink in ((direct, direct_sink), (proxied, proxied_sink)):
            await alice.invite(matrix_room, bot.user_id)
            await sink.wait_for_join(matrix_room)
        direct_requests = count_requests(direct)

        down_at = time.monotonic()
        await asyncio.to_thread(synapse.stop)
        await asyncio.sleep(OUTAGE_S)  # the measurement window: the server really is away
        back_at = time.monotonic()
        await asyncio.to_thread(synapse.start)

        for name, count in (("direct", sum(1 for t in direct_requests if down_at <= t < back_at)),
                            ("proxied", proxy.count_between(down_at, back_at))):
            rate = count / (back_at - down_at)
            assert rate < MAX_RATE, f"{name} bridge made {count} requests in the outage"
            assert count >= 2, f"{name} bridge stopped trying during the outage ({count})"
        assert proxy.failed_upstream, "the proxy never saw the homeserver down"

        for sink in (direct_sink, proxied_sink):  # the 30 s long poll is not waited out
            await sink.wait_until(lambda s=sink: len(s.connection()) >= 2, timeout=20,
                                  what="link down, then up")
            assert [c.up for c in sink.connection()] == [False, True]

        await alice.send_text(matrix_room, "are you back?")
        for sink in (direct_sink, proxied_sink):
            await sink.wait_for_texts(matrix_room, ["are you back?"], timeout=30)
    finally:
        for bridge in bridges:
            await bridge.stop()  # before the proxy, which would wait for their long-polls
        await proxy.stop()
        if not synapse.running:
            await asyncio.to_thread(synapse.start)
