"""The Matrix bridge: matrix-nio `AsyncClient` with our own sync loop (R9.2).

Why our own loop rather than nio's `sync_forever` and callbacks:

- **Durable position (R8.2).** The sync token (`next_batch`) is saved in the bot's store only
  after the core's sink has returned for every event of the batch, so a crash at any moment
  neither loses nor replays a message. nio's default keeps the token in memory only, and an
  initial sync without `since` silently skips what was said while the bot was down. When
  the server says a room's timeline was cut (`limited`), the gap back to our saved position
  is fetched with `/messages` so nothing is lost after a long downtime either.
- **No history replay.** The very first run (no saved token) does one sync that returns at
  once (`NOW_MS`) and starts from there; old history never reaches the agents.
- **No hot loop (R9.2).** nio's client retries timeouts and 429s forever by default. Here
  `max_limit_exceeded=0` and `max_timeouts=0` make every failure come back to us at once;
  the sync loop backs off with `backoff_delay` (exponential, full jitter, capped) and
  reports `ConnectionChanged` down on the first failure and up on the first success after
  it. The core decides when a long outage is worth an alert (R6.3).
- **Rate limits belong to the outbox (R8.3).** `send` never sleeps: `M_LIMIT_EXCEEDED`
  becomes `RateLimited(retry_after_s)` (from `retry_after_ms`, else the `Retry-After`
  header). Each part of a post is sent with the transaction id `<key>.<i>`; Synapse scopes
  transaction ids to the device, so a retry of the same post after a crash or a 429 returns
  the first event instead of posting twice. With password login the device id is kept in
  the store so the scope survives restarts.

Loop prevention (R5.5): the bridge drops its own events and every `m.notice` (bot output,
ours or another bot's); only `m.text` and `m.emote` from others become `Inbound`.

Direct rooms (R1.6): only the invite's `m.room.member` event carries `is_direct`, so the
bridge remembers such rooms in the store when it accepts the invite. Invites are accepted
only from `allow_invites_from` (full ids or `:server` suffixes, R1.5); bound rooms are
joined through `resolve_room` whoever invited the bot (R11.4).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aiohttp import ClientError
from nio import (
    AsyncClient,
    AsyncClientConfig,
    ErrorResponse,
    InviteMemberEvent,
    JoinedRoomsResponse,
    JoinResponse,
    LoginResponse,
    MessageDirection,
    ProfileGetDisplayNameResponse,
    RoomMessagesResponse,
    RoomResolveAliasResponse,
    RoomSendResponse,
    SyncResponse,
    WhoamiResponse,
)

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
    backoff_delay,
)
from bridges.render import MATRIX_LIMIT_BYTES, matrix_measure, to_matrix_html
from bridges.settings import MatrixConfig
from bridges.split import split_message

log = logging.getLogger(__name__)

PLATFORM = "matrix"

# Keys in the bot's key-value store (namespaced by the bridge).
KV_USER = "matrix.user_id"
KV_NEXT_BATCH = "matrix.next_batch"
KV_DEVICE = "matrix.device_id"
KV_DIRECT = "matrix.direct_rooms"

MAX_EVENT_BYTES = 65_536  # Synapse refuses larger events; parts stay far below (render.py)
HTML_FORMAT = "org.matrix.custom.html"
# A sync that returns at once. Not 0: nio turns 0 into "no timeout" on the client side too,
# and a request to a half-alive server would then wait for ever; with 1 ms nio allows 15 s.
NOW_MS = 1
INBOUND_MSGTYPES = frozenset({"m.text", "m.emote"})

T = TypeVar("T")


class MatrixStartError(RuntimeError):
    """The bridge could not log in or reach the homeserver at start-up; says which and why."""


def _describe(resp: Any) -> str:
    """A short, token-free description of a failed nio call for logs and errors."""
    if isinstance(resp, ErrorResponse):
        status = _http_status(resp)
        code = resp.status_code or (f"HTTP {status}" if status else "error")
        if resp.message and resp.message != "unknown error":
            return f"{code}: {resp.message}"
        return code if status is None or code.startswith("HTTP") else f"{code} (HTTP {status})"
    if isinstance(resp, BaseException):
        return f"{type(resp).__name__}: {resp}" if str(resp) else type(resp).__name__
    return type(resp).__name__


def _retry_after_s(resp: ErrorResponse) -> float:
    """Seconds to wait from a 429: `retry_after_ms` in the body, else the `Retry-After`
    header (nio reads only the former), else 5 s (nio's own fallback)."""
    if resp.retry_after_ms:
        return max(0.001, resp.retry_after_ms / 1000)
    transport = resp.transport_response
    header = transport.headers.get("Retry-After") if transport is not None else None
    if header:
        with contextlib.suppress(ValueError):
            return max(0.001, float(header))
    return 5.0


def _http_status(resp: Any) -> int | None:
    transport = getattr(resp, "transport_response", None)
    return getattr(transport, "status", None)


def _is_rate_limited(resp: Any) -> bool:
    return isinstance(resp, ErrorResponse) and (
        resp.status_code == "M_LIMIT_EXCEEDED" or _http_status(resp) == 429)


def allowed_inviter(user_id: str, allow: Iterable[str]) -> bool:
    """R1.5: an entry is a full user id (`@alice:example.org`) or a server suffix
    (`:example.org`); an empty list allows no one (bound rooms are still joined at start-up)."""
    for entry in allow:
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith(":"):
            if user_id.endswith(entry):
                return True
        elif user_id == entry:
            return True
    return False


def _strip_reply_fallback(body: str) -> str:
    """Drop the `> <@user> quoted…` lines a reply carries in its plain body."""
    lines = body.split("\n")
    i = 0
    while i < len(lines) and lines[i].startswith(">"):
        i += 1
    if i and i < len(lines) and lines[i] == "":
        return "\n".join(lines[i + 1:])
    return body


class MatrixBridge:
    """`bridges.base.Bridge` for Matrix. Construct, `await start(sink)`, `resolve_room`,
    `send`, `await stop()`.

    The keyword arguments are tuning knobs with production defaults; tests shorten the
    backoff cap and the timeline limit to exercise recovery and gap filling quickly.
    """

    platform = PLATFORM
    post_interval_s = 0.0  # Synapse limits per user, not per room; 429s come back as RateLimited

    def __init__(self, config: MatrixConfig, kv: KeyValueStore, *,
                 sync_timeout_ms: int = 30_000, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 30.0, timeline_limit: int = 50,
                 startup_retries: int = 3):
        self.config = config
        self.kv = kv
        self.sync_timeout_ms = sync_timeout_ms
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.timeline_limit = timeline_limit
        self.startup_retries = startup_retries
        self.user_id = config.user_id
        self.device_id: str | None = None
        self._client: AsyncClient | None = None
        self._sink: EventSink | None = None
        self._task: asyncio.Task[None] | None = None
        self._next_batch: str | None = None
        self._first_batch: SyncResponse | None = None
        self._direct: set[str] = set()
        self._names: dict[str, str] = {}
        self._batch_lock = asyncio.Lock()
        self._stopping = False
        self._stopped = False
        self._encrypted_warned: set[str] = set()
        # nio logs every room event at INFO and every expected error response as a schema
        # "validation" WARNING; the bridge logs what matters itself. An operator's explicit
        # level for these loggers is kept.
        for name, level in (("nio", logging.WARNING), ("nio.responses", logging.ERROR)):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(level)

    # --- lifecycle ----------------------------------------------------------------------

    def _new_client(self) -> AsyncClient:
        config = AsyncClientConfig(
            max_limit_exceeded=0,  # a 429 comes straight back: the outbox owns retrying
            max_timeouts=0,  # a connection error comes straight back: the loop backs off
            request_timeout=60,
            encryption_enabled=False,
            store_sync_tokens=False,  # the bot's store keeps next_batch (R8.2)
        )
        return AsyncClient(self.config.homeserver.rstrip("/"), self.config.user_id,
                           config=config)

    async def start(self, sink: EventSink) -> None:
        """Log in, take the saved sync position (or "now" on a first run), then sync in the
        background. Raises `MatrixStartError` when the homeserver refuses or cannot be
        reached; later outages are reported as `ConnectionChanged` and retried."""
        if self._client is not None:
            raise RuntimeError("MatrixBridge.start called twice")
        self._sink = sink
        self._stopping = self._stopped = False
        self._client = self._new_client()
        try:
            await self._login()
            saved_user = await self.kv.get_value(KV_USER)
            if saved_user is not None and saved_user != self.user_id:
                log.warning("matrix: store belongs to %s, not %s; starting from now",
                            saved_user, self.user_id)
                await self.kv.put_value(KV_NEXT_BATCH, "")
                await self.kv.put_value(KV_DIRECT, "[]")
            await self.kv.put_value(KV_USER, self.user_id)
            self._direct = set(json.loads(await self.kv.get_value(KV_DIRECT) or "[]"))
            self._next_batch = await self.kv.get_value(KV_NEXT_BATCH) or None
            if self._next_batch is None:
                await self._first_sync()
        except BaseException:
            await self._close_client()
            raise
        self._task = asyncio.create_task(self._sync_loop(), name="matrix-sync")
        log.info("matrix: connected to %s as %s (device %s)", self.config.homeserver,
                 self.user_id, self.device_id)

    async def _login(self) -> None:
        client = self._require_client()
        hs = self.config.homeserver
        if self.config.access_token:
            client.access_token = self.config.access_token
            who = await self._startup_call(client.whoami, f"check the access token on {hs}")
            if not isinstance(who, WhoamiResponse):
                raise MatrixStartError(f"{hs} refused the access token for "
                                       f"{self.config.user_id} ({_describe(who)})")
            if who.user_id != self.config.user_id:
                raise MatrixStartError(f"the access token belongs to {who.user_id}, "
                                       f"but matrix.user_id is {self.config.user_id}")
            client.user_id = who.user_id
            client.device_id = who.device_id
            self.device_id = who.device_id
            return
        # Password login: reuse one device across restarts, because Synapse scopes
        # transaction ids to the device; a new device each start would defeat R8.3.
        device = self.config.device_id or await self.kv.get_value(KV_DEVICE)
        if device and await self.kv.get_value(KV_USER) not in (None, self.config.user_id):
            device = self.config.device_id
        client.device_id = device or None
        resp = await self._startup_call(
            lambda: client.login(self.config.password, device_name="crewbridge"),
            f"log in to {hs}")
        if not isinstance(resp, LoginResponse):
            raise MatrixStartError(f"{hs} refused the password login of "
                                   f"{self.config.user_id} ({_describe(resp)})")
        self.device_id = resp.device_id
        await self.kv.put_value(KV_DEVICE, resp.device_id)

    async def _startup_call(self, call: Callable[[], Awaitable[T]], what: str) -> T:
        """One start-up request; 429s are waited out a few times, network errors are fatal."""
        for _ in range(self.startup_retries + 1):
            try:
                resp = await call()
            except (ClientError, TimeoutError, OSError) as e:
                raise MatrixStartError(f"cannot {what}: {_describe(e)}") from None
            if not _is_rate_limited(resp):
                return resp
            assert isinstance(resp, ErrorResponse)
            await asyncio.sleep(min(30.0, _retry_after_s(resp)))
        return resp

    async def _first_sync(self) -> None:
        """First run: one sync that returns at once gives "now"; the rooms' old timelines are never
        delivered. Its pending invites (state, not history) are handled by the sync loop,
        because the core may not take events before every bridge has started."""
        client = self._require_client()
        resp = await self._startup_call(
            lambda: client.sync(timeout=NOW_MS, sync_filter=self._filter(1)), "sync")
        if not isinstance(resp, SyncResponse):
            raise MatrixStartError(f"first sync with {self.config.homeserver} "
                                   f"failed ({_describe(resp)})")
        self._first_batch = resp

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session; idempotent. A batch being handed to the
        sink is allowed to finish (up to 10 s) so the core is not cut off mid-event."""
        if self._stopped:
            return
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            locked = False
            try:
                await asyncio.wait_for(self._batch_lock.acquire(), 10)
                locked = True
            except TimeoutError:
                log.warning("matrix: stopping in the middle of a batch")
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if locked:
                self._batch_lock.release()
        await self._close_client()
        self._stopped = True

    async def _close_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _require_client(self) -> AsyncClient:
        if self._client is None:
            raise SendError("Matrix bridge is not started")
        return self._client

    # --- sync loop ----------------------------------------------------------------------

    def _filter(self, timeline_limit: int) -> dict[str, Any]:
        return {
            "presence": {"not_types": ["*"]},
            "room": {
                "timeline": {"limit": timeline_limit},
                "ephemeral": {"not_types": ["*"]},
            },
        }

    async def _sync_loop(self) -> None:
        client = self._require_client()
        failures = 0  # consecutive failed syncs: drives backoff and the up/down reports
        sink_failures = 0
        while self._first_batch is not None and not self._stopping:
            async with self._batch_lock:
                try:
                    await self._handle_invites(self._first_batch)
                    await self._save_position(self._first_batch.next_batch)
                    self._first_batch = None
                    continue
                except Exception as e:
                    log.warning("matrix: the core did not take the pending invites (%s)",
                                _describe(e))
            sink_failures += 1
            await asyncio.sleep(backoff_delay(sink_failures, base_s=self.backoff_base_s,
                                              cap_s=self.backoff_cap_s))
        sink_failures = 0
        while not self._stopping:
            try:
                # After a failure, a sync that returns at once: the link is known to be back
                # when it is, not when a quiet long poll ends up to 30 s later (which could
                # push a short outage past the 60 s alert threshold).
                resp = await client.sync(timeout=NOW_MS if failures else self.sync_timeout_ms,
                                         since=self._next_batch,
                                         sync_filter=self._filter(self.timeline_limit))
                error = None if isinstance(resp, SyncResponse) else _describe(resp)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # any failure of the link is retried
                error = _describe(e)
            if error is not None:
                failures += 1
                if failures == 1:
                    log.warning("matrix: sync failed, link down: %s", error)
                    await self._emit_connection(False, error)
                delay = backoff_delay(failures, base_s=self.backoff_base_s,
                                      cap_s=self.backoff_cap_s)
                log.info("matrix: sync attempt %d failed (%s); next in %.1f s",
                         failures, error, delay)
                await asyncio.sleep(delay)
                continue
            assert isinstance(resp, SyncResponse)
            if failures:
                log.warning("matrix: link back after %d failed syncs", failures)
                failures = 0
                await self._emit_connection(True, "sync succeeded")
            async with self._batch_lock:
                if self._stopping:
                    return
                try:
                    await self._handle_batch(resp)
                    handled = True
                except asyncio.CancelledError:
                    raise
                except Exception as e:
                    log.warning("matrix: the core did not take a sync batch (%s); it will come "
                                "again", _describe(e), exc_info=log.isEnabledFor(logging.DEBUG))
                    handled = False
                if handled:
                    await self._save_position(resp.next_batch)
            if handled:
                sink_failures = 0
                continue
            # The position was not saved: the same batch comes again after a pause (the
            # core ignores events it already stored, R8.1). Sleep outside the lock so that
            # `stop` never waits for a backoff.
            sink_failures += 1
            await asyncio.sleep(backoff_delay(sink_failures, base_s=self.backoff_base_s,
                                              cap_s=self.backoff_cap_s))

    async def _emit_connection(self, up: bool, detail: str) -> None:
        try:
            await self._deliver(ConnectionChanged(PLATFORM, up=up, ts=time.time(),
                                                  detail=detail))
        except Exception:
            log.exception("matrix: the sink refused a connection event")

    async def _deliver(self, event: BridgeEvent) -> None:
        assert self._sink is not None
        await self._sink(event)

    async def _save_position(self, next_batch: str) -> None:
        """R8.2: called only after the sink returned for every event of the batch."""
        await self.kv.put_value(KV_NEXT_BATCH, next_batch)
        self._next_batch = next_batch

    async def _handle_batch(self, resp: SyncResponse) -> None:
        await self._handle_invites(resp)
        since = self._next_batch
        for room_id, info in resp.rooms.join.items():
            events = [e.source for e in info.timeline.events]
            start = self._start_of_news(events)
            if start is not None:
                events = events[start:]
            elif info.timeline.limited and since and info.timeline.prev_batch:
                events = await self._fill_gap(room_id, info.timeline.prev_batch, since) + events
            seen: set[str] = set()
            for source in events:
                inbound = await self._inbound(room_id, source)
                if inbound is None or inbound.event_id in seen:
                    continue
                seen.add(inbound.event_id)
                await self._deliver(inbound)

    def _start_of_news(self, events: list[dict[str, Any]]) -> int | None:
        """Where a room's news starts when the bot joined it within this batch: after its
        invite (what was said between invite and join was said to the bot, e.g. the first
        line of a new DM), else after its join; None when the bot was already in the room.
        Anything earlier is old history and never reaches the agents."""
        own = [(i, (e.get("content") or {}).get("membership")) for i, e in enumerate(events)
               if e.get("type") == "m.room.member" and e.get("state_key") == self.user_id]
        joins = [i for i, m in own if m == "join"]
        if not joins:
            return None
        invites = [i for i, m in own if m == "invite" and i < joins[-1]]
        return (invites[-1] if invites else joins[-1]) + 1

    async def _fill_gap(self, room_id: str, prev_batch: str, since: str) -> list[dict]:
        """The events the server left out of a `limited` timeline, oldest first: page
        backwards from the timeline's start to our saved position."""
        client = self._require_client()
        chunks: list[dict] = []
        token = prev_batch
        for _ in range(100):  # at most 10,000 events; beyond that the gap is history
            resp = await client.room_messages(room_id, start=token, end=since,
                                              direction=MessageDirection.back, limit=100)
            if not isinstance(resp, RoomMessagesResponse):
                raise RuntimeError(f"filling the gap in {room_id} failed: {_describe(resp)}")
            chunks.extend(e.source for e in resp.chunk)
            if not resp.chunk or not resp.end or resp.end == token:
                break
            token = resp.end
        chunks.reverse()
        log.info("matrix: fetched %d events missing from a limited timeline in %s",
                 len(chunks), room_id)
        return chunks

    async def _inbound(self, room_id: str, source: dict[str, Any]) -> Inbound | None:
        """A person's message as an `Inbound`, or None for anything that is not one (R5.5)."""
        kind = source.get("type")
        sender = source.get("sender", "")
        if kind == "m.room.encrypted" and room_id not in self._encrypted_warned:
            self._encrypted_warned.add(room_id)
            log.warning("matrix: %s is encrypted; crewbridge cannot read it", room_id)
        if kind != "m.room.message" or sender == self.user_id:
            return None
        content = source.get("content") or {}
        msgtype = content.get("msgtype")
        body = content.get("body")
        if msgtype not in INBOUND_MSGTYPES or not isinstance(body, str) or not body.strip():
            return None  # m.notice (bots), media, redacted events
        relates = content.get("m.relates_to") or {}
        if relates.get("rel_type") == "m.replace":
            return None  # an edit; the original was already delivered
        if "m.in_reply_to" in relates:
            body = _strip_reply_fallback(body)
        thread = relates.get("event_id") if relates.get("rel_type") == "m.thread" else None
        return Inbound(
            platform=PLATFORM,
            room=room_id,
            sender=sender,
            sender_name=await self._display_name(room_id, sender),
            text=body,
            event_id=str(source.get("event_id", "")),
            ts=float(source.get("origin_server_ts", time.time() * 1000)) / 1000,
            is_direct=room_id in self._direct,
            thread=thread,
        )

    async def _display_name(self, room_id: str, user_id: str) -> str:
        """The sender's display name: from the room state nio tracks, else their profile
        (cached), else the localpart."""
        client = self._require_client()
        room = client.rooms.get(room_id)
        if room is not None and user_id in room.users:
            name = room.users[user_id].display_name
            if name:
                return name
        if user_id not in self._names:
            name = None
            with contextlib.suppress(ClientError, TimeoutError, OSError):
                resp = await client.get_displayname(user_id)
                if isinstance(resp, ProfileGetDisplayNameResponse):
                    name = resp.displayname
            self._names[user_id] = name or user_id.lstrip("@").split(":", 1)[0]
        return self._names[user_id]

    async def _handle_invites(self, resp: SyncResponse) -> None:
        """R1.5/R1.6: join rooms we are invited to by an allowed user; remember direct ones."""
        for room_id, info in resp.rooms.invite.items():
            # nio's InviteMemberEvent pops `content` out of `.source`: use its attributes.
            invite = next((e for e in info.invite_state if isinstance(e, InviteMemberEvent)
                           and e.state_key == self.user_id and e.membership == "invite"), None)
            inviter = invite.sender if invite else None
            is_direct = bool(invite and invite.content.get("is_direct"))
            if not inviter or not allowed_inviter(inviter, self.config.allow_invites_from):
                log.info("matrix: not joining %s: inviter %s is not in allow_invites_from",
                         room_id, inviter)
                continue
            joined, _ = await self._join(room_id)
            if joined is None:
                continue
            if is_direct and room_id not in self._direct:
                self._direct.add(room_id)
                await self.kv.put_value(KV_DIRECT, json.dumps(sorted(self._direct)))
            log.info("matrix: joined %s (invited by %s%s)", room_id, inviter,
                     ", direct" if is_direct else "")
            await self._deliver(RoomJoined(PLATFORM, room_id, is_direct=is_direct,
                                           inviter=inviter))

    async def _join(self, room: str) -> tuple[str | None, str]:
        """Join a room id or alias: (the joined room id, "") or (None, why not), logged."""
        client = self._require_client()
        try:
            resp = await self._startup_call(lambda: client.join(room), f"join {room}")
        except MatrixStartError as e:
            log.warning("matrix: %s", e)
            return None, str(e)
        if isinstance(resp, JoinResponse):
            return resp.room_id, ""
        log.warning("matrix: cannot join %s: %s", room, _describe(resp))
        return None, _describe(resp)

    # --- rooms and posts ----------------------------------------------------------------

    async def resolve_room(self, ref: str) -> str:
        """R1.2/R11.4: a room id or `#alias:server` → room id, joining the room when the bot
        is invited (or it is public) but not yet in it. Raises `RoomUnresolvable` naming
        `ref` and saying what to do."""
        client = self._client
        if client is None:
            raise RoomUnresolvable(f"Matrix room {ref}: the Matrix bridge is not started")
        ref = ref.strip()
        try:
            if ref.startswith("#") and ":" in ref:
                alias = await self._startup_call(lambda: client.room_resolve_alias(ref),
                                                 f"resolve {ref}")
                if not isinstance(alias, RoomResolveAliasResponse):
                    raise RoomUnresolvable(f"Matrix room {ref}: no such alias "
                                           f"({_describe(alias)})")
                room_id = alias.room_id
            elif ref.startswith("!"):
                room_id = ref
            else:
                raise RoomUnresolvable(f"Matrix room {ref!r}: expected a room id (!…) or an "
                                       "alias (#name:server)")
            joined = await self._startup_call(client.joined_rooms, "list joined rooms")
            if isinstance(joined, JoinedRoomsResponse) and room_id in joined.rooms:
                return room_id
        except MatrixStartError as e:
            raise RoomUnresolvable(f"Matrix room {ref}: {e}") from None
        # Joining by alias lets the homeserver find the room's servers over federation.
        joined_id, why = await self._join(ref if ref.startswith("#") else room_id)
        if joined_id is None:
            raise RoomUnresolvable(f"Matrix room {ref}: {self.user_id} is not a member and "
                                   f"cannot join ({why}); invite {self.user_id} to the room")
        return joined_id

    @staticmethod
    def _parts(text: str) -> list[tuple[str, str]]:
        """(plain body, HTML) per part; `matrix_measure` counts both, so each part's event
        stays well under Synapse's 65,536-byte limit (R5.2)."""
        return [(part, to_matrix_html(part))
                for part in split_message(text, MATRIX_LIMIT_BYTES, measure=matrix_measure)]

    async def send(self, room: str, text: str, *, key: str, notice: bool = True,
                   maybe_sent: bool = False) -> None:
        """R5.5/R5.6/R8.3: post `text` as `m.notice` (or `m.text`) with HTML and a plain body,
        part `i` under transaction id `<key>.<i>` so a retried post is never doubled."""
        client = self._require_client()
        msgtype = "m.notice" if notice else "m.text"
        for i, (body, html) in enumerate(self._parts(text)):
            content = {"msgtype": msgtype, "body": body, "format": HTML_FORMAT,
                       "formatted_body": html}
            try:
                resp = await client.room_send(room, "m.room.message", content,
                                              tx_id=f"{key}.{i}")
            except (ClientError, TimeoutError, OSError) as e:
                raise SendError(f"Matrix: sending to {room} failed: {_describe(e)}") from None
            if isinstance(resp, RoomSendResponse):
                continue
            if _is_rate_limited(resp):
                assert isinstance(resp, ErrorResponse)
                raise RateLimited(_retry_after_s(resp), f"Matrix: rate limited in {room}")
            status = _http_status(resp)
            permanent = status in (400, 403, 404, 413)
            raise SendError(f"Matrix: sending to {room} failed: {_describe(resp)}",
                            permanent=permanent)
