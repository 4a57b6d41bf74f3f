"""The wiring: bridges ↔ store ↔ routing ↔ supervisor ↔ outbox. The only module that knows all.

A person's message travels: bridge → `on_event` → `classify` (bot.inbound) says what it
asks for → stored with its nudges in one transaction (R1.3, R8.1) → relayed to the
channel's other rooms (R1.4) → the supervisor delivers the queued nudges (R3). An agent's
text travels: supervisor → its host's `answered` (or `agent_posted`, mid-turn;
`bot.crew_host`) → the outbox (one row per bound room, R5.1, R8.3) and routing, like a
person's message (R2.6); at a turn's end in the same transaction as the dequeue of the
nudges that turn answered (R8.5).

The decisions live in pure modules — `inbound` (what an event asks for), `rooms` (which
rooms show a channel), `crew` (who the agents are and how they start), `outage` (when a
platform's outage is alerted) — and the App carries them out. The supervisor's `Host`
(`supervisor.ports`), the one interface between the two, is `bot.crew_host.CrewHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import sqlite3
import sys
from collections.abc import Collection, Coroutine
from typing import Any, TextIO

from crewbridge.bot import control_ops, datadir
from crewbridge.bot.admin_ops import AdminOps
from crewbridge.bot.approval_ops import ApprovalOps, Decider
from crewbridge.bot.budget_ops import BudgetOps
from crewbridge.bot.clock import SystemClock
from crewbridge.bot.config import Config
from crewbridge.bot.connecting import connect_later
from crewbridge.bot.control import OPERATOR_TOKEN_FILE, Caller, ControlError, ControlServer
from crewbridge.bot.conversations import Conversations, UnknownThread
from crewbridge.bot.crew import Crew
from crewbridge.bot.crew_host import CrewHost
from crewbridge.bot.http_health import HealthServer
from crewbridge.bot.inbound import (
    AttachDm,
    Decision,
    Notify,
    NotifyOnce,
    Record,
    Route,
    RunAdmin,
    RunStop,
    RunTaskCommand,
    RunVerdict,
    TrackConnection,
    classify,
)
from crewbridge.bot.metrics import Metrics
from crewbridge.bot.model import (
    BOT_NAME,
    ChannelKind,
    Message,
    Platform,
    PostKind,
    RoomRef,
)
from crewbridge.bot.outage import OutageTracker
from crewbridge.bot.outbox import Outbox
from crewbridge.bot.retention import Retention
from crewbridge.bot.rooms import Rooms, wanted_rooms
from crewbridge.bot.routing import Notice, route
from crewbridge.bot.status_ops import StatusOps
from crewbridge.bot.steer_ops import SteerOps
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import Said
from crewbridge.bot.store_usage import Actor
from crewbridge.bot.task_ops import TaskOps
from crewbridge.bot.wiring import build_bridges
from crewbridge.bridges.base import (
    Acted,
    AuthorRole,
    Bridge,
    BridgeEvent,
    ConnectionChanged,
    DevicesChanged,
    Inbound,
    PlatformUnreachable,
    RoomUnresolvable,
)
from crewbridge.supervisor.environment import new_token
from crewbridge.supervisor.ports import AgentKind, Clock, Conversation
from crewbridge.supervisor.redact import SECRETS
from crewbridge.supervisor.supervisor import Supervisor

log = logging.getLogger(__name__)

DRAIN_AT_EOF_S = 30


class StartupError(Exception):
    """The bot cannot start as configured; `str()` is one line per problem."""


class ShuttingDown(Exception):
    """Raised to a bridge for events that arrive while stopping: they must not count as handled."""


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
        self.outages = OutageTracker()
        self._outage_started = asyncio.Event()
        self.ready = asyncio.Event()
        self.stopping = asyncio.Event()
        self._closing = False
        self._background: set[asyncio.Task] = set()
        self._held: dict[str, asyncio.Event] = {}  # platforms connecting late (R14.2)

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        SECRETS.add(self.config.secrets)  # hidden in all that is logged, stored, posted (R10.5)
        self.store = await Store.open(self.data_dir / "crewbridge.db")
        self.metrics = Metrics()  # R14.3: /healthz and /metrics, from here on
        self.http = HealthServer(self.config.http.listen, self)
        await self.http.start()
        bot = self.config.bot
        now = self.clock.now()
        await self.store.ensure_channel(bot.general_channel, ChannelKind.GENERAL, now)
        await self.store.ensure_channel(bot.admin_channel, ChannelKind.ADMIN, now)
        for ch in self.config.channels:
            await self.store.ensure_channel(ch.name, ChannelKind.TOPIC, now)
        self.crew = Crew(self.config, await self.store.channels(),
                         [a.name for a in await self.store.agents() if a.kind is AgentKind.WORKER],
                         await self.store.tasks(open_only=True))
        if self._injected is not None:
            self.bridges = dict(self._injected)
        else:
            self.bridges = build_bridges(self.config, self.store, stdin=self._stdio[0],
                                         stdout=self._stdio[1])
        self.rooms = Rooms(console=Platform.CONSOLE in self.bridges,
                           dms={RoomRef(p, r): w for p, r, w in await self.store.dm_attachments()})
        self.outbox = Outbox(self.store, self.bridges, self.clock, self.metrics.posted)
        self.conversations = Conversations(self.store, self.rooms, self.crew, self.config)
        self.host = CrewHost(self)  # what the supervisor asks of the bot
        self.supervisor = Supervisor(
            self.store, self.clock, self.config.agent, self.host,
            socket_path=self.socket_path.resolve(),
            always_on=[c.name for c in self.config.channels if c.always_on],
            withheld_env=self.config.env_refs)
        self.steering = SteerOps(self.store, self.crew, self.supervisor, self.config,
                                 self.bot_says, self.clock.now,
                                 lambda e, thread, text: self.approvals.tell(
                                     Decider.of(e), thread, text))
        self.status = StatusOps(self.store, self.outbox, self.conversations, self.bridges,
                                self.config, self.clock, self.steering.stop_pressed)
        self.tasks = TaskOps(self.store, self.crew, self.conversations, self.outbox,
                             self.supervisor, self.clock.now, self.ensure_channel,
                             self.bot_says)
        self.budget = BudgetOps(self.store, self.crew, self.config, self.supervisor,
                                self.clock, self.alert)
        await self.budget.load()
        self.approvals = ApprovalOps(self.store, self.crew, self.supervisor, self.config,
                                     self.outbox, self.conversations, self.bridges, self.clock,
                                     self.host.spec_for)
        await self.approvals.load()
        self.admin_ops = AdminOps(self.supervisor, self.store, self.config.agent,
                                  lambda text: self.notice(Conversation(self.crew.admin), text),
                                  self.notice,
                                  self._spawn, self.clock.now, self.budget.set_cap)
        self.operator_token = new_token()
        datadir.write_private(self.data_dir / OPERATOR_TOKEN_FILE, self.operator_token)
        self.control = ControlServer(self.socket_path,
                                     lambda req, caller: control_ops.handle(self, req, caller),
                                     self._authorize)
        try:
            await self.control.start()
        except ControlError as e:
            raise StartupError(str(e)) from None
        late: dict[str, str] = {}  # platforms not reachable yet (R14.2), and why
        for name, bridge in self.bridges.items():
            try:
                await bridge.start(self.on_event)
            except PlatformUnreachable as e:
                late[name] = str(e)
                self._held[name] = asyncio.Event()
            except Exception as e:
                raise StartupError(f"{name}: {e}") from None
        if problems := await self._bind_rooms(skip=set(late)):
            raise StartupError("\n".join(problems))
        self.outages.admin_platforms = frozenset(
            r.platform for r in self.rooms.rooms_of(self.crew.admin))
        await self.outbox.resume()
        await self.status.take_back_left_overs()
        await self.supervisor.start_up()
        self._spawn(self.budget.run_days(), "budget-days")
        self.retention = Retention(self.store, self.supervisor, self.crew, self.rooms,
                                   bot.retain_days, self.clock)  # R14.6
        self._spawn(self.retention.run_daily(), "retention")
        self._spawn(self.approvals.run_deadlines(), "approval-deadlines")
        for name, why in late.items():
            self._spawn(connect_later(name, self.bridges[name], self.on_event, why,
                                      bind=lambda p: self._bind_rooms(only=p),
                                      report=self._connection, alert=self.alert,
                                      now=self.clock.now, ready=self._held[name]),
                        f"connect-{name}")
        self._spawn(self._watch_connections(), "connection-watch")
        self.ready.set()
        log.info("crewbridge is running: channels %s", ", ".join(sorted(self.crew.channels)))
        console = self.bridges.get(Platform.CONSOLE)
        if console is not None and getattr(console, "interactive", False):
            print("Type `#general hello` (or any #channel), `/dm <worker> <text>`, "
                  "`#ops status`; Ctrl-D to stop.", file=sys.stderr)

    async def stop(self) -> None:
        """Stop taking messages, end the agents, flush posts, close (R4.9)."""
        if hasattr(self, "http"):
            await self.http.stop()
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

    async def _bind_rooms(self, *, skip: Collection[str] = (),
                          only: str | None = None) -> list[str]:
        """Resolve the configured rooms (of platform `only`, or all but `skip`'s); one clear
        problem per room (R1.2, R11.4)."""
        problems: list[str] = []
        for wanted in wanted_rooms(self.config):
            if wanted.platform in skip or (only is not None and wanted.platform != only):
                continue
            bridge = self.bridges.get(wanted.platform)
            if bridge is None:
                problems.append(wanted.no_bridge())
                continue
            try:
                room = await bridge.resolve_room(wanted.ref)
            except RoomUnresolvable as e:
                problems.append(wanted.unresolvable(e))
                continue
            if (problem := self.rooms.bind(wanted, room)) is not None:
                problems.append(problem)
        return problems

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # --- posting -----------------------------------------------------------------------------

    async def bot_says(self, where: Conversation, text: str, *,
                       only: RoomRef | None = None) -> None:
        """A notice from the bot into `where` (into room `only` alone, when given)."""
        await self.outbox.add([self.conversations.said(where, BOT_NAME, text,
                                                       kind=PostKind.NOTICE, only=only)])

    async def _relay(self, where: Conversation, msg: Inbound, text: str, message: int,
                     origin: RoomRef | None, platform: str) -> None:
        """Show a person's message in the channel's other rooms, in its thread (R1.4, R12.5)."""
        await self.outbox.add([self.conversations.said(
            where, f"{msg.sender_name} ({platform})", text, kind=PostKind.RELAY,
            role=AuthorRole.PERSON, origin=origin, relay_of=message)])

    async def _notices(self, notices: tuple[Notice, ...], only: RoomRef,
                       thread: int | None = None) -> None:
        for n in notices:
            await self.bot_says(Conversation(n.channel, thread), n.text, only=only)

    async def ensure_channel(self, name: str, kind: ChannelKind) -> None:
        if name not in self.crew.channels:
            await self.store.ensure_channel(name, kind, self.clock.now())
            self.crew.add_channel(name, kind)

    # --- inbound: what bridges report --------------------------------------------------------

    async def on_event(self, event: BridgeEvent) -> None:
        """The sink every bridge awaits; when it returns, the event is stored."""
        await self.ready.wait()
        if (held := self._held.get(event.platform)) is not None:
            await held.wait()  # its rooms are being bound (R14.2)
        if self._closing:
            raise ShuttingDown("crewbridge is stopping")
        self.metrics.saw(event)
        try:
            if isinstance(event, Acted):
                if not await self.status.acted(event):
                    await self.approvals.acted(event)
                return
            if isinstance(event, DevicesChanged):  # R15.2
                await self.alert(f"{event.platform}: the encryption devices of {event.user} "
                                 f"changed ({event.detail}); if they did not sign in anew, "
                                 "someone else may have")
                return
            await self._carry_out(event, classify(event, self.rooms, self.crew,
                                                  self.config.admin.users))
        except (sqlite3.Error, OSError):
            raise  # not stored: the bridge must deliver it again
        except Exception:
            log.exception("handling %s failed", type(event).__name__)

    async def _carry_out(self, event: BridgeEvent, decision: Decision) -> None:
        """Do the steps `classify` decided, in order; a re-delivered command stops them."""
        recorded: tuple[int, int | None] | None = None  # a command's message and its thread
        for step in decision:
            match step:
                case Notify(text=text, only=only, channel=channel):
                    await self.bot_says(Conversation(channel), text, only=only)
                case NotifyOnce(key=key, text=text, only=only):
                    if await self.store.put_value_once(key, "noticed"):
                        await self.bot_says(Conversation(""), text, only=only)
                case AttachDm(room=room, worker=worker):
                    await self.store.attach_dm(room.platform, room.room, worker)
                    self.rooms.attach(room, worker)
                case Record(channel=channel, text=text):
                    assert isinstance(event, Inbound)
                    recorded = await self._command_said(channel, event, text)
                    if recorded is None:
                        return
                case Route(channel=channel, text=text):
                    assert isinstance(event, Inbound)
                    await self.person_said(channel, event, text,
                                           origin=RoomRef(event.platform, event.room),
                                           platform=event.platform)
                case RunAdmin(command=command):
                    assert isinstance(event, Inbound)
                    await self.notice(Conversation(self.crew.admin), await self.admin_ops.run(
                        command, Actor.of(event, self.crew.admin)))
                case RunTaskCommand(channel=channel, command=command, only=only):
                    assert isinstance(event, Inbound)
                    await self.tasks.command(channel, event, recorded, command, only)
                case RunVerdict(decision=typed, channel=channel):
                    assert isinstance(event, Inbound)
                    if not await self.approvals.typed(channel, event, typed) and channel:
                        await self.person_said(channel, event, event.text,
                                               origin=RoomRef(event.platform, event.room),
                                               platform=event.platform)
                case RunStop(channel=channel, command=command, only=only):
                    assert isinstance(event, Inbound)
                    await self.steering.stop_turn(channel, event, recorded, command.agent, only)
                case TrackConnection(event=changed):
                    self._connection(changed)

    async def _command_said(self, channel: str, msg: Inbound, text: str
                            ) -> tuple[int, int | None] | None:
        """Store and relay a command (it nudges nobody): its message id and thread, or None
        for a re-delivery (or a reply in a thread the console does not have)."""
        origin = RoomRef(msg.platform, msg.room)
        try:
            thread = await self.conversations.thread_of(channel, msg, self.clock.now())
        except UnknownThread as e:
            await self.bot_says(Conversation(channel), str(e), only=origin)
            return None
        where = Conversation(channel, thread.id if thread else None)
        mid = await self.store.accept_inbound(channel, msg, [], self.clock.now(),
                                              thread=where.thread)
        if mid is None:
            return None
        await self._relay(where, msg, text, mid, origin, msg.platform)
        return mid, where.thread

    async def person_said(self, channel: str, msg: Inbound, text: str, *,
                          origin: RoomRef | None, platform: str) -> None:
        """Store a person's message with its nudges, show it in the channel's other rooms,
        and deliver it (R1.3, R1.4, R2); in a thread, to the thread's agent, answered there
        (R12). `origin` None: it came from no room (the CLI)."""
        try:
            thread = await self.conversations.thread_of(channel, msg, self.clock.now())
        except UnknownThread as e:
            if origin is not None:
                await self.bot_says(Conversation(channel), str(e), only=origin)
            return
        agent = await self.conversations.thread_agent(thread) if thread else None
        message = Message(channel, msg.sender_name, False, platform, text,
                          top_level=thread is None, thread=thread.id if thread else None,
                          thread_agent=agent)
        routing = route(message, self.crew.directory, self.config.agent.max_hops)
        log.debug("routed a message in #%s (thread %s) to %s", channel, message.thread,
                  ", ".join(n.agent for n in routing.nudges) or "no one")  # R14.4
        roots = thread is None and self.conversations.roots_thread(channel, bool(routing.nudges))
        mid = await self.store.accept_inbound(channel, msg, routing.nudges, self.clock.now(),
                                              thread=message.thread, roots_thread=roots)
        if mid is None:
            log.info("ignored a re-delivered %s event %s", msg.platform, msg.event_id)
            return
        await self._relay(Conversation(channel, message.thread), msg, text, mid, origin,
                          platform)
        if origin is not None:
            await self._notices(routing.notices, only=origin, thread=message.thread)
        self.supervisor.schedule_kick(n.agent for n in routing.nudges)

    # --- outages (R6.3) ----------------------------------------------------------------------

    def _connection(self, event: ConnectionChanged) -> None:
        was_down = self.outages.is_down(event.platform)
        for alert in self.outages.observe(event, self.clock.now()):
            self._spawn(self.alert(alert.text, skip=alert.skip), "alert")
        if not event.up:
            log.warning("%s connection down: %s", event.platform, event.detail)
            self._outage_started.set()
        elif was_down:
            log.info("%s connection back", event.platform)

    async def _watch_connections(self) -> None:
        """Sleep until the next outage alert is due, or until an outage starts: an idle
        bot with every connection up does not wake at all."""
        while True:
            self._outage_started.clear()
            due = self.outages.next_due()
            if due is None:
                await self._outage_started.wait()
                continue
            await self.clock.sleep(due - self.clock.now())
            for alert in self.outages.due(self.clock.now()):
                await self.alert(alert.text, skip=alert.skip)

    # --- what the bot itself says ----------------------------------------------------------

    async def notice(self, where: Conversation | str, text: str) -> None:
        """A notice into a conversation (or a channel's top level)."""
        await self.bot_says(where if isinstance(where, Conversation) else Conversation(where),
                            text)

    async def alert(self, text: str, *, skip: str | None = None) -> None:
        log.warning("ops alert: %s", text)
        rooms = [r for r in self.rooms.rooms_of(self.crew.admin) if r.platform != skip]
        await self.outbox.add([Said(self.crew.admin, BOT_NAME, text,
                                    tuple((r.platform, r.room) for r in rooms), PostKind.ALERT)])

    def _authorize(self, token: str) -> Caller | None:
        """Whom a control-socket token speaks for (R10.4): the operator or one agent."""
        if hmac.compare_digest(token, self.operator_token):
            return Caller(agent=None)
        agent = self.supervisor.tokens.agent_of(token)
        return Caller(agent) if agent is not None else None
