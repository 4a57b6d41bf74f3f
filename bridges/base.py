"""The interface every bridge implements, and the errors its `send` may raise.

A bridge turns platform events into the records below and posts into platform calls, and
nothing else: it owns its connection (reconnecting with capped, jittered backoff), ignoring
its own and other bots' messages, rendering markdown for its platform and splitting to its
size limit. It knows nothing about agents or channels; the core decides what a room means.
"""

from __future__ import annotations

import random
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

# --- what a bridge hands to the core ------------------------------------------------------

_UNCLEAN_CHAR = re.compile("[\x00\ud800-\udfff]")


def clean_text(text: str) -> str:
    """`text` without NULs, and with lone surrogates as U+FFFD (R5.8).

    A person's text reaches a bridge as JSON, which may carry `\\ud800` or `\\u0000`; such a
    string cannot be encoded as UTF-8, so storing it would fail and the message would be
    lost (the platform would redeliver it, and it would fail again). Valid surrogate pairs
    were already joined by the JSON decoder, so a surrogate left is a lone one. The same rule
    as `supervisor.protocol.clean_text` for agent output: the bridges may not import the
    supervisor, and the rule is one line.
    """
    return _UNCLEAN_CHAR.sub(lambda m: "" if m.group() == "\x00" else "\ufffd", text)


@dataclass(frozen=True)
class Inbound:
    """A person's message as a bridge saw it, before the core knows which channel it is in.

    `event_id` is the platform's own id (Slack `event_id` or `client_msg_id`/ts, Matrix event
    id); the store refuses a second record with the same (platform, event_id), which is how
    Slack retries and Matrix re-deliveries are ignored (R8.1).

    `thread`: the platform id of the thread's root when the message is a reply in a thread
    (Slack `thread_ts`, Matrix `m.thread` event id; the console: the thread's number), else
    None. `ref`: the id by which a reply would name this message as its thread's root (Slack
    `ts`, Matrix event id), when that is not `event_id` (R12). `reply_to`: the platform id
    of the post this one replies to, when the person replied to one (Matrix `m.in_reply_to`
    that is not a thread's fallback) — a reply `allow` to an approval card decides it.
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
    ref: str = ""
    reply_to: str | None = None  # Matrix: the event a real reply answers (not the fallback)

    @property
    def root_ref(self) -> str:
        """The platform id a reply in this message's thread names as its root."""
        return self.ref or self.event_id

    def __post_init__(self) -> None:
        """R5.8: what a person wrote is cleaned where it enters, whichever bridge made it."""
        for name in ("text", "sender_name"):
            object.__setattr__(self, name, clean_text(getattr(self, name)))


@dataclass(frozen=True)
class RoomJoined:
    """The bot was added to (or joined) a room; the core answers unbound rooms (R1.5)."""

    platform: str
    room: str
    is_direct: bool = False
    inviter: str | None = None


@dataclass(frozen=True)
class ConnectionChanged:
    """A bridge's link to its platform went down or came back (R6.3).

    `down_for_s` (going down only): how long before this report the link was last known
    good. R6.3 counts an outage from the last successful exchange, and a hang is seen only
    once a request is overdue, so a bridge reports a hung homeserver tens of seconds after
    it went quiet; the core dates the outage back by this much. A duration, not a time,
    because the core's clock is its own (a fake one in tests).
    """

    platform: str
    up: bool
    ts: float
    detail: str = ""
    down_for_s: float = 0.0


@dataclass(frozen=True)
class Acted:
    """A person acted on one of the bot's posts (R13.1, R13.6): pressed a button (Slack,
    `choice` = the button's `action`) or reacted to it (Matrix, `choice` = the reaction's
    key, such as "✅"). The core maps either to a decision with the post's `Button`s.

    `ref`: the platform id of the bot's post acted on (Slack `ts`, Matrix event id).
    `event_id`: the platform's id of the act itself, so a redelivery is ignored (R8.1).
    """

    platform: str
    room: str
    sender: str
    sender_name: str
    ref: str
    choice: str
    event_id: str
    ts: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "sender_name", clean_text(self.sender_name))


