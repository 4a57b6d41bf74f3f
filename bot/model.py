"""Plain data shared by the bridges, the core and the supervisor.

Everything here is a frozen dataclass or an enum with no behaviour beyond small derived
properties. The records a bridge produces live in `bridges.base`, and those the supervisor
takes in `supervisor.ports`: each lower package owns its interface, and `bot/` — the only
package that knows all three — imports them from there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")  # a channel's or an agent's name


class Platform(StrEnum):
    """Where a message came from or goes to."""

    SLACK = "slack"
    MATRIX = "matrix"
    CONSOLE = "console"
    AGENT = "agent"  # output of an agent session (never a bridge)


class ChannelKind(StrEnum):
    TOPIC = "topic"
    GENERAL = "general"
    DM = "dm"
    ADMIN = "admin"

    @property
    def has_lead(self) -> bool:
        """Topic channels and the general channel have a lead named after them (R2.1)."""
        return self in (ChannelKind.TOPIC, ChannelKind.GENERAL)


class PostKind(StrEnum):
    """What a post in the outbox is. Every kind goes out as a notice (Matrix `m.notice`):
    the bot never speaks as a person, so other bots do not answer it."""

    AGENT = "agent"  # an agent's text in its channel
    RELAY = "relay"  # a person's message shown in the channel's other rooms
    NOTICE = "notice"  # the bot's own short answer
    ALERT = "alert"  # an ops alert for the admin rooms
    CARD = "card"  # an approval card (R13.1), edited into its outcome (R13.3)
    STATUS = "status"  # a turn's live status (R13.7): an edit of it may be dropped


class PostOp(StrEnum):
    """What an outbox row does in its room: post, or act on a message shown there before
    (the row's `message`, found in that room by its ref, R13.3, R13.7)."""

    POST = "post"
    EDIT = "edit"
    DELETE = "delete"
    REACT = "react"  # the row's text is the emoji
    UNREACT = "unreact"


BOT_NAME = "crewbridge"
"""The author of the bot's own posts; no agent may take the name and look like the bot."""
RESERVED_NAMES = ("all", "lead", BOT_NAME)
"""Names no channel or worker may have: mention words with a fixed meaning (R2.2, R2.3), and
the bot's own (R10.4)."""

DM_PREFIX = "dm-"


def dm_channel_of(worker: str) -> str:
    """The channel a worker lives in (R1.1)."""
    return f"{DM_PREFIX}{worker}"


def worker_of_dm(channel: str) -> str | None:
    """The worker a `dm-<name>` channel belongs to, or None for any other channel."""
    return channel[len(DM_PREFIX) :] if channel.startswith(DM_PREFIX) else None


@dataclass(frozen=True)
class RoomRef:
    """One external room: a Slack channel id, a Matrix room id, or a console channel name."""

    platform: str
    room: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.room}"


# --- routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """A message in an internal channel, from a person, an agent, or the bot itself."""

    channel: str
    author: str
    author_is_agent: bool
    platform: str
    text: str
    hops: int = 0  # agent-to-agent hops since the last person (R2.6)
    top_level: bool = True
    thread: int | None = None  # the thread it is in; the nudges it makes are answered there
    thread_agent: str | None = None  # whom a person's reply in that thread reaches (R12.2)


@dataclass(frozen=True)
class Nudge:
    """Deliver `text` to agent `agent` (R2.7: the text already names sender, platform, channel)."""

    agent: str
    text: str
    hops: int = 0
    origin: str = ""  # the channel the message was posted in: where notices about it go
    thread: int | None = None  # the thread of `origin` it came from; its answer goes there


@dataclass(frozen=True)
class Notice:
    """A short answer from the bot into a channel (unknown name, hop limit, …)."""

    channel: str
    text: str
