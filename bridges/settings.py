"""The platform settings a bridge is built from (`[slack]`, `[matrix]` in the config).

They belong to the bridges' floor: a bridge takes its settings as plain data and knows
nothing of the config file; `bot.config` reads and validates the file and builds these.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SlackMode(StrEnum):
    """How Slack reaches the bot (R9.1)."""

    SOCKET = "socket"  # Socket Mode, over a websocket the bot opens: needs `app_token`
    HTTP = "http"  # the Events API, posted to the bot's HTTP listener: needs `signing_secret`


@dataclass(frozen=True)
class SlackConfig:
    bot_token: str
    mode: SlackMode = SlackMode.SOCKET
    app_token: str | None = None
    signing_secret: str | None = None
    http_host: str = "127.0.0.1"
    http_port: int = 3000
    api_url: str = "https://slack.com/api/"
    post_interval_s: float = 1.0  # Slack allows about one post per second per channel

    def __repr__(self) -> str:  # never show tokens in logs or tracebacks
        return f"SlackConfig(mode={str(self.mode)!r}, api_url={self.api_url!r})"


@dataclass(frozen=True)
class MatrixConfig:
    homeserver: str
    user_id: str
    access_token: str | None = None
    password: str | None = None
    device_id: str | None = None
    allow_invites_from: tuple[str, ...] = ()
    encryption: bool = True  # R15: read and write encrypted rooms (matrix-nio's e2e extra)

    def __repr__(self) -> str:
        return f"MatrixConfig(homeserver={self.homeserver!r}, user_id={self.user_id!r})"
