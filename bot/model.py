"""Plain data shared by the bridges, the core and the supervisor.

Everything here is a frozen dataclass or an enum with no behaviour beyond small derived
properties: the bridges produce and consume these records, the pure decision functions in
`bot.routing` and `supervisor.*` take and return them, and only `bot.app` moves them between
the I/O parts. Keeping the vocabulary in one module is what lets the bridges know nothing of
agents and the supervisor nothing of Slack or Matrix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum


class Platform(StrEnum):
    """Where a message came from or goes to."""

    SLACK = "slack"
    MATRIX = "matrix"
    CONSOLE = "console"
    AGENT = "agent"  # output of an agent session (never a bridge)
    BOT = "bot"  # notices the bot writes itself


class ChannelKind(StrEnum):
    TOPIC = "topic"
    GENERAL = "general"
    DM = "dm"
    ADMIN = "admin"


class AgentKind(StrEnum):
    LEAD = "lead"
    WORKER = "worker"


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


# --- what bridges hand to the core ----------------------------------------------------------


@dataclass(frozen=True)
class Inbound:
    """A person's message as a bridge saw it, before the core knows which channel it is in.

    `event_id` is the platform's own id (Slack `event_id` or `client_msg_id`/ts, Matrix event
    id); the store refuses a second record with the same (platform, event_id), which is how
    Slack retries and Matrix re-deliveries are ignored (R8.1).
    """

    platform: str
    room: str
    sender: str  # platform user id
    sender_name: str  # human-readable name for attribution
    text: str
    event_id: str
    ts: float
    is_direct: bool = False  # a 1:1 conversation with the bot (Slack IM, Matrix direct room)
    thread: str | None = None


@dataclass(frozen=True)
class RoomJoined:
    """The bot was added to (or joined) a room; the core answers unbound rooms (R1.5)."""

    platform: str
    room: str
    is_direct: bool = False
    inviter: str | None = None


@dataclass(frozen=True)
class ConnectionChanged:
    """A bridge's link to its platform went down or came back (R6.3)."""

    platform: str
    up: bool
    ts: float
    detail: str = ""


BridgeEvent = Inbound | RoomJoined | ConnectionChanged


# --- what the core hands to bridges ---------------------------------------------------------


@dataclass(frozen=True)
class OutboundPost:
    """One post to one external room, as stored in the outbox.

    `text` is markdown as the agent wrote it (or plain text for notices); the bridge renders
    it for its platform (R5.6) and splits it to the platform's limit (R5.2). `key` is a stable
    idempotency key: Matrix uses it as the transaction id, so a retry after a crash is not a
    second message (R8.3).
    """

    key: str
    platform: str
    room: str
    text: str
    author: str  # who wrote it: an agent name, a person's name, or "crewbridge"
    origin_platform: str  # where the author wrote it (for "alice (slack): …" attribution)
    kind: str = "agent"  # agent | relay | notice | alert


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


@dataclass(frozen=True)
class Nudge:
    """Deliver `text` to agent `agent` (R2.7: the text already names sender, platform, channel)."""

    agent: str
    text: str
    hops: int = 0
    origin: str = ""  # the channel the message was posted in: where notices about it go


@dataclass(frozen=True)
class Notice:
    """A short answer from the bot into a channel (unknown name, hop limit, …)."""

    channel: str
    text: str


@dataclass(frozen=True)
class AgentSpec:
    """What is needed to (re)start an agent the same way every time (R3.3)."""

    name: str
    kind: AgentKind
    channel: str
    task_id: int | None = None
    prompt: str = ""
    workdir: str = "."
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