@dataclass(frozen=True)
class DevicesChanged:
    """A user the bot already knew has a new encryption device, or a device with other
    keys (Matrix, R15.2: the bot trusts devices on first use, so a change afterwards is
    what the admins hear of — someone may have signed in as them). `detail` says which."""

    platform: str
    user: str
    detail: str


BridgeEvent = Inbound | RoomJoined | ConnectionChanged | Acted | DevicesChanged


# --- what the core hands to a bridge --------------------------------------------------------


class AuthorRole(StrEnum):
    """Who a post speaks for, so a bridge can show it (Slack: the icon beside `username`)."""

    BOT = "bot"  # the bot's own notices and alerts
    LEAD = "lead"
    WORKER = "worker"
    FORK = "fork"  # a lead's session forked for one thread (R12.3)
    PERSON = "person"  # a person's message relayed from another room (R1.4)


@dataclass(frozen=True)
class ThreadRef:
    """The thread of a room a post goes into (R12.1, R12.5).

    `root`: the platform id of the thread's root *in this room* (Slack `ts`, Matrix event
    id) — in a room the root was relayed to, the relay's id; None when the root was never
    shown in this room (a DM), where the post goes to the top level — but the console,
    which knows a thread by its number, shows `number` (R12.6). `latest`: the thread's
    latest post in this room, for Matrix's reply fallback (`m.in_reply_to`); the root when
    None.
    """

    root: str | None
    number: int
    latest: str | None = None


@dataclass(frozen=True)
class Button:
    """A choice offered on a post (R13.1, R13.6): a Slack button, a Matrix reaction.

    `action` is what comes back in `Acted.choice` from Slack (the button's `action_id`);
    on Matrix the bot adds `emoji` to its own post as a reaction, so a person only taps it,
    and `Acted.choice` is the emoji they reacted with. `style`: "primary", "danger" or "".
    """

    action: str
    label: str
    emoji: str
    style: str = ""


@dataclass(frozen=True)
class Post:
    """One post for one room: markdown `text`, and the name it is shown under.

    The name stays out of the markdown (R5.7), so a post that starts with a code fence, a
    heading or a table renders as that block: Slack shows `author` as the sender
    (`username`), Matrix as a bold line of its own, the console as `#room author: `. An
    empty `author` shows the text alone.
    """

    text: str
    author: str = ""
    role: AuthorRole = AuthorRole.BOT
    thread: ThreadRef | None = None
    buttons: tuple[Button, ...] = ()

    @property
    def line(self) -> str:
        """`author: text`, as a place with no sender names (the console) shows it."""
        return f"{self.author}: {self.text}" if self.author else self.text


EventSink = Callable[[BridgeEvent], Awaitable[None]]
"""The core's entry point: a bridge awaits it for every event, in the order received.

When it returns, the event is stored (R1.3, R8.1); a bridge that tracks a sync position
(Matrix `next_batch`) saves it only after the sink has returned for every event of the
batch (R8.2).
"""


class SendError(Exception):
    """A post could not be delivered now. The outbox keeps it and retries."""

    def __init__(self, message: str, *, retry_after_s: float | None = None,
                 permanent: bool = False):
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.permanent = permanent


class RateLimited(SendError):
    """The platform said slow down (Slack 429 `Retry-After`, Matrix `M_LIMIT_EXCEEDED`)."""

    def __init__(self, retry_after_s: float, message: str = "rate limited"):
        super().__init__(message, retry_after_s=retry_after_s)


class PlatformUnreachable(Exception):
    """The platform could not be reached at start-up — a network error, a timeout, a 5xx
    from its proxy: nothing in the config is wrong, so the bot runs and connects when it
    can (R14.2). A refusal (a token the platform rejects) is any other exception."""


