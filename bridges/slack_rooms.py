"""Slack channels at start-up: a configured reference (`C…`/`G…`/`D…` or `#name`) → an id.

Apart from the bridge's I/O for two rules of their own (R9.1):

- **A 429 is waited out, never a start-up failure.** `conversations.info` and
  `conversations.list` are Tier 3 methods; a bot bound to many channels, restarted a few
  times, meets their limit. The `Retry-After` Slack names is honoured (capped at
  `MAX_WAIT_S` a time) for as long as it keeps asking: giving up would make
  `crewbridge run` exit 2, which no restart loop retries.
- **A resolved channel is remembered** (`slack.room.<bot user> <ref>` in the bot's store),
  so a restart asks Slack nothing about it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from crewbridge.bridges.base import KeyValueStore, RoomUnresolvable, remembered
from crewbridge.bridges.slack_events import CHANNEL_ID, channel_id, error_code, rate_limit

log = logging.getLogger(__name__)

KV_ROOM = "slack.room."
MAX_WAIT_S = 60.0  # the longest one 429 is waited out, whatever Retry-After says
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


async def patient(call: Callable[[], Awaitable[AsyncSlackResponse]], what: str
                  ) -> AsyncSlackResponse:
    """One Web API call whose 429s are waited out, however many; other errors raise."""
    while True:
        try:
            return await call()
        except SlackApiError as e:
            limited = rate_limit(e, what)
            if limited is None:
                raise
            wait = min(MAX_WAIT_S, limited.retry_after_s or 0.0)
            log.info("slack: rate limited while %s; waiting %.1f s", what, wait)
            await asyncio.sleep(wait)


async def resolve(client: AsyncWebClient, kv: KeyValueStore, ref: str, bot_user_id: str) -> str:
    """R1.2: the id of a channel the bot is a member of, remembered once known; raises
    `RoomUnresolvable` naming `ref` and saying what to do."""
    ref = ref.strip()
    # another bot's channels are not this one's
    return await remembered(kv, f"{KV_ROOM}{bot_user_id} {ref}", lambda: _look_up(client, ref))


async def _look_up(client: AsyncWebClient, ref: str) -> str:
    try:
        if ref.startswith("#"):
            channel = await _find_channel(client, ref[1:])
        elif CHANNEL_ID.fullmatch(ref):
            info = await patient(lambda: client.conversations_info(channel=ref),
                                 f"looking up {ref}")
            channel = info["channel"]
        else:
            raise RoomUnresolvable(
                f"Slack channel {ref} is neither a channel id (C…, G…, D…) nor a #name")
    except SlackApiError as e:
        raise RoomUnresolvable(
            f"Slack channel {ref} cannot be found ({error_code(e)}); check the id, "
            "and invite the bot to private channels") from None
    except NETWORK_ERRORS as e:
        raise RoomUnresolvable(f"Slack channel {ref} could not be looked up: {e}") from None
    return channel_id(ref, channel)


async def _find_channel(client: AsyncWebClient, name: str) -> dict[str, Any] | None:
    cursor: str | None = None
    while True:
        page = await patient(lambda c=cursor: client.conversations_list(  # type: ignore[misc]
            types="public_channel,private_channel", exclude_archived=True, limit=200,
            cursor=c), f"looking for #{name}")
        for channel in page.get("channels", []):
            if channel.get("name") == name:
                return dict(channel)
        cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
        if cursor is None:
            return None
