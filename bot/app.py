"""The wiring: bridges ↔ store ↔ routing ↔ supervisor ↔ outbox. The only module that knows all.

A person's message travels: bridge → `on_event` → stored with its nudges in one
transaction (R1.3, R8.1) → relayed to the channel's other rooms (R1.4) → the supervisor
delivers the queued nudges (R3). An agent's text travels: supervisor → `agent_posted` →
the outbox (one row per bound room, R5.1, R8.3) and routing, like a person's message (R2.6).

Channels are names; rooms are (platform, room id) pairs. The console is bound to every
channel, so it shows the whole conversation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import sqlite3
import sys
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from bot import admin as admin_text
from bot.clock import SystemClock
from bot.commands import ADMIN_HELP, Admin, Invalid, TaskCreate, TaskDone, is_admin_command, parse
from bot.config import Config
from bot.control import ControlError, ControlServer
from bot.model import ChannelKind, Message, Nudge, Platform, RoomRef, dm_channel_of, worker_of_dm
from bot.outbox import Outbox
from bot.routing import Directory, Notice, route
from bot.store import NewPost, Store
from bot.wiring import build_bridges
from bridges.base import (
    Bridge,
    BridgeEvent,
    ConnectionChanged,
    Inbound,
    RoomJoined,
    RoomUnresolvable,
)
from supervisor.auth import run_login
from supervisor.ports import AgentKind, AgentSpec, Clock
from supervisor.redact import SECRETS
from supervisor.supervisor import Supervisor

log = logging.getLogger(__name__)

BOT_NAME = "crewbridge"
NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")
DM_ADDRESS = re.compile(r"@([A-Za-z0-9][\w-]*)[,:]?\s*(.*)", re.DOTALL)
CONNECTION_ALERT_S = 60
DRAIN_AT_EOF_S = 30


class StartupError(Exception):
    """The bot cannot start as configured; `str()` is one line per problem."""


class ShuttingDown(Exception):
    """Raised to a bridge for events that arrive while stopping: they must not count as handled."""


@dataclass
class _Outage:
    since: float
    alerted: bool = False


class App:
    def __init__(self, config: Config, *, clock: Clock | None = None,
                 bridges: dict[str, Bridge] | None = None,
                 stdin: TextIO | None = None, stdout: TextIO | None = None):
        self.config = config
        self.clock = clock or SystemClock()
        self._injected = bridges
        self._stdio = (stdin, stdout)
        self.bridges: dict[str, Bridge] = {}
        self.data_dir = config.bot.data_dir
        self.socket_path = self.data_dir / "control.sock"
        self.general = config.bot.general_channel
        self.admin = config.bot.admin_channel
        self.rooms: dict[str, list[RoomRef]] = {}  # channel -> bound rooms (console excluded)
        self.bound: dict[RoomRef, str] = {}  # room -> channel
        self.channels: dict[str, str] = {}  # name -> kind
        self.workers: dict[str, frozenset[str]] = {}  # worker -> channels of its open tasks
        self.dms: dict[RoomRef, str] = {}  # DM room -> attached worker
        self.outages: dict[str, _Outage] = {}
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self._closing = False
        self._background: set[asyncio.Task] = set()

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        SECRETS.add(self.config.secrets)  # hidden in all that is logged, stored, posted (R10.5)
        self.store = await Store.open(self.data_dir / "crewbridge.db")
        now = self.clock.now()
        await self.store.ensure_channel(self.general, ChannelKind.GENERAL, now)
        await self.store.ensure_channel(self.admin, ChannelKind.ADMIN, now)
        for ch in self.config.channels:
            await self.store.ensure_channel(ch.name, ChannelKind.TOPIC, now)
        await self._load()
        if self._injected is not None:
            self.bridges = dict(self._injected)
        else:
            self.bridges = build_bridges(self.config, self.store, stdin=self._stdio[0],
                                         stdout=self._stdio[1])
        self.outbox = Outbox(self.store, self.bridges, self.clock)
        self.supervisor = Supervisor(
            self.store, self.clock, self.config.agent, self,
            socket_path=self.socket_path.resolve(),
            always_on=[c.name for c in self.config.channels if c.always_on])
        self.control = ControlServer(self.socket_path, self._control)
        try:
            await self.control.start()
        except ControlError as e:
            raise StartupError(str(e)) from None
        for name, bridge in self.bridges.items():
            try:
                await bridge.start(self.on_event)
            except Exception as e:
                raise StartupError(f"{name}: {e}") from None
        await self._bind_rooms()
        await self.outbox.resume()
        await self.supervisor.start_up()
        self._spawn(self._watch_connections(), "connection-watch")
        self.ready.set()
        log.info("crewbridge is running: channels %s", ", ".join(sorted(self.channels)))
        console = self.bridges.get(Platform.CONSOLE)
        if console is not None and getattr(console, "interactive", False):
            print("Type `#general hello` (or any #channel), `/dm <worker> <text>`, "
                  "`#ops status`; Ctrl-D to stop.", file=sys.stderr)

    async def stop(self) -> None:
        """Stop taking messages, end the agents, flush posts, close (R4.9)."""
        self._closing = True
        self.ready.set()
        if hasattr(self, "supervisor"):
            await self.supervisor.shutdown()
        if hasattr(self, "outbox"):
            if not await self.outbox.drain(10):
                log.warning("some posts were not sent before stopping; they are kept and "
                            "will be sent at the next start")
            await self.outbox.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        for bridge in self.bridges.values():
            with contextlib.suppress(Exception):
                await bridge.stop()
        if hasattr(self, "control"):
            await self.control.stop()
        if hasattr(self, "store"):
            await self.store.close()

    async def drain_after_eof(self) -> None:
        """End of console input: let the turns in progress finish, then stop (R11.3)."""
        if not await self.supervisor.wait_quiet(DRAIN_AT_EOF_S):
            log.warning("turns still running after %ss at end of input; stopping anyway",
                        DRAIN_AT_EOF_S)
        await self.outbox.drain(DRAIN_AT_EOF_S)

    async def _load(self) -> None:
        self.channels = await self.store.channels()
        self.dms = {RoomRef(p, r): w for p, r, w in await self.store.dm_attachments()}
        await self._reload_workers()

    async def _reload_workers(self) -> None:
        workers: dict[str, set[str]] = {a.name: set() for a in await self.store.agents()
                                        if a.kind is AgentKind.WORKER}
        for t in await self.store.tasks(open_only=True):
            workers.setdefault(t.assignee, set()).add(t.channel)
        self.workers = {w: frozenset(c) for w, c in workers.items()}

    async def _bind_rooms(self) -> None:
        """Resolve every configured room at start-up; one clear error per room (R1.2, R11.4)."""
        problems: list[str] = []
        wanted = [(c.name, "slack", r) for c in self.config.channels for r in c.slack]
        wanted += [(c.name, "matrix", r) for c in self.config.channels for r in c.matrix]
        wanted += [(self.admin, "slack", r) for r in self.config.admin.slack]
        wanted += [(self.admin, "matrix", r) for r in self.config.admin.matrix]
        for channel, platform, ref in wanted:
            bridge = self.bridges.get(platform)
            if bridge is None:
                problems.append(f"channel {channel}: {platform} room {ref} is bound, but there "
                                f"is no [{platform}] section in the config")
                continue
            try:
                room = await bridge.resolve_room(ref)
            except RoomUnresolvable as e:
                problems.append(f"channel {channel}: {e}")
                continue
            ref_ = RoomRef(platform, room)
            if ref_ in self.bound and self.bound[ref_] != channel:
                problems.append(f"{platform} room {ref} is bound to both #{self.bound[ref_]} "
                                f"and #{channel}")
                continue
            self.bound[ref_] = channel
            self.rooms.setdefault(channel, []).append(ref_)
        if problems:
            raise StartupError("\n".join(problems))

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- where rooms and channels meet -------------------------------------------------------

    def rooms_of(self, channel: str, *, with_dms: bool = True) -> list[RoomRef]:
        """Every room that shows `channel`: bound rooms, DMs attached to its worker, console.

        `with_dms=False` leaves out the attached DMs: one person's words to a worker are
        not copied into another person's private conversation with the bot.
        """
        rooms = list(self.rooms.get(channel, []))
        worker = worker_of_dm(channel)
        if worker is not None and with_dms:
            rooms += [ref for ref, w in self.dms.items() if w == worker and ref not in rooms]
        if Platform.CONSOLE in self.bridges:
            rooms.append(RoomRef(Platform.CONSOLE, channel))
        return rooms

    def channel_of(self, ref: RoomRef) -> str | None:
        if ref.platform == Platform.CONSOLE:
            return ref.room if ref.room in self.channels else None
        return self.bound.get(ref)

    def directory(self) -> Directory:
        topics = frozenset(c for c, k in self.channels.items()
                           if k in (ChannelKind.TOPIC, ChannelKind.GENERAL))
        return Directory(self.general, self.admin, topics, self.workers)

    async def post(self, channel: str, author: str, text: str, *, kind: str = "agent",
                   origin: RoomRef | None = None, origin_platform: str | None = None,
                   only: RoomRef | None = None) -> None:
        """Queue `author: text` for every room of `channel` but `origin` (or only `only`)."""
        rooms = self.rooms_of(channel, with_dms=kind != "relay")
        targets = [only] if only else [r for r in rooms if r != origin]
        label = f"{author} ({origin_platform})" if origin_platform else author
        await self.outbox.add(NewPost(r.platform, r.room, f"{label}: {text}", kind)
                              for r in targets)

    async def _ensure_channel(self, name: str, kind: ChannelKind) -> None:
        if name not in self.channels:
            await self.store.ensure_channel(name, kind, self.clock.now())
            self.channels[name] = kind

    # --- inbound: what bridges report --------------------------------------------------------

    async def on_event(self, event: BridgeEvent) -> None:
        """The sink every bridge awaits; when it returns, the event is stored."""
        await self.ready.wait()
        if self._closing:
            raise ShuttingDown("crewbridge is stopping")
        try:
            if isinstance(event, Inbound):
                await self._inbound(event)
            elif isinstance(event, RoomJoined):
                await self._joined(event)
            elif isinstance(event, ConnectionChanged):
                self._connection(event)
        except (sqlite3.Error, OSError):
            raise  # not stored: the bridge must deliver it again
        except Exception:
            log.exception("handling %s failed", type(event).__name__)

    async def _inbound(self, msg: Inbound) -> None:
        ref = RoomRef(msg.platform, msg.room)
        channel = self.channel_of(ref)
        text = msg.text
        if channel is None and msg.platform == Platform.CONSOLE:
            await self._unknown_console_channel(ref)
            return
        if channel is None:
            if not msg.is_direct:
                await self._unbound(ref)
                return
            found = await self._direct(msg, ref)
            if found is None:
                return
            channel, text = found
        cmd = parse(text, in_admin=channel == self.admin)
        if channel == self.admin or is_admin_command(cmd):
            if await self._command_said(channel, msg, text, ref):
                await self._admin(channel, msg, cmd, ref)
            return
        if isinstance(cmd, TaskCreate | TaskDone | Invalid) and worker_of_dm(channel) is None:
            if await self._command_said(channel, msg, text, ref):
                await self._task_command(channel, msg.sender_name, cmd, ref)
            return
        await self._person_said(channel, msg, text, origin=ref, platform=msg.platform)

    async def _command_said(self, channel: str, msg: Inbound, text: str, ref: RoomRef) -> bool:
        """Store and relay a command (it nudges nobody); False for a re-delivery."""
        if not await self.store.accept_inbound(channel, msg, [], self.clock.now()):
            return False
        await self.post(channel, msg.sender_name, text, kind="relay", origin=ref,
                        origin_platform=msg.platform)
        return True

    async def _person_said(self, channel: str, msg: Inbound, text: str, *,
                           origin: RoomRef | None, platform: str) -> None:
        """Store a person's message with its nudges, show it in the channel's other rooms,
        and deliver it (R1.3, R1.4, R2). `origin` None: it came from no room (the CLI)."""
        message = Message(channel, msg.sender_name, False, platform, text,
                          top_level=msg.thread is None)
        routing = route(message, self.directory(), self.config.agent.max_hops)
        if not await self.store.accept_inbound(channel, msg, routing.nudges, self.clock.now()):
            log.info("ignored a re-delivered %s event %s", msg.platform, msg.event_id)
            return
        await self.post(channel, msg.sender_name, text, kind="relay", origin=origin,
                        origin_platform=platform)
        if origin is not None:
            await self._notices(routing.notices, only=origin)
        self.supervisor.schedule_kick(n.agent for n in routing.nudges)

    async def _notices(self, notices: tuple[Notice, ...], only: RoomRef | None = None) -> None:
        for n in notices:
            await self.post(n.channel, BOT_NAME, n.text, kind="notice", only=only)

    async def _unknown_console_channel(self, ref: RoomRef) -> None:
        worker = worker_of_dm(ref.room)
        if worker is not None:
            known = ", ".join(sorted(self.workers)) or "none yet (create one with !task)"
            text = f"No worker named {worker}. Workers: {known}."
        else:
            text = (f"No channel #{ref.room}. Channels: "
                    + ", ".join(f"#{c}" for c in sorted(self.channels)) + ".")
        await self.post(ref.room, BOT_NAME, text, kind="notice", only=ref)

    async def _unbound(self, ref: RoomRef) -> None:
        """One notice per unbound room, ever; nothing from it is routed (R1.5)."""
        if await self.store.put_value_once(f"unbound:{ref}", "noticed"):
            text = (f"This room is not bound to a crewbridge channel, so I will not act on "
                    f"messages here. To bind it, add `{ref.room}` to the `{ref.platform}` list "
                    f"of a [[channel]] in the crewbridge config and restart the bot.")
            await self.post("", BOT_NAME, text, kind="notice", only=ref)

    async def _joined(self, event: RoomJoined) -> None:
        ref = RoomRef(event.platform, event.room)
        if self.channel_of(ref) is not None:
            return
        if event.is_direct:
            await self.post("", BOT_NAME, self._dm_help(), kind="notice", only=ref)
        else:
            await self._unbound(ref)

    def _dm_help(self) -> str:
        names = ", ".join(f"@{w}" for w in sorted(self.workers)) or "none yet"
        return (f"Write `@<worker> <text>` to talk to a worker; later messages here go to the "
                f"same worker. Workers: {names}.")

    async def _direct(self, msg: Inbound, ref: RoomRef) -> tuple[str, str] | None:
        """A DM: `@name text` attaches it to worker `name`; later text follows (R1.6)."""
        m = DM_ADDRESS.fullmatch(msg.text.strip())
        if m and m.group(1).lower() in self.workers:
            worker = m.group(1).lower()
            if self.dms.get(ref) != worker:
                await self.store.attach_dm(ref.platform, ref.room, worker)
                self.dms[ref] = worker
            if not m.group(2).strip():
                await self.post("", BOT_NAME, f"This conversation now goes to @{worker}.",
                                kind="notice", only=ref)
                return None
            return dm_channel_of(worker), m.group(2)
        if ref in self.dms:
            return dm_channel_of(self.dms[ref]), msg.text
        await self.post("", BOT_NAME, self._dm_help(), kind="notice", only=ref)
        return None

    def _connection(self, event: ConnectionChanged) -> None:
        if not event.up:
            self.outages.setdefault(event.platform, _Outage(self.clock.now()))
            log.warning("%s connection down: %s", event.platform, event.detail)
            return
        outage = self.outages.pop(event.platform, None)
        if outage is not None:
            log.info("%s connection back", event.platform)
            if outage.alerted:
                self._spawn(self.alert(f"✅ {event.platform} connection is back.",
                                       skip=event.platform), "alert")

    async def _watch_connections(self) -> None:
        """One alert for a platform down longer than 60 s, on the other platforms (R6.3)."""
        while True:
            await self.clock.sleep(1)
            now = self.clock.now()
            for platform, outage in self.outages.items():
                if not outage.alerted and now - outage.since >= CONNECTION_ALERT_S:
                    outage.alerted = True
                    await self.alert(f"⚠️ {platform} connection down for more than "
                                     f"{CONNECTION_ALERT_S}s; messages there wait until it is "
                                     "back.", skip=platform)

    # --- outputs the supervisor asks for -----------------------------------------------------

    async def agent_posted(self, agent: str, channel: str, text: str, hops: int) -> None:
        await self.post(channel, agent, text)
        message = Message(channel, agent, True, Platform.AGENT, text, hops)
        routing = route(message, self.directory(), self.config.agent.max_hops)
        await self.store.enqueue(routing.nudges, self.clock.now())
        await self._notices(routing.notices)
        self.supervisor.schedule_kick(n.agent for n in routing.nudges)

    async def notice(self, channel: str, text: str) -> None:
        await self.post(channel, BOT_NAME, text, kind="notice")

    async def alert(self, text: str, *, skip: str | None = None) -> None:
        log.warning("ops alert: %s", text)
        rooms = [r for r in self.rooms_of(self.admin) if r.platform != skip]
        await self.outbox.add(NewPost(r.platform, r.room, f"{BOT_NAME}: {text}", "alert")
                              for r in rooms)

    # --- agents ------------------------------------------------------------------------------

    def has_open_task(self, name: str) -> bool:
        return bool(self.workers.get(name))

    async def spec_for(self, name: str) -> AgentSpec | None:
        """How agent `name` is started, from the config and its tasks (R3.3)."""
        agent_cfg = self.config.agent
        if self.channels.get(name) in (ChannelKind.TOPIC, ChannelKind.GENERAL):
            ch = self.config.channel(name)
            prompt = lead_prompt(name, name == self.general, ch.prompt if ch else "")
            spec = AgentSpec(name, AgentKind.LEAD, name, None, prompt,
                             str(ch.workdir if ch and ch.workdir else agent_cfg.workdir),
                             (ch.command if ch and ch.command else agent_cfg.command),
                             dict(ch.env) if ch else {})
        elif name in self.workers:
            tasks = [t for t in await self.store.tasks() if t.assignee == name]
            task = next((t for t in reversed(tasks) if t.status == "open"),
                        tasks[-1] if tasks else None)
            topic = self.config.channel(task.channel) if task else None
            workdir = topic.workdir if topic and topic.workdir else agent_cfg.workdir
            spec = AgentSpec(name, AgentKind.WORKER, dm_channel_of(name),
                             task.id if task else None, worker_prompt(name), str(workdir),
                             agent_cfg.command, {})
        else:
            return None
        await self.store.upsert_agent(spec.name, spec.kind, spec.channel, spec.task_id)
        return spec

    # --- tasks (R7) --------------------------------------------------------------------------

    async def create_task(self, subject: str, channel: str, assignee: str, by: str) -> str:
        assignee = assignee.lower().lstrip("@")
        if not NAME.fullmatch(assignee) or assignee in (self.admin, "all", "lead"):
            raise ControlError(f"{assignee!r} cannot be a worker name")
        if self.channels.get(assignee) in (ChannelKind.TOPIC, ChannelKind.GENERAL):
            raise ControlError(f"{assignee} is a channel's lead; workers need their own names")
        if self.channels.get(channel) not in (ChannelKind.TOPIC, ChannelKind.GENERAL):
            raise ControlError(f"tasks belong to topic channels; #{channel} is not one")
        if not subject.strip():
            raise ControlError("a task needs a subject")
        task = await self.store.create_task(subject.strip(), channel, assignee, by,
                                            self.clock.now())
        await self._ensure_channel(dm_channel_of(assignee), ChannelKind.DM)
        await self.store.upsert_agent(assignee, AgentKind.WORKER, dm_channel_of(assignee), task.id)
        await self._reload_workers()
        spec = await self.spec_for(assignee)
        if spec is not None:
            self.supervisor.refresh_spec(spec)
        first = Nudge(assignee, f"[task #{task.id} from {by} in #{channel}] {task.subject}",
                      0, channel)
        await self.store.enqueue([first], self.clock.now())
        line = f"Task #{task.id} for @{assignee}: {task.subject}"
        await self.notice(channel, line)
        self.supervisor.schedule_kick([assignee], start=True)  # R4.1, R7.1
        return line

    async def finish_task(self, task_id: int) -> str:
        task = await self.store.finish_task(task_id, self.clock.now())
        if task is None:
            raise ControlError(f"there is no open task #{task_id}")
        await self._reload_workers()
        if not self.workers.get(task.assignee):
            await self.supervisor.stop_worker(task.assignee)
        line = f"Task #{task.id} done: {task.subject} (@{task.assignee})"
        await self.notice(task.channel, line)  # R7.3
        return line

    async def _task_command(self, channel: str, sender: str, cmd: Any, ref: RoomRef) -> None:
        try:
            if isinstance(cmd, TaskCreate):
                await self.create_task(cmd.subject, channel, cmd.assignee, sender)
            elif isinstance(cmd, TaskDone):
                await self.finish_task(cmd.task_id)
            else:
                raise ControlError(f"usage: {cmd.usage}")
        except ControlError as e:
            await self.post(channel, BOT_NAME, str(e), kind="notice", only=ref)

    # --- admin (R6.4, R6.5) ------------------------------------------------------------------

    def _is_admin(self, msg: Inbound) -> bool:
        users = self.config.admin.users
        return msg.platform == Platform.CONSOLE or not users or msg.sender in users

    async def _admin(self, channel: str, msg: Inbound, cmd: Any, ref: RoomRef) -> None:
        if channel != self.admin:
            await self.post(channel, BOT_NAME, f"Admin commands only work in #{self.admin}.",
                            kind="notice", only=ref)
            return
        if cmd is None:
            return
        if not self._is_admin(msg):
            await self.notice(channel, f"{msg.sender_name} is not an admin; nothing was run.")
            return
        if isinstance(cmd, Invalid):
            await self.notice(channel, f"usage: {cmd.usage}")
            return
        assert isinstance(cmd, Admin)
        await self.notice(channel, await self._run_admin(cmd))

    async def _run_admin(self, cmd: Admin) -> str:
        if cmd.verb == "status":
            return admin_text.format_status(await self.supervisor.status())
        if cmd.verb == "tasks":
            return admin_text.format_tasks(await self.store.tasks(open_only=True))
        if cmd.verb == "restart":
            return await self.supervisor.restart(cmd.agent or "")
        if cmd.verb == "stop":
            return await self.supervisor.stop(cmd.agent or "")
        if cmd.verb == "reset":
            return await self.supervisor.reset(cmd.agent or "")
        if cmd.verb == "auth-login":
            self._spawn(self._auth_login(), "auth-login")
            command = " ".join(self.config.agent.login_command)
            return (f"Running `{command}` on the host (it may open a browser there); "
                    f"waiting up to {self.config.agent.login_timeout_s:.0f}s.")
        return ADMIN_HELP

    async def _auth_login(self) -> None:
        result = await run_login(self.config.agent.login_command,
                                 self.config.agent.login_timeout_s,
                                 cwd=Path(self.config.agent.workdir), env=self.config.agent.env)
        if not result.ok:
            await self.notice(self.admin, f"❌ auth login failed: {result.detail}")
            return
        names = await self.supervisor.auth_recovered()
        restarted = f" Restarting: {', '.join(names)}." if names else ""
        await self.notice(self.admin, f"✅ auth login succeeded.{restarted}")

    # --- the control socket (R7.2, R10.4, R11.2) ---------------------------------------------

    async def _control(self, req: dict[str, Any]) -> Any:
        await self.ready.wait()
        op = req["op"]
        agent = req.get("agent") or None
        if op == "post":
            channel = str(req.get("channel", "")).lstrip("#").lower()
            text = str(req.get("text", ""))
            if not NAME.fullmatch(channel) or not text.strip():
                raise ControlError("usage: crewbridge post <channel> <text>")
            special = channel == self.admin or worker_of_dm(channel) is not None
            if special and channel not in self.channels:
                raise ControlError(f"there is no channel #{channel}")
            await self._ensure_channel(channel, ChannelKind.TOPIC)  # R1.1: created on first post
            if agent:
                await self.agent_posted(agent, channel, text, self.supervisor.hops_of(agent))
            else:
                await self._cli_post(channel, text, str(req.get("user") or "cli"))
            return f"posted to #{channel}"
        if op == "task_create":
            channel = req.get("channel") or await self._home_channel(agent)
            return await self.create_task(str(req.get("subject", "")), str(channel),
                                          str(req.get("assignee", "")), agent or "cli")
        if op == "task_done":
            return await self.finish_task(int(req.get("id", 0)))
        if op == "task_list":
            return [asdict(t) for t in await self.store.tasks(open_only=not req.get("all"))]
        if op == "status":
            return [asdict(s) for s in await self.supervisor.status()]
        raise ControlError(f"unknown request {op!r}")

    async def _cli_post(self, channel: str, text: str, user: str) -> None:
        """A person posting from the host's shell: stored and routed like a chat message."""
        msg = Inbound(Platform.CONSOLE, channel, f"cli:{user}", user, text,
                      f"cli-{uuid.uuid4()}", self.clock.now())
        await self._person_said(channel, msg, text, origin=None, platform="cli")

    async def _home_channel(self, agent: str | None) -> str:
        """Where an agent's new task belongs: a lead's channel, a worker's task's channel."""
        if agent is None:
            return self.general
        if self.channels.get(agent) in (ChannelKind.TOPIC, ChannelKind.GENERAL):
            return agent
        tasks = [t for t in await self.store.tasks(open_only=True) if t.assignee == agent]
        return tasks[-1].channel if tasks else self.general


def lead_prompt(name: str, general: bool, extra: str) -> str:
    role = "the project lead" if general else f"the lead of the #{name} channel"
    return (f"You are {name}, {role}, working with a team through a chat bridge (crewbridge). "
            "Each message you receive starts with [who via platform in #channel]. What you "
            "write is posted to your channel. Write @name to address an agent or @all for "
            "everyone on this channel's tasks. Delegate with `crewbridge task create --assignee "
            "<worker> <subject>`, post elsewhere with `crewbridge post <channel> <text>`."
            + (f"\n\n{extra}" if extra else ""))


def worker_prompt(name: str) -> str:
    return (f"You are {name}, a worker agent reached through a chat bridge (crewbridge). Your "
            "first message is your task. What you write is posted to your DM channel; report "
            "to a lead with `crewbridge post <channel> <text>`, and finish with "
            "`crewbridge task done <id>`.")
