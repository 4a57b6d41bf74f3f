"""A real Synapse homeserver for the Matrix tier, and matrix-nio "people" to talk to the bot.

Why a real homeserver: the Matrix bridge's hard parts are exactly the ones a mock would get
wrong — what a sync batch really contains, when `is_direct` is visible, how Synapse scopes
transaction ids, what a 429 looks like (`M_LIMIT_EXCEEDED`, `retry_after_ms`, a
`Retry-After` header), and what the client sees while the server is down. So the tests run
Synapse from PyPI in its own virtualenv as a separate process on 127.0.0.1.

The process control here is synchronous on purpose (`subprocess`, `urllib`): the homeserver
is shared by the whole test session while every test has its own event loop, so nothing of
it may belong to one loop. People (`Person`) are async and live in one test's loop.

API
---
- `SynapseServer(data_dir, rate_limits="raised"|"default")`: `start()`, `stop()`,
  `restart()`, `url`, `server_name`, `register(localpart, ...) -> Account`,
  `new_localpart(prefix)`, `override_ratelimit(user_id, ...)`, `log_tail()`.
- `Person.connect(server, account)`: a matrix-nio client with a background sync:
  `create_room` (optionally `encrypted`), `invite`, `send_text` (optionally in a thread),
  `edit`, `reply`, `react`, `wait_for_message`, `wait_for_membership`, `wait_until`,
  `thread_events`, `messages`, `events`, `reactions`, `redacted`, `typing`, `close`.
  With `encryption=True` (R15) its client has nio's crypto on, with its own store in
  `store_dir`, and does the key traffic a real client does after each sync: it reads
  encrypted rooms (`was_encrypted(event_id)` says an event came encrypted) and sends
  encrypted in them, reactions too, to every device (as Element does, trusting on first
  use). `to_device` lists the to-device events it received.
- `synapse_python()`: the interpreter that runs Synapse (`CREWBRIDGE_SYNAPSE_PYTHON`
  overrides `<repo>/.venv-synapse/bin/python`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import vodozemac
from nio import (
    AsyncClient,
    AsyncClientConfig,
    MegolmEvent,
    RoomCreateError,
    RoomCreateResponse,
    RoomInviteError,
    RoomPreset,
    RoomSendResponse,
    SyncResponse,
    TypingNoticeEvent,
)
from nio.api import Api, RelationshipType
from nio.store import SqliteStore

from crewbridge.bridges.matrix_e2ee_client import E2eeClient
from tests.platform.matrix.support import wait_on

REPO_ROOT = Path(__file__).resolve().parents[3]
SERVER_NAME = "crewbridge.test"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0

EventDict = dict[str, Any]


class SynapseNotInstalled(RuntimeError):
    """Synapse's interpreter is missing; the message says how to install it."""


def synapse_python() -> Path:
    """The Python that has `matrix-synapse` installed (its own venv, see the Makefile)."""
    override = os.environ.get("CREWBRIDGE_SYNAPSE_PYTHON")
    return Path(override) if override else REPO_ROOT / ".venv-synapse" / "bin" / "python"


