"""The Slack bridge: slack-bolt `AsyncApp` over Socket Mode or the HTTP Events API (R9.1).

What this module owns, and why it is built the way it is:

* **Start-up is checked, once, with clear errors.** `start` calls `auth.test` itself and
  turns a refusal into one `SlackStartError` line ("Slack rejected the bot token
  (invalid_auth)"), never a traceback. It then hands bolt an `authorize` function that
  returns that result, so bolt knows the bot's `user_id`/`bot_id` from the first event
  (its built-in self-event filter needs them) and never calls `auth.test` lazily inside
  event dispatch. In Socket Mode the app token is checked the same way, by asking for the
  websocket URL before the SDK's connect loop (which would otherwise retry a bad token
  forever) takes over.
* **Only people's plain messages become `Inbound` (R5.5).** Bolt drops the app's own events
  (`user == bot user` or `bot_id == ours`); this bridge also drops other bots (`bot_id`) and
  every message subtype that is not a person writing (edits, deletions, joins, bot_message).
* **Events reach the sink in the order they arrived, and are acked after it returned.** The
  Socket Mode client handles each envelope in its own task, and name look-ups take network
  round trips, so every event goes through one queue that a single pump task drains. Bolt
  runs with `process_before_response=True`: Slack gets its ack (HTTP 200 / the envelope
  ack) only once the sink has stored the event, so a crash before that makes Slack
  redeliver, and the store's dedup on `event_id` (R8.1) absorbs the retry.
* **Connection state is reported (R6.3).** The slack_sdk Socket Mode client reconnects by
  itself (after a `disconnect` envelope at once; after a dropped or stale socket within its
  ping interval; a failing reconnect is retried every ping interval, never in a hot loop).
  It has no hook for "the link went down", so the bridge watches it: a `disconnect`
  envelope or a poll of `is_connected()` reports `ConnectionChanged(up=False)`, the next
  `hello` from Slack reports `up=True` (and a `hello` while we thought we were up means a
  drop happened between two polls: both are reported).
* **Sending never sleeps (R8.3).** The Web API client has no rate-limit retry handler, so a
  429 surfaces at once as `RateLimited(Retry-After)`; the outbox paces and retries. A split
  post remembers how many of its parts were accepted (in the `KeyValueStore`, by `key`), so
  a retry after a 429 on part 3 does not post parts 1 and 2 again, even after a restart.
* **A post is not made twice (R8.3).** Slack has no idempotency key. Each part carries
  message metadata naming it; a post the outbox marks `maybe_sent` (pending when the bot
  started, or its last try failed after it could have been taken) is first looked for in
  the channel's latest messages (`conversations.history`), and the parts found are skipped.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
from aiohttp import web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.response import BoltResponse
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bridges.base import (
    BridgeEvent,
    ConnectionChanged,
    EventSink,
    Inbound,
    KeyValueStore,
    RateLimited,
    RoomJoined,
    RoomUnresolvable,
    SendError,
)
from bridges.render import SLACK_LIMIT_CHARS, slack_measure, to_slack_mrkdwn
from bridges.settings import SlackConfig
from bridges.split import split_message

log = logging.getLogger(__name__)

PLATFORM = "slack"
EVENTS_PATH = "/slack/events"
SLACK_TEXT_LIMIT = SLACK_LIMIT_CHARS - 100
"""Rendered characters per post: a little headroom below Slack's advised 4,000 keeps every
part clearly under it (R5.2)."""

PERSON_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "me_message"})
"""Message subtypes that are a person writing; every other subtype is an edit, a deletion,
a join notice, a bot or integration post, … and is not input (R5.5)."""

PERMANENT_ERRORS = frozenset({
    "channel_not_found", "not_in_channel", "is_archived", "invalid_auth", "not_authed",
    "account_inactive", "token_revoked", "token_expired", "missing_scope", "no_permission",
    "restricted_action", "msg_too_long", "no_text", "invalid_blocks", "team_access_not_granted",
    "ekm_access_denied", "channel_is_archived", "cannot_reply_to_message",
})
"""`chat.postMessage` errors that no retry can fix; the outbox gives these up."""

NAME_TTL_S = 3600.0
# Every part the bot posts carries message metadata naming it (`<key>.<i>`), so that a post
# that may already be in the channel is looked for before it is posted again (R8.3).
POST_METADATA_TYPE = "crewbridge_post"
HISTORY_LOOKBACK = 200  # most recent messages searched for a post that may be there
"""How long a resolved user name is trusted; renames show up within the hour."""

NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)

_USER_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|([^>]*))?>")
_CHANNEL_REF = re.compile(r"<#([CGD][A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!(here|channel|everyone)(?:\|[^>]*)?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
_CHANNEL_ID = re.compile(r"[CGD][A-Z0-9]{2,}")


class SlackStartError(Exception):
    """Slack refused our credentials or could not be reached at start-up: one clear line."""


def slack_to_plain(text: str, names: Mapping[str, str], bot_user_id: str) -> str:
    """Turn Slack's message markup into the plain text the core routes on.

    A leading mention of the bot (`<@UBOT> do this`) is how people address it, not content,
    so it is removed, as are its other mentions; `<@U123>` becomes `@name` so routing sees
    names (R2.2); channel references, `<!here>`-style specials and links become their
    readable form; and Slack's three HTML entities are unescaped last.
    """
    text = re.sub(rf"^\s*<@{bot_user_id}(?:\|[^>]*)?>[\s:,]*", "", text)
    text = re.sub(rf"\s?<@{bot_user_id}(?:\|[^>]*)?>", "", text)
    text = _USER_MENTION.sub(lambda m: "@" + names.get(m[1], m[2] or m[1]), text)
    text = _CHANNEL_REF.sub(lambda m: "#" + (m[2] or m[1]), text)
    text = _SPECIAL.sub(lambda m: "@" + m[1], text)
    text = _LINK.sub(lambda m: m[1] if not m[2] or m[2] == m[1] else f"{m[2]} ({m[1]})", text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").strip()


def _error_code(e: SlackApiError) -> str:
    data = e.response.data
    return str(data.get("error", "unknown_error")) if isinstance(data, dict) else "unknown_error"


def _retry_after(e: SlackApiError) -> float:
    try:
        return max(0.0, float(e.response.headers.get("Retry-After", "1")))
    except ValueError:
        return 1.0


def _unused_token_warning(record: logging.LogRecord) -> bool:
    """Hide bolt's "`token` will be unused" warning at start-up.

    Bolt reads `SLACK_BOT_TOKEN` from the environment even when it is given a client, then
    warns that the token goes unused; here the token reaches bolt through `authorize`, and
    the warning would send an operator looking for a problem that is not there.
    """
    return "`token` will be unused" not in record.getMessage()


async def _ready(event: BridgeEvent) -> BridgeEvent:
    """An event that needs no look-up, in the shape the pump takes (an awaitable)."""
    return event


Pending = tuple[Coroutine[Any, Any, BridgeEvent | None], asyncio.Future[None] | None]


class SlackBridge:
    """One Slack workspace through one bot user (see the module docstring for the design)."""

    platform = PLATFORM
    post_interval_s: float
    """The outbox's pace per channel: `[slack] post_interval_s`, by default 1 s, Slack's
    limit of about one post per second per channel (R8.3)."""

    def __init__(self, config: SlackConfig, kv: KeyValueStore, *,
                 ping_interval_s: float = 10.0, connect_timeout_s: float = 30.0) -> None:
        """`ping_interval_s` is the Socket Mode client's ping period, which also bounds how
        long a dropped socket goes unnoticed; tests shorten it."""
        self._config = config
        self._kv = kv
        self.post_interval_s = config.post_interval_s
        self._ping_interval_s = ping_interval_s
        self._connect_timeout_s = connect_timeout_s
        self._client = AsyncWebClient(base_url=config.api_url, token=config.bot_token)
        self._me: AuthorizeResult | None = None
        self._sink: EventSink | None = None
        self._names: dict[str, tuple[str, float]] = {}
        self._queue: asyncio.Queue[Pending | None] = asyncio.Queue()
        self._pump_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._hello = asyncio.Event()
        self._link_up = False
        self._reporting = False
        self.events_url: str | None = None
        """HTTP mode: the URL bolt listens on (Slack's Request URL), once started."""

    # --- Bridge protocol -------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Check the tokens, connect (Socket Mode) or listen (HTTP), then deliver events."""
        self._sink = sink
        me = self._me = await self._authenticate()

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
                process_before_response=True,
            )
        finally:
            bolt_log.removeFilter(_unused_token_warning)
        app.event("message")(on_message)
        app.event("member_joined_channel")(on_member_joined)
        # Everything else (app_mention duplicates a message event) is acked and dropped, so
        # Slack does not redeliver it.
        app.event(re.compile(".*"))(on_other_event)
        self._pump_task = asyncio.create_task(self._pump(), name="slack-events")
        try:
            if self._config.mode == "http":
                await self._listen(app)
            else:
                await self._connect(app)
        except BaseException:
            await self.stop()
            raise
        self._reporting = True

    async def resolve_room(self, ref: str) -> str:
        """`C…`/`G…`/`D…` ids are checked with `conversations.info`, `#name` is looked up with
        `conversations.list`; the bot must be a member of a channel to read and post (R1.2)."""
        ref = ref.strip()
        try:
            if ref.startswith("#"):
                channel = await self._find_channel(ref[1:])
            elif _CHANNEL_ID.fullmatch(ref):
                channel = (await self._client.conversations_info(channel=ref))["channel"]
            else:
                raise RoomUnresolvable(
                    f"Slack channel {ref} is neither a channel id (C…, G…, D…) nor a #name")
        except SlackApiError as e:
            raise RoomUnresolvable(
                f"Slack channel {ref} cannot be found ({_error_code(e)}); check the id, "
                "and invite the bot to private channels") from None
        except NETWORK_ERRORS as e:
            raise RoomUnresolvable(f"Slack channel {ref} could not be looked up: {e}") from None
        if channel is None:
            raise RoomUnresolvable(
                f"Slack channel {ref} was not found (private channels are visible only "
                "after the bot is invited)")
        if not channel.get("is_im") and not channel.get("is_member", False):
            raise RoomUnresolvable(
                f"Slack channel {ref} exists but the bot is not a member: "
                "invite it with /invite @crewbridge in that channel")
        return str(channel["id"])

    async def send(self, room: str, text: str, *, key: str, notice: bool = True,
                   maybe_sent: bool = False) -> None:
        """Split below 4,000 rendered characters, render each part as mrkdwn, post them in
        order (R5.2, R5.6). The split is made on the markdown, so a code block cut in two is
        closed and reopened and every part renders on its own.

        Slack has no idempotency key, so with `maybe_sent` the channel's latest messages are
        searched for this post's parts (by their metadata) and those found are not posted
        again. Every Slack post by the bot is a bot message, so `notice` changes nothing.
        """
        parts = [to_slack_mrkdwn(part)
                 for part in split_message(text, SLACK_TEXT_LIMIT, measure=slack_measure)]
        progress_key = f"slack.sent_parts.{key}"
        done = int(await self._kv.get_value(progress_key) or 0) if len(parts) > 1 else 0
        there = await self._posted_parts(room) if maybe_sent else set()
        for index in range(done, len(parts)):
            part = f"{key}.{index}"
            if part in there:
                log.info("slack: %s is already in %s; not posting it again", part, room)
            else:
                await self._post(room, parts[index], part)
            if index + 1 < len(parts):
                await self._kv.put_value(progress_key, str(index + 1))
        if len(parts) > 1:
            await self._kv.delete_value(progress_key)  # the post is whole: forget its progress

    async def _posted_parts(self, room: str) -> set[str]:
        """The parts (`<key>.<i>`) among the channel's latest messages that the bot posted.

        If the history cannot be read for good (a missing `*:history` scope), the post goes
        out anyway: a message twice is better than a message lost."""
        try:
            resp = await self._client.conversations_history(
                channel=room, limit=HISTORY_LOOKBACK, include_all_metadata=True)
        except SlackApiError as e:
            if e.response.status_code == 429:
                raise RateLimited(_retry_after(e), f"Slack rate-limited reading {room}") from None
            log.warning("slack: cannot read %s to check for a post made before a restart (%s);"
                        " posting it again", room, _error_code(e))
            return set()
        except NETWORK_ERRORS as e:
            raise SendError(f"cannot reach Slack to read {room}: {e}") from None
        parts = set()
        for message in resp.get("messages") or []:
            metadata = message.get("metadata") or {}
            if metadata.get("event_type") == POST_METADATA_TYPE:
                parts.add(str((metadata.get("event_payload") or {}).get("part")))
        return parts

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
        if self._pump_task is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(asyncio.shield(self._pump_task), self._connect_timeout_s)
            except TimeoutError:
                self._pump_task.cancel()
                await asyncio.gather(self._pump_task, return_exceptions=True)
            self._pump_task = None
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending is not None:
                make, done = pending
                make.close()
                if done is not None and not done.done():
                    done.cancel()

    # --- start-up --------------------------------------------------------------------------

    async def _authenticate(self) -> AuthorizeResult:
        try:
            auth = await self._client.auth_test()
        except SlackApiError as e:
            raise SlackStartError(f"Slack rejected the bot token ({_error_code(e)})") from None
        except NETWORK_ERRORS as e:
            raise SlackStartError(
                f"cannot reach the Slack API at {self._config.api_url}: {e}") from None
        if not auth.get("bot_id"):
            raise SlackStartError("the bot token is not a bot token: use the app's "
                                  "Bot User OAuth Token (xoxb-…)")
        log.info("slack: signed in as %s (%s) in team %s",
                 auth.get("user"), auth["user_id"], auth.get("team_id"))
        return AuthorizeResult(enterprise_id=auth.get("enterprise_id"),
                               team_id=auth.get("team_id"), bot_user_id=auth["user_id"],
                               bot_id=auth["bot_id"], bot_token=self._config.bot_token)

    async def _connect(self, app: AsyncApp) -> None:
        """Socket Mode: check the app token, open the websocket, wait for Slack's `hello`."""
        app_token = self._config.app_token or ""
        try:
            opened = await self._client.apps_connections_open(app_token=app_token)
        except SlackApiError as e:
            raise SlackStartError(f"Slack rejected the app token ({_error_code(e)}); "
                                  "Socket Mode needs an app-level token (xapp-…) with "
                                  "connections:write") from None
        except NETWORK_ERRORS as e:
            raise SlackStartError(
                f"cannot reach the Slack API at {self._config.api_url}: {e}") from None
        self._socket = AsyncSocketModeHandler(app, app_token, ping_interval=self._ping_interval_s)
        self._socket.client.on_message_listeners.append(self._on_socket_message)
        self._socket.client.wss_uri = opened["url"]
        try:
            await asyncio.wait_for(self._socket.connect_async(), self._connect_timeout_s)
            await asyncio.wait_for(self._hello.wait(), self._connect_timeout_s)
        except TimeoutError:
            raise SlackStartError(
                f"the Socket Mode connection to Slack did not open within "
                f"{self._connect_timeout_s:.0f} s") from None
        self._watch_task = asyncio.create_task(self._watch_link(), name="slack-link-watch")

    async def _listen(self, app: AsyncApp) -> None:
        """HTTP mode: serve bolt's aiohttp app; bolt checks every request's signature."""
        self._runner = web.AppRunner(app.web_app(path=EVENTS_PATH, port=self._config.http_port))
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
        try:
            kind = json.loads(message.data).get("type")
        except (TypeError, ValueError, AttributeError):
            return
        if kind == "hello":
            if self._link_up:
                self._link_changed(False, "the Socket Mode connection was replaced")
            self._link_changed(True, "Socket Mode connected")
            self._hello.set()
        elif kind == "disconnect":
            self._link_changed(False, "Slack asked to reconnect (disconnect envelope)")

    async def _watch_link(self) -> None:
        """Poll the socket: a dropped connection shows no event of its own."""
        assert self._socket is not None
        while True:
            await asyncio.sleep(self._ping_interval_s / 2)
            if self._link_up and not await self._socket.client.is_connected():
                self._link_changed(False, "the Socket Mode connection was lost")

    def _link_changed(self, up: bool, detail: str) -> None:
        if up == self._link_up:
            return
        self._link_up = up
        log.log(logging.INFO if up else logging.WARNING, "slack: %s", detail)
        if self._reporting:
            change = ConnectionChanged(PLATFORM, up=up, ts=time.time(), detail=detail)
            self._queue.put_nowait((_ready(change), None))

    # --- inbound events ----------------------------------------------------------------------

    async def _on_message(self, body: dict[str, Any],
                          event: dict[str, Any]) -> BoltResponse | None:
        assert self._me is not None
        if (event.get("subtype") not in PERSON_SUBTYPES or event.get("bot_id")
                or not event.get("user") or event.get("user") == self._me.bot_user_id):
            return None
        return await self._deliver(self._inbound(body, event))

    async def _on_member_joined(self, event: dict[str, Any]) -> BoltResponse | None:
        assert self._me is not None
        if event.get("user") != self._me.bot_user_id:
            return None
        joined = RoomJoined(PLATFORM, room=event["channel"], inviter=event.get("inviter"))
        return await self._deliver(_ready(joined))

    async def _deliver(self, make: Coroutine[Any, Any, BridgeEvent | None]) -> BoltResponse | None:
        """Queue an event for the sink and wait until it is stored; bolt then acks it.

        When the core could not take it, the listener answers 500 instead: no ack, so Slack
        delivers the event again (the same `event_id`).
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((make, done))
        try:
            await done
        except Exception:
            return BoltResponse(status=500, body="")
        return None

    async def _pump(self) -> None:
        """The one task that calls the sink, so events arrive in order (the sink contract)."""
        assert self._sink is not None
        while (pending := await self._queue.get()) is not None:
            make, done = pending
            try:
                event = await make
                if event is not None:
                    await self._sink(event)
            except Exception as e:  # not stored: no ack, so Slack redelivers it
                log.warning("slack: an event was not taken by the core (%s: %s); "
                            "Slack will deliver it again", type(e).__name__, e)
                if done is not None and not done.done():
                    done.set_exception(e)
            else:
                if done is not None and not done.done():
                    done.set_result(None)

    async def _inbound(self, body: dict[str, Any], event: dict[str, Any]) -> Inbound | None:
        assert self._me is not None and self._me.bot_user_id is not None
        raw = str(event.get("text") or "")
        names = {uid: await self._user_name(uid) for uid, _ in _USER_MENTION.findall(raw)
                 if uid != self._me.bot_user_id}
        text = slack_to_plain(raw, names, self._me.bot_user_id)
        if not text:
            return None
        thread = event.get("thread_ts")
        return Inbound(
            platform=PLATFORM, room=event["channel"], sender=event["user"],
            sender_name=await self._user_name(event["user"]), text=text,
            event_id=str(body.get("event_id") or event["ts"]), ts=float(event["ts"]),
            is_direct=event.get("channel_type") == "im",
            thread=thread if thread and thread != event["ts"] else None)

    async def _user_name(self, user_id: str) -> str:
        """A person's display name via `users.info`, cached; their id if Slack won't say."""
        cached = self._names.get(user_id)
        if cached is not None and time.monotonic() - cached[1] < NAME_TTL_S:
            return cached[0]
        try:
            user = (await self._client.users_info(user=user_id))["user"]
        except (SlackApiError, *NETWORK_ERRORS) as e:
            log.warning("slack: cannot resolve the name of %s: %s", user_id, e)
            return user_id
        profile = user.get("profile") or {}
        name = str(profile.get("display_name") or profile.get("real_name")
                   or user.get("real_name") or user.get("name") or user_id)
        self._names[user_id] = (name, time.monotonic())
        return name

    # --- Web API helpers ---------------------------------------------------------------------

    async def _find_channel(self, name: str) -> dict[str, Any] | None:
        cursor: str | None = None
        while True:
            page = await self._client.conversations_list(
                types="public_channel,private_channel", exclude_archived=True, limit=200,
                cursor=cursor)
            for channel in page.get("channels", []):
                if channel.get("name") == name:
                    return dict(channel)
            cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
            if cursor is None:
                return None

    async def _post(self, room: str, text: str, part: str) -> None:
        metadata = {"event_type": POST_METADATA_TYPE, "event_payload": {"part": part}}
        try:
            await self._client.chat_postMessage(channel=room, text=text, metadata=metadata,
                                                unfurl_links=False, unfurl_media=False)
        except SlackApiError as e:
            if e.response.status_code == 429:
                raise RateLimited(_retry_after(e), f"Slack rate-limited posts to {room}") from None
            code = _error_code(e)
            raise SendError(f"Slack refused the post to {room} ({code})",
                            permanent=code in PERMANENT_ERRORS) from None
        except NETWORK_ERRORS as e:
            raise SendError(f"cannot reach Slack to post to {room}: {e}") from None
