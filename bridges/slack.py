"""The Slack bridge: slack-bolt `AsyncApp` over Socket Mode or the HTTP Events API (R9.1).

What a payload or an API error means — which messages are a person's (R5.5), Slack markup
to plain text, 429s and permanent errors, the metadata naming each part of a post — is
decided in `bridges.slack_events`; the HTTP endpoint that checks every request before bolt
is `bridges.slack_http`, and resolving bound channels (429s waited out, ids remembered:
R9.1) `bridges.slack_rooms`. This module is the I/O around them, and why it is built the
way it is:

* **Start-up is checked, once, with clear errors.** `start` calls `auth.test` itself and
  turns a refusal into one `SlackStartError` line ("Slack rejected the bot token
  (invalid_auth)"), never a traceback. It then hands bolt an `authorize` function that
  returns that result, so bolt knows the bot's `user_id`/`bot_id` from the first event
  (its built-in self-event filter needs them) and never calls `auth.test` lazily inside
  event dispatch. In Socket Mode the app token is checked the same way, by asking for the
  websocket URL before the SDK's connect loop (which would otherwise retry a bad token
  forever) takes over.
* **Events reach the sink in the order they arrived, and are acked after it returned.** The
  Socket Mode client handles each envelope in its own task, and name look-ups take network
  round trips, so every event goes through one `OrderedPump` (`bridges.pump`). Bolt
  runs with `process_before_response=True`: Slack gets its ack (HTTP 200 / the envelope
  ack) only once the sink has stored the event, so a crash before that makes Slack
  redeliver, and the store's dedup on `event_id` (R8.1) absorbs the retry.
* **Connection state is reported (R6.3).** The link is up while both its legs are: the
  socket (Socket Mode) and the Web API (a call failed or unanswered within `api_timeout_s`
  is down, as of when it was sent; any answer is up). The SDK reconnects sockets by itself
  (at once after a `disconnect` envelope, within a ping interval after a drop, never in a
  hot loop) but has no hook for "down", so the bridge watches: a `disconnect` envelope or
  a poll of `is_connected()` once a ping interval says down, dated from the last pong; a
  `hello` while up means a drop between two polls. A Slack that hangs says `hello` on each
  new socket and answers no ping, so each dies within two ping intervals: were `hello`
  enough to be up, that would be short outages, none ever alerted. So after a drop the
  socket is up again only once a ping on the new one was answered.
* **Posting is `bridges.slack_posts`**: split, under the author's name, in the thread,
  never sleeping on a 429, never twice (R5.7, R8.3, R12.1); and cards, edits, deletions,
  reactions, private notices (R13). Its every Web API call goes through `_exchange`.
* **A click is queued in order, then acked at once (R13.1).** Slack wants it acked within
  3 s and never sends it again, so waiting for the store would only risk an error shown to
  the person. It never reaches bolt, whose dispatch raises on some malformed payloads
  (`bridges.slack_socket`, `bridges.slack_http`); a malformed one is logged and dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from crewbridge.bridges.base import (
    Acted,
    EventSink,
    Inbound,
    KeyValueStore,
    PlatformUnreachable,
    Post,
    ThreadRef,
)
from crewbridge.bridges.link import Leg, Legs
from crewbridge.bridges.pump import Make, OrderedPump, ready
from crewbridge.bridges.settings import SlackConfig, SlackMode
from crewbridge.bridges.slack_cards import Malformed, clicks
from crewbridge.bridges.slack_events import (
    PLATFORM,
    WANTED_SCOPES,
    SocketSignal,
    answered_since,
    error_code,
    is_person_message,
    missing_scopes,
    names_wanted,
    room_joined,
    silent_s,
    socket_signal,
    to_inbound,
)
from crewbridge.bridges.slack_http import events_app
from crewbridge.bridges.slack_names import SlackNames
from crewbridge.bridges.slack_pace import TokenBucket
from crewbridge.bridges.slack_posts import SlackPoster
from crewbridge.bridges.slack_rooms import NETWORK_ERRORS, resolve
from crewbridge.bridges.slack_socket import SocketHandler

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
EDIT_BURST = 5
"""Edits the bridge makes back to back before `edits_per_minute` paces them; below the
few Slack's Tier 3 lets through at once."""