def check_synapse_installed() -> Path:
    """Return the Synapse interpreter, or raise `SynapseNotInstalled` saying how to get it."""
    python = synapse_python()
    if not python.exists():
        raise SynapseNotInstalled(
            f"Synapse is not installed: {python} does not exist. Run `make test` (it installs "
            "matrix-synapse into .venv-synapse) or set CREWBRIDGE_SYNAPSE_PYTHON to a Python "
            "that has matrix-synapse."
        )
    probe = subprocess.run([str(python), "-c", "import synapse.app.homeserver"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        raise SynapseNotInstalled(
            f"Synapse is not importable with {python}: {probe.stderr.strip()[-500:]}. "
            "Run `make test` to install matrix-synapse into .venv-synapse."
        )
    return python


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every limit Synapse applies to local clients, raised so tests never wait on them. The
# 429 tests use `rate_limits="default"` instead and meet Synapse's real defaults.
RAISED = {"per_second": 10000, "burst_count": 10000}
RAISED_RATE_LIMITS: dict[str, Any] = {
    "rc_message": RAISED,
    "rc_registration": RAISED,
    "rc_login": {"address": RAISED, "account": RAISED, "failed_attempts": RAISED},
    "rc_joins": {"local": RAISED, "remote": RAISED},
    "rc_joins_per_room": RAISED,
    "rc_invites": {"per_room": RAISED, "per_user": RAISED, "per_issuer": RAISED},
    "rc_room_creation": RAISED,
    "rc_profile": RAISED,
    "rc_presence": {"per_user": RAISED},
    "rc_3pid_validation": RAISED,
    "rc_user_directory": RAISED,
    "rc_delayed_event_mgmt": RAISED,
}


@dataclass(frozen=True)
class Account:
    """A registered user: what the admin register API returned."""

    user_id: str
    localpart: str
    password: str
    access_token: str
    device_id: str


class SynapseServer:
    """One Synapse process on 127.0.0.1 with SQLite, started, stopped and restarted on the
    same data directory (the outage test restarts it on the same port)."""

    def __init__(self, data_dir: Path, *, rate_limits: str = "raised",
                 server_name: str = SERVER_NAME, python: Path | None = None):
        if rate_limits not in ("raised", "default"):
            raise ValueError("rate_limits is 'raised' or 'default'")
        self.data_dir = Path(data_dir)
        self.rate_limits = rate_limits
        self.server_name = server_name
        self.python = python or synapse_python()
        self.port = free_port()
        self.shared_secret = secrets.token_hex(16)
        self.config_path = self.data_dir / "homeserver.yaml"
        self.log_path = self.data_dir / "homeserver.out"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        self._counter = 0
        self._admin: Account | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # --- configuration ------------------------------------------------------------------

    def write_config(self) -> None:
        """Write homeserver.yaml, its log config and a signing key (once per data dir).

        JSON is valid YAML, so the config is written with `json` and needs no YAML library
        in the test environment.
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        key_path = self.data_dir / "signing.key"
        if not key_path.exists():
            # The format of signedjson.write_signing_keys: "<alg> <version> <unpadded b64 seed>".
            seed = base64.b64encode(os.urandom(32)).decode().rstrip("=")
            key_path.write_text(f"ed25519 a_{secrets.token_hex(2)} {seed}\n")
        log_config = self.data_dir / "log.yaml"
        log_config.write_text(json.dumps({
            "version": 1,
            "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "loggers": {"synapse.access": {"level": "INFO"}},
            "root": {"level": "WARNING", "handlers": ["console"]},
            "disable_existing_loggers": False,
        }))
        config: dict[str, Any] = {
            "server_name": self.server_name,
            "public_baseurl": self.url + "/",
            "pid_file": str(self.data_dir / "homeserver.pid"),
            "listeners": [{
                "port": self.port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "x_forwarded": False,
                "resources": [{"names": ["client"], "compress": False}],
            }],
            "database": {"name": "sqlite3",
                         "args": {"database": str(self.data_dir / "homeserver.db")}},
            "log_config": str(log_config),
            "media_store_path": str(self.data_dir / "media"),
            "signing_key_path": str(key_path),
            "registration_shared_secret": self.shared_secret,
            "macaroon_secret_key": secrets.token_hex(16),
            "form_secret": secrets.token_hex(16),
            "enable_registration": False,
            "bcrypt_rounds": 4,
            "report_stats": False,
            "trusted_key_servers": [],
            "suppress_key_server_warning": True,
            "presence": {"enabled": False},
            "url_preview_enabled": False,
            "enable_metrics": False,
            "federation_domain_whitelist": [],
            "allow_public_rooms_over_federation": False,
        }
        if self.rate_limits == "raised":
            config.update(RAISED_RATE_LIMITS)
        self.config_path.write_text(json.dumps(config, indent=2))

    # --- process control ----------------------------------------------------------------

    def start(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Start Synapse and return once `/_matrix/client/versions` answers.

        On a timeout or an early exit, raise with the tail of its log so the failure explains
        itself.
        """
        if self.running:
            return
        if not self.config_path.exists():
            self.write_config()
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self._proc = subprocess.Popen(
            [str(self.python), "-m", "synapse.app.homeserver", "-c", str(self.config_path)],
            cwd=self.data_dir, stdout=self._log_file, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self._close_log()
                raise RuntimeError(f"Synapse exited with status {code} during start-up; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            if self._answers():
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"Synapse did not answer on {self.url} within {timeout_s} s; "
                                   f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.05)  # polling a child process's readiness; there is no event to await

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/_matrix/client/versions", timeout=2) as r:
                return r.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after `STOP_TIMEOUT_S`; returns when the process is gone."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)
        self._close_log()

    def restart(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Stop and start again on the same data directory and port."""
        self.stop()
        self.start(timeout_s)

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    # --- users --------------------------------------------------------------------------

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None,
                 token: str | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{method} {path}: HTTP {e.code}: {e.read()[:500]!r}") from None

    def register(self, localpart: str | None = None, *, password: str | None = None,
                 admin: bool = False, displayname: str | None = None) -> Account:
        """Register a user through the shared-secret admin API; returns its first token.

        The MAC is HMAC-SHA1 over `nonce\\0user\\0password\\0admin|notadmin`.
        """
        localpart = localpart or self.new_localpart()
        password = password or secrets.token_hex(8)
        nonce = self._request("GET", "/_synapse/admin/v1/register")["nonce"]
        mac = hmac.new(self.shared_secret.encode(), digestmod=hashlib.sha1)
        mac.update(b"\x00".join([nonce.encode(), localpart.encode(), password.encode(),
                                 b"admin" if admin else b"notadmin"]))
        body: dict[str, Any] = {"nonce": nonce, "username": localpart, "password": password,
                                "admin": admin, "mac": mac.hexdigest()}
        if displayname:
            body["displayname"] = displayname
        out = self._request("POST", "/_synapse/admin/v1/register", body)
        return Account(user_id=out["user_id"], localpart=localpart, password=password,
                       access_token=out["access_token"], device_id=out["device_id"])

    def override_ratelimit(self, user_id: str, *, per_second: float, burst_count: int) -> None:
        """Set `user_id`'s message rate limit through the admin API (Synapse's
        `override_ratelimit`, as an operator would for a bot)."""
        if self._admin is None:
            self._admin = self.register(self.new_localpart("admin"), admin=True)
        self._request("POST", f"/_synapse/admin/v1/users/{user_id}/override_ratelimit",
                      {"messages_per_second": per_second, "burst_count": burst_count},
                      token=self._admin.access_token)

    def new_localpart(self, prefix: str = "user") -> str:
        """A localpart no earlier registration on this server used."""
        self._counter += 1
        return f"{prefix}-{self._counter}"

    def user_id(self, localpart: str) -> str:
        return f"@{localpart}:{self.server_name}"


# --- a person --------------------------------------------------------------------------


@dataclass
class _RoomLog:
    events: list[EventDict] = field(default_factory=list)
    typing: list[list[str]] = field(default_factory=list)  # who typed, per `m.typing` event


class Person:
    """A human on the homeserver, as the tests play one: a matrix-nio client with its own
    background sync that records every timeline event of every room it is in.

    Waiting is on a condition that each sync batch notifies, with a timeout — never a sleep.
    """

    def __init__(self, client: AsyncClient, account: Account):
        self.client = client
        self.account = account
        self.user_id = account.user_id
        self._rooms: dict[str, _RoomLog] = {}
        self._members: dict[str, dict[str, str]] = {}  # room -> user -> membership
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._sync_error: BaseException | None = None
        self._encrypted: set[str] = set()  # events that came encrypted and were decrypted
        self.to_device: list[Any] = []

    @classmethod
    async def connect(cls, server: SynapseServer, account: Account, *,
                      login: bool = False, encryption: bool = False,
                      store_dir: Path | None = None) -> Person:
        """Connect with the registration token (or a fresh password login: a new device)
        and start syncing from "now"; `encryption` needs a `store_dir` of its own."""
        if encryption and store_dir is None:
            raise ValueError("an encrypting person needs a store_dir")
        config = AsyncClientConfig(max_limit_exceeded=None, max_timeouts=3,
                                   encryption_enabled=encryption, request_timeout=60,
                                   store=SqliteStore)
        client: AsyncClient = E2eeClient(server.url, account.user_id, config=config,
                                         store_path=str(store_dir) if store_dir else "")
        if login:
            resp = await client.login(account.password, device_name="test person")
            if not hasattr(resp, "access_token"):
                await client.close()
                raise RuntimeError(f"login of {account.user_id} failed: {resp}")
        elif encryption:
            client.restore_login(account.user_id, account.device_id, account.access_token)
        else:
            client.access_token = account.access_token
            client.user_id = account.user_id
            client.device_id = account.device_id
        person = cls(client, account)
        first = await client.sync(timeout=0)
        if not isinstance(first, SyncResponse):
            await client.close()
            raise RuntimeError(f"first sync of {account.user_id} failed: {first}")
        person._record(first)
        await person._keys()
        person._task = asyncio.create_task(person._sync_forever(first.next_batch))
        return person

    async def _sync_forever(self, since: str) -> None:
        while True:
            try:
                resp = await self.client.sync(timeout=10_000, since=since)
                failed = None if isinstance(resp, SyncResponse) else str(resp)
            except (OSError, TimeoutError, aiohttp.ClientError) as e:
                failed = repr(e)  # the homeserver is down (the outage test)
            if failed is not None:
                self._sync_error = RuntimeError(f"{self.user_id}: sync failed: {failed}")
                async with self._changed:
                    self._changed.notify_all()
                await asyncio.sleep(0.5)  # a person retrying a failed sync, as clients do
                continue
            assert isinstance(resp, SyncResponse)
            since = resp.next_batch
            self._record(resp)
            await self._keys()
            async with self._changed:
                self._changed.notify_all()

    async def _keys(self) -> None:
        """What a client with encryption does after each sync (nio's `sync_forever`)."""
        client = self.client
        if client.olm is None:
            return
        with contextlib.suppress(OSError, TimeoutError, aiohttp.ClientError):
            if client.outgoing_to_device_messages:
                await client.send_to_device_messages()
            if client.should_upload_keys:
                await client.keys_upload()
            if client.should_query_keys:
                await client.keys_query()
            if client.should_claim_keys:
                await client.keys_claim(client.get_users_for_key_claiming())

    def _record(self, resp: SyncResponse) -> None:
        self.to_device.extend(resp.to_device_events)
        for room_id, info in resp.rooms.join.items():
            log = self._rooms.setdefault(room_id, _RoomLog())
            for ev in info.timeline.events:
                source = ev.source
                if getattr(ev, "decrypted", False) and not isinstance(ev, MegolmEvent):
                    self._encrypted.add(str(source.get("event_id")))
                log.events.append(source)
                if source.get("type") == "m.room.member":
                    self._members.setdefault(room_id, {})[source.get("state_key", "")] = (
                        source.get("content", {}).get("membership", ""))
            for ev in info.state:
                source = ev.source
                if source.get("type") == "m.room.member":
                    self._members.setdefault(room_id, {})[source.get("state_key", "")] = (
                        source.get("content", {}).get("membership", ""))
            log.typing.extend(list(ev.users) for ev in info.ephemeral
                              if isinstance(ev, TypingNoticeEvent))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.client.close()

    # --- acting -------------------------------------------------------------------------

    async def create_room(self, *, invite: tuple[str, ...] = (), is_direct: bool = False,
                          alias: str | None = None, name: str | None = None,
                          public: bool = False, encrypted: bool = False) -> str:
        """Create a room (private unless `public`), optionally inviting with `is_direct`;
        `encrypted` as Element creates private rooms and DMs (R15)."""
        state = [{"type": "m.room.encryption", "state_key": "",
                  "content": {"algorithm": "m.megolm.v1.aes-sha2"}}] if encrypted else []
        resp = await self.client.room_create(
            alias=alias, name=name, invite=list(invite), is_direct=is_direct,
            initial_state=state,
            preset=RoomPreset.public_chat if public else (
                RoomPreset.trusted_private_chat if is_direct else RoomPreset.private_chat),
        )
        if isinstance(resp, RoomCreateError) or not isinstance(resp, RoomCreateResponse):
            raise RuntimeError(f"{self.user_id}: room_create failed: {resp}")
        await self.wait_for_membership(resp.room_id, self.user_id, "join")
        return resp.room_id

    async def invite(self, room_id: str, user_id: str) -> None:
        resp = await self.client.room_invite(room_id, user_id)
        if isinstance(resp, RoomInviteError):
            raise RuntimeError(f"{self.user_id}: invite of {user_id} failed: {resp}")

    async def send_text(self, room_id: str, text: str, *, msgtype: str = "m.text",
                        thread: str | None = None) -> str:
        """Post a message as this person (in the thread of root `thread`, as Element does:
        `m.thread` with the reply fallback to the thread's latest event); returns its id."""
        content: dict[str, Any] = {"msgtype": msgtype, "body": text}
        if thread is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": self._latest(room_id,
                                                                                  thread)}}
        return await self._send(room_id, content)

    async def edit(self, room_id: str, event_id: str, text: str) -> str:
        """Edit one of this person's messages (`m.replace`), as Element does."""
        return await self._send(room_id, {
            "msgtype": "m.text", "body": f"* {text}",
            "m.new_content": {"msgtype": "m.text", "body": text},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id}})

    async def reply(self, room_id: str, event_id: str, text: str, *,
                    thread: str | None = None) -> str:
        """Reply to `event_id` as Element does: a plain `m.in_reply_to`, or inside the
        thread of root `thread` the thread relation with `is_falling_back: false`."""
        relates: dict[str, Any] = {"m.in_reply_to": {"event_id": event_id}}
        if thread is not None:
            relates.update({"rel_type": "m.thread", "event_id": thread,
                            "is_falling_back": False})
        return await self._send(room_id, {"msgtype": "m.text", "body": text,
                                          "m.relates_to": relates})

    async def react(self, room_id: str, event_id: str, key: str) -> str:
        """Tap the reaction `key` on `event_id`; returns the reaction's event id."""
        return await self._send(room_id, {"m.relates_to": {
            "rel_type": "m.annotation", "event_id": event_id, "key": key}}, "m.reaction")

    async def send_unreadable(self, room_id: str, text: str, *,
                              thread: str | None = None) -> str:
        """Post a message encrypted with a Megolm session this person shares with no one
        (R15.3): the event every other device sees and none can decrypt; its id."""
        client = self.client
        assert client.olm is not None, "send_unreadable needs encryption=True"
        session = vodozemac.GroupSession()
        plain = json.dumps({"type": "m.room.message", "room_id": room_id,
                            "content": {"msgtype": "m.text", "body": text}})
        content: dict[str, Any] = {
            "algorithm": "m.megolm.v1.aes-sha2", "session_id": session.session_id,
            "sender_key": client.olm.account.identity_keys["curve25519"],
            "device_id": client.device_id,
            "ciphertext": session.encrypt(plain.encode()).to_base64()}
        if thread is not None:
            content["m.relates_to"] = {"rel_type": "m.thread", "event_id": thread,
                                       "is_falling_back": True,
                                       "m.in_reply_to": {"event_id": thread}}
        method, path, data = Api.room_send(client.access_token, room_id, "m.room.encrypted",
                                           content, secrets.token_hex(8))
        resp = await client._send(RoomSendResponse, method, path, data, (room_id,))
        if not isinstance(resp, RoomSendResponse):
            raise RuntimeError(f"{self.user_id}: send failed: {resp}")
        return resp.event_id

    async def _send(self, room_id: str, content: dict[str, Any],
                    event_type: str = "m.room.message") -> str:
        resp = await self.client.room_send(room_id, event_type, content)
        if not isinstance(resp, RoomSendResponse):
            raise RuntimeError(f"{self.user_id}: send failed: {resp}")
        return resp.event_id

    def _latest(self, room_id: str, root: str) -> str:
        """The latest event this person has seen in the thread of `root` (the root itself
        when none)."""
        in_thread = [e["event_id"] for e in self.messages(room_id) if thread_of(e) == root]
        return in_thread[-1] if in_thread else root

    # --- observing ----------------------------------------------------------------------

    def messages(self, room_id: str, *, sender: str | None = None) -> list[EventDict]:
        """Every `m.room.message` seen so far in `room_id` (optionally from one sender)."""
        log = self._rooms.get(room_id, _RoomLog())
        return [e for e in log.events if e.get("type") == "m.room.message"
                and (sender is None or e.get("sender") == sender)]

    def events(self, room_id: str, event_type: str, *,
               sender: str | None = None) -> list[EventDict]:
        """Every timeline event of `event_type` seen so far in `room_id`."""
        log = self._rooms.get(room_id, _RoomLog())
        return [e for e in log.events if e.get("type") == event_type
                and (sender is None or e.get("sender") == sender)]

    def reactions(self, room_id: str, target: str, *,
                  sender: str | None = None) -> list[EventDict]:
        """The `m.reaction`s seen on `target` (redacted ones included: their content is
        gone, so they no longer name it)."""
        return [e for e in self.events(room_id, "m.reaction", sender=sender)
                if annotation_of(e)[0] == target]

    def redacted(self, room_id: str) -> list[str]:
        """The ids of the events redacted so far in `room_id`, in order."""
        return [redacts_of(e) for e in self.events(room_id, "m.room.redaction")]

    def typing(self, room_id: str) -> list[list[str]]:
        """Who was typing, per `m.typing` ephemeral event seen in `room_id`, in order."""
        return list(self._rooms.get(room_id, _RoomLog()).typing)

    async def thread_events(self, room_id: str, root: str) -> list[str]:
        """The ids of the events the homeserver files under the thread of `root`, oldest
        first: what a client's thread panel shows (the `/relations` API)."""
        found = [e.event_id async for e in self.client.room_get_event_relations(
            room_id, root, rel_type=RelationshipType.thread)]
        return found[::-1]

    def was_encrypted(self, event_id: str) -> bool:
        """Whether `event_id` came encrypted (and this person could decrypt it)."""
        return event_id in self._encrypted

    def membership(self, room_id: str, user_id: str) -> str | None:
        return self._members.get(room_id, {}).get(user_id)

    async def wait_until(self, condition: Callable[[], Any], *, timeout: float = 10.0,
                         what: str = "condition") -> Any:
        """Wait until `condition()` is truthy (re-checked after every sync); return its value."""
        def failure() -> str:
            detail = f" (last sync error: {self._sync_error})" if self._sync_error else ""
            return f"{self.user_id}: timed out after {timeout} s waiting for {what}{detail}"
        return await wait_on(self._changed, condition, timeout, failure)

    async def wait_for_message(self, room_id: str, predicate: Callable[[EventDict], bool]
                               = lambda e: True, *, sender: str | None = None,
                               timeout: float = 10.0) -> EventDict:
        """The first message in `room_id` (from `sender`) matching `predicate`."""
        def find() -> EventDict | None:
            return next((e for e in self.messages(room_id, sender=sender) if predicate(e)), None)
        return await self.wait_until(find, timeout=timeout,
                                     what=f"a message from {sender or 'anyone'} in {room_id}")

    async def wait_for_messages(self, room_id: str, count: int, *, sender: str | None = None,
                                timeout: float = 10.0) -> list[EventDict]:
        """Wait until at least `count` messages from `sender` are in `room_id`."""
        def enough() -> list[EventDict] | None:
            found = self.messages(room_id, sender=sender)
            return found if len(found) >= count else None
        return await self.wait_until(enough, timeout=timeout,
                                     what=f"{count} messages from {sender} in {room_id}")

    async def wait_for_membership(self, room_id: str, user_id: str, membership: str, *,
                                  timeout: float = 10.0) -> None:
        await self.wait_until(lambda: self.membership(room_id, user_id) == membership,
                              timeout=timeout, what=f"{user_id} to {membership} {room_id}")


