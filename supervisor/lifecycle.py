"""One agent's run as a state machine: what the supervisor does, decided without doing it.

Rule 1: everything that decides about one agent's run lives here. The executor
(`supervisor.supervisor`) owns the processes, the store and the host; it tells an `AgentRun`
what happened — a nudge queued, a process started, an event read, an exit, the time — and
carries out the list of `Effect`s it gets back, in order, under the agent's lock.

Rule 2: nothing here does I/O or waits. Time comes in as `now`, the agent's `Health` comes
in as data (the executor caches and stores it; `SaveHealth` hands the new record back), and
what the machine needs to know of the world it asks for with an effect that the executor
answers by calling it again: `Spawn` is answered by `started` or `start_failed`, `Write` by
`wrote`, `TellBlocked` by `tell_blocked`, `OfferQueue` by `nudged`. A `Spawn` may be
answered late: the start waits in STARTING while every process slot is taken (R3.7,
`supervisor.slots`), and `start_withdrawn` ends such a wait that will not end in a start.

Rule 3: an event that cannot happen in the current state raises `LifecycleError`. Output
and exits of an *earlier* process never get here: the executor drops them by run id.

The states (`RunState`, shared with `resolve`, whose table says what a nudge does):

    STOPPED --nudged: Spawn/Resume--> STARTING --started--> RUNNING --stop/kill--> STOPPING
       ^                                 | start_failed        |  exited              | exited
       +---------------------------------+---------------------+----------------------+

RUNNING is *idle* or *in a turn* (`pending_turns > 0`). A run in STOPPING knows why
(`StopReason`); that reason, with whether the run had proven healthy, picks the exit rule
(`AFTER_EXIT`). How a turn ended picks the turn rule (`AFTER_TURN`). Which timers are armed
depends on the phase (`TIMERS`); the same table gives `next_deadline` and drives `tick`,
so the executor can sleep until the next real deadline.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from enum import Enum, StrEnum

from supervisor import alerts, breaker
from supervisor import effects as fx
from supervisor.autopost import TurnOutput
from supervisor.breaker import Blocked, BlockReason, Health
from supervisor.effects import Effect
from supervisor.ports import AgentConfig, AgentKind, AgentSpec, QueuedNudge
from supervisor.protocol import (
    AgentEvent,
    ApiError,
    Init,
    TurnResult,
    is_auth_failure,
    is_unknown_session,
)
from supervisor.redact import redact
from supervisor.resolve import Deliver, Hold, Resume, RunState, Wait, resolve

ERROR_TAIL_LINES = 10
"""The last stderr lines a failure's error keeps (the session keeps up to 64 KiB of them)."""


class LifecycleError(RuntimeError):
    """An event that cannot happen in the run's current state: a bug in the caller."""


class StopReason(StrEnum):
    SHUTDOWN = "shutdown"  # the bot is stopping (R4.9)
    RESTART = "restart"  # an admin's `restart`; the admin command starts it again
    ADMIN = "admin"  # an admin's `stop`
    IDLE = "idle"  # no turn for idle_stop_s (R4.8)
    MAKE_ROOM = "make room"  # idle while another start waits for a slot (R3.7)
    TASK_DONE = "task done"  # the worker's task is done (R7.3)
    FAILED = "failed"  # killed after a failed turn (R4.2, R6.2)
    HUNG = "hung"  # killed after a turn without output for turn_timeout_s (R4.8)
    UNKNOWN_SESSION = "unknown session"  # the CLI has forgotten the session (R4.10)


# --- the rules, as tables --------------------------------------------------------------------


class ExitOutcome(Enum):
    COUNT_FAILURE = "count a failure"  # it never proved healthy (R4.2)
    RESTART_IF_WANTED = "restart if wanted"  # a healthy run crashed (R4.7)
    RETRY_FRESH = "retry with a fresh session"  # (R4.10)
    DELIVER_QUEUE = "deliver what is queued"  # a planned stop; the next message resumes
    STAY_STOPPED = "stay stopped"  # its starter, its cooldown or the shutdown decides


