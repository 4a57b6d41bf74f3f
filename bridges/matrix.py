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
- **A hang is an outage (R6.3).** A homeserver that takes the connection and then says
  nothing fails no request; nio would wait 15 s past the long poll. A sync not answered
  within its own timeout (the long poll) plus `overdue_grace_s` (10 s) is overdue: it is
  given up and counts as a failure, and the link is reported down as of the last sync that
  succeeded (`down_for_s`), so the core's 60 s are counted from when the server went quiet.
- **Rate limits belong to the outbox (R8.3).** `send` never sleeps: `M_LIMIT_EXCEEDED`
  becomes `RateLimited(retry_after_s)` (from `retry_after_ms`, else the `Retry-After`
  header). Each part of a post is sent with the transaction id `<key>.<i>`; Synapse scopes
  transaction ids to the device, so a retry of the same post after a crash or a 429 returns
  the first event instead of posting twice. With password login the device id is kept in
  the store so the scope survives restarts.

What each event means — loop prevention (R5.5), which invites to accept (R1.5), direct
rooms (R1.6), what an error response is — is decided in `bridges.matrix_events`; start-up
(login, the device kept for R8.3) is `bridges.matrix_login`; bound rooms (resolved, joined
whoever invited the bot (R11.4), remembered, 429s waited out: R9.1) `bridges.matrix_rooms`;
posts, edits and notices `bridges.matrix_posts`, the bot's reactions (buttons, status marks:
R13.1, R13.7) `bridges.matrix_reactions`, typing `bridges.matrix_typing`, and what a card's
events look like and a person's reaction means `bridges.matrix_cards`. End-to-end
encryption (R15) — the crypto store, keys after each sync, the alert when a known user's
devices change — is `bridges.matrix_crypto`, sending as Element does
`bridges.matrix_e2ee_client`, what cannot be decrypted `bridges.matrix_unreadable`. This
module is the connection: it remembers direct rooms in the store when it accepts an invite.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from nio import (
    AsyncClient,
    SyncResponse,
)

from crewbridge.bridges.base import (
    Acted,
    BridgeEvent,
    EventSink,
    Inbound,
    KeyValueStore,
    Post,
    RoomJoined,
    RoomUnresolvable,
    SendError,
    ThreadRef,
    backoff_delay,
)
from crewbridge.bridges.link import LinkState
from crewbridge.bridges.matrix_cards import read_reaction
from crewbridge.bridges.matrix_crypto import (
    STORE_DIR_NAME,
    Crypto,
    encryption_problem,
    require_crypto,
    say_unreadable,
)
from crewbridge.bridges.matrix_events import (
    PLATFORM,
    describe,
    is_encrypted,
    read_message,
    start_of_news,
    sync_filter,
)
from crewbridge.bridges.matrix_login import (
    KV_DIRECT,
    KV_NEXT_BATCH,
    KV_USER,
    MatrixStartError,
    login,
    new_client,
    patient_call,
)
from crewbridge.bridges.matrix_posts import MatrixPosts
from crewbridge.bridges.matrix_reactions import BotReactions
from crewbridge.bridges.matrix_rooms import accept_invite, display_name, fill_gap, resolve
from crewbridge.bridges.matrix_typing import RENEW_S, TypingNotices
from crewbridge.bridges.matrix_unreadable import WAIT_S, Unreadable
from crewbridge.bridges.settings import MatrixConfig

log = logging.getLogger(__name__)

# A sync that returns at once. Not 0: nio turns 0 into "no timeout" on the client side too,
# and a request to a half-alive server would then wait for ever; with 1 ms nio allows 15 s.
NOW_MS = 1