def body_of(event: EventDict) -> str:
    return str(event.get("content", {}).get("body", ""))


def line_of(event: EventDict) -> str:
    """A bot post as one `author: text` line, as the console shows it: the author's line of
    its own (R5.7, `name:` before a line break, and a bold paragraph in the HTML) joined to
    the text, for tests that compare what each platform shows of one post."""
    body = body_of(event)
    html = str(event.get("content", {}).get("formatted_body", ""))
    name, newline, text = body.partition(":\n")
    return f"{name}: {text}" if newline and html.startswith("<p><strong>") else body


def msgtype_of(event: EventDict) -> str:
    return str(event.get("content", {}).get("msgtype", ""))


def thread_of(event: EventDict) -> str | None:
    """The root of the thread `event` is in, or None at the top level."""
    relates = event.get("content", {}).get("m.relates_to") or {}
    return relates.get("event_id") if relates.get("rel_type") == "m.thread" else None


def annotation_of(event: EventDict) -> tuple[str | None, str | None]:
    """(the event an `m.reaction` annotates, its key)."""
    relates = event.get("content", {}).get("m.relates_to") or {}
    return relates.get("event_id"), relates.get("key")


def redacts_of(event: EventDict) -> str:
    """The event an `m.room.redaction` takes back (top level before room version 11, in
    the content from 11 on)."""
    return str(event.get("redacts") or event.get("content", {}).get("redacts", ""))