AFTER_EXIT: dict[tuple[StopReason | None, bool], ExitOutcome] = {
    (None, False):                        ExitOutcome.COUNT_FAILURE,
    (None, True):                         ExitOutcome.RESTART_IF_WANTED,
    (StopReason.UNKNOWN_SESSION, False):  ExitOutcome.RETRY_FRESH,
    (StopReason.UNKNOWN_SESSION, True):   ExitOutcome.RETRY_FRESH,
    (StopReason.ADMIN, False):            ExitOutcome.DELIVER_QUEUE,
    (StopReason.ADMIN, True):             ExitOutcome.DELIVER_QUEUE,
    (StopReason.IDLE, False):             ExitOutcome.DELIVER_QUEUE,
    (StopReason.IDLE, True):              ExitOutcome.DELIVER_QUEUE,
    (StopReason.MAKE_ROOM, False):        ExitOutcome.DELIVER_QUEUE,
    (StopReason.MAKE_ROOM, True):         ExitOutcome.DELIVER_QUEUE,
    (StopReason.TASK_DONE, False):        ExitOutcome.DELIVER_QUEUE,
    (StopReason.TASK_DONE, True):         ExitOutcome.DELIVER_QUEUE,
    (StopReason.RESTART, False):          ExitOutcome.STAY_STOPPED,
    (StopReason.RESTART, True):           ExitOutcome.STAY_STOPPED,
    (StopReason.SHUTDOWN, False):         ExitOutcome.STAY_STOPPED,
    (StopReason.SHUTDOWN, True):          ExitOutcome.STAY_STOPPED,
    (StopReason.FAILED, False):           ExitOutcome.STAY_STOPPED,
    (StopReason.FAILED, True):            ExitOutcome.STAY_STOPPED,
    (StopReason.HUNG, False):             ExitOutcome.STAY_STOPPED,
    (StopReason.HUNG, True):              ExitOutcome.STAY_STOPPED,
}
"""(why it was stopping — None: nobody asked, whether it had proven healthy) -> outcome."""


class TurnEnd(Enum):
    OK = "ok"
    ERROR = "error"
    AUTH = "auth failure"
    UNKNOWN_SESSION = "unknown session"


class TurnOutcome(Enum):
    PROVEN = "proven healthy"  # a good turn proves the run (R4.5)
    ANSWERED = "answered"  # only the unanswered messages could still go back
    FORGET_SESSION = "forget the session, requeue, kill"  # (R4.10)
    FAIL = "count a failure, kill"  # (R4.2, R6.2)
    NOTE_ERROR = "note the error"  # a healthy session's bad turn is the agent's business


AFTER_TURN: dict[tuple[TurnEnd, bool], TurnOutcome] = {
    (TurnEnd.OK, False): TurnOutcome.PROVEN,
    (TurnEnd.OK, True): TurnOutcome.ANSWERED,
    (TurnEnd.UNKNOWN_SESSION, False): TurnOutcome.FORGET_SESSION,
    (TurnEnd.UNKNOWN_SESSION, True): TurnOutcome.FORGET_SESSION,
    (TurnEnd.AUTH, False): TurnOutcome.FAIL,
    (TurnEnd.AUTH, True): TurnOutcome.FAIL,
    (TurnEnd.ERROR, False): TurnOutcome.FAIL,
    (TurnEnd.ERROR, True): TurnOutcome.NOTE_ERROR,
}
"""(how the turn ended, whether the run had proven healthy) -> outcome."""


class Timer(Enum):
    FLUSH = "flush batched output"  # R5.2
    HEALTHY = "healthy after healthy_after_s"  # R4.5
    HUNG = "hung: no output in a turn for turn_timeout_s"  # R4.8
    IDLE = "idle stop after idle_stop_s"  # R4.8
    RETRY_QUEUE = "deliver the queue when the cooldown ends"  # R3.4, R4.3
    ALWAYS_ON = "restart an always_on lead when allowed"  # R4.1


