"""The supervisor's machinery: the state it keeps and how it carries out effects (R3, R4).

`Executor` is to `Supervisor` what matrix-nio's `Client` is to its `AsyncClient`: the
state, and the one place that changes it — feeding each `lifecycle.AgentRun` what happened
(a session's events and exit, the time) and carrying out the effects it returns, in order,
under the agent's lock, starting processes within the slots of R3.7. `Supervisor` adds the
public entry points on top: nudges, start-up and shutdown, the admin commands.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from crewbridge.supervisor import breaker, leftovers, slots
from crewbridge.supervisor import effects as fx
from crewbridge.supervisor.control import encode_verdict
from crewbridge.supervisor.lifecycle import AgentRun
from crewbridge.supervisor.ports import AgentConfig, AgentStore, Clock, Host
from crewbridge.supervisor.protocol import AgentEvent
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.rules import StopReason
from crewbridge.supervisor.session import Session
from crewbridge.supervisor.starter import NoResources, Started, Starter, StartFailed
from crewbridge.supervisor.timer import DeadlineTimer

log = logging.getLogger(__name__)

KICKS_AT_ONCE = 32
"""Queue passes carried out at once. An `@all` to a thousand agents is a thousand kicks, each
a few store round trips; let loose together, their steps pile up in one loop iteration
(216 ms measured for 922 of them) and every other task waits behind them (R3.7)."""

FD_RETRY_S = 1.0
"""After the OS refused a start for want of descriptors and no agent process of ours is
left to exit and free some, the start is tried again after this long (real time: it is
the OS that frees them, R3.7)."""


@dataclass(frozen=True)
class RunView:
    """What may be read of an agent's run from outside: its phase, how often it was
    started, whether a turn is open, its process."""

    state: RunState
    starts: int
    in_turn: bool
    pid: int | None = None
    waiting_for_slot: bool = False  # its start waits for a process slot (R3.7)
    asked: tuple[str, ...] = ()  # the texts of the messages its open turn answers

@dataclass
class Runtime:
    """The executor's side of one agent: its run, its process, its lock."""

    run: AgentRun
    session: Session | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)



