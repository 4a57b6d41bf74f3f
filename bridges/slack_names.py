"""People's names on Slack, looked up once an hour (R9.1).

An event names a person by id; the core attributes messages and decisions by name
("allowed by alice"), and a message that mentions three people needs four names. So each
id is asked of `users.info` once and trusted for `NAME_TTL_S`: renames show up within the
hour, and a busy channel costs no call per message. A look-up Slack refuses or does not
answer gives the id itself, never a lost event.
"""

from __future__ import annotations

import logging
import time

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from crewbridge.bridges.slack_events import display_name
from crewbridge.bridges.slack_posts import Exchange
from crewbridge.bridges.slack_rooms import NETWORK_ERRORS

log = logging.getLogger(__name__)

NAME_TTL_S = 3600.0
"""How long a resolved user name is trusted."""


class SlackNames:
    """The display names of a workspace's people, by user id, cached."""

    def __init__(self, client: AsyncWebClient, exchange: Exchange) -> None:
        self._client = client
        self._exchange = exchange
        self._names: dict[str, tuple[str, float]] = {}

    async def name(self, user_id: str) -> str:
        """A person's display name via `users.info`, cached; their id if Slack won't say."""
        cached = self._names.get(user_id)
        if cached is not None and time.monotonic() - cached[1] < NAME_TTL_S:
            return cached[0]
        try:
            with self._exchange("users.info"):
                user = (await self._client.users_info(user=user_id))["user"]
        except (SlackApiError, *NETWORK_ERRORS) as e:
            log.warning("slack: cannot resolve the name of %s: %s", user_id, e)
            return user_id
        name = display_name(user, user_id)
        self._names[user_id] = (name, time.monotonic())
        return name