TIMERS: dict[tuple[RunState, bool], tuple[Timer, ...]] = {
    (RunState.STOPPED, False): (Timer.RETRY_QUEUE, Timer.ALWAYS_ON),
    (RunState.STARTING, False): (),
    (RunState.RUNNING, False): (Timer.FLUSH, Timer.HEALTHY, Timer.IDLE),
    (RunState.RUNNING, True): (Timer.FLUSH, Timer.HEALTHY, Timer.HUNG),
    (RunState.STOPPING, False): (),
    (RunState.STOPPING, True): (),
}
"""(phase, in a turn) -> the timers armed, in the order `tick` fires them. Their deadlines
are `AgentRun._deadline`; what firing does is `AgentRun._fire`."""


def health_key(spec: AgentSpec) -> str:
    """Leads are keyed by channel, workers by task (R4.3): a new task starts with a clean slate."""
    if spec.kind is AgentKind.LEAD:
        return f"lead:{spec.channel}"
    return f"task:{spec.task_id}" if spec.task_id else f"worker:{spec.name}"


def policy(cfg: AgentConfig, kind: AgentKind) -> breaker.Policy:
    lead = kind is AgentKind.LEAD
    return breaker.Policy(
        cooldown_s=cfg.spawn_failure_cooldown_s,
        max_failures=cfg.max_lead_restarts if lead else cfg.max_worker_restarts,
        reset_s=cfg.breaker_reset_s, max_reset_s=cfg.breaker_max_s)


def status_state(run: RunState, health: Health, now: float) -> str:
    """The state column of `status` (R6.4): a stopped agent that may not start says why."""
    if run is RunState.STOPPED and isinstance(breaker.gate(health, now), Blocked):
        return "cooling down" if health.state is breaker.BreakerState.CLOSED else "paused"
    return run.value


def _turn_end(result: TurnResult) -> TurnEnd:
    if not result.is_error:
        return TurnEnd.OK
    if is_unknown_session(result):
        return TurnEnd.UNKNOWN_SESSION
    return TurnEnd.AUTH if is_auth_failure(result) else TurnEnd.ERROR