class RoomUnresolvable(Exception):
    """A configured room (id, alias or #name) cannot be found or reached (R1.2, R11.4)."""


class Bridge(Protocol):
    platform: str
    post_interval_s: float
    """The least time between two posts to one room (Slack: about 1 s); the outbox paces by it."""

    async def start(self, sink: EventSink) -> None:
        """Connect and begin delivering events to `sink`; return once connected.

        Raises a clear exception when the first connection cannot be made —
        `PlatformUnreachable` when the platform cannot be reached (the core retries `start`
        later), anything else when it refuses (a bad token); after that, losing the link is
        reported as `ConnectionChanged` and retried in the background, never raised. A
        `start` that raised may be called again.
        """

    async def resolve_room(self, ref: str) -> str:
        """Turn a configured room reference into the platform's room id, joining if invited.

        Raises `RoomUnresolvable` naming the reference when it cannot.
        """

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        """Post `post` to `room` (in its thread, if any), rendered and split for the
        platform, as the bot's own (Matrix `m.notice`, R5.5). Returns the platform id of the
        first message posted (a later reply names it as the thread root, R12.5) — of the
        one carrying the buttons, when the post has some (the core edits that one, R13.3)
        — or None when the platform gave none.

        `key` is stable across retries of the same post. `maybe_sent`: an earlier attempt
        may have reached the platform (the post was pending when the bot started, or a try
        failed after the request could have been taken), so a bridge whose platform cannot
        deduplicate by `key` itself checks before posting again (R8.3). Raises `RateLimited`
        or `SendError`; the outbox owns retrying, the bridge never sleeps on a failure.
        """

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """Replace the text (and buttons) of the bot's post `ref` in `room` (Slack
        `chat.update`, Matrix `m.replace` of the original, keeping its thread; R13.3, R13.7).
        Raises like `send`."""

    async def delete(self, room: str, ref: str) -> None:
        """Take back the bot's post `ref` (Slack `chat.delete`, Matrix redaction). A post
        that is gone already is no error."""

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        """Add (`on`) or take back the bot's reaction `emoji` (unicode, such as "👀") on
        message `ref` (R13.7). Taking back one that is not there is no error."""

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        """Show `text` to `user` alone where the platform can (Slack `chat.postEphemeral`);
        elsewhere a notice in the thread that names them (R13.2). Best effort: not stored,
        not retried."""

    async def typing(self, room: str, on: bool) -> None:
        """Show (or stop showing) that the bot is typing in `room`, where the platform has
        it (Matrix; R13.7); renewed by the bridge while on. Best effort."""

    edits_per_minute: float | None
    """The platform's limit on edits across all rooms (Slack Tier 3 `chat.update`: 50),
    which the core spreads its status edits under (R13.7); None: no such limit."""

    async def stop(self) -> None:
        """Disconnect; idempotent."""


def backoff_delay(attempt: int, *, base_s: float = 1.0, cap_s: float = 60.0,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with full jitter: the delay before retry number `attempt` (1-based).

    Full jitter spreads reconnecting clients apart; the cap keeps a long outage from turning
    into hour-long silences once the platform is back.
    """
    ceiling = min(cap_s, base_s * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class KeyValueStore(Protocol):
    """Small durable state a bridge keeps between runs (Matrix `next_batch`, direct rooms).

    Implemented by `bot.store.Store`; keys are namespaced by the bridge (`matrix.next_batch`).
    """

    async def get_value(self, key: str) -> str | None: ...

    async def put_value(self, key: str, value: str) -> None: ...

    async def delete_value(self, key: str) -> None: ...


async def remembered(kv: KeyValueStore, key: str, find: Callable[[], Awaitable[str]]) -> str:
    """The value kept under `key`, or what `find` finds (then kept): a room resolved once
    is not asked of the platform again after a restart (R9.1)."""
    value = await kv.get_value(key)
    if value:
        return value
    value = await find()
    await kv.put_value(key, value)
    return value