class MatrixBridge:
    """`bridges.base.Bridge` for Matrix. Construct, `await start(sink)`, `resolve_room`,
    `send` (`edit`, `delete`, `react`, `tell`, `typing`), `await stop()`.

    `data_dir`: the bot's data directory, where the crypto store lives (R15.1); None for a
    bridge that only looks (`check --online`): it keeps no keys — a second set of keys for
    the bot's device would break it — and posts nothing of its own.

    The other keyword arguments are tuning knobs with production defaults; tests shorten
    the backoff cap and the timeline limit to exercise recovery and gap filling quickly,
    the typing renewal to see it renewed, and the wait for an undecryptable message's key.
    """

    platform = PLATFORM
    post_interval_s = 0.0  # Synapse limits per user, not per room; 429s come back as RateLimited
    edits_per_minute = None  # edits count against the same per-user limit as posts

    def __init__(self, config: MatrixConfig, kv: KeyValueStore, *,
                 data_dir: Path | None = None,
                 sync_timeout_ms: int = 30_000, backoff_base_s: float = 1.0,
                 backoff_cap_s: float = 30.0, timeline_limit: int = 50,
                 overdue_grace_s: float = 10.0, typing_renew_s: float = RENEW_S,
                 undecryptable_wait_s: float = WAIT_S):
        self.config = config
        self.running = data_dir is not None
        self._crypto = (Crypto(data_dir / STORE_DIR_NAME)
                        if config.encryption and data_dir is not None else None)
        self.kv = kv
        self.sync_timeout_ms = sync_timeout_ms
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.timeline_limit = timeline_limit
        self.overdue_grace_s = overdue_grace_s
        self.user_id = config.user_id
        self.device_id: str | None = None
        self._client: AsyncClient | None = None
        self._posts = MatrixPosts(self._require_client,
                                  BotReactions(self._require_client, kv, self.user_id))
        self._typing = TypingNotices(self._require_client, renew_s=typing_renew_s)
        self._unreadable = Unreadable(self._require_client, self.user_id, self._posts.tell,
                                      wait_s=undecryptable_wait_s)
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
        self._link = LinkState(PLATFORM, up=True)  # start() returns connected
        self._last_ok = time.monotonic()  # the last exchange that succeeded (R6.3)
        # nio logs every room event at INFO and every expected error response as a schema
        # "validation" WARNING; the bridge logs what matters itself. An operator's explicit
        # level for these loggers is kept.
        for name, level in (("nio", logging.WARNING), ("nio.responses", logging.ERROR)):
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(level)

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self, sink: EventSink) -> None:
        """Log in, take the saved sync position (or "now" on a first run), then sync in the
        background. Raises `MatrixStartError` when the homeserver refuses or cannot be
        reached; later outages are reported as `ConnectionChanged` and retried."""
        if self._client is not None:
            raise RuntimeError("MatrixBridge.start called twice")
        self._sink = sink
        self._stopping = self._stopped = False
        crypto = self._crypto
        if crypto is not None:
            require_crypto()
        self._client = new_client(self.config, encrypted=crypto is not None)
        try:
            self.device_id = await login(
                self._client, self.config, self.kv,
                keep_device=lambda device: crypto is None or crypto.has_store(self.user_id,
                                                                               device))
            if crypto is not None:
                await crypto.start(self._client)
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
        self._last_ok = time.monotonic()
        self._task = asyncio.create_task(self._sync_loop(), name="matrix-sync")
        log.info("matrix: connected to %s as %s (device %s)", self.config.homeserver,
                 self.user_id, self.device_id)

    async def _first_sync(self) -> None:
        """First run: one sync that returns at once gives "now"; the rooms' old timelines are never
        delivered. Its pending invites (state, not history) are handled by the sync loop,
        because the core may not take events before every bridge has started."""
        client = self._require_client()
        resp = await patient_call(
            lambda: client.sync(timeout=NOW_MS, sync_filter=sync_filter(1)), "sync")
        if not isinstance(resp, SyncResponse):
            raise MatrixStartError(f"first sync with {self.config.homeserver} "
                                   f"failed ({describe(resp)})")
        self._first_batch = resp

    async def stop(self) -> None:
        """Stop syncing and close the HTTP session; idempotent. A batch being handed to the
        sink is allowed to finish (up to 10 s) so the core is not cut off mid-event."""
        if self._stopped:
            return
        self._stopping = True
        await self._typing.stop()
        await self._unreadable.stop()
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

    async def _sync_loop(self) -> None:
        client = self._require_client()
        failures = 0  # consecutive failed syncs: drives backoff and the up/down reports
        sink_failures = 0
        # R15.1: after a restart nio knows no room until a sync shows it, nor whether it is
        # encrypted; the first sync brings every room's state (and returns at once).
        full_state = self._crypto is not None and self._first_batch is None
        while self._first_batch is not None and not self._stopping:
            async with self._batch_lock:
                try:
                    await self._handle_invites(self._first_batch)
                    await self._save_position(self._first_batch.next_batch)
                    self._first_batch = None
                    continue
                except Exception as e:
                    log.warning("matrix: the core did not take the pending invites (%s)",
                                describe(e))
            sink_failures += 1
            await asyncio.sleep(self._backoff(sink_failures))
        sink_failures = 0
        while not self._stopping:
            try:
                # After a failure, a sync that returns at once: the link is known to be back
                # when it is, not when a quiet long poll ends up to 30 s later (which could
                # push a short outage past the 60 s alert threshold).
                poll_ms = NOW_MS if failures else self.sync_timeout_ms
                overdue = asyncio.timeout(poll_ms / 1000 + self.overdue_grace_s)
                async with overdue:
                    resp = await client.sync(timeout=poll_ms, since=self._next_batch,
                                             sync_filter=sync_filter(self.timeline_limit),
                                             full_state=full_state or None)
                error = None if isinstance(resp, SyncResponse) else describe(resp)
            except asyncio.CancelledError:
                raise
            except TimeoutError as e:  # R6.3: overdue is failed
                error = (f"no answer to a sync within {poll_ms / 1000 + self.overdue_grace_s:g} s"
                         if overdue.expired() else describe(e))
            except Exception as e:  # any failure of the link is retried
                error = describe(e)
            if error is not None:
                failures += 1
                if failures == 1:
                    log.warning("matrix: sync failed, link down: %s", error)
                await self._report_link(False, error)
                delay = self._backoff(failures)
                log.info("matrix: sync attempt %d failed (%s); next in %.1f s",
                         failures, error, delay)
                await asyncio.sleep(delay)
                continue
            assert isinstance(resp, SyncResponse)
            full_state = False
            self._last_ok = time.monotonic()
            if failures:
                log.warning("matrix: link back after %d failed syncs", failures)
                failures = 0
            await self._report_link(True, "sync succeeded")
            if self._crypto is not None:
                await self._crypto.after_sync(client, self._deliver)  # R15.1, R15.2
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
                                "again", describe(e), exc_info=log.isEnabledFor(logging.DEBUG))
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
            await asyncio.sleep(self._backoff(sink_failures))

    def _backoff(self, attempt: int) -> float:
        return backoff_delay(attempt, base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)

    async def _report_link(self, up: bool, detail: str) -> None:
        """R6.3: tell the core when the link changed (once per transition)."""
        change = self._link.observe(up, detail, time.time(),
                                    down_for_s=time.monotonic() - self._last_ok)
        if change is None:
            return
        try:
            await self._deliver(change)
        except Exception:
            log.exception("matrix: the sink refused a connection event")

    async def _deliver(self, event: BridgeEvent) -> None:
        assert self._sink is not None
        await self._sink(event)

    async def _save_position(self, next_batch: str) -> None:
        """R8.2: called only after the sink returned for every event of the batch. An idle
        long poll returns the position it was given: that is not written again."""
        if next_batch != self._next_batch:
            await self.kv.put_value(KV_NEXT_BATCH, next_batch)
            self._next_batch = next_batch

    async def _handle_batch(self, resp: SyncResponse) -> None:
        await self._handle_invites(resp)
        await self._unreadable.retry(self._deliver_source)  # R15.3: their keys came
        since = self._next_batch
        for room_id, info in resp.rooms.join.items():
            events = [e.source for e in info.timeline.events]
            start = start_of_news(events, self.user_id)
            if start is not None:
                events = events[start:]
            elif info.timeline.limited and since and info.timeline.prev_batch:
                events = await fill_gap(self._require_client(), room_id,
                                        info.timeline.prev_batch, since) + events
            seen: set[str] = set()
            for source in events:  # messages and reactions, in the order they were sent
                if source.get("event_id") not in seen:
                    seen.add(source.get("event_id"))
                    await self._deliver_source(room_id, source)

    async def _deliver_source(self, room_id: str, source: dict[str, Any]) -> None:
        inbound = await self._inbound(room_id, source)
        if inbound is not None:
            await self._deliver(inbound)

    async def _inbound(self, room_id: str, source: dict[str, Any]) -> Inbound | Acted | None:
        """A person's message as an `Inbound`, their reaction as an `Acted` (R13.1), or None
        for anything that is neither (R5.5)."""
        if is_encrypted(source):  # what nio could not decrypt
            if self._crypto is not None:
                await self._unreadable.seen(room_id, source)  # R15.3
            elif room_id not in self._encrypted_warned:
                self._encrypted_warned.add(room_id)
                log.warning("matrix: %s is encrypted and [matrix] encryption is off; "
                            "crewbridge cannot read it", room_id)
            return None
        now = time.time()
        read = read_message(source, self.user_id, now) or read_reaction(source, self.user_id, now)
        if read is None:
            return None
        name = await display_name(self._require_client(), self._names, room_id, read.sender)
        return read.inbound(room_id, sender_name=name, is_direct=room_id in self._direct)

    async def _handle_invites(self, resp: SyncResponse) -> None:
        """R1.5/R1.6: join rooms we are invited to by an allowed user; remember direct ones."""
        for room_id, info in resp.rooms.invite.items():
            invite = await accept_invite(self._require_client(), room_id, info.invite_state,
                                         self.user_id, self.config.allow_invites_from)
            if invite is None:
                continue
            if invite.is_direct and room_id not in self._direct:
                self._direct.add(room_id)
                await self.kv.put_value(KV_DIRECT, json.dumps(sorted(self._direct)))
            await self._deliver(RoomJoined(PLATFORM, room_id, is_direct=invite.is_direct,
                                           inviter=invite.inviter))

    # --- rooms and posts ----------------------------------------------------------------

    async def resolve_room(self, ref: str) -> str:
        """R1.2/R11.4/R9.1: see `bridges.matrix_rooms.resolve`."""
        if self._client is None:
            raise RoomUnresolvable(f"Matrix room {ref}: the Matrix bridge is not started")
        room_id = await resolve(self._client, self.kv, ref, self.user_id)
        if self.running and (problem := await self.encryption_problem(room_id)):
            await say_unreadable(self.kv, self._posts.send, room_id, problem)  # R15.4
        return room_id

    async def encryption_problem(self, room_id: str) -> str | None:
        """R14.1/R15.4: why the bot cannot read bound room `room_id` (it is encrypted and
        `[matrix] encryption` is off), or None."""
        if self.config.encryption:
            return None
        return await encryption_problem(self._require_client(), room_id)

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        """R5.5/R8.3/R12.1/R13.1: see `MatrixPosts.send`; transaction ids make every retry
        harmless, so `maybe_sent` needs no check here."""
        return await self._posts.send(room, post, key)

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """R13.3/R13.7: see `MatrixPosts.edit`."""
        await self._posts.edit(room, ref, post)

    async def delete(self, room: str, ref: str) -> None:
        await self._posts.delete(room, ref)

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        """R13.7: see `bridges.matrix_reactions`."""
        reactions = self._posts.reactions
        await (reactions.add if on else reactions.remove)(room, ref, emoji)

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        """R13.2: see `MatrixPosts.tell`."""
        await self._posts.tell(room, user, text, thread)

    async def typing(self, room: str, on: bool) -> None:
        """R13.7: see `bridges.matrix_typing`."""
        await self._typing.set(room, on)
