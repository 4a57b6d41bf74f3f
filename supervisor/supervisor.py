"""All agent sessions: delivering nudges, starting, stopping, counting failures (R3, R4, R6).

The decisions are made elsewhere — `resolve` says what a nudge does, `breaker` whether a
start is allowed and when an alert is due, `autopost` which text may be posted. This module
carries them out against real processes and the store, and keeps these invariants:

- Every state change of one agent happens under that agent's lock, in order. Anything
  that touches *another* agent (routing an agent's output to a colleague) is scheduled as
  its own task, never awaited under a lock, so two agents talking can never deadlock.
- A nudge is durable before anything else happens to it (it is a row in the queue);
  delivery removes it. Nudges taken by a run that never became healthy go back to the
  head of the queue, so a message to a crash-looping agent is delivered once it runs.
- The supervisor knows channels by name only; its `Host` (the app) turns them into posts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from supervisor import breaker, leftovers
from supervisor.autopost import TurnOutput
from supervisor.ports import (
    AgentConfig,
    AgentKind,
    AgentSpec,
    AgentStatus,
    AgentStore,
    Clock,
    Host,
    QueuedNudge,
)
from supervisor.protocol import (
    AgentEvent,
    ApiError,
    Init,
    TurnResult,
    is_auth_failure,
    is_unknown_session,
)
from supervisor.redact import redact
from supervisor.resolve import Deliver, Hold, Resume, RunState, Spawn, Wait, resolve
from supervisor.session import Session, SpawnError, agent_argv

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """What the supervisor knows of one agent between events; rebuilt after a restart."""

    spec: AgentSpec
    session_id: str | None = None
    run: RunState = RunState.STOPPED
    run_id: int = 0
    session: Session | None = None
    output: TurnOutput | None = None
    started_at: float = 0.0
    last_activity: float = 0.0
    last_output: float = 0.0
    pending_turns: int = 0
    healthy: bool = False
    failure_reported: bool = False
    stop_reason: str | None = None
    unknown_session: bool = False
    hops: int = 0
    delivered: list[QueuedNudge] = field(default_factory=list)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def health_key(self) -> str:
        return health_key(self.spec)


def health_key(spec: AgentSpec) -> str:
    """Leads are keyed by channel, workers by task (R4.3): a new task starts with a clean slate."""
    if spec.kind is AgentKind.LEAD:
        return f"lead:{spec.channel}"
    return f"task:{spec.task_id}" if spec.task_id else f"worker:{spec.name}"


class Supervisor:
    def __init__(self, store: AgentStore, clock: Clock, cfg: AgentConfig, host: Host,
                 *, socket_path: Path, always_on: Iterable[str] = ()):
        self.store = store
        self.clock = clock
        self.cfg = cfg
        self.host = host
        self.socket_path = socket_path
        self.always_on = set(always_on)
        self._runtimes: dict[str, Runtime] = {}
        self._healths: dict[str, breaker.Health] = {}
        self._tasks: set[asyncio.Future] = set()
        self._kicks: set[asyncio.Future] = set()  # scheduled deliveries not yet carried out
        self._changed = asyncio.Event()
        self._closing = False

    # --- entry points ------------------------------------------------------------------------

    def schedule_kick(self, names: Iterable[str], *, start: bool = False) -> None:
        """Handle agents' queues soon, each in its own task (never under another's lock)."""
        for name in dict.fromkeys(names):
            task = self._spawn_task(self.kick(name, start=start), f"kick-{name}")
            self._kicks.add(task)
            task.add_done_callback(self._kicks.discard)
            task.add_done_callback(lambda _t: self._changed.set())

    async def kick(self, name: str, *, start: bool = False) -> None:
        """Deliver `name`'s queue, starting or resuming it if allowed; `start` even if empty."""
        rt = await self._runtime(name)
        if rt is None:
            log.warning("nudge for unknown agent %s dropped", name)
            return
        async with rt.lock:
            await self._advance(rt, start=start)

    async def start_up(self) -> None:
        """After a restart: end what an unclean stop left running (R4.9), deliver what was
        queued, start `always_on` leads (R4.1, R4.6)."""
        ended = await leftovers.end_leftovers(await self.store.take_processes(),
                                              self.cfg.stop_grace_s)
        if ended:
            await self.host.alert(
                f"♻️ crewbridge was not stopped cleanly last time: ended agent processes it "
                f"left running ({', '.join(ended)}). Their sessions resume on the next message.")
        for name in await self.store.agents_with_queue():
            self.schedule_kick([name])
        self.schedule_kick(sorted(self.always_on), start=True)
        self._spawn_task(self._tick_loop(), "supervisor-tick")

    async def shutdown(self) -> None:
        """End every agent: terminate, kill after the grace period; no orphans (R4.9)."""
        self._closing = True
        stops = []
        for rt in self._runtimes.values():
            if rt.session is not None:
                rt.stop_reason = "shutdown"
                stops.append(rt.session.stop(self.cfg.stop_grace_s))
        await asyncio.gather(*stops, return_exceptions=True)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def wait_quiet(self, timeout_s: float) -> bool:
        """Wait until no agent is starting or in a turn and nothing deliverable is queued."""
        deadline = time.monotonic() + timeout_s
        while await self._busy():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.5))
        return True

    async def _busy(self) -> bool:
        if any(not t.done() for t in self._kicks):
            return True
        for rt in self._runtimes.values():
            if rt.run in (RunState.STARTING, RunState.STOPPING) or rt.pending_turns > 0:
                return True
        now = self.clock.now()
        for name in await self.store.agents_with_queue():
            rt = await self._runtime(name)  # None: no such agent any more; nothing to wait for
            if rt is not None and isinstance(breaker.gate(await self._health(rt), now),
                                             breaker.Allowed):
                return True
        return False

    # --- admin -------------------------------------------------------------------------------

    async def status(self) -> list[AgentStatus]:
        now = self.clock.now()
        queued = await self.store.queue_lengths()
        rows = []
        for agent in await self.store.agents():
            rt = self._runtimes.get(agent.name)
            spec = rt.spec if rt else AgentSpec(agent.name, agent.kind, agent.channel,
                                                agent.task_id)
            h = await self.store.health(health_key(spec))
            running = rt is not None and rt.run is not RunState.STOPPED
            state = rt.run.value if rt else RunState.STOPPED.value
            if not running and isinstance(breaker.gate(h, now), breaker.Blocked):
                state = "cooling down" if h.state is breaker.BreakerState.CLOSED else "paused"
            rows.append(AgentStatus(
                agent.name, agent.kind.value, state, agent.channel, agent.task_id, h.failures,
                h.state.value, redact(h.last_error or agent.last_error)[:200],
                now - rt.started_at if rt and rt.run is RunState.RUNNING else None,
                queued.get(agent.name, 0)))
        return rows

    async def restart(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return f"No agent named {name}."
        gate = breaker.gate(await self._health(rt), self.clock.now())
        if isinstance(gate, breaker.Blocked) and gate.reason != "cooldown":
            return f"{name}'s circuit breaker is open; use `reset {name}` to close it and start it."
        if isinstance(gate, breaker.Blocked):  # an admin's restart does not wait out a cooldown
            await self._put_health(rt, replace(await self._health(rt), cooldown_until=0.0))
        await self._stop(rt, "restart")
        await self.kick(name, start=True)
        return f"Restarted {name}."

    async def stop(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return f"No agent named {name}."
        if rt.session is None:
            return f"{name} is not running."
        await self._stop(rt, "admin")
        return f"Stopped {name}; its next message resumes it."

    async def reset(self, name: str) -> str:
        rt = await self._runtime(name)
        if rt is None:
            return f"No agent named {name}."
        async with rt.lock:
            h, effects = breaker.reset(await self._health(rt))
            await self._put_health(rt, h)
            await self._carry_out(rt, effects)
        queued = len(await self.store.queued(name))
        self.schedule_kick([name])
        suffix = f"; delivering {queued} queued message(s)" if queued else ""
        return f"Reset {name}: breaker closed, cooldown cleared{suffix}."

    async def stop_worker(self, name: str) -> None:
        """A worker's task is done (R7.3)."""
        rt = self._runtimes.get(name)
        if rt is not None and rt.session is not None:
            await self._stop(rt, "task done")

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
                h, effects = breaker.reset(h)
                await self._put_health(rt, h)
                await self._carry_out(rt, effects)
            names.append(agent.name)
        await self.store.close_escalation("auth")
        self.schedule_kick(names, start=True)
        return names

    # --- the core loop of one agent ----------------------------------------------------------

    async def _advance(self, rt: Runtime, *, start: bool = False) -> None:
        queued = await self.store.queued(rt.name)
        now = self.clock.now()
        action = resolve(rt.run, rt.session_id, await self._health(rt), now)
        if isinstance(action, Deliver):
            await self._deliver(rt, queued)
        elif isinstance(action, Hold):
            pass  # the start or stop in flight ends in another _advance
        elif isinstance(action, Wait):
            if queued:
                await self._tell_blocked(rt, action.blocked, queued[-1].origin)
        elif (queued or start) and not self._closing:
            await self._start(rt, action)

    async def _deliver(self, rt: Runtime, queued: list[QueuedNudge]) -> None:
        assert rt.session is not None
        sent: list[QueuedNudge] = []
        for q in queued:
            if not await rt.session.send(q.text):
                break
            sent.append(q)
        if not sent:
            return
        await self.store.dequeue(q.id for q in sent)
        now = self.clock.now()
        rt.delivered.extend(sent)
        rt.pending_turns += len(sent)
        rt.hops = sent[-1].hops
        rt.last_activity = rt.last_output = now
        self._changed.set()

    async def _start(self, rt: Runtime, action: Resume | Spawn) -> None:
        rt.run = RunState.STARTING
        self._changed.set()
        if action.trial:
            await self._put_health(rt, breaker.trial_started(await self._health(rt)))
        resume = action.session_id if isinstance(action, Resume) else None
        session_id = resume or str(uuid.uuid4())
        spec = rt.spec
        argv = agent_argv(spec.command, session_id=session_id, resume=resume, prompt=spec.prompt)
        rt.run_id += 1
        run_id = rt.run_id
        session = Session(
            rt.name, argv, cwd=Path(spec.workdir), env=self._env(spec),
            on_event=lambda ev: self._on_event(rt, run_id, ev),
            on_exit=lambda code: self._on_exit(rt, run_id, code))
        now = self.clock.now()
        rt.started_at = rt.last_activity = rt.last_output = now
        rt.healthy = rt.failure_reported = rt.unknown_session = False
        rt.stop_reason = None
        rt.pending_turns = 0
        rt.delivered = []
        rt.output = TurnOutput(self.cfg.flush_interval_s)
        try:
            await session.start()
        except SpawnError as e:
            rt.run = RunState.STOPPED
            self._changed.set()
            await self._failure(rt, str(e))
            return
        log.info("%s %s (pid %s)", "resumed" if resume else "spawned", rt.name, session.pid)
        if session.pid is not None and (mark := leftovers.start_mark(session.pid)):
            await self.store.record_process(rt.name, session.pid, mark)
        rt.session = session
        rt.session_id = session_id
        await self.store.set_session_id(rt.name, session_id)
        rt.run = RunState.RUNNING
        await self._deliver(rt, await self.store.queued(rt.name))

    async def _stop(self, rt: Runtime, reason: str) -> None:
        async with rt.lock:
            session = rt.session
            if session is None or rt.run is RunState.STOPPING:
                return
            rt.run = RunState.STOPPING
            rt.stop_reason = reason
            self._changed.set()
        await session.stop(self.cfg.stop_grace_s)

    # --- what a session reports --------------------------------------------------------------

    async def _on_event(self, rt: Runtime, run_id: int, event: AgentEvent) -> None:
        async with rt.lock:
            if run_id != rt.run_id or rt.output is None:
                return
            now = self.clock.now()
            rt.last_output = rt.last_activity = now
            if isinstance(event, Init) and event.session_id and event.session_id != rt.session_id:
                rt.session_id = event.session_id
                await self.store.set_session_id(rt.name, event.session_id)
            if isinstance(event, ApiError):
                log.warning("%s: API error %s: %s", rt.name, event.kind, redact(event.text))
            await self._post(rt, rt.output.feed(event, now))
            if isinstance(event, TurnResult):
                await self._turn_ended(rt, event)
            self._changed.set()

    async def _turn_ended(self, rt: Runtime, result: TurnResult) -> None:
        # The CLI says how many messages still wait for a turn; trust it over our count,
        # which would drift if it ever folded two messages into one turn.
        rt.pending_turns = (result.queued_turns if result.queued_turns is not None
                            else max(0, rt.pending_turns - 1))
        if not result.is_error:
            # Answered messages are done with; only the unanswered tail could go back.
            rt.delivered = rt.delivered[-rt.pending_turns:] if rt.pending_turns else []
            await self._mark_healthy(rt)
            return
        error = redact(result.text or "; ".join(result.errors) or "error result")
        log.warning("%s: turn failed: %s", rt.name, error)
        if is_unknown_session(result):
            # R4.10: the CLI no longer has this session; forget it and start afresh.
            rt.unknown_session = True
            rt.session_id = None
            await self.store.set_session_id(rt.name, None)
            await self.store.requeue_front(rt.delivered, self.clock.now())
            rt.delivered = []
            self._kill(rt, "unknown session")
            return
        auth = is_auth_failure(result)
        if auth or not rt.healthy:
            await self._failure(rt, error, auth=auth)
            self._kill(rt, "failed")
        else:
            await self.store.set_agent_error(rt.name, error[:500])

    async def _on_exit(self, rt: Runtime, run_id: int, code: int) -> None:
        async with rt.lock:
            if run_id != rt.run_id:
                return
            now = self.clock.now()
            if rt.output is not None:
                await self._post(rt, rt.output.end_of_stream(now))
            session, reason = rt.session, rt.stop_reason
            rt.run, rt.session, rt.stop_reason = RunState.STOPPED, None, None
            if session is not None and session.pid is not None:
                await self.store.forget_process(rt.name, session.pid)
            rt.pending_turns = 0
            self._changed.set()
            uptime = now - rt.started_at
            if rt.unknown_session:
                rt.unknown_session = False
                self.schedule_kick([rt.name])
                return
            if reason is None and not rt.healthy:
                tail = " | ".join(session.stderr_tail) if session else ""
                detail = f"exited with status {code} after {uptime:.1f}s"
                await self._failure(rt, f"{detail}: {tail}" if tail else detail)
                return
            if reason is None:
                log.warning("%s exited with status %s after running %.0fs", rt.name, code, uptime)
                if await self._wanted(rt):
                    self.schedule_kick([rt.name], start=True)  # R4.7
                return
            log.info("%s stopped (%s)", rt.name, reason)
            if reason == "restart":
                return
            if await self.store.queued(rt.name) and reason not in ("shutdown", "failed", "hung"):
                self.schedule_kick([rt.name])

    async def _wanted(self, rt: Runtime) -> bool:
        """Whether a healthy session that crashed should come back now (R4.7)."""
        return (bool(await self.store.queued(rt.name)) or rt.name in self.always_on
                or (rt.spec.kind is AgentKind.WORKER and self.host.has_open_task(rt.name)))

    async def _mark_healthy(self, rt: Runtime) -> None:
        if rt.healthy:
            return
        rt.healthy = True
        rt.delivered = []
        h, effects = breaker.succeeded(await self._health(rt))
        await self._put_health(rt, h)
        await self._carry_out(rt, effects)

    async def _failure(self, rt: Runtime, error: str, *, auth: bool = False) -> None:
        """Count one failure of this run (R4.2, R4.3), at most once per run."""
        if rt.failure_reported:
            return
        rt.failure_reported = True
        error = redact(error)
        log.warning("%s failed: %s", rt.name, error)
        h, effects = breaker.failed(await self._health(rt), self.clock.now(),
                                    self._policy(rt), error, auth=auth)
        await self._put_health(rt, h)
        await self.store.set_agent_error(rt.name, error[:500])
        await self.store.requeue_front(rt.delivered, self.clock.now())
        rt.delivered = []
        await self._carry_out(rt, effects)
        queued = await self.store.queued(rt.name)
        gate = breaker.gate(h, self.clock.now())
        if queued and isinstance(gate, breaker.Blocked):
            await self._tell_blocked(rt, gate, queued[-1].origin)

    def _kill(self, rt: Runtime, reason: str) -> None:
        """Kill the session now; until it has exited nothing more is delivered to it and
        the timers leave it alone, so a hung turn is counted once, not once per tick."""
        if rt.session is not None:
            rt.run = RunState.STOPPING
            rt.stop_reason = reason
            self._changed.set()
            rt.session.kill()

    async def _carry_out(self, rt: Runtime, effects: list[breaker.Effect]) -> None:
        for effect in effects:
            if isinstance(effect, breaker.BreakerOpened):
                await self._breaker_opened(rt, effect)
            elif await self.store.close_escalation(f"breaker:{rt.name}"):
                await self.host.alert(f"✅ Recovered: {rt.name} ({rt.spec.kind.value} in "
                                         f"#{rt.spec.channel}) is running again.")

    async def _breaker_opened(self, rt: Runtime, e: breaker.BreakerOpened) -> None:
        now = self.clock.now()
        error = redact(e.last_error)[:300]
        if e.auth:
            if await self.store.open_escalation("auth", error, now):
                await self.host.alert(
                    f"🔑 Agent auth expired: {rt.name} cannot log in to the model API "
                    f"({error}). Agents will not be restarted against it. "
                    "Remedy: `auth login` here, or log in on the host, then `reset <agent>`.")
            await self.store.open_escalation(f"breaker:{rt.name}", error, now)
            return
        if await self.store.open_escalation(f"breaker:{rt.name}", error, now):
            h = await self._health(rt)
            retry = time.strftime("%H:%M:%S", time.localtime(h.retry_at))
            await self.host.alert(
                f"🛑 Circuit breaker open: {rt.name} ({rt.spec.kind.value} in "
                f"#{rt.spec.channel}{self._task_label(rt)}) failed {e.failures} times in a row. "
                f"Last error: {error}. It stays stopped; one trial start after {retry}. "
                f"Remedy: `reset {rt.name}` (or `auth login` if it is a login problem).")

    @staticmethod
    def _task_label(rt: Runtime) -> str:
        return f", task #{rt.spec.task_id}" if rt.spec.task_id else ""

    async def _tell_blocked(self, rt: Runtime, blocked: breaker.Blocked, origin: str) -> None:
        h, notify = breaker.should_notify_blocked(await self._health(rt), blocked)
        if not notify:
            return
        await self._put_health(rt, h)
        when = time.strftime("%H:%M:%S", time.localtime(blocked.until))
        if blocked.reason == "cooldown":
            text = (f"{rt.name} failed to start and is cooling down; your message is queued "
                    f"and will be delivered when it is retried at {when}.")
        else:
            text = (f"{rt.name} is paused after repeated failures; your message is queued. "
                    f"It will be tried again after {when}, or sooner if an admin runs "
                    f"`reset {rt.name}`.")
        await self.host.notice(origin or rt.spec.channel, text)

    async def _post(self, rt: Runtime, texts: list[str]) -> None:
        """Post what the quarantine let through; log what it held back (R5.3)."""
        if rt.output is not None:
            for q in rt.output.take_quarantined():
                log.warning("%s: withheld from #%s (%s): %s", rt.name, rt.spec.channel,
                            q.reason.value, redact(q.text)[:300])
        for text in texts:
            await self.host.agent_posted(rt.name, rt.spec.channel, text, rt.hops)

    # --- timers ------------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        interval = min(0.5, self.cfg.flush_interval_s / 4)
        while True:
            await self.clock.sleep(interval)
            try:
                await self.tick()
            except Exception:
                log.exception("supervisor tick failed")

    async def tick(self) -> None:
        """Flush batched output, notice health, idleness and hung turns, retry queues (R4)."""
        now = self.clock.now()
        for rt in list(self._runtimes.values()):
            async with rt.lock:
                await self._tick_one(rt, now)
        for name in await self.store.agents_with_queue():
            rt = await self._runtime(name)
            if rt is not None and rt.run is RunState.STOPPED and not self._closing:
                gate = breaker.gate(await self._health(rt), now)
                if isinstance(gate, breaker.Allowed) and not gate.trial:
                    self.schedule_kick([name])

    async def _tick_one(self, rt: Runtime, now: float) -> None:
        if rt.run is RunState.STOPPED:
            if rt.name in self.always_on and not self._closing:
                gate = breaker.gate(await self._health(rt), now)
                if isinstance(gate, breaker.Allowed):
                    self.schedule_kick([rt.name], start=True)
            return
        if rt.run is not RunState.RUNNING or rt.output is None:
            return
        await self._post(rt, rt.output.tick(now))
        if not rt.healthy and now - rt.started_at >= self.cfg.healthy_after_s:
            await self._mark_healthy(rt)  # R4.5
        if rt.pending_turns > 0 and now - rt.last_output >= self.cfg.turn_timeout_s:
            minutes = self.cfg.turn_timeout_s / 60
            rt.failure_reported = False  # a hung turn is a failure even after a healthy start
            await self._failure(rt, f"turn hung: no output for {minutes:.0f} min")
            await self.host.alert(f"⏱️ {rt.name} hung (no output for {minutes:.0f} min in a "
                                     "turn); it was killed and will be restarted when needed.")
            self._kill(rt, "hung")
        elif rt.pending_turns == 0 and now - rt.last_activity >= self.cfg.idle_stop_s:
            self._spawn_task(self._stop(rt, "idle"), f"idle-stop-{rt.name}")  # R4.8

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
        rt = self._runtimes.setdefault(name, Runtime(spec))
        row = await self.store.agent(name)
        rt.session_id = row.session_id if row else None
        return rt

    def hops_of(self, name: str) -> int:
        """The hop count of the nudge `name` is answering: its own posts continue the chain."""
        rt = self._runtimes.get(name)
        return rt.hops if rt else 0

    def refresh_spec(self, spec: AgentSpec) -> None:
        """A worker got a new task: later starts use it (and its health key)."""
        rt = self._runtimes.get(spec.name)
        if rt is not None:
            rt.spec = spec

    def _policy(self, rt: Runtime) -> breaker.Policy:
        lead = rt.spec.kind is AgentKind.LEAD
        return breaker.Policy(
            cooldown_s=self.cfg.spawn_failure_cooldown_s,
            max_failures=self.cfg.max_lead_restarts if lead else self.cfg.max_worker_restarts,
            reset_s=self.cfg.breaker_reset_s, max_reset_s=self.cfg.breaker_max_s)

    async def _health(self, rt: Runtime) -> breaker.Health:
        """Health records, read once and then cached: the supervisor is their only writer,
        and every delivery consults one."""
        h = self._healths.get(rt.health_key)
        if h is None:
            h = self._healths[rt.health_key] = await self.store.health(rt.health_key)
        return h

    async def _put_health(self, rt: Runtime, h: breaker.Health) -> None:
        self._healths[rt.health_key] = h
        await self.store.put_health(rt.health_key, h)

    def _env(self, spec: AgentSpec) -> dict[str, str]:
        """The agent's environment: ours, the config's, and who it is (R10.4)."""
        return {**os.environ, **self.cfg.env, **spec.env,
                "CREWBRIDGE_SOCKET": str(self.socket_path), "CREWBRIDGE_AGENT": spec.name}
