"""All agent sessions: what the rest of the bot asks of them (R3, R4, R6).

The decisions are made elsewhere — `lifecycle` decides about one agent's run (with
`resolve` and `breaker` inside), `alerts` words what is said. `executor.Executor` owns what
they may not touch — processes, the store, the host and the clock — and carries out the
effects a run returns; `Supervisor` adds the entry points: nudges (`schedule_kick`),
start-up and shutdown, waiting for quiet, the admin commands. Together they keep these
invariants:

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
import time
from collections.abc import Awaitable, Callable, Iterable

from crewbridge.supervisor import alerts, breaker, leftovers, slots
from crewbridge.supervisor.control import PermissionAsk, Verdict
from crewbridge.supervisor.executor import Executor, Runtime, RunView
from crewbridge.supervisor.ports import AgentSpec, AgentStatus, Conversation
from crewbridge.supervisor.redact import redact
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.rules import StopReason, health_key, status_state

log = logging.getLogger(__name__)


class Supervisor(Executor):
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
        At most `executor.KICKS_AT_ONCE` run at once (an agent's lock is waited for outside
        that gate)."""
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
                                            start=start, closing=self._closing,
                                            paused=self.host.paused(rt.run.name)))

    async def start_up(self) -> None:
        """After a restart: end what an unclean stop left running (R4.9), deliver what was
        queued, start `always_on` leads (R4.1, R4.6)."""
        ended = await leftovers.end_leftovers(await self.store.take_processes(),
                                              self.cfg.stop_grace_s)
        if ended:
            await self.host.alert(alerts.leftovers_ended(ended))
        self.schedule_kick(await self.store.agents_with_queue())
        self.schedule_kick(sorted(self.always_on), start=True)
        self._spawn_task(self._timer.run(), "supervisor-tick")

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
                       waiting_for_slot=rt.run.name in self._slots.waiting,
                       asked=tuple(q.text for q in rt.run.delivered.values()))

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

    def answering(self, conversation: Conversation) -> list[str]:
        """The agents whose open turn answers `conversation` (R3.6, R13.6)."""
        return [name for name, rt in self._runtimes.items()
                if rt.run.in_turn and rt.run.conversation == conversation]

    async def stop_turn(self, name: str, by: str) -> str:
        """A person's `!stop` (R13.6): interrupt `name`'s running turn; the session lives on
        for the next message. The answer for the person."""
        rt = self._runtimes.get(name)
        if rt is None:
            return alerts.nothing_to_stop(name)
        async with rt.lock:
            effects = rt.run.stop_turn(by)
            if effects is None:
                return alerts.nothing_to_stop(name)
            await self._apply(rt, effects)
        return alerts.stopping(name)

    async def decide(self, name: str, request_id: str, verdict: Verdict,
                     message: str = "") -> bool:
        """Answer agent `name`'s request `request_id` (R13.1, R13.3); False when it does
        not wait any more (withdrawn, or the session that asked is gone, R13.4)."""
        rt = self._runtimes.get(name)
        if rt is None:
            return False
        async with rt.lock:
            effects = rt.run.decide(request_id, verdict, message, self.clock.now())
            if effects is None:
                return False
            await self._apply(rt, effects)
        return True

    def asking(self, name: str) -> dict[str, PermissionAsk]:
        """The requests agent `name`'s run waits on, by request id (R13.4)."""
        rt = self._runtimes.get(name)
        return dict(rt.run.asks) if rt else {}

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

    def cli_post_hops(self, name: str) -> int:
        """The hop count for a `crewbridge post` by agent `name`; every such post counts."""
        rt = self._runtimes.get(name)
        return rt.run.cli_post_hops() if rt else 0

    def forget(self, name: str) -> bool:
        """Drop the run of an agent the bot forgot (an idle worker, a pruned thread's fork,
        R14.6), so the runs kept in memory do not grow with every agent there ever was. Only
        a stopped run that nothing holds: False when it is busy (it stays)."""
        rt = self._runtimes.get(name)
        if (rt is None or rt.run.state is not RunState.STOPPED or rt.run.in_turn
                or rt.lock.locked() or name in self._slots.waiting):
            return False
        del self._runtimes[name]
        self._healths.pop(rt.run.health_key, None)
        return True

    def refresh_spec(self, spec: AgentSpec) -> None:
        """A worker got a new task: later starts use it (and its health key)."""
        rt = self._runtimes.get(spec.name)
        if rt is not None:
            rt.run.spec = spec

