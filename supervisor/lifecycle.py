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

Rule 4: a nudge stays in the durable queue until the turn that answers it has ended: the
`result` lists the uuids of the user messages it answered (several, when the CLI folded
messages written during a turn into it), and `Answer` posts that turn's last texts and
dequeues those nudges in one transaction (R8.5). What a run took and did not answer —
it failed, was stopped, or the bot died — is still queued, marked attempted, and the next
run gets it again, in order, with a note (R4.11, R8.5).

Rule 3: an event that cannot happen in the current state raises `LifecycleError`. Output
and exits of an *earlier* process never get here: the executor drops them by run id.

The states (`RunState`, shared with `resolve`, whose table says what a nudge does):

    STOPPED --nudged: Spawn/Resume--> STARTING --started--> RUNNING --stop/kill--> STOPPING
       ^                                 | start_failed        |  exited              | exited
       +---------------------------------+---------------------+----------------------+

RUNNING is *idle* or *in a turn* (messages written and not yet answered). A run in
STOPPING knows why (`StopReason`); that reason, with the run's phase (`ExitPhase`: not yet
proven healthy, healthy between turns, or in a turn), picks the exit rule (`AFTER_EXIT`).
How a turn ended picks the turn rule (`AFTER_TURN`). Which timers are armed depends on the
phase (`TIMERS`); the same table gives `next_deadline` and drives `tick`, so the executor
can sleep until the next real deadline. The tables live in `supervisor.rules`.

A turn's live status (R13.7) is decided in `supervisor.progress`: the run feeds it the
turn's events and maps how the turn ended to the line's outcome and the messages' marks.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from crewbridge.supervisor import alerts, breaker
from crewbridge.supervisor import effects as fx
from crewbridge.supervisor.autopost import TurnOutput
from crewbridge.supervisor.breaker import Blocked, BlockReason, Health
from crewbridge.supervisor.control import PermissionAsk, PermissionWithdrawn, Verdict
from crewbridge.supervisor.effects import Effect
from crewbridge.supervisor.ports import (
    AgentConfig,
    AgentKind,
    AgentSpec,
    Conversation,
    Mark,
    QueuedNudge,
    TurnUsage,
)
from crewbridge.supervisor.progress import TurnProgress
from crewbridge.supervisor.protocol import AgentEvent, ApiError, Init, RateLimit, TurnResult
from crewbridge.supervisor.redact import redact
from crewbridge.supervisor.resolve import Deliver, Hold, Resume, RunState, Wait, resolve
from crewbridge.supervisor.rules import (
    AFTER_EXIT,
    AFTER_TURN,
    TIMERS,
    ExitOutcome,
    ExitPhase,
    Failure,
    StopReason,
    Timer,
    TurnEnd,
    TurnOutcome,
    delivery_text,
    health_key,
    policy,
    turn_end,
)

LIMIT_RETRY_S = 60
"""A rejected `rate_limit_event` without `resetsAt`: try again after this long."""

ERROR_TAIL_LINES = 10
"""The last stderr lines a failure's error keeps (the session keeps up to 64 KiB of them)."""


