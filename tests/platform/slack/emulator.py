"""A local Slack emulator that speaks Slack's wire protocol to the real slack-bolt/slack_sdk.

The Slack tests exercise the real clients end to end, so they need something on the other
side of the wire that behaves like Slack where our bridge depends on it. This emulator is an
aiohttp server on 127.0.0.1 (a free port) that offers:

* **Web API** under `/api/<method>`, form, query or JSON parameters, the token from
  `Authorization: Bearer …` (or a `token` parameter): `auth.test`, `chat.postMessage`
  (`thread_ts` posts a reply in a thread; `username`/`icon_emoji` are kept on the message),
  `conversations.history` (a channel's top-level messages, newest first, with their
  metadata when asked), `conversations.replies` (a thread: its root, then its replies in
  order; cursor-paginated), `conversations.info`, `conversations.list` (cursor-paginated),
  `users.info`, `chat.update` (edits a bot post in place, keeping the edits; blocks left out
  are kept; one Tier 3 bucket for the workspace, `updates_per_second`/`update_burst`, its
  429s counted in `updates_rate_limited`), `chat.delete`, `chat.postEphemeral` (kept per
  channel and person, in no history), `reactions.add`/`.remove` (by the bot, per message;
  they need `reactions:write`) and
  `apps.connections.open` (app token only; returns a one-time `ws://127.0.0.1:<port>/link`
  URL). Errors are Slack's: HTTP 200 with `{"ok": false, "error": …}`, or 429 with a
  `Retry-After` header.
* **Socket Mode**: the websocket sends `hello`, pushes `events_api` envelopes
  (`envelope_id`, `payload` = the event callback, `retry_attempt`, `retry_reason`), records
  the acks, and can send a `disconnect` envelope or drop the TCP connection outright.
* **HTTP Events API**: event callbacks POSTed to `events_url`, signed like Slack signs them
  (`X-Slack-Signature: v0=` HMAC-SHA256 of `v0:{timestamp}:{body}` with the signing secret,
  `X-Slack-Request-Timestamp`, `X-Slack-Retry-Num`/`-Reason` on retries), or deliberately
  forged, stale or unsigned.
* **Scopes**: every answer to the bot token names its `scopes` in `X-OAuth-Scopes`, as
  Slack does; a test removes one to see what the app makes of it.
* **Fault switches**: `fail_next` (the next N calls of a method answer 429 + `Retry-After`
  or any Slack error), `lose_next_answers` (the call is carried out, the answer is a 500),
  `redeliver` (a retry of an event, same `event_id`), `send_disconnect`,
  `drop_connections`, and a per-channel rate limiter on `chat.postMessage` (a token bucket:
  about one post per second per channel with a small burst; beyond it 429 + `Retry-After`),
  which counts the 429s it sent in `rate_limited` (`refill_rate_limits` resets it).
* **Cards**: posts keep their Block Kit `blocks`; `click` delivers a `block_actions` payload
  for a button (an `interactive` envelope, or a signed form POST `payload=<json>`), whose
  `response_url` records what the app sends (`responses`); `react_as`/`unreact_as` deliver a
  person's `reaction_added`/`reaction_removed`.
* **People and the bot's output**: `post_as` builds a `message` event from a person and
  delivers it (socket or HTTP), `reply_as` a person's reply in a thread (its event carries
  `thread_ts`); both are kept as the channel's messages, which `conversations.history` and
  `conversations.replies` read. `posts(channel)` / `wait_for_posts` read what the bot
  posted, `replies(channel, root)` what the bot posted in one thread.
  Like real Slack, every bot post is echoed back to the app as a `message` event carrying the
  bot's `user` and `bot_id`, so tests see that the bridge drops its own messages (R5.5); its
  edits and deletions come back as `message_changed`/`message_deleted`, its reactions as
  `reaction_*` events. `state.deliveries` lists all that reached the app (`delivered(type)`).

Everything a test may wait on is signalled through one condition (`wait_until`, and its
shorthands `wait_for_posts`, `wait_connected`, `wait_ack`), so tests wait for a state, never
for "long enough". Every API call is recorded (`calls(method)`), so a test can also assert
what the app did not do (no second `users.info`, no silent retry of a 429).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

Signature = Literal["valid", "forged", "stale", "missing"]
BOT_SCOPES = ("app_mentions:read", "channels:history", "channels:read", "chat:write",
              "chat:write.customize", "groups:history", "groups:read", "im:history", "im:read",
              "mpim:history", "reactions:write", "users:read")
"""What `config/slack-manifest.yaml` asks for: the scopes of the emulated bot token."""
Via = Literal["socket", "http"]
NEEDED_SCOPES = {"reactions.add": "reactions:write", "reactions.remove": "reactions:write"}
"""Methods refused with `missing_scope` unless the bot token has the scope (a test takes
it away to see an app installed from an older manifest)."""
Envelope = Literal["events_api", "interactive"]
"""What a delivery carries: an event callback, or a click (`block_actions`)."""


@dataclass
class User:
    """A workspace member as `users.info` describes them."""

    id: str
    name: str
    real_name: str = ""
    display_name: str = ""
    is_bot: bool = False

    def to_api(self, team_id: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "team_id": team_id,
            "name": self.name,
            "real_name": self.real_name,
            "deleted": False,
            "is_bot": self.is_bot,
            "profile": {"real_name": self.real_name, "display_name": self.display_name},
        }


@dataclass
class Channel:
    """A conversation: public (`C…`), private (`G…`) or an IM with the bot (`D…`)."""

    id: str
    name: str = ""
    is_private: bool = False
    im_user: str | None = None  # set for an IM: the person on the other side
    bot_is_member: bool = True

    @property
    def is_im(self) -> bool:
        return self.im_user is not None

    @property
    def channel_type(self) -> str:
        """The `channel_type` Slack puts on message events in this conversation."""
        return "im" if self.is_im else ("group" if self.is_private else "channel")

    def to_api(self) -> dict[str, Any]:
        if self.is_im:
            return {"id": self.id, "is_im": True, "user": self.im_user, "is_open": True}
        return {
            "id": self.id,
            "name": self.name,
            "is_channel": not self.is_private,
            "is_group": self.is_private,
            "is_im": False,
            "is_private": self.is_private,
            "is_archived": False,
            "is_member": self.bot_is_member,
        }


@dataclass
class Posted:
    """One message the bot posted (`chat.postMessage`, or `chat.postEphemeral`), as it stands
    now: `text` and `blocks` are the latest, since `chat.update` edits a post in place (the
    parameters of every edit are kept in `edits`, oldest first), and `deleted` is set once
    `chat.delete` took it down (it stays here, but no longer in the channel's history)."""

    channel: str
    ts: str
    text: str
    thread_ts: str | None
    params: dict[str, Any]
    blocks: list[dict[str, Any]] = field(default_factory=list)
    edits: list[dict[str, Any]] = field(default_factory=list)
    edited_ts: str | None = None
    deleted: bool = False

    @property
    def username(self) -> str | None:
        """The sender name the post asked for (`chat:write.customize`), if any."""
        return self.params.get("username")

    @property
    def icon_emoji(self) -> str | None:
        return self.params.get("icon_emoji")

    def to_api(self, bot_user_id: str, bot_id: str, *, metadata: bool) -> dict[str, Any]:
        """The message as `conversations.history`/`.replies` show it; a customised sender
        makes it a `bot_message` with its `username` and `icons`, as on Slack."""
        message: dict[str, Any] = {"type": "message", "user": bot_user_id, "bot_id": bot_id,
                                   "text": self.text, "ts": self.ts}
        if self.thread_ts is not None:
            message["thread_ts"] = self.thread_ts
        if self.blocks:
            message["blocks"] = self.blocks
        if self.edited_ts is not None:
            message["edited"] = {"user": bot_user_id, "ts": self.edited_ts}
        if self.username:
            message.update(subtype="bot_message", username=self.username,
                           icons={"emoji": self.icon_emoji} if self.icon_emoji else {})
        raw = self.params.get("metadata")
        if metadata and raw:
            message["metadata"] = json.loads(raw) if isinstance(raw, str) else raw
        return message


@dataclass(frozen=True)
class ApiCall:
    """One Web API request as it arrived (method, merged parameters, bearer token)."""

    method: str
    params: dict[str, Any]
    token: str | None
    peer: Any = None  # the client's (host, port): calls on one kept connection share it


@dataclass
class _Fault:
    """A canned answer for the next `times` calls of one method."""

    times: int
    status: int
    error: str
    retry_after: int | None


@dataclass
class _Bucket:
    """Token bucket of one rate limit: a channel's `chat.postMessage` allowance, or the
    workspace's `chat.update` one (Tier 3)."""

    tokens: float
    updated: float


@dataclass
class _Link:
    """One open Socket Mode websocket."""

    ws: web.WebSocketResponse
    transport: asyncio.BaseTransport | None
    number: int


@dataclass
class Delivery:
    """An event callback that was delivered to the app, and how."""

    payload: dict[str, Any]
    via: Via
    envelope_id: str | None = None  # socket mode
    status: int | None = None  # http mode: the app's HTTP status
    body: str = ""  # http mode: the app's response body

    @property
    def event_id(self) -> str:
        return str(self.payload.get("event_id", ""))


@dataclass
class _State:
    """Everything the emulator recorded; mutated only by the emulator."""

    calls: list[ApiCall] = field(default_factory=list)
    posts: dict[str, list[Posted]] = field(default_factory=dict)
    said: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """People's messages per channel (the events `post_as`/`reply_as` delivered)."""
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    """Everything delivered to the app (people's events, echoes, clicks), in order."""
    ephemeral: dict[tuple[str, str], list[Posted]] = field(default_factory=dict)
    """What the bot showed one person alone, per (channel, user)."""
    reactions: dict[tuple[str, str], list[tuple[str, str]]] = field(default_factory=dict)
    """The reactions on each message, per (channel, ts): (user, name), in the order added."""
    responses: list[dict[str, Any]] = field(default_factory=list)
    """What the app POSTed to a click's `response_url`, in order."""
    connections_opened: int = 0
    rate_limited: int = 0
    updates_rate_limited: int = 0


class SlackEmulator:
    """A Slack workspace with one app installed, served on 127.0.0.1.

    Use as an async context manager (or `start`/`stop`). The defaults give a bot user
    `UBOT0001` (bot id `BBOT0001`) with valid tokens `bot_token`/`app_token`; add people
    with `add_user` and conversations with `add_channel`/`add_im`.
    """

    def __init__(self, *, bot_token: str = "xoxb-1-emulated-bot-token",
                 app_token: str = "xapp-1-emulated-app-token",
                 signing_secret: str = "emulated-signing-secret",
                 team_id: str = "T0EMULATED", app_id: str = "A0EMULATED",
                 bot_user_id: str = "UBOT0001", bot_id: str = "BBOT0001",
                 bot_name: str = "crewbridge",
                 posts_per_second: float = 1.0, post_burst: int = 3,
                 updates_per_second: float = 50 / 60, update_burst: int = 10,
                 echo_bot_posts: bool = True) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.signing_secret = signing_secret
        self.team_id = team_id
        self.app_id = app_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.posts_per_second = posts_per_second
        self.post_burst = post_burst
        self.updates_per_second = updates_per_second
        """`chat.update` for the whole workspace: Slack's Tier 3 (about 50 a minute)."""
        self.update_burst = update_burst
        self.echo_bot_posts = echo_bot_posts
        self.events_url: str | None = None
        """Where HTTP-mode event callbacks go (the app's Request URL); None: Socket Mode."""
        self.scopes = list(BOT_SCOPES)
        """The bot token's scopes, named in every answer's `X-OAuth-Scopes` header."""
        self.answer_pings = True
        """False: websockets stay open but their pings get no pong (a Slack that hangs)."""
        self.latency_s = 0.0
        """The network's and Slack's own time, each way: every Web API call is answered and
        every event sent this much later (a benchmark's model of Slack; tests keep 0)."""

        self.users: dict[str, User] = {}
        self.channels: dict[str, Channel] = {}
        self.state = _State()
        self.add_user(bot_user_id, bot_name, real_name=bot_name, is_bot=True)

        self._faults: dict[str, _Fault] = {}
        self._lost_answers: dict[str, int] = {}  # method -> calls carried out, answered 500
        self._hangs: dict[str, int] = {}  # method -> calls taken and never answered
        self._unhang = asyncio.Event()  # set at stop: hung calls end with the server
        self._buckets: dict[tuple[str, str], _Bucket] = {}  # (method, channel or "")
        self._tickets: set[str] = set()
        self._links: list[_Link] = []
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._http: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> SlackEmulator:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{id}", self._respond)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._http = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        """Close every websocket, the HTTP client and the server; safe to call twice."""
        self._unhang.set()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for link in list(self._links):
            await link.ws.close()
        if self._http is not None:
            await self._http.close()
            self._http = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SlackEmulator:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def api_url(self) -> str:
        """The Web API base URL to give the app (`SlackConfig.api_url`); ends in `/api/`."""
        return f"http://127.0.0.1:{self.port}/api/"

    # --- the workspace -------------------------------------------------------------------

    def add_user(self, user_id: str, name: str, *, real_name: str = "",
                 display_name: str = "", is_bot: bool = False) -> User:
        user = User(user_id, name, real_name or name, display_name, is_bot)
        self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str, *, is_private: bool = False,
                    bot_is_member: bool = True) -> Channel:
        channel = Channel(channel_id, name, is_private=is_private, bot_is_member=bot_is_member)
        self.channels[channel_id] = channel
        return channel

    def add_im(self, channel_id: str, user_id: str) -> Channel:
        """An IM between the bot and `user_id` (Slack ids these `D…`)."""
        channel = Channel(channel_id, im_user=user_id)
        self.channels[channel_id] = channel
        return channel

    # --- reading what happened -----------------------------------------------------------

    def posts(self, channel: str) -> list[Posted]:
        """What the bot posted to `channel`, in the order Slack accepted it."""
        return list(self.state.posts.get(channel, []))

    def replies(self, channel: str, root: str) -> list[Posted]:
        """What the bot posted in the thread under `root` in `channel`, in order."""
        return [p for p in self.posts(channel) if p.thread_ts == root]

    def post(self, channel: str, ts: str) -> Posted:
        """The bot's post `ts` in `channel` (deleted or not); KeyError if it never posted it."""
        for post in self.state.posts.get(channel, []):
            if post.ts == ts:
                return post
        raise KeyError(f"the bot posted no message {ts} in {channel}")

    def ephemeral(self, channel: str, user: str) -> list[Posted]:
        """What the bot showed `user` alone in `channel` (`chat.postEphemeral`), in order."""
        return list(self.state.ephemeral.get((channel, user), []))

    def reactions(self, channel: str, ts: str, user: str | None = None) -> list[str]:
        """The reactions `user` (default: the bot) has on message `ts` now, in order added."""
        who = user or self.bot_user_id
        return [name for by, name in self.state.reactions.get((channel, ts), []) if by == who]

    @property
    def responses(self) -> list[dict[str, Any]]:
        """What the app POSTed to the `response_url` of a click, in order."""
        return list(self.state.responses)

    def delivered(self, event_type: str) -> list[Delivery]:
        """The deliveries of events of `event_type` (`reaction_added`, …; `block_actions`
        for clicks), echoes of the bot's own doings among them, in order."""
        return [d for d in self.state.deliveries
                if d.payload.get("event", d.payload).get("type") == event_type]

    def calls(self, method: str) -> list[ApiCall]:
        return [c for c in self.state.calls if c.method == method]

    @property
    def rate_limited(self) -> int:
        """How many 429s the per-channel `chat.postMessage` limiter has answered."""
        return self.state.rate_limited

    @property
    def updates_rate_limited(self) -> int:
        """How many 429s the workspace's `chat.update` limiter (Tier 3) has answered."""
        return self.state.updates_rate_limited

    @property
    def connections(self) -> int:
        """Socket Mode websockets open right now."""
        return len(self._links)

    @property
    def connections_opened(self) -> int:
        """Socket Mode websockets ever opened (a reconnection makes it grow)."""
        return self.state.connections_opened

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait until `predicate()` holds (checked on every change the emulator sees)."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(predicate), timeout)

    async def wait_for_posts(self, channel: str, count: int,
                             timeout: float = 5.0) -> list[Posted]:
        """Wait until the bot has posted at least `count` messages to `channel`."""
        await self.wait_until(lambda: len(self.state.posts.get(channel, [])) >= count, timeout)
        return self.posts(channel)

    async def wait_connected(self, opened: int = 1, timeout: float = 5.0) -> None:
        """Wait until `opened` websockets have ever been opened and one is open now."""
        await self.wait_until(lambda: self.state.connections_opened >= opened
                              and bool(self._links), timeout)

    async def wait_ack(self, envelope_id: str, timeout: float = 5.0) -> dict[str, Any]:
        """Wait for the app's ack of a Socket Mode envelope; returns the ack message."""
        await self.wait_until(lambda: envelope_id in self.state.acks, timeout)
        return self.state.acks[envelope_id]

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # --- fault switches ------------------------------------------------------------------

    def fail_next(self, method: str, times: int = 1, *, status: int = 429,
                  error: str = "ratelimited", retry_after: int | None = 3) -> None:
        """Answer the next `times` calls of `method` with `error` (default: 429 + Retry-After).

        For a plain Slack error pass `status=200` (Slack's usual `ok: false` answer).
        """
        self._faults[method] = _Fault(times, status, error, retry_after if status == 429 else None)

    def lose_next_answers(self, method: str, times: int = 1) -> None:
        """Carry out the next `times` calls of `method`, then answer 500 as if the answer
        were lost on the way: the app cannot tell that Slack took the call."""
        self._lost_answers[method] = times

    def hang_next(self, method: str, times: int = 1) -> None:
        """Take the next `times` calls of `method` and never answer them (a Slack that
        hangs, R6.3): the app's own timeout is all that ends them."""
        self._hangs[method] = times

    def refill_rate_limits(self) -> None:
        """Give every limiter (each channel's posts, the workspace's edits) a full burst
        again, as if it had been idle a while."""
        self._buckets.clear()

    async def send_disconnect(self, reason: str = "refresh_requested") -> None:
        """Send a `disconnect` envelope on every open websocket (Slack does before a restart)."""
        for link in list(self._links):
            await link.ws.send_json({"type": "disconnect", "reason": reason,
                                     "debug_info": {"host": "emulator"}})

    async def drop_connections(self) -> None:
        """Cut every websocket's TCP connection without a close frame (a network failure)."""
        for link in list(self._links):
            if link.transport is not None:
                link.transport.abort()

    # --- people talking ------------------------------------------------------------------

    def message_event(self, user: str, channel: str, text: str, *, thread_ts: str | None = None,
                      subtype: str | None = None, bot_id: str | None = None,
                      extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """An Events API callback for a `message` event, as Slack would send it."""
        ts = self._next_ts()
        event: dict[str, Any] = {
            "type": "message", "channel": channel, "user": user, "text": text, "ts": ts,
            "event_ts": ts, "team": self.team_id,
            "channel_type": self._channel(channel).channel_type,
        }
        if bot_id is None and subtype is None:
            event["client_msg_id"] = secrets.token_hex(8)
        if thread_ts is not None:
            event["thread_ts"] = thread_ts
        if subtype is not None:
            event["subtype"] = subtype
        if bot_id is not None:
            event["bot_id"] = bot_id
        event.update(extra or {})
        return self.event_callback(event)

    def event_callback(self, event: dict[str, Any]) -> dict[str, Any]:
        """Wrap an event the way the Events API does (`event_id`, `authorizations`, …)."""
        return {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": f"Ev{next(self._ids):08d}",
            "event_time": int(time.time()),
            "authorizations": [{"enterprise_id": None, "team_id": self.team_id,
                                "user_id": self.bot_user_id, "is_bot": True,
                                "is_enterprise_install": False}],
            "is_ext_shared_channel": False,
        }

    async def post_as(self, user: str, channel: str, text: str, *, via: Via | None = None,
                      **kwargs: Any) -> Delivery:
        """A person posts `text` in `channel`; the event is delivered to the app, and the
        message is kept in the channel (history, threads).

        `via` defaults to the socket when one is open, else HTTP to `events_url`.
        """
        payload = self.add_message(user, channel, text, **kwargs)
        return await self.deliver(payload, via=via)

    def add_message(self, user: str, channel: str, text: str, **kwargs: Any) -> dict[str, Any]:
        """A person's message kept in the channel but delivered to no one (written before
        the app listened); returns its event callback (`["event"]["ts"]` names it)."""
        payload = self.message_event(user, channel, text, **kwargs)
        self.state.said.setdefault(channel, []).append(payload["event"])
        return payload

    async def reply_as(self, user: str, channel: str, root: str, text: str, *,
                       broadcast: bool = False, via: Via | None = None) -> Delivery:
        """A person replies `text` in the thread under the message `root` (its `ts`);
        `broadcast`: "also send to the channel" (subtype `thread_broadcast`)."""
        return await self.post_as(user, channel, text, via=via, thread_ts=root,
                                  subtype="thread_broadcast" if broadcast else None)

    async def react_as(self, user: str, channel: str, ts: str, name: str, *,
                       via: Via | None = None) -> Delivery:
        """A person adds the reaction `name` (no colons: `octagonal_sign`) to message `ts`;
        the app gets a `reaction_added` event."""
        self._reactions(channel, ts).append((user, name))
        return await self.deliver(self.reaction_event("reaction_added", user, channel, ts, name),
                                  via=via)

    async def unreact_as(self, user: str, channel: str, ts: str, name: str, *,
                         via: Via | None = None) -> Delivery:
        """A person takes their reaction `name` off message `ts` (`reaction_removed`)."""
        self._reactions(channel, ts).remove((user, name))
        return await self.deliver(
            self.reaction_event("reaction_removed", user, channel, ts, name), via=via)

    def reaction_event(self, kind: str, user: str, channel: str, ts: str,
                       name: str) -> dict[str, Any]:
        """An Events API callback for a `reaction_added`/`reaction_removed` event."""
        return self.event_callback(self._reaction(kind, user, channel, ts, name))

    def _reaction(self, kind: str, user: str, channel: str, ts: str, name: str) -> dict[str, Any]:
        return {"type": kind, "user": user, "reaction": name,
                "item_user": self._author(channel, ts),
                "item": {"type": "message", "channel": channel, "ts": ts},
                "event_ts": self._next_ts()}

    async def click(self, channel: str, ts: str, action_id: str, user: str, *,
                    via: Via | None = None, signature: Signature = "valid") -> Delivery:
        """A person clicks the button `action_id` in the bot's post `ts`: the app gets a
        `block_actions` payload, an `interactive` envelope over Socket Mode or a signed form
        POST (`payload=<json>`) to `events_url`. KeyError if there is no such button."""
        post = self.post(channel, ts)
        if post.deleted:
            raise KeyError(f"message {ts} in {channel} was deleted")
        block_id, button = _button(post.blocks, action_id)
        return await self.deliver(self.block_actions(post, block_id, button, user), via=via,
                                  kind="interactive", signature=signature)

    def block_actions(self, post: Posted, block_id: str, button: dict[str, Any],
                      user: str) -> dict[str, Any]:
        """The interactive payload of a click on `button` (in block `block_id` of `post`)."""
        person = self.users[user]
        return {
            "type": "block_actions",
            "user": {"id": person.id, "username": person.name, "name": person.name,
                     "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": post.ts, "channel_id": post.channel,
                          "is_ephemeral": False},
            "trigger_id": f"{next(self._ids)}.{secrets.token_hex(8)}",
            "team": {"id": self.team_id, "domain": "emulated"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": post.channel, "name": self.channels[post.channel].name},
            "message": {**post.to_api(self.bot_user_id, self.bot_id, metadata=False),
                        "team": self.team_id},
            "state": {"values": {}},
            "response_url": f"http://127.0.0.1:{self.port}/respond/{secrets.token_hex(8)}",
            "actions": [{"action_id": button["action_id"], "block_id": block_id,
                         "text": button.get("text", {}), "value": button.get("value", ""),
                         "type": "button", "action_ts": f"{time.time():.6f}",
                         **({"style": button["style"]} if "style" in button else {})}],
        }

    async def deliver(self, payload: dict[str, Any], *, via: Via | None = None,
                      retry_attempt: int = 0, retry_reason: str = "",
                      signature: Signature = "valid", kind: Envelope = "events_api") -> Delivery:
        """Deliver one event callback (or, `kind="interactive"`, a click's payload). Socket:
        push an envelope; HTTP: POST it, signed (an interactive payload as the form field
        `payload`, as Slack sends it).

        `signature` applies to HTTP only: `forged` (wrong secret), `stale` (a timestamp
        ten minutes old, correctly signed) or `missing` (no signature headers at all).
        """
        via = via or ("socket" if self._links else "http")
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if via == "socket":
            if not self._links:
                raise RuntimeError("no Socket Mode connection is open to deliver to")
            envelope_id = secrets.token_hex(16)
            await self._links[-1].ws.send_json({
                "envelope_id": envelope_id, "payload": payload, "type": kind,
                "accepts_response_payload": False, "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            })
            return await self._delivered(Delivery(payload, "socket", envelope_id=envelope_id))
        if self.events_url is None or self._http is None:
            raise RuntimeError("no socket is open and events_url is not set")
        if kind == "interactive":
            body = urlencode({"payload": json.dumps(payload)})
            headers = {"Content-Type": "application/x-www-form-urlencoded"}
        else:
            body = json.dumps(payload)
            headers = {"Content-Type": "application/json"}
        if signature != "missing":
            stamp = int(time.time()) - (600 if signature == "stale" else 0)
            secret = "not-the-signing-secret" if signature == "forged" else self.signing_secret
            headers["X-Slack-Request-Timestamp"] = str(stamp)
            headers["X-Slack-Signature"] = sign(secret, stamp, body)
        if retry_attempt:
            headers["X-Slack-Retry-Num"] = str(retry_attempt)
            headers["X-Slack-Retry-Reason"] = retry_reason or "http_timeout"
        async with self._http.post(self.events_url, data=body, headers=headers) as resp:
            return await self._delivered(
                Delivery(payload, "http", status=resp.status, body=await resp.text()))

    async def _delivered(self, delivery: Delivery) -> Delivery:
        self.state.deliveries.append(delivery)
        await self._notify()
        return delivery

    async def redeliver(self, delivery: Delivery, attempt: int = 1,
                        reason: str = "timeout") -> Delivery:
        """Deliver the same event again as a Slack retry (same `event_id`, retry markers)."""
        return await self.deliver(delivery.payload, via=delivery.via, retry_attempt=attempt,
                                  retry_reason=reason)

    # --- Web API -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update(await request.post())
        auth = request.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else params.get("token")
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.state.calls.append(ApiCall(method, params, token, peer))
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if self._hangs.get(method, 0) > 0:
            self._hangs[method] -= 1
            await self._notify()
            await self._unhang.wait()
            return _error("internal_error", status=500)
        try:
            answer = self._fault(method) or await self._method(method, params, token)
            if token == self.bot_token:
                answer.headers["X-OAuth-Scopes"] = ",".join(self.scopes)
            if self._lost_answers.get(method, 0) > 0:
                self._lost_answers[method] -= 1
                return _error("internal_error", status=500)
            return answer
        finally:
            await self._notify()

    def _fault(self, method: str) -> web.Response | None:
        fault = self._faults.get(method)
        if fault is None or fault.times <= 0:
            return None
        fault.times -= 1
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return _error(fault.error, status=fault.status, headers=headers)

    async def _method(self, method: str, params: dict[str, Any],
                      token: str | None) -> web.Response:
        if method == "apps.connections.open":
            if token != self.app_token:
                return _error("not_allowed_token_type" if token == self.bot_token
                              else "invalid_auth")
            ticket = secrets.token_hex(12)
            self._tickets.add(ticket)
            return _ok(url=f"ws://127.0.0.1:{self.port}/link?ticket={ticket}&app_id={self.app_id}")
        if token != self.bot_token:
            return _error("invalid_auth" if token else "not_authed")
        handler = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "reactions.add": self._react,
            "reactions.remove": self._unreact,
            "conversations.history": self._conversations_history,
            "conversations.replies": self._conversations_replies,
            "conversations.info": self._conversations_info,
            "conversations.list": self._conversations_list,
            "users.info": self._users_info,
        }.get(method)
        if handler is None:
            return _error("unknown_method", status=404)
        needed = NEEDED_SCOPES.get(method)
        if needed is not None and needed not in self.scopes:
            return web.json_response({"ok": False, "error": "missing_scope", "needed": needed,
                                      "provided": ",".join(self.scopes)})
        return await handler(params)

    async def _auth_test(self, params: dict[str, Any]) -> web.Response:
        return _ok(url="https://emulated.slack.com/", team="Emulated", user="crewbridge",
                   team_id=self.team_id, user_id=self.bot_user_id, bot_id=self.bot_id,
                   is_enterprise_install=False)

    async def _post_message(self, params: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        if not channel.bot_is_member:
            return _error("not_in_channel")
        text = str(params.get("text") or "")
        if not text and not params.get("blocks"):
            return _error("no_text")
        if len(text) > 40_000:
            return _error("msg_too_long")
        wait = self._take_token(("chat.postMessage", channel.id), self.posts_per_second,
                                self.post_burst)
        if wait is not None:
            self.state.rate_limited += 1
            return _error("ratelimited", status=429, headers={"Retry-After": str(wait)})
        ts = self._next_ts()
        thread_ts = params.get("thread_ts")
        posted = Posted(channel.id, ts, text, thread_ts, params, _blocks(params.get("blocks")))
        self.state.posts.setdefault(channel.id, []).append(posted)
        self._echo({**self._as_event(posted), "event_ts": posted.ts,
                    "bot_profile": {"id": self.bot_id, "app_id": self.app_id,
                                    "name": "crewbridge"}})
        return _ok(channel=channel.id, ts=ts,
                   message=posted.to_api(self.bot_user_id, self.bot_id, metadata=False))

    async def _update(self, params: dict[str, Any]) -> web.Response:
        """Edit a bot post in place; blocks left out are kept, as Slack keeps them. Tier 3:
        one bucket for the whole workspace, beyond it 429 + `Retry-After`."""
        post = self._bot_post(params, not_ours="cant_update_message")
        if isinstance(post, str):
            return _error(post)
        if not params.get("text") and not params.get("blocks"):
            return _error("no_text")
        wait = self._take_token(("chat.update", ""), self.updates_per_second, self.update_burst)
        if wait is not None:
            self.state.updates_rate_limited += 1
            return _error("ratelimited", status=429, headers={"Retry-After": str(wait)})
        before = self._as_event(post)
        if "text" in params:
            post.text = str(params["text"] or "")
        if "blocks" in params:
            post.blocks = _blocks(params["blocks"])
        post.edits.append({k: v for k, v in params.items() if k != "token"})
        post.edited_ts = self._next_ts()
        self._echo({"type": "message", "subtype": "message_changed", "hidden": True,
                    "channel": post.channel, "ts": post.edited_ts, "event_ts": post.edited_ts,
                    "channel_type": before["channel_type"],
                    "message": self._as_event(post), "previous_message": before})
        return _ok(channel=post.channel, ts=post.ts, text=post.text,
                   message=post.to_api(self.bot_user_id, self.bot_id, metadata=False))

    async def _delete(self, params: dict[str, Any]) -> web.Response:
        post = self._bot_post(params, not_ours="cant_delete_message")
        if isinstance(post, str):
            return _error(post)
        post.deleted = True
        ts = self._next_ts()
        self._echo({"type": "message", "subtype": "message_deleted", "hidden": True,
                    "channel": post.channel, "ts": ts, "event_ts": ts, "deleted_ts": post.ts,
                    "channel_type": self.channels[post.channel].channel_type,
                    "previous_message": self._as_event(post)})
        return _ok(channel=post.channel, ts=post.ts)

    async def _post_ephemeral(self, params: dict[str, Any]) -> web.Response:
        """Show a message to one person alone: kept per (channel, user), in no history."""
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        user = str(params.get("user", ""))
        if user not in self.users:
            return _error("user_not_found")
        if channel.is_im and channel.im_user != user:
            return _error("user_not_in_channel")
        if not channel.bot_is_member:
            return _error("not_in_channel")
        text = str(params.get("text") or "")
        if not text and not params.get("blocks"):
            return _error("no_text")
        ts = self._next_ts()
        shown = Posted(channel.id, ts, text, params.get("thread_ts"), params,
                       _blocks(params.get("blocks")))
        self.state.ephemeral.setdefault((channel.id, user), []).append(shown)
        return _ok(message_ts=ts)

    async def _react(self, params: dict[str, Any]) -> web.Response:
        return self._bot_reaction(params, add=True)

    async def _unreact(self, params: dict[str, Any]) -> web.Response:
        return self._bot_reaction(params, add=False)

    def _bot_reaction(self, params: dict[str, Any], *, add: bool) -> web.Response:
        """`reactions.add`/`.remove` by the bot, with Slack's errors; echoed as an event."""
        channel, ts = str(params.get("channel", "")), str(params.get("timestamp", ""))
        name = str(params.get("name") or "")
        if channel not in self.channels:
            return _error("channel_not_found")
        if self._author(channel, ts) is None:
            return _error("message_not_found")
        if not name:
            return _error("invalid_name")
        reactions = self._reactions(channel, ts)
        mine = (self.bot_user_id, name)
        if add and mine in reactions:
            return _error("already_reacted")
        if not add and mine not in reactions:
            return _error("no_reaction")
        if add:
            reactions.append(mine)
        else:
            reactions.remove(mine)
        kind = "reaction_added" if add else "reaction_removed"
        self._echo(self._reaction(kind, self.bot_user_id, channel, ts, name))
        return _ok()

    def _bot_post(self, params: dict[str, Any], *, not_ours: str) -> Posted | str:
        """The live bot post that `channel` and `ts` name, or Slack's error for why not."""
        channel, ts = str(params.get("channel", "")), str(params.get("ts", ""))
        if channel not in self.channels:
            return "channel_not_found"
        for post in self.state.posts.get(channel, []):
            if post.ts == ts and not post.deleted:
                return post
        return not_ours if self._author(channel, ts) else "message_not_found"

    def _author(self, channel: str, ts: str) -> str | None:
        """Who wrote the live message `ts` in `channel` (the bot or a person); None: none."""
        if any(p.ts == ts and not p.deleted for p in self.state.posts.get(channel, [])):
            return self.bot_user_id
        return next((e["user"] for e in self.state.said.get(channel, []) if e["ts"] == ts), None)

    def _reactions(self, channel: str, ts: str) -> list[tuple[str, str]]:
        if self._author(channel, ts) is None:
            raise KeyError(f"no message {ts} in {channel} to react to")
        return self.state.reactions.setdefault((channel, ts), [])

    def _take_token(self, key: tuple[str, str], rate: float, burst: int) -> int | None:
        """Spend one call from the bucket `key`; None if allowed, else seconds to wait."""
        now = time.monotonic()
        bucket = self._buckets.setdefault(key, _Bucket(float(burst), now))
        bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return max(1, math.ceil((1.0 - bucket.tokens) / rate))

    def _as_event(self, posted: Posted) -> dict[str, Any]:
        """A bot post as a `message` event shows it."""
        channel = self.channels[posted.channel]
        return {**posted.to_api(self.bot_user_id, self.bot_id, metadata=False),
                "channel": channel.id, "app_id": self.app_id, "team": self.team_id,
                "channel_type": channel.channel_type}

    def _echo(self, event: dict[str, Any]) -> None:
        """Send what the bot itself did back to the app, as Slack does: its posts, edits
        and deletions as `message` events, its reactions as `reaction_*` events."""
        if self.echo_bot_posts and (self._links or self.events_url):
            task = asyncio.ensure_future(self.deliver(self.event_callback(event)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _messages(self, channel: str, *, metadata: bool) -> list[dict[str, Any]]:
        """Every message in `channel`, people's and the bot's, oldest first (ts order)."""
        bot = [p.to_api(self.bot_user_id, self.bot_id, metadata=metadata)
               for p in self.state.posts.get(channel, []) if not p.deleted]
        people = [{k: v for k, v in e.items() if k not in ("channel", "channel_type", "team")}
                  for e in self.state.said.get(channel, [])]
        return sorted(bot + people, key=lambda m: _ts_order(m["ts"]))

    async def _conversations_history(self, params: dict[str, Any]) -> web.Response:
        """A channel's top-level messages (and replies also sent to it), newest first; their
        `metadata` only when asked for with `include_all_metadata`, as Slack does."""
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        limit = min(int(params.get("limit") or 100), 999)
        top = [m for m in self._messages(channel.id, metadata=_flag(params, "include_all_metadata"))
               if m.get("thread_ts") in (None, m["ts"]) or m.get("subtype") == "thread_broadcast"]
        return _ok(messages=top[::-1][:limit], has_more=len(top) > limit)

    async def _conversations_replies(self, params: dict[str, Any]) -> web.Response:
        """A thread: its root, then its replies oldest first, `limit` a page (cursor: the
        offset); metadata as for the history."""
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        root = str(params.get("ts", ""))
        messages = self._messages(channel.id, metadata=_flag(params, "include_all_metadata"))
        thread = [m for m in messages if m["ts"] == root]
        if not thread:
            return _error("thread_not_found")
        thread += [m for m in messages if m.get("thread_ts") == root and m["ts"] != root]
        start = int(params.get("cursor") or 0)
        limit = min(int(params.get("limit") or 1000), 1000)
        more = start + limit < len(thread)
        return _ok(messages=thread[start:start + limit], has_more=more,
                   response_metadata={"next_cursor": str(start + limit) if more else ""})

    async def _conversations_info(self, params: dict[str, Any]) -> web.Response:
        channel = self.channels.get(str(params.get("channel", "")))
        if channel is None:
            return _error("channel_not_found")
        return _ok(channel=channel.to_api())

    async def _conversations_list(self, params: dict[str, Any]) -> web.Response:
        types = str(params.get("types") or "public_channel").split(",")
        wanted = [c for c in self.channels.values()
                  if (c.is_im and "im" in types)
                  or (not c.is_im and c.is_private and "private_channel" in types)
                  or (not c.is_im and not c.is_private and "public_channel" in types)]
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit") or 100)
        page = wanted[start:start + limit]
        more = start + limit < len(wanted)
        return _ok(channels=[c.to_api() for c in page],
                   response_metadata={"next_cursor": str(start + limit) if more else ""})

    async def _users_info(self, params: dict[str, Any]) -> web.Response:
        user = self.users.get(str(params.get("user", "")))
        if user is None:
            return _error("user_not_found")
        return _ok(user=user.to_api(self.team_id))

    # --- Socket Mode ---------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=401, text="invalid ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=False)  # pings are answered below, or not
        await ws.prepare(request)
        self.state.connections_opened += 1
        link = _Link(ws, request.transport, self.state.connections_opened)
        self._links.append(link)
        try:
            await ws.send_json({"type": "hello", "num_connections": len(self._links),
                                "debug_info": {"host": "emulator", "build_number": 1,
                                               "approximate_connection_time": 18060},
                                "connection_info": {"app_id": self.app_id}})
            await self._notify()
            async for message in ws:
                if message.type == aiohttp.WSMsgType.PING:
                    if self.answer_pings:
                        await ws.pong(message.data)
                elif message.type == aiohttp.WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    if "envelope_id" in ack:
                        self.state.acks[ack["envelope_id"]] = ack
                        await self._notify()
        finally:
            self._links.remove(link)
            await self._notify()
        return ws

    async def _respond(self, request: web.Request) -> web.Response:
        """A click's `response_url`: what the app sends there is recorded."""
        self.state.responses.append(await request.json())
        await self._notify()
        return _ok()

    # --- helpers ---------------------------------------------------------------------------

    def _channel(self, channel_id: str) -> Channel:
        if channel_id not in self.channels:
            raise KeyError(f"unknown channel {channel_id}: add it with add_channel/add_im")
        return self.channels[channel_id]

    def _next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"


def sign(secret: str, timestamp: int, body: str) -> str:
    """Slack's request signature: `v0=` + hex HMAC-SHA256 of `v0:{timestamp}:{body}`."""
    base = f"v0:{timestamp}:{body}".encode()
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def _blocks(raw: Any) -> list[dict[str, Any]]:
    """Block Kit JSON as it arrived (a list in a JSON body, a JSON string in a form), every
    block with a `block_id`: Slack assigns one where the app gave none."""
    blocks = json.loads(raw) if isinstance(raw, str) else list(raw or [])
    return [{"block_id": secrets.token_hex(3), **block} for block in blocks]


def _button(blocks: list[dict[str, Any]], action_id: str) -> tuple[str, dict[str, Any]]:
    """The block id and the button `action_id` in `blocks` (an `actions` element or a
    section's accessory)."""
    for block in blocks:
        elements = block.get("elements", []) if block.get("type") == "actions" else []
        for element in [*elements, block.get("accessory") or {}]:
            if element.get("type") == "button" and element.get("action_id") == action_id:
                return block["block_id"], element
    raise KeyError(f"no button {action_id!r} in the message")


def _flag(params: dict[str, Any], name: str) -> bool:
    return str(params.get(name, "")).lower() in ("1", "true")


def _ts_order(ts: str) -> tuple[int, int]:
    """Slack `ts` values in time order (`seconds.sequence`)."""
    seconds, _, sequence = ts.partition(".")
    return int(seconds), int(sequence or 0)


def _ok(**fields: Any) -> web.Response:
    return web.json_response({"ok": True, **fields})


def _error(error: str, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