class SlackStartError(Exception):
    """Slack refused our credentials or could not be reached at start-up: one clear line."""


class SlackUnreachable(SlackStartError, PlatformUnreachable):
    """Slack's API could not be reached (or answered 5xx): the core tries again (R14.2)."""


def _unused_token_warning(record: logging.LogRecord) -> bool:
    """Hide bolt's "`token` will be unused" warning at start-up.

    Bolt reads `SLACK_BOT_TOKEN` from the environment even when it is given a client, then
    warns that the token goes unused; here the token reaches bolt through `authorize`, and
    the warning would send an operator looking for a problem that is not there.
    """
    return "`token` will be unused" not in record.getMessage()


class SlackBridge:
    """One Slack workspace through one bot user (see the module docstring for the design)."""

    platform = PLATFORM
    post_interval_s: float
    """The outbox's pace per channel: `[slack] post_interval_s`, by default 1 s, Slack's
    limit of about one post per second per channel (R8.3)."""
    edits_per_minute = 50.0
    """Slack's Tier 3 allowance for `chat.update`, for the whole workspace (R13.7)."""

    def __init__(self, config: SlackConfig, kv: KeyValueStore, *,
                 ping_interval_s: float = 10.0, connect_timeout_s: float = 30.0,
                 api_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`ping_interval_s`: the Socket Mode ping period, which bounds how long a dropped
        socket goes unnoticed; `api_timeout_s`: how long a Web API call may go unanswered
        (slack_sdk's default); tests shorten both. `clock` paces the edits (a fake one in
        tests)."""
        self._config = config
        self._kv = kv
        self.post_interval_s = config.post_interval_s
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._client = AsyncWebClient(base_url=config.api_url, token=config.bot_token,
                                      timeout=int(max(1, api_timeout_s)))
        self._api_timeout_s = api_timeout_s
        self._poster = SlackPoster(self._client, kv, self._exchange, TokenBucket(
            self.edits_per_minute / 60, EDIT_BURST, clock))
        self._me: AuthorizeResult | None = None
        self._sink: EventSink | None = None
        self._names = SlackNames(self._client, self._exchange)
        self._pump: OrderedPump | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._socket: SocketHandler | None = None
        self._runner: web.AppRunner | None = None
        self._link = Legs(PLATFORM, {Leg.SOCKET: config.mode == SlackMode.HTTP, Leg.API: True})
        self._hello = asyncio.Event()  # Slack said hello on the first socket (start-up)
        self._pong_at_hello: float | None = None  # the SDK's last pong at hello: a baseline
        self._reporting = False
        self.events_url: str | None = None
        """HTTP mode: the URL bolt listens on (Slack's Request URL), once started."""

    # --- Bridge protocol -------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Check the tokens, connect (Socket Mode) or listen (HTTP), then deliver events."""
        self._sink = sink
        # One HTTP session for every Web API call: slack_sdk opens (and TLS-handshakes) a
        # new connection per call without one, which is most of a post's time. Its timeout
        # is the calls' timeout (R6.3): slack_sdk applies its own only to sessions it makes.
        self._client.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._api_timeout_s))
        try:
            me = self._me = await self._authenticate()
        except BaseException:
            await self.stop()
            raise

        # Bolt passes listener arguments by parameter name and counts a bound method's
        # `self` among them, so its hooks are plain closures.
        async def authorize() -> AuthorizeResult:
            """The single workspace this bot was started for (no lazy `auth.test`)."""
            return me

        async def on_message(body: dict[str, Any], event: dict[str, Any]) -> BoltResponse | None:
            return await self._on_message(body, event)

        async def on_member_joined(event: dict[str, Any]) -> BoltResponse | None:
            return await self._on_member_joined(event)

        async def on_other_event() -> None:
            """Acknowledge and ignore (bolt acks when the listener returns)."""

        bolt_log = logging.getLogger("slack_bolt.AsyncApp")
        bolt_log.addFilter(_unused_token_warning)
        try:
            app = AsyncApp(
                name="crewbridge",
                # bolt gets the bot token per request from `authorize`; this client only
                # carries the API base URL (R9.1) to bolt and to the Socket Mode client.
                client=AsyncWebClient(base_url=self._config.api_url),
                authorize=authorize,
                signing_secret=self._config.signing_secret or "",
                # HTTP mode: `bridges.slack_http` checks every request before bolt (R9.1).
                request_verification_enabled=False,
                process_before_response=True,
            )
        finally:
            bolt_log.removeFilter(_unused_token_warning)
        app.event("message")(on_message)
        app.event("member_joined_channel")(on_member_joined)
        # Everything else (app_mention duplicates a message event) is acked and dropped, so
        # Slack does not redeliver it.
        app.event(re.compile(".*"))(on_other_event)
        self._pump = OrderedPump(sink, name="slack-events")
        try:
            if self._config.mode == SlackMode.HTTP:
                await self._listen(app)
            else:
                await self._connect(app)
        except BaseException:
            await self.stop()
            raise
        self._reporting = True

    async def resolve_room(self, ref: str) -> str:
        """R1.2/R9.1: see `bridges.slack_rooms.resolve`."""
        bot = self._me.bot_user_id if self._me is not None else None
        return await resolve(self._client, self._kv, ref, bot or "")

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        """R5.2, R5.6, R5.7, R8.3, R12.1: see `bridges.slack_posts.SlackPoster.send`."""
        return await self._poster.send(room, post, key=key, maybe_sent=maybe_sent)

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """R13.3, R13.7: see `bridges.slack_posts.SlackPoster.edit`."""
        await self._poster.edit(room, ref, post)

    async def delete(self, room: str, ref: str) -> None:
        """R13.7: see `bridges.slack_posts.SlackPoster.delete`."""
        await self._poster.delete(room, ref)

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        """R13.7: see `bridges.slack_posts.SlackPoster.react`."""
        await self._poster.react(room, ref, emoji, on)

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        """R13.2: see `bridges.slack_posts.SlackPoster.tell`."""
        await self._poster.tell(room, user, text, thread)

    async def typing(self, room: str, on: bool) -> None:
        """Nothing: Slack has no typing indicator for a bot in a channel (the RTM API's is
        gone); the ⏳ status message shows a turn running there (R13.7)."""

    async def stop(self) -> None:
        """Stop taking events, let the ones already taken reach the sink, close; idempotent."""
        self._reporting = False
        if self._watch_task is not None:
            self._watch_task.cancel()
            await asyncio.gather(self._watch_task, return_exceptions=True)
            self._watch_task = None
        if self._socket is not None:
            client = self._socket.client
            await self._socket.close_async()
            await asyncio.gather(*(f for f in (client.message_processor,
                                               client.current_session_monitor,
                                               client.message_receiver) if f is not None),
                                 return_exceptions=True)
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._pump is not None:
            await self._pump.close(self._connect_timeout_s)
            self._pump = None
        if self._client.session is not None:
            await self._client.session.close()
            self._client.session = None

    # --- start-up --------------------------------------------------------------------------

    async def _authenticate(self) -> AuthorizeResult:
        try:
            auth = await self._client.auth_test()
        except SlackApiError as e:
            if e.response.status_code >= 500:
                raise SlackUnreachable(f"the Slack API answered {e.response.status_code}"
                                       ) from None
            raise SlackStartError(f"Slack rejected the bot token ({error_code(e)})") from None
        except NETWORK_ERRORS as e:
            raise SlackUnreachable(
                f"cannot reach the Slack API at {self._config.api_url}: {e}") from None
        if not auth.get("bot_id"):
            raise SlackStartError("the bot token is not a bot token: use the app's "
                                  "Bot User OAuth Token (xoxb-…)")
        log.info("slack: signed in as %s (%s) in team %s",
                 auth.get("user"), auth["user_id"], auth.get("team_id"))
        for scope in missing_scopes(auth.headers.get("x-oauth-scopes")):
            log.warning("slack: the bot token lacks the scope %s, so %s: add it to the app and "
                        "reinstall it (docs/operations/slack.md)", scope, WANTED_SCOPES[scope])
        return AuthorizeResult(enterprise_id=auth.get("enterprise_id"),
                               team_id=auth.get("team_id"), bot_user_id=auth["user_id"],
                               bot_id=auth["bot_id"], bot_token=self._config.bot_token)

    async def _connect(self, app: AsyncApp) -> None:
        """Socket Mode: check the app token, open the websocket, wait for Slack's `hello`."""
        app_token = self._config.app_token or ""
        try:
            opened = await self._client.apps_connections_open(app_token=app_token)
        except SlackApiError as e:
            raise SlackStartError(f"Slack rejected the app token ({error_code(e)}); "
                                  "Socket Mode needs an app-level token (xapp-…) with "
                                  "connections:write") from None
        except NETWORK_ERRORS as e:
            raise SlackUnreachable(
                f"cannot reach the Slack API at {self._config.api_url}: {e}") from None
        self._socket = SocketHandler(app, app_token, on_click=self._on_click,
                                     ping_interval=self._ping_interval_s)
        self._socket.client.on_message_listeners.append(self._on_socket_message)
        self._socket.client.wss_uri = opened["url"]
        try:
            await asyncio.wait_for(self._socket.connect_async(), self._connect_timeout_s)
            await asyncio.wait_for(self._hello.wait(), self._connect_timeout_s)
        except TimeoutError:
            raise SlackUnreachable(
                f"the Socket Mode connection to Slack did not open within "
                f"{self._connect_timeout_s:.0f} s") from None
        self._watch_task = asyncio.create_task(self._watch_link(), name="slack-link-watch")

    async def _listen(self, app: AsyncApp) -> None:
        """HTTP mode: serve our endpoint, which checks every request before bolt (R9.1)."""
        self._runner = web.AppRunner(
            events_app(app, self._config.signing_secret or "", EVENTS_PATH, self._on_click),
            access_log=None)
        await self._runner.setup()
        host, port = self._config.http_host, self._config.http_port
        try:
            await web.TCPSite(self._runner, host, port).start()
        except OSError as e:
            raise SlackStartError(
                f"cannot listen for Slack events on {host}:{port}: {e.strerror}") from None
        bound_port = self._runner.addresses[0][1]
        self.events_url = f"http://{host}:{bound_port}{EVENTS_PATH}"
        log.info("slack: listening for events on %s", self.events_url)

    # --- connection state (R6.3) -----------------------------------------------------------

    async def _on_socket_message(self, message: aiohttp.WSMessage) -> None:
        """Every raw websocket text message: `hello` means connected, `disconnect` going down."""
        signal = socket_signal(message.data)
        if signal is SocketSignal.HELLO:
            assert self._socket is not None
            self._pong_at_hello = self._socket.client.last_ping_pong_time
            if self._link.is_up(Leg.SOCKET):
                self._link_changed(Leg.SOCKET, False, "the Socket Mode connection was replaced",
                                   down_for_s=silent_s(self._pong_at_hello, time.time()))
            if not self._hello.is_set():  # at start-up a hello is enough
                self._hello.set()
                self._link_changed(Leg.SOCKET, True, "Socket Mode connected")
        elif signal is SocketSignal.DISCONNECT:
            self._link_changed(Leg.SOCKET, False, "Slack asked to reconnect (disconnect envelope)")

    async def _watch_link(self) -> None:
        """Poll the socket once a ping interval (the SDK's own pace): a drop shows no event
        of its own; a new socket is up once a ping on it was answered (module doc)."""
        assert self._socket is not None
        client = self._socket.client
        while True:
            await asyncio.sleep(self._ping_interval_s)
            connected = await client.is_connected()
            last_pong = client.last_ping_pong_time
            if self._pong_at_hello is None:
                self._pong_at_hello = last_pong  # the baseline (see `answered_since`)
            socket_up = self._link.is_up(Leg.SOCKET)
            if socket_up and not connected:
                self._link_changed(Leg.SOCKET, False, "the Socket Mode connection was lost",
                                   down_for_s=silent_s(last_pong, time.time()))
            elif not socket_up and connected and answered_since(self._pong_at_hello,
                                                                last_pong):
                self._link_changed(Leg.SOCKET, True, "Socket Mode connected")

    @contextlib.contextmanager
    def _exchange(self, what: str) -> Iterator[None]:
        """Around a Web API call: any answer (an error too) is the API up; none (a network
        error, or nothing within `api_timeout_s`) down, as of when it was sent (R6.3)."""
        sent = time.monotonic()
        try:
            yield
        except NETWORK_ERRORS as e:
            self._link_changed(Leg.API, False, f"the Slack Web API did not answer {what} "
                               f"({type(e).__name__})", down_for_s=time.monotonic() - sent)
            raise
        except SlackApiError:
            self._link_changed(Leg.API, True, "the Slack Web API answers again")
            raise
        self._link_changed(Leg.API, True, "the Slack Web API answers again")

    def _link_changed(self, leg: Leg, up: bool, detail: str, *,
                      down_for_s: float = 0.0) -> None:
        change = self._link.observe(leg, up, detail, time.time(), down_for_s=down_for_s)
        if change is None:
            return
        log.log(logging.INFO if up else logging.WARNING, "slack: %s", detail)
        if self._reporting and self._pump is not None:
            self._pump.post(ready(change))

    # --- inbound events ----------------------------------------------------------------------

    async def _on_message(self, body: dict[str, Any],
                          event: dict[str, Any]) -> BoltResponse | None:
        assert self._me is not None
        if not is_person_message(event, self._me.bot_user_id):
            return None
        return await self._deliver(self._inbound(body, event))

    async def _on_member_joined(self, event: dict[str, Any]) -> BoltResponse | None:
        assert self._me is not None
        joined = room_joined(event, self._me.bot_user_id)
        return None if joined is None else await self._deliver(ready(joined))

    def _on_click(self, body: dict[str, Any]) -> None:
        """R13.1: each action of a click queued as `Acted` (module doc); a malformed payload
        is logged and dropped."""
        try:
            acts = clicks(body)
        except Malformed as e:
            log.warning("slack: dropped an interactive payload: %s", e)
            return
        assert self._pump is not None
        for act in acts:
            self._pump.post(self._named(act))

    async def _named(self, act: Acted) -> Acted:
        """`act` under the person's display name, as their messages are (R9.1)."""
        return dataclasses.replace(act, sender_name=await self._names.name(act.sender))

    async def _deliver(self, make: Make) -> BoltResponse | None:
        """Hand an event to the pump and wait until it is stored; bolt then acks it.

        When the core could not take it, the listener answers 500 instead: no ack, so Slack
        delivers the event again (the same `event_id`).
        """
        assert self._pump is not None
        try:
            await self._pump.deliver(make)
        except Exception:
            return BoltResponse(status=500, body="")
        return None

    async def _inbound(self, body: dict[str, Any], event: dict[str, Any]) -> Inbound | None:
        """The `Inbound` of a person's message, once the names it needs are looked up."""
        assert self._me is not None and self._me.bot_user_id is not None
        bot = self._me.bot_user_id
        names = {uid: await self._names.name(uid) for uid in names_wanted(event, bot)}
        return to_inbound(body, event, names, bot)
