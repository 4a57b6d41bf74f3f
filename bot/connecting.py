"""A platform that could not be reached at start-up (R14.2): the bot runs without it and
connects when it can, instead of exiting 2 for a network that is not the config's fault.

Its rooms are bound once it is connected; until then its events are held (none can come),
its outage is reported like any other (R6.3, `/healthz`), and a refusal it answers once
reachable — a bad token — is said in the admin room, since there is no start-up to fail.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from crewbridge.bridges.base import (
    Bridge,
    ConnectionChanged,
    EventSink,
    PlatformUnreachable,
    backoff_delay,
)

log = logging.getLogger(__name__)

RETRY_CAP_S = 60.0


async def connect_later(name: str, bridge: Bridge, sink: EventSink, why: str, *,
                        bind: Callable[[str], Awaitable[list[str]]],
                        report: Callable[[ConnectionChanged], None],
                        alert: Callable[[str], Awaitable[None]],
                        now: Callable[[], float], ready: asyncio.Event) -> None:
    """Retry `bridge.start` with capped, jittered backoff until it connects; then bind the
    platform's rooms (`bind`, its problems alerted) and let its events through (`ready`)."""
    log.warning("%s cannot be reached (%s); running without it and retrying", name, why)
    report(ConnectionChanged(name, up=False, ts=now(), detail=why))
    attempt = 0
    while True:
        attempt += 1
        await asyncio.sleep(backoff_delay(attempt, cap_s=RETRY_CAP_S))
        try:
            await bridge.start(sink)
        except PlatformUnreachable as e:
            log.info("%s still cannot be reached: %s", name, e)
            continue
        except Exception as e:
            await alert(f"⚠️ {name} refused the bot now that it can be reached: {e}. Fix the "
                        f"config and restart crewbridge.")
            return
        break
    for problem in await bind(name):
        await alert(f"⚠️ {name}: {problem}")
    ready.set()
    report(ConnectionChanged(name, up=True, ts=now()))
    log.info("%s connected", name)