class AgentRun:
    """The state of one agent's run and the rules that move it."""

    def __init__(self, spec: AgentSpec, cfg: AgentConfig, *, session_id: str | None = None,
                 always_on: bool = False) -> None:
        self.spec = spec
        self.cfg = cfg
        self.always_on = always_on
        self.session_id = session_id
        self.state = RunState.STOPPED
        self.run_id = 0  # one per start; also the count of starts
        self.pid: int | None = None
        self.stop_reason: StopReason | None = None
        self.output = TurnOutput(cfg.flush_interval_s, cfg.max_turn_output_chars)
        self.started_at = self.last_activity = self.last_output = self.stopped_at = 0.0
        self.pending_turns = 0
        self.healthy = False
        self.failure_counted = False  # a run counts one failure at most (a hung turn aside)
        self.delivered: list[QueuedNudge] = []  # taken by this run and not yet answered
        self.hops = 0
        self.queue_retry_at: float | None = None
        self.resuming: str | None = None  # the session the current run resumes

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def health_key(self) -> str:
        return health_key(self.spec)

    @property
    def in_turn(self) -> bool:
        return self.pending_turns > 0

    # --- what the executor reports ---------------------------------------------------------

    def nudged(self, queued: list[QueuedNudge], health: Health, now: float, *,
               start: bool = False, closing: bool = False) -> list[Effect]:
        """The agent's queue is `queued`: deliver, hold, wait or start (`resolve`'s table);
        `start` starts it even with nothing queued; `closing` starts nothing."""
        action = resolve(self.state, self.session_id, health, now)
        if isinstance(action, Deliver):
            return [fx.Write(tuple(queued))] if queued else []
        if isinstance(action, Hold):
            return []  # the start or stop in flight ends in another pass over the queue
        if isinstance(action, Wait):
            if action.blocked.reason is BlockReason.COOLDOWN:
                self.queue_retry_at = action.blocked.until
            return self.tell_blocked(action.blocked, queued, health)
        if not (queued or start) or closing:
            return []
        effects: list[Effect] = ([fx.SaveHealth(breaker.trial_started(health))]
                                 if action.trial else [])
        self.state = RunState.STARTING
        self.run_id += 1
        self.stop_reason = None
        self.started_at = self.last_activity = self.last_output = now
        self.healthy = self.failure_counted = False
        self.pending_turns = 0
        self.delivered = []
        self.queue_retry_at = None
        self.output = TurnOutput(self.cfg.flush_interval_s, self.cfg.max_turn_output_chars)
        self.resuming = action.session_id if isinstance(action, Resume) else None
        return [*effects, fx.Spawn(self.run_id, self.resuming)]

    def started(self, session_id: str, pid: int | None, now: float) -> list[Effect]:
        """The process of the current run is up (the executor minted `session_id` for a
        fresh spawn)."""
        self._expect(RunState.STARTING, event="started")
        self.state = RunState.RUNNING
        # Uptime counts from the process, not from the nudge: a start may have waited for
        # a slot (R3.7), and that wait proves nothing about health (R4.2, R4.5).
        self.started_at = self.last_activity = self.last_output = now
        self.session_id = session_id
        self.pid = pid
        verb = "resumed" if self.resuming else "spawned"
        effects: list[Effect] = [fx.Log(logging.INFO, f"{verb} {self.name} (pid {pid})")]
        if pid is not None:
            effects.append(fx.RecordProcess(pid))
        return [*effects, fx.SaveSession(session_id), fx.OfferQueue()]

    def start_failed(self, error: str, health: Health, now: float) -> list[Effect]:
        """The process could not be started at all (R4.2)."""
        self._expect(RunState.STARTING, event="start_failed")
        self.state = RunState.STOPPED
        self.stopped_at = now
        return self._fail(error, health, now)

    def wrote(self, sent: list[QueuedNudge], now: float) -> list[Effect]:
        """These nudges (a prefix of a `Write`) reached the session's stdin."""
        self._expect(RunState.RUNNING, event="wrote")
        if not sent:
            return []
        self.delivered.extend(sent)
        self.pending_turns += len(sent)
        self.hops = sent[-1].hops
        self.last_activity = self.last_output = now
        return [fx.Dequeue(tuple(q.id for q in sent))]

    def saw(self, event: AgentEvent, health: Health, now: float) -> list[Effect]:
        """One event from the session's output (also while it is being stopped)."""
        self._expect(RunState.RUNNING, RunState.STOPPING, event="saw")
        self.last_output = self.last_activity = now
        effects: list[Effect] = []
        if isinstance(event, Init) and event.session_id and event.session_id != self.session_id:
            self.session_id = event.session_id
            effects.append(fx.SaveSession(event.session_id))
        if isinstance(event, ApiError):
            effects.append(fx.Log(logging.WARNING,
                               f"{self.name}: API error {event.kind}: {redact(event.text)}"))
        effects += self._posts(self.output.feed(event, now))
        if isinstance(event, TurnResult):
            effects += self._turn_ended(event, health, now)
        return effects

    def exited(self, code: int, stderr_tail: list[str], health: Health, now: float, *,
               open_task: bool = False) -> list[Effect]:
        """The process has exited and all its output has been read."""
        self._expect(RunState.RUNNING, RunState.STOPPING, event="exited")
        effects = self._posts(self.output.end_of_stream(now))
        if self.pid is not None:
            effects.append(fx.ForgetProcess(self.pid))
        reason, uptime = self.stop_reason, now - self.started_at
        self.state, self.pid, self.stop_reason = RunState.STOPPED, None, None
        self.pending_turns = 0
        self.stopped_at = now
        outcome = AFTER_EXIT[(reason, self.healthy)]
        if outcome is ExitOutcome.COUNT_FAILURE:
            tail = " | ".join(stderr_tail[-ERROR_TAIL_LINES:])
            detail = f"exited with status {code} after {uptime:.1f}s"
            return effects + self._fail(f"{detail}: {tail}" if tail else detail, health, now)
        if outcome is ExitOutcome.RESTART_IF_WANTED:
            wanted = self.always_on or (self.spec.kind is AgentKind.WORKER and open_task)
            return [*effects, fx.Log(logging.WARNING, f"{self.name} exited with status {code} "
                                                   f"after running {uptime:.0f}s"),
                    fx.Kick(start=wanted)]
        effects.append(fx.Log(logging.INFO, f"{self.name} stopped ({reason})"))
        if outcome in (ExitOutcome.RETRY_FRESH, ExitOutcome.DELIVER_QUEUE):
            effects.append(fx.Kick())
        return effects

    def stop_requested(self, reason: StopReason) -> list[Effect]:
        """Stop the session gracefully. A run that is not running is already stopped; a
        shutdown also takes over a stop in flight, so that it waits for every exit."""
        if self.state is RunState.RUNNING or (
                reason is StopReason.SHUTDOWN and self.state is RunState.STOPPING):
            self.state, self.stop_reason = RunState.STOPPING, reason
            return [fx.Terminate()]
        return []

    def make_room(self) -> list[Effect]:
        """Stop to give the slot to a waiting start (R3.7), resumable like an idle stop;
        a run that has begun a turn (or a stop) since it was chosen keeps its slot."""
        if self.state is not RunState.RUNNING or self.in_turn:
            return []
        return self.stop_requested(StopReason.MAKE_ROOM)

    def start_withdrawn(self, now: float) -> list[Effect]:
        """A start that waited for a slot will not happen (the bot is stopping, R4.9).
        Nothing was taken from the queue, so nothing goes back and nothing counts."""
        self._expect(RunState.STARTING, event="start_withdrawn")
        self.state = RunState.STOPPED
        self.stopped_at = now
        return []

    def tell_blocked(self, blocked: Blocked, queued: list[QueuedNudge],
                     health: Health) -> list[Effect]:
        """Messages wait for a start that is not allowed: say so once per block (R3.4)."""
        if not queued:
            return []
        h, notify = breaker.should_notify_blocked(health, blocked)
        if not notify:
            return []
        return [fx.SaveHealth(h),
                fx.Notify(queued[-1].origin or self.spec.channel,
                       alerts.blocked_notice(self.name, blocked))]

    def reset(self, health: Health) -> list[Effect]:
        """An admin's `reset` or a successful `auth login` (R4.4, R6.5)."""
        return self._health_changed(*breaker.reset(health))

    def admin_restart(self, health: Health, now: float) -> list[Effect] | None:
        """An admin's `restart`: it does not wait out a cooldown, but it does not override
        an open breaker (None: refused; `reset` is for that)."""
        g = breaker.gate(health, now)
        if not isinstance(g, Blocked):
            return []
        if g.reason is not BlockReason.COOLDOWN:
            return None
        return [fx.SaveHealth(replace(health, cooldown_until=0.0))]

    def tick(self, health: Health, now: float, *, closing: bool = False) -> list[Effect]:
        """Fire every armed timer whose deadline has come, in `TIMERS` order."""
        effects: list[Effect] = []
        for timer in TIMERS[(self.state, self.in_turn)]:
            deadline = self._deadline(timer, health, closing)
            if deadline is not None and now >= deadline:
                effects += self._fire(timer, health, now, closing)
                health = next((e.health for e in reversed(effects)
                               if isinstance(e, fx.SaveHealth)), health)
        return effects

    def next_deadline(self, health: Health, *, closing: bool = False) -> float | None:
        """When `tick` next has work to do; None while no timer is armed."""
        deadlines = [d for t in TIMERS[(self.state, self.in_turn)]
                     if (d := self._deadline(t, health, closing)) is not None]
        return min(deadlines, default=None)

    # --- timers ----------------------------------------------------------------------------

    def _deadline(self, timer: Timer, health: Health, closing: bool) -> float | None:
        cfg = self.cfg
        if timer is Timer.FLUSH:
            return self.output.next_deadline()
        if timer is Timer.HEALTHY:
            return None if self.healthy else self.started_at + cfg.healthy_after_s
        if timer is Timer.HUNG:
            return self.last_output + cfg.turn_timeout_s
        if timer is Timer.IDLE:
            return self.last_activity + cfg.idle_stop_s
        if timer is Timer.RETRY_QUEUE:
            return None if closing else self.queue_retry_at
        assert timer is Timer.ALWAYS_ON
        if not self.always_on or closing:
            return None
        allowed_at = (health.cooldown_until if health.state is breaker.BreakerState.CLOSED
                      else health.retry_at)
        return max(self.stopped_at, allowed_at)

    def _fire(self, timer: Timer, health: Health, now: float, closing: bool) -> list[Effect]:
        if timer is Timer.FLUSH:
            return self._posts(self.output.tick(now))
        if timer is Timer.HEALTHY:
            return self._proven(health)
        if timer is Timer.HUNG:
            minutes = self.cfg.turn_timeout_s / 60
            self.failure_counted = False  # a hung turn is a failure even after a healthy start
            return [*self._fail(f"turn hung: no output for {minutes:.0f} min", health, now),
                    fx.Alert(alerts.hung(self.name, minutes)), *self._kill(StopReason.HUNG)]
        if timer is Timer.IDLE:
            return self.stop_requested(StopReason.IDLE)
        if timer is Timer.RETRY_QUEUE:
            g = breaker.gate(health, now)
            blocked_by_cooldown = isinstance(g, Blocked) and g.reason is BlockReason.COOLDOWN
            self.queue_retry_at = g.until if blocked_by_cooldown else None
            # A trial start after an open breaker is a nudge's to make (R4.4).
            return [fx.Kick()] if isinstance(g, breaker.Allowed) and not g.trial else []
        assert timer is Timer.ALWAYS_ON
        return [fx.Kick(start=True)]

    # --- rules shared by several events ----------------------------------------------------

    def _turn_ended(self, result: TurnResult, health: Health, now: float) -> list[Effect]:
        # The CLI says how many messages still wait for a turn; trust it over our count,
        # which would drift if it ever folded two messages into one turn.
        self.pending_turns = (result.queued_turns if result.queued_turns is not None
                              else max(0, self.pending_turns - 1))
        outcome = AFTER_TURN[(_turn_end(result), self.healthy)]
        if outcome is TurnOutcome.PROVEN:
            return self._proven(health)
        if outcome is TurnOutcome.ANSWERED:
            self.delivered = self.delivered[-self.pending_turns:] if self.pending_turns else []
            return []
        error = redact(result.text or "; ".join(result.errors) or "error result")
        effects: list[Effect] = [fx.Log(logging.WARNING, f"{self.name}: turn failed: {error}")]
        if outcome is TurnOutcome.FORGET_SESSION:
            self.session_id = None
            effects += [fx.SaveSession(None), *self._requeue()]
            return effects + self._kill(StopReason.UNKNOWN_SESSION)
        if outcome is TurnOutcome.FAIL:
            auth = _turn_end(result) is TurnEnd.AUTH
            return effects + self._fail(error, health, now, auth=auth) + self._kill(
                StopReason.FAILED)
        return [*effects, fx.SaveError(error[:500])]

    def _proven(self, health: Health) -> list[Effect]:
        """The run proved healthy (R4.5): its messages are answered, the breaker closes."""
        if self.healthy:
            return []
        self.healthy = True
        self.delivered = []
        return self._health_changed(*breaker.succeeded(health))

    def _fail(self, error: str, health: Health, now: float, *,
              auth: bool = False) -> list[Effect]:
        """Count one failure of this run (R4.2, R4.3), at most once per run."""
        if self.failure_counted:
            return []
        self.failure_counted = True
        error = redact(error)
        h, opened = breaker.failed(health, now, policy(self.cfg, self.spec.kind), error,
                                   auth=auth)
        self.queue_retry_at = h.cooldown_until
        effects: list[Effect] = [fx.Log(logging.WARNING, f"{self.name} failed: {error}"),
                                 fx.SaveHealth(h), fx.SaveError(error[:500]), *self._requeue(),
                                 *self._escalations(h, opened)]
        g = breaker.gate(h, now)
        return [*effects, fx.TellBlocked(g)] if isinstance(g, Blocked) else effects

    def _health_changed(self, h: Health, changes: list[breaker.Effect]) -> list[Effect]:
        return [fx.SaveHealth(h), *self._escalations(h, changes)]

    def _escalations(self, h: Health, changes: list[breaker.Effect]) -> list[Effect]:
        effects: list[Effect] = []
        for change in changes:
            if isinstance(change, breaker.BreakerOpened):
                effects += self._opened(change, h)
            else:
                effects.append(fx.Recover(f"breaker:{self.name}", alerts.recovered(self.spec)))
        return effects

    def _opened(self, e: breaker.BreakerOpened, h: Health) -> list[Effect]:
        error = redact(e.last_error)[:300]
        key = f"breaker:{self.name}"
        if e.auth:  # one alert for the login, whoever notices it first (R6.2)
            return [fx.Escalate("auth", error, alerts.auth_expired(self.name, error)),
                    fx.Escalate(key, error, None)]
        return [fx.Escalate(key, error, alerts.breaker_opened(self.spec, e.failures, error,
                                                           h.retry_at))]

    def _requeue(self) -> list[Effect]:
        taken, self.delivered = self.delivered, []
        return [fx.Requeue(tuple(taken))] if taken else []

    def _kill(self, reason: StopReason) -> list[Effect]:
        """Kill now; until it has exited nothing more is delivered to it and the timers
        leave it alone, so a hung turn is counted once, not once per tick."""
        self.state, self.stop_reason = RunState.STOPPING, reason
        return [fx.Kill()]

    def cli_post_hops(self) -> int:
        """The hop count of a post this agent makes with `crewbridge post` (R2.6, R10.4).

        It continues the chain of the nudge being answered, and each such post counts one
        more hop: an agent that loops on the CLI stops at the hop limit like a chain of
        answers does, instead of nudging its colleagues for ever.
        """
        hops = self.hops
        self.hops += 1
        return hops

    def _posts(self, texts: list[str]) -> list[Effect]:
        """Posts the quarantine let through; a log line for each text it held back (R5.3)."""
        effects: list[Effect] = [
            fx.Log(logging.WARNING, f"{self.name}: withheld from #{self.spec.channel} "
                                 f"({q.reason.value}): {redact(q.text)[:300]}")
            for q in self.output.take_quarantined()]
        effects += [  # R5.8: what passed the turn's cap is in the log whole
            fx.Log(logging.INFO, f"{self.name}: over the turn's output cap, not posted to "
                                 f"#{self.spec.channel}: {text}")
            for text in self.output.take_withheld()]
        return effects + [fx.Post(text, self.hops) for text in texts]

    def _expect(self, *states: RunState, event: str) -> None:
        if self.state not in states:
            raise LifecycleError(f"{self.name}: {event} while {self.state.value}")
