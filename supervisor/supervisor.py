"""All agent sessions: the executor of `lifecycle.AgentRun` (R3, R4, R6).

The decisions are made elsewhere — `lifecycle` decides about one agent's run (with
`resolve` and `breaker` inside), `alerts` words what is said. This module owns what they
may not touch: processes, the store, the host and the clock. It feeds each run what
happened and carries out the effects it returns, in order, and keeps these invariants:

- Every state change of one agent happens under that agent's lock, in order. Anything
  that touches *another* agent (routing an agent's output to a colleague) is scheduled as
  its own task, never awaited under a lock, so two agents talking can never deadlock; a
  graceful stop is awaited outside the lock too, since its end is the exit handler.
- A nudge is durable before anything else happens to it (it is a row in the queue), and it
  stays there until the turn that answered it has ended: that turn's last posts and its
  dequeue are one transaction (`Host.answered`, R8.5). A run that does not answer it —
  it crashed, it was stopped, the bot died — leaves it queued, in its place, for the next.
- Output and exits of an earlier process of the same agent are dropped by run id before
  they reach the run, which raises on anything else that cannot happen.
- The timer sleeps until the earliest deadline of any run and is woken only when a change
  brings a deadline forward: an idle crew costs no wakeups and no store reads.
- At most `max_live_agents` processes run (R3.7): a start holds a slot (`slots`) from the
  moment it is let go until its process has exited; a start that finds none waits in
  STARTING, in arrival order, while an idle session is stopped for it. Processes are
  started off the loop's thread (`process`), one at a time, and at most KICKS_AT_ONCE
  queue passes run at once, so an `@all` to a thousand agents never stalls the loop.
- The supervisor knows channels by name only; its `Host` (the app) turns them into posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from supervisor import alerts, breaker, leftovers, slots
from supervisor import effects as fx
from supervisor.environment import AgentTokens, agent_environment
from supervisor.lifecycle import AgentRun
from supervisor.ports import AgentConfig, AgentSpec, AgentStatus, AgentStore, Clock, Host
from supervisor.protocol import AgentEvent
from supervisor.redact import redact
from supervisor.resolve import RunState
from supervisor.rules import StopReason, health_key, status_state
from supervisor.session import OutOfResources, Session, SpawnError, agent_argv

log = logging.getLogger(__name__)

TICK_MIN_S = 0.5
"""The shortest gap between two ticks for a deadline the last tick already found due (its
work — a kick — is still in flight): the timer never spins."""

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


@dataclass
class Runtime:
    """The executor's side of one agent: its run, its process, its lock."""

    run: AgentRun
    session: Session | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Supervisor:
    def __init__(self, store: AgentStore, clock: Clock, cfg: AgentConfig, host: Host,
                 *, socket_path: Path, always_on: Iterable[str] = (),
                 withheld_env: Collection[str] = ()):
        self.store = store
        self.clock = clock
        self.cfg = cfg
        self.host = host
        self.socket_path = socket_path
        self.withheld_env = frozenset(withheld_env)  # the config's ${NAME}s (R10.5)
        self.tokens = AgentTokens()  # whom a control-socket request speaks for (R10.4)
        self.always_on = set(always_on)
        self._runtimes: dict[str, Runtime] = {}
        self._healths: dict[str, breaker.Health] = {}
        self._tasks: set[asyncio.Future] = set()
        self._kicks: set[asyncio.Future] = set()  # scheduled deliveries not yet carried out
        self._changed = asyncio.Event()  # anything changed (for wait_quiet)
        self._wake = asyncio.Event()  # a deadline came forward (for the timer)
        self._wake_at: float | None = None  # when the timer sleeps until; None: no deadline
        self._ticked_at = float("-inf")
        self._closing = False
        self._slots = slots.Slots(cfg.max_live_agents)  # R3.7
        self._forking = asyncio.Lock()  # one process start at a time: no burst blocks the loop
        self._fd_retry: asyncio.Future | None = None
        self._kick_gate = asyncio.Semaphore(KICKS_AT_ONCE)

    # --- entry points ------------------------------------------------------------------------

    def schedule_kick(self, names: Iterable[str], *, start: bool = False) -> None:
        """Handle agents' queues soon, each in its own task (never under another's lock)."""
        for name in dict.fromkeys(names):
            task = self._spawn_task(self.kick(name, start=start), f"kick-{name}")
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)
            task.add_done_callback(lambda _t: self._changed.set())

    async def kick(self, name: str, *, start: bool = False) -> None:
        """Deliver `name`'s queue, starting or resuming it if allowed; `start` even if empty.
        At most KICKS_AT_ONCE run at once (an agent's lock is waited for outside that gate)."""
        async with self._kick_gate:
            rt = await self._runtime(name)
            if rt is None:
                log.warning("nudge for unknown agent %s dropped", name)
                return
            if not rt.lock.locked():
                async with rt.lock:
                    await self._offer(rt, start)
                return
        async with rt.lock:  # a busy agent is waited for outside the gate
            await self._offer(rt, start)

    async def _offer(self, rt: Runtime, start: bool) -> None:
        await self._apply(rt, rt.run.nudged(await self.store.queued(rt.run.name),
                                            await self._health(rt), self.clock.now(),
                                            start=start, closing=self._closing))

    async def start_up(self) -> None:
        """After a restart: end what an unclean stop left running (R4.9), deliver what was
        queued, start `always_on` leads (R4.1, R4.6)."""
        ended = await leftovers.end_leftovers(await self.store.take_processes(),
                                              self.cfg.stop_grace_s)
        if ended:
            await self.host.alert(alerts.leftovers_ended(ended))
        self.schedule_kick(await self.store.agents_with_queue())
        self.schedule_kick(sorted(self.always_on), start=True)
        self._spawn_task(self._tick_loop(), "supervisor-tick")

    async def shutdown(self) -> None:
        """Deliver nothing more, give running turns `shutdown_grace_s` to end (their answers
        are posted and their messages dequeued), then end every agent: terminate, kill after
        `stop_grace_s`; no orphans (R4.9). A turn cut short is answered after the restart."""
        self._closing = True
        for name, spawn in self._slots.withdraw_all():
            rt = self._runtimes[name]
            async with rt.lock:
                if self._is_current(rt, spawn):
                    await self._apply(rt, rt.run.start_withdrawn(self.clock.now()))
        if not await self._wait_until(self._turns_ended, self.cfg.shutdown_grace_s):
            log.warning("turns still running after %ss; stopping them: their messages stay "
                        "queued and are answered after the restart", self.cfg.shutdown_grace_s)
        stops = [await self._request_stop(rt, StopReason.SHUTDOWN)
                 for rt in list(self._runtimes.values())]
        await asyncio.gather(*(s for group in stops for s in group), return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_quiet(self, timeout_s: float) -> bool:
        """Wait until no agent is starting or in a turn and nothing deliverable is queued."""
        return await self._wait_until(self._quiet, timeout_s)

    async def _wait_until(self, done: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
        """Wait (real time) until `done()`, checked whenever anything changed; False on
        timeout."""
        deadline = time.monotonic() + timeout_s
        while not await done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True

    async def _quiet(self) -> bool:
        if any(not t.done() for t in self._kicks):
            return False
        if any(rt.run.state in (RunState.STARTING, RunState.STOPPING) or rt.run.in_turn
               for rt in self._runtimes.values()):
            return False
        now = self.clock.now()
        for name in await self.store.agents_with_queue():
            rt = await self._runtime(name)  # None: no such agent any more; nothing to wait for
            if rt is not None and isinstance(breaker.gate(await self._health(rt), now),
                                             breaker.Allowed):
                return False
        return True

    async def _turns_ended(self) -> bool:
        return not any(rt.run.in_turn for rt in self._runtimes.values())

    # --- admin -------------------------------------------------------------------------------

    def run_view(self, name: str) -> RunView | None:
        """The run of `name`, or None while the supervisor has not had to do with it."""
        rt = self._runtimes.get(name)
        return self._view(rt) if rt else None

    def run_views(self) -> dict[str, RunView]:
        """Every run the supervisor has had to do with, by agent name."""
        return {name: self._view(rt) for name, rt in self._runtimes.items()}

    def _view(self, rt: Runtime) -> RunView:
        return RunView(rt.run.state, rt.run.run_id, rt.run.in_turn, rt.run.pid,
                       waiting_for_slot=rt.run.name in self._slots.waiting)

    async def status(self) -> list[AgentStatus]:
        """One row per agent, read in three store round trips whatever the crew's size."""
        now = self.clock.now()
        queued = await self.store.queue_lengths()
        healths = await self.store.healths()
        rows = []
        for agent in await self.store.agents():
            rt = self._runtimes.get(agent.name)
            spec = rt.run.spec if rt else AgentSpec(agent.name, agent.kind, agent.channel,
                                                    agent.task_id)
            h = healths.get(health_key(spec), breaker.Health())
            run = rt.run.state if rt else RunState.STOPPED
            shown = (slots.WAITING_FOR_SLOT if agent.name in self._slots.waiting
                     else status_state(run, h, now))
            rows.append(AgentStatus(
                agent.name, agent.kind.value, shown, agent.channel,
                agent.task_id, h.failures, h.state.value,
                redact(h.last_error or agent.last_error)[:200],
                now - rt.run.started_at if rt and run is RunState.RUNNING else None,
                queued.get(agent.name, 0)))
        return rows

    async def restart(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return alerts.no_such_agent(name)
        async with rt.lock:
            effects = rt.run.admin_restart(await self._health(rt), self.clock.now())
            if effects is None:
                return alerts.restart_refused(name)
            await self._apply(rt, effects)
        await asyncio.gather(*await self._request_stop(rt, StopReason.RESTART))
        await self.kick(name, start=True)
        return alerts.restarted(name)

    async def stop(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return alerts.no_such_agent(name)
        if rt.session is None:
            return alerts.not_running(name)
        await asyncio.gather(*await self._request_stop(rt, StopReason.ADMIN))
        return alerts.stopped(name)

    async def reset(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return alerts.no_such_agent(name)
        async with rt.lock:
            await self._apply(rt, rt.run.reset(await self._health(rt)))
        queued = len(await self.store.queued(name))
        self.schedule_kick([name])
        return alerts.reset_done(name, queued)

    async def stop_worker(self, name: str) -> None:
        """A worker's task is done (R7.3)."""
        rt = self._runtimes.get(name)
        if rt is not None:
            await asyncio.gather(*await self._request_stop(rt, StopReason.TASK_DONE))

    async def auth_recovered(self) -> list[str]:
        """After a successful `auth login`: close auth breakers, restart who waits (R6.5)."""
        names = []
        for agent in await self.store.agents():
            rt = await self._runtime(agent.name)
            if rt is None:
                continue
            async with rt.lock:
                h = await self._health(rt)
                if not h.auth_failed:
                    continue
                await self._apply(rt, rt.run.reset(h))
            names.append(agent.name)
        await self.store.close_escalation("auth")
        self.schedule_kick(names, start=True)
        return names

    # --- what a session reports --------------------------------------------------------------

    async def _on_event(self, rt: Runtime, run_id: int, event: AgentEvent) -> None:
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
                        self.clock.now(), closing=self._closing))
                case fx.TellBlocked(blocked, told):
                    stops += await self._apply(rt, run.tell_blocked(
                        blocked, await self.store.queued(run.name), await self._health(rt),
                        told=told))
                case fx.Kill():
                    if rt.session is not None:
                        rt.session.kill()
                case fx.Terminate():
                    if rt.session is not None:
                        stops.append(self._spawn_task(rt.session.stop(self.cfg.stop_grace_s),
                                                      f"stop-{run.name}"))
                case fx.MarkAttempted(ids):
                    await self.store.mark_attempted(ids)
                case fx.Answer(texts, hops, ids):
                    await self.host.answered(run.name, run.spec.channel, list(texts), hops,
                                             list(ids))
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
                case fx.Post(text, hops):
                    await self.host.agent_posted(run.name, run.spec.channel, text, hops)
                case fx.Notify(channel, text):
                    await self.host.notice(channel, text)
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
        run, spec = rt.run, rt.run.spec
        session_id = spawn.resume or str(uuid.uuid4())
        argv = agent_argv(spec.command, session_id=session_id, resume=spawn.resume,
                          prompt=spec.prompt)
        session = Session(
            run.name, argv, cwd=Path(spec.workdir), env=self._env(spec),
            on_event=lambda ev: self._on_event(rt, spawn.run_id, ev),
            on_exit=lambda code: self._on_exit(rt, spawn.run_id, code))
        try:
            async with self._forking:
                await session.start()
        except OutOfResources as e:  # not the agent's failure (R4.2): it waits its turn again
            log.warning("%s: %s; it starts when a process exits", run.name, e)
            self._slots.retry(run.name, spawn)
            self._retry_later()
            return []
        except SpawnError as e:
            self._slots.release(run.name)
            return run.start_failed(str(e), await self._health(rt), self.clock.now())
        rt.session = session
        return run.started(session_id, session.pid, self.clock.now())

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
        now = self._ticked_at = self.clock.now()
        for rt in list(self._runtimes.values()):
            async with rt.lock:
                if effects := rt.run.tick(await self._health(rt), now, closing=self._closing):
                    await self._apply(rt, effects)

    async def _tick_loop(self) -> None:
        while True:
            self._wake.clear()
            self._wake_at = self._next_deadline()
            if self._wake_at is not None and self._wake_at <= self._ticked_at:
                self._wake_at = self._ticked_at + TICK_MIN_S  # due work still in flight
            await self._sleep(self._wake_at)
            due = self._next_deadline()  # a deadline may have moved later while we slept
            now = self.clock.now()
            if self._wake_at is not None and now >= self._wake_at and due is not None \
                    and due <= now:
                try:
                    await self.tick()
                except Exception:
                    log.exception("supervisor tick failed")

    async def _sleep(self, until: float | None) -> None:
        """Sleep on the injected clock until `until` (None: for ever), or until woken."""
        waits = [asyncio.ensure_future(self._wake.wait())]
        if until is not None:
            waits.append(asyncio.ensure_future(self.clock.sleep(until - self.clock.now())))
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    def _next_deadline(self) -> float | None:
        deadlines = [d for rt in self._runtimes.values()
                     if (d := self._deadline_of(rt)) is not None]
        return min(deadlines, default=None)

    def _deadline_of(self, rt: Runtime) -> float | None:
        h = self._healths.get(rt.run.health_key, breaker.Health())
        return rt.run.next_deadline(h, closing=self._closing)

    def _deadline_maybe_earlier(self, rt: Runtime) -> None:
        """Wake the timer if this run now has a deadline before the one it sleeps until."""
        d = self._deadline_of(rt)
        if d is not None and (self._wake_at is None or d < self._wake_at):
            self._wake.set()

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

    def cli_post_hops(self, name: str) -> int:
        """The hop count for a `crewbridge post` by agent `name`; every such post counts."""
        rt = self._runtimes.get(name)
        return rt.run.cli_post_hops() if rt else 0

    def refresh_spec(self, spec: AgentSpec) -> None:
        """A worker got a new task: later starts use it (and its health key)."""
        rt = self._runtimes.get(spec.name)
        if rt is not None:
            rt.run.spec = spec

    async def _health(self, rt: Runtime) -> breaker.Health:
        """Health records, read once and then cached: the supervisor is their only writer,
        and every delivery consults one."""
        key = rt.run.health_key
        h = self._healths.get(key)
        if h is None:
            h = self._healths[key] = await self.store.health(key)
        return h

    def _env(self, spec: AgentSpec) -> dict[str, str]:
        """The agent's environment: none of the bot's secrets, and who it is (R10.4, R10.5)."""
        return agent_environment(
            os.environ, withheld=self.withheld_env, configured={**self.cfg.env, **spec.env},
            identity={"CREWBRIDGE_SOCKET": str(self.socket_path),
                      "CREWBRIDGE_AGENT": spec.name,
                      "CREWBRIDGE_TOKEN": self.tokens.issue(spec.name)})
