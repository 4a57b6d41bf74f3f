"""The rules of an agent's run, as tables: what an exit, a turn's end and the time lead to.

`lifecycle.AgentRun` looks its decisions up here and carries them into effects; keeping the
tables apart keeps them readable at a glance and testable row by row
(tests/unit/test_lifecycle.py). Pure data and pure functions: no state, no I/O.
"""

from __future__ import annotations

from enum import Enum, StrEnum

from crewbridge.supervisor import alerts, breaker
from crewbridge.supervisor.breaker import Blocked, Health
from crewbridge.supervisor.ports import AgentConfig, AgentKind, AgentSpec, QueuedNudge
from crewbridge.supervisor.protocol import TurnResult, is_auth_failure, is_unknown_session
from crewbridge.supervisor.resolve import RunState


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


class ExitPhase(Enum):
    UNPROVEN = "not yet proven healthy"
    HEALTHY = "healthy, between turns"
    IN_TURN = "in a turn"  # messages written, unanswered, and the agent had begun on them


class ExitOutcome(Enum):
    COUNT_FAILURE = "count a failure"  # it never proved healthy (R4.2)
    CUT_SHORT = "count a failure, tell who waits"  # it died mid-turn (R4.11)
    RESTART_IF_WANTED = "restart if wanted"  # a healthy run crashed between turns (R4.7)
    RETRY_FRESH = "retry with a fresh session"  # (R4.10)
    DELIVER_QUEUE = "deliver what is queued"  # a planned stop; the next message resumes
    STAY_STOPPED = "stay stopped"  # its starter, its cooldown or the shutdown decides


AFTER_EXIT: dict[tuple[StopReason | None, ExitPhase], ExitOutcome] = {
    (None, ExitPhase.UNPROVEN):                   ExitOutcome.COUNT_FAILURE,
    (None, ExitPhase.HEALTHY):                    ExitOutcome.RESTART_IF_WANTED,
    (None, ExitPhase.IN_TURN):                    ExitOutcome.CUT_SHORT,
    (StopReason.UNKNOWN_SESSION, ExitPhase.UNPROVEN):ExitOutcome.RETRY_FRESH,
    (StopReason.UNKNOWN_SESSION, ExitPhase.HEALTHY):ExitOutcome.RETRY_FRESH,
    (StopReason.UNKNOWN_SESSION, ExitPhase.IN_TURN):ExitOutcome.RETRY_FRESH,
    (StopReason.ADMIN, ExitPhase.UNPROVEN):       ExitOutcome.DELIVER_QUEUE,
    (StopReason.ADMIN, ExitPhase.HEALTHY):        ExitOutcome.DELIVER_QUEUE,
    (StopReason.ADMIN, ExitPhase.IN_TURN):        ExitOutcome.DELIVER_QUEUE,
    (StopReason.IDLE, ExitPhase.UNPROVEN):        ExitOutcome.DELIVER_QUEUE,
    (StopReason.IDLE, ExitPhase.HEALTHY):         ExitOutcome.DELIVER_QUEUE,
    (StopReason.IDLE, ExitPhase.IN_TURN):         ExitOutcome.DELIVER_QUEUE,
    (StopReason.MAKE_ROOM, ExitPhase.UNPROVEN):   ExitOutcome.DELIVER_QUEUE,
    (StopReason.MAKE_ROOM, ExitPhase.HEALTHY):    ExitOutcome.DELIVER_QUEUE,
    (StopReason.MAKE_ROOM, ExitPhase.IN_TURN):    ExitOutcome.DELIVER_QUEUE,
    (StopReason.TASK_DONE, ExitPhase.UNPROVEN):   ExitOutcome.DELIVER_QUEUE,
    (StopReason.TASK_DONE, ExitPhase.HEALTHY):    ExitOutcome.DELIVER_QUEUE,
    (StopReason.TASK_DONE, ExitPhase.IN_TURN):    ExitOutcome.DELIVER_QUEUE,
    (StopReason.RESTART, ExitPhase.UNPROVEN):     ExitOutcome.STAY_STOPPED,
    (StopReason.RESTART, ExitPhase.HEALTHY):      ExitOutcome.STAY_STOPPED,
    (StopReason.RESTART, ExitPhase.IN_TURN):      ExitOutcome.STAY_STOPPED,
    (StopReason.SHUTDOWN, ExitPhase.UNPROVEN):    ExitOutcome.STAY_STOPPED,
    (StopReason.SHUTDOWN, ExitPhase.HEALTHY):     ExitOutcome.STAY_STOPPED,
    (StopReason.SHUTDOWN, ExitPhase.IN_TURN):     ExitOutcome.STAY_STOPPED,
    (StopReason.FAILED, ExitPhase.UNPROVEN):      ExitOutcome.STAY_STOPPED,
    (StopReason.FAILED, ExitPhase.HEALTHY):       ExitOutcome.STAY_STOPPED,
    (StopReason.FAILED, ExitPhase.IN_TURN):       ExitOutcome.STAY_STOPPED,
    (StopReason.HUNG, ExitPhase.UNPROVEN):        ExitOutcome.STAY_STOPPED,
    (StopReason.HUNG, ExitPhase.HEALTHY):         ExitOutcome.STAY_STOPPED,
    (StopReason.HUNG, ExitPhase.IN_TURN):         ExitOutcome.STAY_STOPPED,
}
"""(why it was stopping — None: nobody asked, its phase) -> outcome. What a stopped run
had not answered stays queued whatever the row: the next run gets it (R8.5)."""


