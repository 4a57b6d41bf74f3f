"""Bolt's Socket Mode handler, except that a click is the bridge's before bolt sees it (R13.1).

Bolt builds its request context, and the arguments of every middleware and listener, from
the payload before anything of ours runs, and that code indexes into it: a `block_actions`
payload with an empty `actions` list, or a `user` that is a number, raises inside bolt,
so the envelope is never acked and no log line says why. A click needs nothing of bolt
(no authorization: it came over our own socket; no listener matching: every button is
ours), so `SocketHandler` hands each `block_actions` payload to `on_click`, which decides
(and drops what is malformed), then acks the envelope at once; everything else is bolt's
as before. HTTP mode does the same in `bridges.slack_http`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

INTERACTIVE = "interactive"  # the envelope type of a click (and of other interactions)
BLOCK_ACTIONS = "block_actions"

OnClick = Callable[[dict[str, Any]], None]
"""Takes a click's payload without waiting: the bridge queues it (or drops it)."""


def is_click(payload: Any) -> bool:
    """Whether an interaction's payload is a click on a block element (`block_actions`)."""
    return isinstance(payload, dict) and payload.get("type") == BLOCK_ACTIONS


class SocketHandler(AsyncSocketModeHandler):
    """`AsyncSocketModeHandler` whose `block_actions` envelopes go to `on_click`."""

    def __init__(self, app: AsyncApp, app_token: str, *, on_click: OnClick,
                 ping_interval: float) -> None:
        super().__init__(app, app_token, ping_interval=ping_interval)
        self._on_click = on_click

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:
        """A click is queued before the ack is sent, so it keeps its place among the
        envelopes that follow (the ack is a network write, which lets them run)."""
        if req.type == INTERACTIVE and is_click(req.payload):
            self._on_click(req.payload)
            await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))
            return
        await super().handle(client, req)