class LifecycleError(RuntimeError):
    """An event that cannot happen in the run's current state: a bug in the caller."""


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
        self.healthy = False
        self.spoke = False  # the process has written an event
        self.failure_counted = False  # a run counts one failure at most (a hung turn aside)
        self.last_failure: Failure | None = None  # what the next blocked notice says
        self.delivered: dict[str, QueuedNudge] = {}  # by uuid: written, not yet answered
        self.conversation: Conversation | None = None  # what the current turn answers (R3.6)
        self.held_back = False  # another conversation's messages wait for this turn's end
        self.process_cost = 0.0  # the running total of this process's results (R13.8)
        self.stopped_by: str | None = None  # who asked to stop the running turn (R13.6)
        self.pause_told = False  # its messages wait on a spent budget, and it was said (R13.8)
        self.limited_until: float | None = None  # the plan refuses turns until then (R13.8)
        self.interrupts = 0
        self.asks: dict[str, PermissionAsk] = {}  # by request id: waiting for a person (R13.1)
        self.progress: TurnProgress | None = None  # the open turn's live status (R13.7)
        self.unseen: dict[int, QueuedNudge] = {}  # written, not yet shown 👀 (R13.7)
        self.seen_due = 0.0  # when the oldest of `unseen` gets its 👀
        self.fork_from = spec.fork_from  # a fork's first start forks this session (R12.3)
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
        return bool(self.delivered)

    # --- what the executor reports ---------------------------------------------------------

    def nudged(self, queued: list[QueuedNudge], health: Health, now: float, *,
               start: bool = False, closing: bool = False,
               paused: str | None = None) -> list[Effect]:
        """The agent's queue is `queued`: deliver, hold, wait or start (`resolve`'s table);
        `start` starts it even with nothing queued; `closing` starts nothing. `paused`: why
        the agent may take no new turn now (its channel's daily budget is spent, R13.8) —
        its messages wait, and the latest sender hears it once per pause."""
        if paused is None and self.limited_until is not None and now < self.limited_until:
            paused = alerts.rate_limited(self.name, self.limited_until)
        if paused is not None:
            if not queued or self.pause_told:
                return self._waiting(queued)
            self.pause_told = True
            return [*self._waiting(queued),
                    fx.Notify(queued[-1].conversation(self.spec.channel), paused)]
        self.pause_told = False
        action = resolve(self.state, self.session_id, health, now)
        if isinstance(action, Deliver):
            return [] if closing else self._deliver(queued)
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
        self.healthy = self.failure_counted = self.spoke = False
        self.delivered, self.asks = {}, {}
        self.conversation, self.held_back = None, False
        self.process_cost = 0.0
        self.queue_retry_at = None
        self.output = TurnOutput(self.cfg.flush_interval_s, self.cfg.max_turn_output_chars)
        fork = None if isinstance(action, Resume) else self.fork_from
        self.resuming = action.session_id if isinstance(action, Resume) else fork
        return [*effects, fx.Spawn(self.run_id, self.resuming, fork=fork is not None)]

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
        verb = ("forked" if self.resuming and self.resuming == self.fork_from
                else "resumed" if self.resuming else "spawned")
        effects: list[Effect] = [fx.Log(logging.INFO, f"{verb} {self.name} (pid {pid})")]
        if pid is not None:
            effects.append(fx.RecordProcess(pid))
        return [*effects, fx.SaveSession(session_id), fx.OfferQueue()]

    def start_failed(self, error: str, health: Health, now: float) -> list[Effect]:
        """The process could not be started at all (R4.2)."""
        self._expect(RunState.STARTING, event="start_failed")
        self.state = RunState.STOPPED
        self.stopped_at = now
        return self._fail(error, health, now, Failure.START)

    def wrote(self, sent: list[tuple[str, QueuedNudge]], now: float) -> list[Effect]:
        """These nudges (a prefix of a `Write`) reached the session's stdin, each as a
        user message with that uuid. They stay queued until a result answers them, marked
        attempted from now on (R8.5)."""
        self._expect(RunState.RUNNING, event="wrote")
        if not sent:
            return []
        if self.progress is None:  # a turn begins (R13.7)
            self.progress = self._progress(now)
        self.delivered.update(sent)
        self.hops = sent[-1][1].hops
        self.last_activity = self.last_output = now
        still = self._still_unseen()
        if not still:  # the turn's first messages, or the earlier ones were answered
            self.seen_due = now + self.cfg.seen_after_s
        self.unseen = {q.id: q for q in [*still, *(q for _, q in sent)]}
        first_time = tuple(q.id for _, q in sent if not q.attempted)
        return [fx.MarkAttempted(first_time)] if first_time else []

    def saw(self, event: AgentEvent, health: Health, now: float) -> list[Effect]:
        """One event from the session's output (also while it is being stopped)."""
        self._expect(RunState.RUNNING, RunState.STOPPING, event="saw")
        self.last_output = self.last_activity = now
        self.spoke = True
        effects: list[Effect] = []
        if isinstance(event, Init) and event.session_id and event.session_id != self.session_id:
            self.session_id = event.session_id
            effects.append(fx.SaveSession(event.session_id))
        if isinstance(event, ApiError):
            effects.append(fx.Log(logging.WARNING,
                               f"{self.name}: API error {event.kind}: {redact(event.text)}"))
        if isinstance(event, RateLimit) and event.rejected:
            effects += self._rate_limited(event.resets_at or now + LIMIT_RETRY_S)
        if isinstance(event, PermissionAsk):
            self.asks[event.request_id] = event
            effects.append(fx.Ask(event, self.conversation or Conversation(self.spec.channel)))
        if isinstance(event, PermissionWithdrawn) and self.asks.pop(event.request_id, None):
            effects.append(fx.AskWithdrawn(event.request_id, alerts.ASK_WITHDRAWN))
        if self.progress is not None:
            self.progress.saw(event)
        posts = self._posted(self.output.feed(event, now), now)
        if isinstance(event, TurnResult):
            effects += self._turn_ended(event, posts, health, now) + self._end_status(None)
            if self.delivered:  # the CLI goes on with messages it queued: a turn of their own
                self.progress = self._progress(now)
            return effects
        return effects + self._posts(posts)

    def exited(self, code: int, stderr_tail: list[str], health: Health, now: float, *,
               open_task: bool = False) -> list[Effect]:
        """The process has exited and all its output has been read."""
        self._expect(RunState.RUNNING, RunState.STOPPING, event="exited")
        reason, uptime = self.stop_reason, now - self.started_at
        # A request the bot's own shutdown leaves open stays open: the resumed agent asks
        # again after the restart, and its card is still there to decide (R13.4).
        effects = [] if reason is StopReason.SHUTDOWN else self._withdraw_asks(
            alerts.ASK_SESSION_ENDED)
        effects += self._posts(self.output.end_of_stream(now))
        if self.pid is not None:
            effects.append(fx.ForgetProcess(self.pid))
        outcome = AFTER_EXIT[(reason, self._exit_phase())]
        self.state, self.pid, self.stop_reason = RunState.STOPPED, None, None
        self.stopped_at = now
        if outcome in (ExitOutcome.COUNT_FAILURE, ExitOutcome.CUT_SHORT):
            tail = " | ".join(stderr_tail[-ERROR_TAIL_LINES:])
            detail = f"exited with status {code} after {uptime:.1f}s"
            how = Failure.CUT_SHORT if outcome is ExitOutcome.CUT_SHORT else Failure.EXIT
            return effects + self._fail(f"{detail}: {tail}" if tail else detail, health, now,
                                        how)
        effects += [*self._end_status(alerts.turn_cut_off(self.name, str(reason))),
                    *self._mark(list(self.delivered.values()), Mark.WAITING)]
        self.delivered = {}  # still queued: the next run gets them (R8.5)
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

    def stop_turn(self, by: str) -> list[Effect] | None:
        """A person asked to stop the running turn (R13.6): send the CLI `interrupt`; the
        session lives on. None: there is no turn to stop."""
        if self.state is not RunState.RUNNING or not self.in_turn:
            return None
        self.stopped_by = by
        self.interrupts += 1
        return [fx.Interrupt(f"int_{self.run_id}_{self.interrupts}"),
                *self._withdraw_asks(alerts.ask_stopped(by))]

    def decide(self, request_id: str, verdict: Verdict, message: str,
               now: float) -> list[Effect] | None:
        """A person (or the bot's deadline) decided a request of this run (R13.1, R13.3).
        None: it does not wait any more (withdrawn, or the session that asked is gone)."""
        ask = self.asks.pop(request_id, None) if self.state is RunState.RUNNING else None
        if ask is None:
            return None
        self.last_output = self.last_activity = now  # the hung clock counts from the answer
        if self.progress is not None:
            self.progress.decided(request_id)
        return [fx.AnswerAsk(ask, verdict, message)]

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

    def tell_blocked(self, blocked: Blocked, queued: list[QueuedNudge], health: Health, *,
                     told: tuple[Conversation, ...] = ()) -> list[Effect]:
        """Messages wait for a start that is not allowed: say so once per block (R3.4),
        in the conversation of the latest, not again in one that was just `told` (R4.11)."""
        if not queued:
            return []
        home = self.spec.channel  # ⏸️, but a failed turn's messages keep their ❌ (R13.7)
        waiting = self._waiting([q for q in queued if q.conversation(home) not in told])
        h, notify = breaker.should_notify_blocked(health, blocked)
        if not notify:
            return waiting
        origin = queued[-1].conversation(home)
        if origin in told:
            return [*waiting, fx.SaveHealth(h)]
        how = self.last_failure.value if self.last_failure else "failed"
        return [*waiting, fx.SaveHealth(h),
                fx.Notify(origin, alerts.blocked_notice(self.name, blocked, how))]

    def waiting_for_slot(self, queued: list[QueuedNudge]) -> list[Effect]:
        """The start waits for a process slot (R3.7): its messages are marked waiting."""
        return self._waiting(queued)

    def reset(self, health: Health) -> list[Effect]:
        """An admin's `reset` or a successful `auth login` (R4.4, R6.5). The breaker's
        escalation stays open: "Recovered" waits for the agent to prove itself (R4.12)."""
        h, _closed = breaker.reset(health)
        return [fx.SaveHealth(h)]

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
        if timer is Timer.HUNG:  # a turn waiting for a person's decision is not hung
            return None if self.asks else self.last_output + cfg.turn_timeout_s
        if timer is Timer.IDLE:
            return self.last_activity + cfg.idle_stop_s
        if timer is Timer.RETRY_QUEUE:
            return None if closing else self.queue_retry_at
        if timer is Timer.LIMIT_RESET:
            return None if closing else self.limited_until
        if timer is Timer.STATUS:
            return None if self.progress is None else self.progress.next_due()
        if timer is Timer.SEEN:
            return self.seen_due if self._still_unseen() else None
        assert timer is Timer.ALWAYS_ON
        if not self.always_on or closing:
            return None
        allowed_at = (health.cooldown_until if health.state is breaker.BreakerState.CLOSED
                      else health.retry_at)
        return max(self.stopped_at, allowed_at)

    def _fire(self, timer: Timer, health: Health, now: float, closing: bool) -> list[Effect]:
        if timer is Timer.FLUSH:
            return self._posts(self._posted(self.output.tick(now), now))
        if timer is Timer.STATUS:
            text = self.progress.take(now) if self.progress is not None else None
            return [fx.ShowStatus(self._where(), text)] if text else []
        if timer is Timer.SEEN:
            seen, self.unseen = self._still_unseen(), {}
            return self._mark(seen, Mark.WORKING)
        if timer is Timer.HEALTHY:
            return self._proven(health)
        if timer is Timer.HUNG:
            minutes = self.cfg.turn_timeout_s / 60
            self.failure_counted = False  # a hung turn is a failure even after a healthy start
            return [*self._fail(f"turn hung: no output for {minutes:.0f} min", health, now,
                                Failure.CUT_SHORT),
                    fx.Alert(alerts.hung(self.name, minutes)), *self._kill(StopReason.HUNG)]
        if timer is Timer.IDLE:
            return self.stop_requested(StopReason.IDLE)
        if timer is Timer.LIMIT_RESET:
            self.limited_until, self.pause_told = None, False
            return [fx.Kick()]
        if timer is Timer.RETRY_QUEUE:
            g = breaker.gate(health, now)
            blocked_by_cooldown = isinstance(g, Blocked) and g.reason is BlockReason.COOLDOWN
            self.queue_retry_at = g.until if blocked_by_cooldown else None
            # A trial start after an open breaker is a nudge's to make (R4.4).
            return [fx.Kick()] if isinstance(g, breaker.Allowed) and not g.trial else []
        assert timer is Timer.ALWAYS_ON
        return [fx.Kick(start=True)]

    # --- rules shared by several events ----------------------------------------------------

    def _deliver(self, queued: list[QueuedNudge]) -> list[Effect]:
        """Write what this run has not been given yet, in order (R3.1, R3.5); a message an
        earlier run was given and did not answer carries a note (R8.5).

        One turn answers one conversation (R3.6): while a turn is open only messages of its
        conversation are written (the CLI folds them into it); the others wait in the queue
        until it ends. Between turns the oldest message picks the next conversation."""
        taken = {q.id for q in self.delivered.values()}
        waiting = [q for q in queued if q.id not in taken]
        if not waiting:
            return []
        home = self.spec.channel
        if not self.delivered or self.conversation is None:
            self.conversation = waiting[0].conversation(home)
        new = tuple(q for q in waiting if q.conversation(home) == self.conversation)
        self.held_back = len(new) < len(waiting)
        return [fx.Write(new, tuple(delivery_text(q) for q in new))]

    def _answered_by(self, result: TurnResult) -> list[str]:
        """The uuids of this run's messages the result answered. A CLI that does not list
        them answers in order: all but its `queued_turn_count` (or else one)."""
        if result.answered is not None:
            return [u for u in result.answered if u in self.delivered]
        waiting = list(self.delivered)
        if result.queued_turns is not None:
            return waiting[:max(0, len(waiting) - result.queued_turns)]
        return waiting[:1]

    def _usage(self, result: TurnResult) -> list[Effect]:
        """What the turn cost (R13.8): the CLI's own figure for the turn; without one, the
        growth of its running total since this process's previous result (a CLI whose
        total is per process)."""
        if result.turn_cost_usd is not None:
            cost = result.turn_cost_usd
        elif result.total_cost_usd is not None:
            cost = max(0.0, result.total_cost_usd - self.process_cost)
        else:
            return []
        self.process_cost = max(self.process_cost, result.total_cost_usd or 0.0)
        asked = tuple(self.delivered.values())
        return [fx.RecordUsage(TurnUsage(cost, result.input_tokens, result.output_tokens,
                                         asked, result.duration_s), self.conversation)]

    def _turn_ended(self, result: TurnResult, posts: list[str], health: Health,
                    now: float) -> list[Effect]:
        withdrawn = self._withdraw_asks(alerts.ASK_WITHDRAWN)
        usage = self._usage(result)  # recorded after the answer: it is not on its way
        limited = self.limited_until is not None and now < self.limited_until
        end = (TurnEnd.STOPPED if self.stopped_by and result.is_error
               else TurnEnd.RATE_LIMITED if limited and result.is_error else turn_end(result))
        stopped_by, self.stopped_by = self.stopped_by, None
        outcome = AFTER_TURN[(end, self.healthy)]
        if outcome is TurnOutcome.STOPPED:
            return withdrawn + self._stopped(posts, stopped_by or "someone") + usage
        if outcome is TurnOutcome.WAIT:  # still queued, marked attempted: answered after
            waiting = self._mark(list(self.delivered.values()), Mark.WAITING)
            self.delivered = {}
            return [*withdrawn, *self._posts(posts), *waiting, *usage,
                    fx.Log(logging.WARNING, f"{self.name}: refused by the plan's limit")]
        if outcome in (TurnOutcome.PROVEN, TurnOutcome.ANSWERED, TurnOutcome.NOTE_ERROR):
            answered = [self.delivered.pop(u) for u in self._answered_by(result)]
            effects = [*withdrawn, *self._posts(posts, answered=answered), *self._mark(
                answered, Mark.FAILED if outcome is TurnOutcome.NOTE_ERROR else Mark.ANSWERED),
                *usage]
            if not self.delivered and self.held_back:  # another conversation's turn (R3.6)
                self.held_back = False
                effects.append(fx.OfferQueue())
            if outcome is TurnOutcome.PROVEN:
                return effects + self._proven(health)
            if outcome is TurnOutcome.ANSWERED:
                return effects
        else:  # its messages stay queued for the next run
            effects = withdrawn + self._posts(posts) + usage
        error = redact(result.text or "; ".join(result.errors) or "error result")
        effects.append(fx.Log(logging.WARNING, f"{self.name}: turn failed: {error}"))
        if outcome is TurnOutcome.FORGET_SESSION:
            self.session_id = self.fork_from = None  # the next start is a fresh session
            self.delivered = {}
            return [*effects, fx.SaveSession(None), *self._kill(StopReason.UNKNOWN_SESSION)]
        if outcome is TurnOutcome.FAIL:
            auth = turn_end(result) is TurnEnd.AUTH
            failed = self._fail(error, health, now, Failure.TURN, auth=auth)
            return effects + failed + self._kill(StopReason.FAILED)
        return [*effects, fx.SaveError(error[:500]),
                *self._end_status(alerts.turn_failed(self.name, Failure.TURN.value))]

    def _withdraw_asks(self, why: str) -> list[Effect]:
        """Every request still waiting is no longer answerable (R13.3, R13.6)."""
        asks, self.asks = self.asks, {}
        return [fx.AskWithdrawn(request_id, why) for request_id in asks]

    def _rate_limited(self, until: float) -> list[Effect]:
        """The plan refuses turns until `until` (a rejected `rate_limit_event`, R13.8): the
        agent is paused, not failed; one notice, where the turn was answering."""
        first = self.limited_until is None
        self.limited_until = max(until, self.limited_until or 0.0)
        if not first:
            return []
        self.pause_told = True
        return [fx.Notify(self._where(), alerts.rate_limited(self.name, self.limited_until))]

    def _stopped(self, posts: list[str], by: str) -> list[Effect]:
        """A turn a person stopped (R13.6): not the agent's failure, its text is quarantined
        (the result is an error), and its messages count as answered — the person chose to
        end them, they are not delivered again (R8.5 is for turns the bot cut short)."""
        answered = list(self.delivered.values())
        self.delivered = {}
        shown = self._end_status(alerts.turn_stopped(self.name, by))  # the ⏳ line says it
        effects = [*self._posts(posts, answered=answered), *self._mark(answered, Mark.CLEARED),
                   *shown]
        if self.conversation is not None and not shown:
            effects.append(fx.Notify(self.conversation, alerts.turn_stopped(self.name, by)))
        if self.held_back:
            self.held_back = False
            effects.append(fx.OfferQueue())
        return effects

    def _proven(self, health: Health) -> list[Effect]:
        """The run proved healthy (R4.5): the breaker closes, and an open escalation is
        closed with "Recovered" — only now, not at an admin's reset (R4.12)."""
        if self.healthy:
            return []
        self.healthy = True
        h, _closed = breaker.succeeded(health)
        return [fx.SaveHealth(h), fx.Recover(f"breaker:{self.name}", alerts.recovered(self.spec))]

    def _exit_phase(self) -> ExitPhase:
        if self.delivered and (self.spoke or self.healthy):
            return ExitPhase.IN_TURN
        return ExitPhase.HEALTHY if self.healthy else ExitPhase.UNPROVEN

    def _fail(self, error: str, health: Health, now: float, how: Failure, *,
              auth: bool = False) -> list[Effect]:
        """Count one failure of this run (R4.2, R4.3), at most once per run. Its unanswered
        messages stay queued for the next run; when it failed in a turn, the people that
        turn was answering hear it once, in their conversation (R4.11)."""
        answering, self.delivered = list(self.delivered.values()), {}
        ended = [*self._end_status(alerts.turn_failed(self.name, how.value)),
                 *(self._mark(answering, Mark.FAILED) if how.while_answering else [])]
        if self.failure_counted:
            return ended
        self.failure_counted = True
        self.last_failure = how
        error = redact(error)
        h, opened = breaker.failed(health, now, policy(self.cfg, self.spec.kind), error,
                                   auth=auth)
        self.queue_retry_at = h.cooldown_until
        g = breaker.gate(h, now)
        blocked = g if isinstance(g, Blocked) else None
        told = tuple(dict.fromkeys(q.conversation(self.spec.channel) for q in answering)
                     ) if how.while_answering else ()
        effects: list[Effect] = [
            *ended, fx.Log(logging.WARNING, f"{self.name} failed: {error}"),
            fx.SaveHealth(h), fx.SaveError(error[:500]),
            *(fx.Notify(c, alerts.answer_cut_short(self.name, how.value, blocked)) for c in told),
            *(e for change in opened if isinstance(change, breaker.BreakerOpened)
              for e in self._opened(change, h))]
        return [*effects, fx.TellBlocked(blocked, told)] if blocked else effects

    # --- the live status and the marks (R13.7) ----------------------------------------------

    def _progress(self, now: float) -> TurnProgress:
        return TurnProgress(self.name, now, after_s=self.cfg.status_after_s,
                            interval_s=self.cfg.status_interval_s, workdir=self.spec.workdir)

    def _posted(self, posts: list[str], now: float) -> list[str]:
        """Posted output shows the turn is alive: the ⏳ line waits again."""
        if posts and self.progress is not None:
            self.progress.posted(now)
        return posts

    def _end_status(self, outcome: str | None) -> list[Effect]:
        """The turn's live status ends: a line that was shown is removed (None) or edited
        into `outcome`. The first end of a turn wins; the later ones find nothing."""
        progress, self.progress = self.progress, None
        if progress is None or progress.shown is None:
            return []
        return [fx.EndStatus(self._where(), outcome)]

    def _still_unseen(self) -> list[QueuedNudge]:
        """The nudges of the open turn not yet shown 👀: a turn answered within
        `seen_after_s` gets ✅ alone, so a quick answer is not preceded by 👀 and typing
        that are gone again a moment later (nor waits behind them on the platform)."""
        taken = {q.id for q in self.delivered.values()}
        return [q for i, q in self.unseen.items() if i in taken]

    @staticmethod
    def _mark(nudges: list[QueuedNudge], mark: Mark) -> list[Effect]:
        """`mark` on the people's messages the nudges came from (an agent's have none)."""
        messages = tuple(dict.fromkeys(q.message for q in nudges if q.message is not None))
        return [fx.Mark(messages, mark)] if messages else []

    def _waiting(self, queued: list[QueuedNudge]) -> list[Effect]:
        """⏸️ on queued messages that wait; what the open turn works on does not."""
        taken = {q.id for q in self.delivered.values()}
        return self._mark([q for q in queued if q.id not in taken], Mark.WAITING)

    def _where(self) -> Conversation:
        return self.conversation or Conversation(self.spec.channel)

    def _opened(self, e: breaker.BreakerOpened, h: Health) -> list[Effect]:
        error = redact(e.last_error)[:300]
        key = f"breaker:{self.name}"
        if e.auth:  # one alert for the login, whoever notices it first (R6.2)
            return [fx.Escalate("auth", error, alerts.auth_expired(self.name, error)),
                    fx.Escalate(key, error, None)]
        return [fx.Escalate(key, error, alerts.breaker_opened(self.spec, e.failures, error,
                                                           h.retry_at))]

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

    def _posts(self, texts: list[str], *,
               answered: list[QueuedNudge] | None = None) -> list[Effect]:
        """Posts the quarantine let through; a log line for each text it held back (R5.3).
        At the end of a turn that `answered` nudges, the posts go with their dequeue."""
        effects: list[Effect] = [
            fx.Log(logging.WARNING, f"{self.name}: withheld from #{self.spec.channel} "
                                 f"({q.reason.value}): {redact(q.text)[:300]}")
            for q in self.output.take_quarantined()]
        effects += [  # R5.8: what passed the turn's cap is in the log whole
            fx.Log(logging.INFO, f"{self.name}: over the turn's output cap, not posted to "
                                 f"#{self.spec.channel}: {text}")
            for text in self.output.take_withheld()]
        if answered is not None:
            return [*effects, fx.Answer(tuple(texts), self.hops, tuple(q.id for q in answered),
                                        self.conversation)]
        return effects + [fx.Post(text, self.hops, self.conversation) for text in texts]

    def _expect(self, *states: RunState, event: str) -> None:
        if self.state not in states:
            raise LifecycleError(f"{self.name}: {event} while {self.state.value}")