class Failure(StrEnum):
    """What happened, as the notices say it (R4.11)."""

    START = "failed to start"  # the process could not be started
    EXIT = "stopped unexpectedly"  # it exited early, before it began on a message
    TURN = "failed while answering"  # a turn ended in an error
    CUT_SHORT = "stopped while answering"  # it exited, or hung, in the middle of a turn

    @property
    def while_answering(self) -> bool:
        return self in (Failure.TURN, Failure.CUT_SHORT)


class TurnEnd(Enum):
    OK = "ok"
    ERROR = "error"
    AUTH = "auth failure"
    UNKNOWN_SESSION = "unknown session"
    STOPPED = "stopped by a person"  # an interrupt it was sent (R13.6)
    RATE_LIMITED = "refused by the plan's limit"  # a rejected rate_limit_event (R13.8)


class TurnOutcome(Enum):
    PROVEN = "proven healthy"  # a good turn proves the run (R4.5)
    ANSWERED = "answered"  # only the unanswered messages could still go back
    FORGET_SESSION = "forget the session, requeue, kill"  # (R4.10)
    FAIL = "count a failure, kill"  # (R4.2, R6.2)
    NOTE_ERROR = "note the error"  # a healthy session's bad turn is the agent's business
    STOPPED = "answered, stopped"  # not a failure; its text is quarantined (R13.6)
    WAIT = "not answered, no failure"  # its messages wait for the limit's reset (R13.8)


AFTER_TURN: dict[tuple[TurnEnd, bool], TurnOutcome] = {
    (TurnEnd.OK, False): TurnOutcome.PROVEN,
    (TurnEnd.OK, True): TurnOutcome.ANSWERED,
    (TurnEnd.UNKNOWN_SESSION, False): TurnOutcome.FORGET_SESSION,
    (TurnEnd.UNKNOWN_SESSION, True): TurnOutcome.FORGET_SESSION,
    (TurnEnd.AUTH, False): TurnOutcome.FAIL,
    (TurnEnd.AUTH, True): TurnOutcome.FAIL,
    (TurnEnd.ERROR, False): TurnOutcome.FAIL,
    (TurnEnd.ERROR, True): TurnOutcome.NOTE_ERROR,
    (TurnEnd.STOPPED, False): TurnOutcome.STOPPED,
    (TurnEnd.STOPPED, True): TurnOutcome.STOPPED,
    (TurnEnd.RATE_LIMITED, False): TurnOutcome.WAIT,
    (TurnEnd.RATE_LIMITED, True): TurnOutcome.WAIT,
}
"""(how the turn ended, whether the run had proven healthy) -> outcome."""


class Timer(Enum):
    FLUSH = "flush batched output"  # R5.2
    HEALTHY = "healthy after healthy_after_s"  # R4.5
    HUNG = "hung: no output in a turn for turn_timeout_s"  # R4.8
    IDLE = "idle stop after idle_stop_s"  # R4.8
    RETRY_QUEUE = "deliver the queue when the cooldown ends"  # R3.4, R4.3
    ALWAYS_ON = "restart an always_on lead when allowed"  # R4.1
    LIMIT_RESET = "deliver the queue when the plan's limit resets"  # R13.8
    STATUS = "show the live status of a quiet turn"  # R13.7
    SEEN = "show 👀 on the messages a turn has worked on for seen_after_s"  # R13.7


TIMERS: dict[tuple[RunState, bool], tuple[Timer, ...]] = {
    (RunState.STOPPED, False): (Timer.RETRY_QUEUE, Timer.ALWAYS_ON, Timer.LIMIT_RESET),
    (RunState.STARTING, False): (),
    (RunState.RUNNING, False): (Timer.FLUSH, Timer.HEALTHY, Timer.IDLE, Timer.LIMIT_RESET),
    (RunState.RUNNING, True): (Timer.FLUSH, Timer.HEALTHY, Timer.HUNG, Timer.SEEN,
                                Timer.STATUS),
    (RunState.STOPPING, False): (),
    (RunState.STOPPING, True): (),
}
"""(phase, in a turn) -> the timers armed, in the order `tick` fires them. Their deadlines
are `AgentRun._deadline`; what firing does is `AgentRun._fire`."""


def health_key(spec: AgentSpec) -> str:
    """Leads are keyed by channel, forks by channel and thread (R12.3), workers by task
    (R4.3): a new task starts with a clean slate."""
    if spec.kind is AgentKind.LEAD:
        return f"lead:{spec.channel}"
    if spec.kind is AgentKind.FORK:
        return f"fork:{spec.channel}/{spec.thread}"
    return f"task:{spec.task_id}" if spec.task_id else f"worker:{spec.name}"


def policy(cfg: AgentConfig, kind: AgentKind) -> breaker.Policy:
    lead = kind is not AgentKind.WORKER  # a fork is a lead's session
    return breaker.Policy(
        cooldown_s=cfg.spawn_failure_cooldown_s,
        max_failures=cfg.max_lead_restarts if lead else cfg.max_worker_restarts,
        reset_s=cfg.breaker_reset_s, max_reset_s=cfg.breaker_max_s)


def status_state(run: RunState, health: Health, now: float) -> str:
    """The state column of `status` (R6.4): a stopped agent that may not start says why."""
    if run is RunState.STOPPED and isinstance(breaker.gate(health, now), Blocked):
        return "cooling down" if health.state is breaker.BreakerState.CLOSED else "paused"
    return run.value


def delivery_text(q: QueuedNudge) -> str:
    """What the agent reads for a queued nudge: a re-delivery says so first (R8.5)."""
    return alerts.redelivered(q.text) if q.attempted else q.text


def turn_end(result: TurnResult) -> TurnEnd:
    if not result.is_error:
        return TurnEnd.OK
    if is_unknown_session(result):
        return TurnEnd.UNKNOWN_SESSION
    return TurnEnd.AUTH if is_auth_failure(result) else TurnEnd.ERROR