class Executor:
    def __init__(self, store: AgentStore, clock: Clock, cfg: AgentConfig, host: Host,
                 *, socket_path: Path, always_on: Iterable[str] = (),
                 withheld_env: Collection[str] = ()):
        self.store = store
        self.clock = clock
        self.cfg = cfg
        self.host = host
        self._starter = Starter(cfg, socket_path=socket_path, withheld_env=withheld_env)
        self.tokens = self._starter.tokens  # whom a control-socket request speaks for (R10.4)
        self.always_on = set(always_on)
        self._runtimes: dict[str, Runtime] = {}
        self._healths: dict[str, breaker.Health] = {}
        self._tasks: set[asyncio.Future] = set()
        self._kicks: set[asyncio.Future] = set()  # scheduled deliveries not yet carried out
        self._changed = asyncio.Event()  # anything changed (for wait_quiet)
        self._timer = DeadlineTimer(clock, self._next_deadline, lambda: self.tick())
        self._closing = False
        self._slots = slots.Slots(cfg.max_live_agents)  # R3.7
        self._fd_retry: asyncio.Future | None = None
        self._kick_gate = asyncio.Semaphore(KICKS_AT_ONCE)

    # --- what a session reports --------------------------------------------------------------

    async def _on_event(self, rt: Runtime, run_id: int, event: AgentEvent) -> None:
        log.debug("%s: %s", rt.run.name, type(event).__name__)  # R14.4: the type, no text
        async with rt.lock:
            if run_id == rt.run.run_id:  # else: output of an earlier process
                await self._apply(rt, rt.run.saw(event, await self._health(rt),
                                                 self.clock.now()))

    async def _on_exit(self, rt: Runtime, run_id: int, code: int) -> None:
        async with rt.lock:
            if run_id != rt.run.run_id:
                return
            session, rt.session = rt.session, None
            self._slots.release(rt.run.name)
            tail = list(session.stderr_tail) if session else []
            await self._apply(rt, rt.run.exited(
                code, tail, await self._health(rt), self.clock.now(),
                open_task=self.host.has_open_task(rt.run.name)))

    async def _request_stop(self, rt: Runtime, reason: StopReason) -> list[asyncio.Future]:
        """Ask for a graceful stop under the lock; the caller awaits it outside the lock."""
        async with rt.lock:
            return await self._apply(rt, rt.run.stop_requested(reason))

    # --- carrying out effects ----------------------------------------------------------------

    async def _apply(self, rt: Runtime, effects: list[fx.Effect]) -> list[asyncio.Future]:
        """Carry out `effects` in order (the caller holds `rt.lock`); effects that answer
        back are fed to the run at once. Returns the graceful stops begun, to be awaited
        outside the lock by whoever needs the process gone."""
        run, stops = rt.run, []
        for e in effects:
            match e:
                case fx.Spawn():
                    if self._claim_slot(rt, e):
                        stops += await self._apply(rt, await self._spawn(rt, e))
                    else:  # R13.7: its messages wait for a slot
                        stops += await self._apply(rt, run.waiting_for_slot(
                            await self.store.queued(run.name)))
                case fx.Write(nudges, texts):
                    sent = []
                    for q, text in zip(nudges, texts, strict=True):
                        message_id = str(uuid.uuid4())
                        if rt.session is None or not await rt.session.send(text, message_id):
                            break
                        sent.append((message_id, q))
                    stops += await self._apply(rt, run.wrote(sent, self.clock.now()))
                case fx.OfferQueue():
                    stops += await self._apply(rt, run.nudged(
                        await self.store.queued(run.name), await self._health(rt),
                        self.clock.now(), closing=self._closing,
                        paused=self.host.paused(run.name)))
                case fx.TellBlocked(blocked, told):
                    stops += await self._apply(rt, run.tell_blocked(
                        blocked, await self.store.queued(run.name), await self._health(rt),
                        told=told))
                case fx.Interrupt(request_id):
                    if rt.session is not None:
                        await rt.session.interrupt(request_id)
                case fx.Ask(ask, conversation):
                    await self.host.permission_asked(run.name, conversation, ask)
                case fx.AskWithdrawn(request_id, why):
                    await self.host.permission_withdrawn(run.name, request_id, why)
                case fx.AnswerAsk(ask, verdict, message):
                    if rt.session is not None:
                        await rt.session.control(encode_verdict(ask, verdict, message))
                case fx.Kill():
                    if rt.session is not None:
                        rt.session.kill()
                case fx.Terminate():
                    if rt.session is not None:
                        stops.append(self._spawn_task(rt.session.stop(self.cfg.stop_grace_s),
                                                      f"stop-{run.name}"))
                case fx.MarkAttempted(ids):
                    await self.store.mark_attempted(ids)
                case fx.Answer(texts, hops, ids, conversation):
                    await self.host.answered(run.name, conversation, list(texts), hops,
                                             list(ids))
                case fx.RecordUsage(usage, conversation):
                    await self.host.record_usage(run.name, conversation, usage)
                case fx.ShowStatus(conversation, text):
                    await self.host.show_status(run.name, conversation, text)
                case fx.EndStatus(conversation, outcome):
                    await self.host.end_status(run.name, conversation, outcome)
                case fx.Mark(ids, mark):
                    await self.host.mark(run.name, list(ids), mark)
                case fx.SaveHealth(h):
                    self._healths[run.health_key] = h
                    await self.store.put_health(run.health_key, h)
                case fx.SaveSession(session_id):
                    await self.store.set_session_id(run.name, session_id)
                case fx.SaveError(error):
                    await self.store.set_agent_error(run.name, error)
                case fx.RecordProcess(pid):
                    if mark := leftovers.start_mark(pid):
                        await self.store.record_process(run.name, pid, mark)
                case fx.ForgetProcess(pid):
                    await self.store.forget_process(run.name, pid)
                case fx.Post(text, hops, conversation):
                    await self.host.agent_posted(run.name, conversation, text, hops)
                case fx.Notify(where, text):
                    await self.host.notice(where, text)
                case fx.Alert(text):
                    await self.host.alert(text)
                case fx.Escalate(key, detail, text):
                    if await self.store.open_escalation(key, detail, self.clock.now()) and text:
                        await self.host.alert(text)
                case fx.Recover(key, text):
                    if await self.store.close_escalation(key) and text:
                        await self.host.alert(text)
                case fx.Kick(start):
                    self.schedule_kick([run.name], start=start)
                case fx.Log(level, text):
                    log.log(level, "%s", text)
        self._changed.set()
        self._deadline_maybe_earlier(rt)
        if self._slots.waiting:  # a turn may have ended or a slot freed: a start may go
            self._start_waiting()
        return stops

    async def _spawn(self, rt: Runtime, spawn: fx.Spawn) -> list[fx.Effect]:
        run = rt.run
        outcome = await self._starter.start(
            run.spec, spawn.resume, on_event=lambda ev: self._on_event(rt, spawn.run_id, ev),
            on_exit=lambda code: self._on_exit(rt, spawn.run_id, code), fork=spawn.fork)
        match outcome:
            case NoResources(reason):  # not the agent's failure (R4.2): it waits its turn
                log.warning("%s: %s; it starts when a process exits", run.name, reason)
                self._slots.retry(run.name, spawn)
                self._retry_later()
                return []
            case StartFailed(error):
                self._slots.release(run.name)
                return run.start_failed(error, await self._health(rt), self.clock.now())
            case Started(session, session_id):
                rt.session = session
                return run.started(session_id, session.pid, self.clock.now())
        raise AssertionError(outcome)

    # --- process slots (R3.7) -------------------------------------------------------------------

    def _claim_slot(self, rt: Runtime, spawn: fx.Spawn) -> bool:
        """Join the queue for a slot; True when this start may go at once (the caller,
        under its lock, carries it out). Otherwise it is answered when a slot frees."""
        self._slots.want(rt.run.name, spawn)
        return rt.run.name in self._start_waiting(inline=rt.run.name)

    def _start_waiting(self, inline: str | None = None) -> set[str]:
        """Let go the starts that may go, each in its own task (`inline` excepted: its
        caller holds its lock), and ask idle sessions to make room. Never awaits, so it
        may be called under any agent's lock."""
        if self._closing:
            return set()
        admitted, evict = self._slots.decide(lambda name: self._runtimes[name].run)
        for name, spawn in admitted:
            if name != inline:
                self._spawn_task(self._start_admitted(self._runtimes[name], spawn),
                                 f"start-{name}")
        for name in evict:
            self._spawn_task(self._make_room(self._runtimes[name]), f"make-room-{name}")
        return {name for name, _ in admitted}

    async def _start_admitted(self, rt: Runtime, spawn: fx.Spawn) -> None:
        async with rt.lock:
            if self._is_current(rt, spawn) and not self._closing:
                await self._apply(rt, await self._spawn(rt, spawn))
                return
            self._slots.release(rt.run.name)
            if self._is_current(rt, spawn):  # the bot began to stop meanwhile
                await self._apply(rt, rt.run.start_withdrawn(self.clock.now()))

    async def _make_room(self, rt: Runtime) -> None:
        """Stop an idle session for a waiting start; its exit frees the slot (not awaited)."""
        async with rt.lock:
            effects = rt.run.make_room()
            self._slots.asked(rt.run.name)
            await self._apply(rt, effects)

    def _retry_later(self) -> None:
        """After EMFILE with no process of ours left to exit, retry after FD_RETRY_S."""
        if self._slots.holding or (self._fd_retry and not self._fd_retry.done()):
            return

        async def retry() -> None:
            await asyncio.sleep(FD_RETRY_S)
            self._slots.lift()
            self._start_waiting()

        self._fd_retry = self._spawn_task(retry(), "fd-retry")

    @staticmethod
    def _is_current(rt: Runtime, spawn: fx.Spawn) -> bool:
        return rt.run.state is RunState.STARTING and rt.run.run_id == spawn.run_id

    # --- timers ------------------------------------------------------------------------------

    async def tick(self) -> None:
        """Do every run's timed work that is due now: flush batched output, notice health,
        idleness and hung turns, retry queues after a cooldown, restart always_on leads (R4)."""
        now = self.clock.now()
        self._timer.ticked(now)
        for rt in list(self._runtimes.values()):
            async with rt.lock:
                if effects := rt.run.tick(await self._health(rt), now, closing=self._closing):
                    await self._apply(rt, effects)

    def _next_deadline(self) -> float | None:
        deadlines = [d for rt in self._runtimes.values()
                     if (d := self._deadline_of(rt)) is not None]
        return min(deadlines, default=None)

    def _deadline_of(self, rt: Runtime) -> float | None:
        h = self._healths.get(rt.run.health_key, breaker.Health())
        return rt.run.next_deadline(h, closing=self._closing)

    def _deadline_maybe_earlier(self, rt: Runtime) -> None:
        """Wake the timer if this run now has a deadline before the one it sleeps until."""
        self._timer.maybe_earlier(self._deadline_of(rt))

    # --- plumbing ----------------------------------------------------------------------------

    def _spawn_task(self, coro: Awaitable, name: str) -> asyncio.Future:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _runtime(self, name: str) -> Runtime | None:
        rt = self._runtimes.get(name)
        if rt is not None:
            return rt
        spec = await self.host.spec_for(name)
        if spec is None:
            return None
        row = await self.store.agent(name)
        if (rt := self._runtimes.get(name)) is None:  # another task may have been first
            run = AgentRun(spec, self.cfg, session_id=row.session_id if row else None,
                           always_on=name in self.always_on)
            rt = self._runtimes[name] = Runtime(run)
        return rt

    async def _health(self, rt: Runtime) -> breaker.Health:
        """Health records, read once and then cached: the supervisor is their only writer,
        and every delivery consults one."""
        key = rt.run.health_key
        h = self._healths.get(key)
        if h is None:
            h = self._healths[key] = await self.store.health(key)
        return h
