"""One agent's run as a state machine: `supervisor.lifecycle` with its tables in
`supervisor.rules` (R3.4, R4.1–R4.12, R5.2, R5.3,
R6.2, R8.5). No processes, no asyncio: a run is built, told what happened with data and times,
and the effects it returns are compared — the exit, turn and timer tables row by row.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from crewbridge.supervisor import effects as fx
from crewbridge.supervisor.breaker import Blocked, BlockReason, BreakerState, Health, failed
from crewbridge.supervisor.effects import Effect
from crewbridge.supervisor.lifecycle import AgentRun, LifecycleError
from crewbridge.supervisor.ports import (
    AgentConfig,
    AgentKind,
    AgentSpec,
    Conversation,
    Mark,
    QueuedNudge,
    TurnUsage,
)
from crewbridge.supervisor.protocol import (
    AssistantText,
    Init,
    RateLimit,
    ToolUse,
    TurnResult,
    parse_line,
)
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.rules import (
    AFTER_EXIT,
    AFTER_TURN,
    TIMERS,
    ExitOutcome,
    ExitPhase,
    Failure,
    StopReason,
    TurnEnd,
    TurnOutcome,
    health_key,
    policy,
    status_state,
)
from crewbridge.supervisor.session import agent_argv

CFG = AgentConfig(healthy_after_s=60, spawn_failure_cooldown_s=120, flush_interval_s=2,
                  idle_stop_s=1800, turn_timeout_s=900, max_lead_restarts=3,
                  status_after_s=100_000,  # the live status has tests of its own (R13.7)
                  seen_after_s=0)  # 👀 at once, shown by `write` (its delay: tests below)
LEAD = AgentSpec("webui", AgentKind.LEAD, "webui")
WORKER = AgentSpec("dave", AgentKind.WORKER, "webui", task_id=7)
T0 = 1_000.0
OK = TurnResult(False, "success", "done", "sid", ())
ERROR = TurnResult(True, "error_during_execution", "tool exploded", "sid", ())
AUTH = TurnResult(True, "success", "Not logged in · Please run /login", "sid", ())
UNKNOWN = TurnResult(True, "error_during_execution", "", None,
                     ("No conversation found with session ID: sid",))
RESULTS = {TurnEnd.OK: OK, TurnEnd.ERROR: ERROR, TurnEnd.AUTH: AUTH,
           TurnEnd.UNKNOWN_SESSION: UNKNOWN}


def nudge(i: int, text: str = "hello", origin: str = "webui") -> QueuedNudge:
    """Queued nudge `i`, from a person's message `i` (where its marks go, R13.7)."""
    return QueuedNudge(i, "webui", text, 0, origin, message=i)


def thread_nudge(i: int, thread: int, text: str = "in a thread") -> QueuedNudge:
    return QueuedNudge(i, "webui", text, 0, "webui", thread=thread, message=i)


def uuid_of(q: QueuedNudge) -> str:
    """The uuid the tests' executor gave nudge `q` when it wrote it."""
    return f"u{q.id}"


def write(run: AgentRun, queued: tuple[QueuedNudge, ...], now: float = T0) -> None:
    """Deliver `queued` to a running run, as the executor would: written, told, marked
    attempted, and 👀 on the people's messages `seen_after_s` (here 0) later (R13.7)."""
    fresh = tuple(q.id for q in queued if not q.attempted)
    assert run.nudged(list(queued), Health(), now) == [
        fx.Write(queued, tuple(q.text for q in queued))]
    assert run.wrote([(uuid_of(q), q) for q in queued], now) == (
        [fx.MarkAttempted(fresh)] if fresh else [])
    assert run.tick(Health(), now) == [fx.Mark(tuple(q.id for q in queued), Mark.WORKING)]


def answers(*queued: QueuedNudge, is_error: bool = False) -> TurnResult:
    """The result of a turn that answered `queued` (its user_message_uuids)."""
    return TurnResult(is_error, "success", "done", "sid", (),
                      answered=tuple(uuid_of(q) for q in queued))


def kinds(effects: list[Effect]) -> list[type]:
    """The effect types in order, log lines left out (they are not behaviour)."""
    return [type(e) for e in effects if not isinstance(e, fx.Log)]


def of(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


def running(spec: AgentSpec = LEAD, *, healthy: bool = False, always_on: bool = False,
            queued: tuple[QueuedNudge, ...] = (nudge(1),), session_id: str | None = None
            ) -> AgentRun:
    """A run that was started (at T0, or healthy_after_s before T0 and proven `healthy` by
    the timer at T0), last active at T0, and written `queued` at T0 (a turn each)."""
    start = T0 - CFG.healthy_after_s if healthy else T0
    health = Health()
    run = AgentRun(spec, CFG, session_id=session_id, always_on=always_on)
    assert run.nudged(list(queued), health, start, start=True)[-1] == fx.Spawn(1, session_id)
    assert run.started("sid", 4242, start)[-1] == fx.OfferQueue()
    if healthy:
        assert kinds(run.tick(health, T0)) == [fx.SaveHealth, fx.Recover]
        assert run.saw(Init("sid", "model"), health, T0) == []
    if queued:
        write(run, queued)
    return run


# --- R3: a nudge, then a start ----------------------------------------------------------------


def test_r3_1_r3_5_spawn_start_and_deliver_in_order() -> None:
    """R3.1–R3.5, R8.5: a stopped agent with a queue is spawned; once started it asks for the
    queue and writes it in order, marked attempted first; what was written stays queued and
    is the open turn."""
    run = AgentRun(LEAD, CFG)
    assert run.nudged([nudge(1)], Health(), T0) == [fx.Spawn(1, None)]
    assert run.state is RunState.STARTING
    assert run.nudged([nudge(1), nudge(2)], Health(), T0) == []  # Hold: the start gets them
    effects = run.started("new-sid", 4242, T0)
    assert kinds(effects) == [fx.RecordProcess, fx.SaveSession, fx.OfferQueue]
    assert of(effects, fx.SaveSession) == [fx.SaveSession("new-sid")]
    queued = [nudge(1), nudge(2)]
    assert run.nudged(queued, Health(), T0) == [fx.Write(tuple(queued), ("hello", "hello"))]
    assert run.wrote([("u1", queued[0])], T0 + 1) == [  # the second write failed:
        fx.MarkAttempted((1,))]  # only what reached the agent counts as attempted
    assert (run.state, run.in_turn, run.session_id) == (RunState.RUNNING, True, "new-sid")
    assert list(run.delivered) == ["u1"]


def test_r3_2_a_known_session_is_resumed() -> None:
    """R3.2: with a session id the start is a resume of it."""
    run = AgentRun(LEAD, CFG, session_id="old")
    assert run.nudged([nudge(1)], Health(), T0) == [fx.Spawn(1, "old")]


def test_r3_4_blocked_start_notifies_once_per_block_and_retries_at_cooldown_end() -> None:
    """R3.4, R4.3: a nudge during a cooldown is kept and told once, from its origin; the
    queue is retried when the cooldown ends."""
    h, _ = failed(Health(), T0, policy(CFG, AgentKind.LEAD), "exit 2")
    run = AgentRun(LEAD, CFG)
    effects = run.nudged([nudge(1, origin="general")], h, T0 + 1)
    assert kinds(effects) == [fx.Mark, fx.SaveHealth, fx.Notify]
    assert of(effects, fx.Mark) == [fx.Mark((1,), Mark.WAITING)]  # R13.7
    assert of(effects, fx.Notify)[0].where == Conversation("general")
    assert "cooling down" in of(effects, fx.Notify)[0].text
    noticed = of(effects, fx.SaveHealth)[0].health
    assert run.nudged([nudge(1), nudge(2)], noticed, T0 + 2) == [  # no second notice
        fx.Mark((1, 2), Mark.WAITING)]
    assert run.next_deadline(noticed) == T0 + 120
    assert run.tick(noticed, T0 + 119) == []
    assert run.tick(noticed, T0 + 120) == [fx.Kick()]
    assert run.next_deadline(noticed) is None  # retried once; nothing more is timed


def test_r4_4_an_open_breaker_is_not_retried_by_the_timer() -> None:
    """R4.4: after the breaker's wait only a nudge makes the trial start."""
    h = Health()
    for i in range(3):
        h, _ = failed(h, T0, policy(CFG, AgentKind.LEAD), f"exit {i}")
    run = AgentRun(LEAD, CFG)
    run.queue_retry_at = T0 + 120
    assert run.tick(h, T0 + 700) == []
    effects = run.nudged([nudge(1)], h, T0 + 700)  # the trial
    assert kinds(effects) == [fx.SaveHealth, fx.Spawn]
    assert of(effects, fx.SaveHealth)[0].health.state is BreakerState.HALF_OPEN


def test_r4_2_a_failed_spawn_counts_and_requeues_nothing_it_did_not_take() -> None:
    """R4.2, R4.3: a command that cannot start is a failure with a cooldown and a notice."""
    run = AgentRun(LEAD, CFG)
    run.nudged([nudge(1)], Health(), T0)
    effects = run.start_failed("agent command not found: nope", Health(), T0)
    assert kinds(effects) == [fx.SaveHealth, fx.SaveError, fx.TellBlocked]
    h = of(effects, fx.SaveHealth)[0].health
    assert (h.failures, h.cooldown_until) == (1, T0 + 120)
    assert of(effects, fx.TellBlocked)[0].blocked == Blocked(T0 + 120, BlockReason.COOLDOWN)
    assert run.state is RunState.STOPPED


# --- the exit table (R4.2, R4.7, R4.8, R4.10) ---------------------------------------------------


def test_exit_table_is_total() -> None:
    """Every stop reason, in every phase, has exactly one exit rule."""
    assert set(AFTER_EXIT) == {(r, p) for r in (None, *StopReason) for p in ExitPhase}


EXIT_ROWS = {
    # (stop reason, healthy, worker has an open task, always_on) -> expected effects
    "r4_2-early-exit-is-a-failure": (None, False, False, False,
                                     [fx.ForgetProcess, fx.SaveHealth, fx.SaveError,
                                      fx.TellBlocked]),
    "r4_7-healthy-crash-stays-down": (None, True, False, False, [fx.ForgetProcess, fx.Kick]),
    "r4_7-healthy-crash-always-on-restarts": (None, True, False, True,
                                              [fx.ForgetProcess, fx.Kick]),
    "r4_7-healthy-crash-worker-with-task-restarts": (None, True, True, False,
                                                     [fx.ForgetProcess, fx.Kick]),
    "r4_10-unknown-session-retries-fresh": (StopReason.UNKNOWN_SESSION, False, False, False,
                                            [fx.ForgetProcess, fx.Mark, fx.Kick]),
    "r4_8-idle-stop-delivers-later-queue": (StopReason.IDLE, True, False, False,
                                            [fx.ForgetProcess, fx.Kick]),
    "r6_4-admin-stop-delivers-later-queue": (StopReason.ADMIN, False, False, False,
                                             [fx.ForgetProcess, fx.Mark, fx.Kick]),
    "r3_7-make-room-delivers-later-queue": (StopReason.MAKE_ROOM, True, False, False,
                                            [fx.ForgetProcess, fx.Kick]),
    "r3_7-make-room-before-healthy-is-no-failure": (StopReason.MAKE_ROOM, False, False, False,
                                                    [fx.ForgetProcess, fx.Mark, fx.Kick]),
    "r7_3-task-done-delivers-later-queue": (StopReason.TASK_DONE, True, False, False,
                                            [fx.ForgetProcess, fx.Kick]),
    "r4_8-hung-stays-stopped": (StopReason.HUNG, True, False, False, [fx.ForgetProcess]),
    "r4_2-failed-stays-stopped": (StopReason.FAILED, False, False, False,
                                  [fx.ForgetProcess, fx.Mark]),
    "r6_4-restart-is-started-by-the-admin": (StopReason.RESTART, True, False, False,
                                             [fx.ForgetProcess]),
    "r4_9-shutdown-stays-stopped": (StopReason.SHUTDOWN, True, False, False,
                                    [fx.ForgetProcess]),
}


@pytest.mark.parametrize(("reason", "healthy", "open_task", "always_on", "expected"),
                         EXIT_ROWS.values(), ids=EXIT_ROWS.keys())
def test_exit_rules_row_by_row(reason: StopReason | None, healthy: bool, open_task: bool,
                               always_on: bool, expected: list[type]) -> None:
    """R4.2, R4.7, R4.8, R4.10: what an exit leads to, by why the run was stopping and
    whether it had proven healthy."""
    spec = WORKER if open_task else LEAD
    run = running(spec, healthy=healthy, always_on=always_on,
                  queued=() if healthy else (nudge(1),))  # a healthy one between turns
    if reason is not None:
        run.state, run.stop_reason = RunState.STOPPING, reason
    effects = run.exited(2, ["boom"], Health(), T0 + 5, open_task=open_task)
    assert kinds(effects) == expected
    assert (run.state, run.in_turn) == (RunState.STOPPED, False)
    kicks = of(effects, fx.Kick)
    if reason is None and healthy:  # R4.7: only a wanted run comes back with an empty queue
        assert kicks == [fx.Kick(start=always_on or open_task)]
    if reason is None and not healthy:
        error = of(effects, fx.SaveError)[0].error
        assert error == "exited with status 2 after 5.0s: boom"
        assert "stopped unexpectedly" in run.tell_blocked(
            of(effects, fx.TellBlocked)[0].blocked, [nudge(1)], Health())[-1].text


def test_r4_2_failures_count_once_per_run() -> None:
    """R4.2: a failed turn, another one read before the kill took effect, and the exit that
    follows are one failure, not three."""
    run = running(queued=(nudge(1), nudge(2)))
    effects = run.saw(ERROR, Health(), T0 + 1)
    assert len(of(effects, fx.SaveHealth)) == 1 and of(effects, fx.Kill) == [fx.Kill()]
    h = of(effects, fx.SaveHealth)[0].health
    assert kinds(run.saw(ERROR, h, T0 + 1)) == [fx.Kill]
    assert of(run.exited(-9, [], h, T0 + 2), fx.SaveHealth) == []


# --- the turn table (R4.2, R4.5, R4.10, R6.2) --------------------------------------------------


def test_turn_table_is_total() -> None:
    assert set(AFTER_TURN) == {(end, h) for end in TurnEnd for h in (False, True)}


TURN_ROWS = {
    # (how the turn ended, healthy) -> (effects, state after, stop reason)
    "r4_5-first-good-turn-proves-healthy": (TurnEnd.OK, False,
                                            [fx.Answer, fx.Mark, fx.SaveHealth, fx.Recover],
                                            RunState.RUNNING, None),
    "r4_5-later-good-turn-answers": (TurnEnd.OK, True, [fx.Answer, fx.Mark], RunState.RUNNING,
                                     None),
    "r4_2-first-turn-error-fails-and-kills": (TurnEnd.ERROR, False,
                                              [fx.Mark, fx.SaveHealth, fx.SaveError,
                                               fx.Notify, fx.TellBlocked, fx.Kill],
                                              RunState.STOPPING, StopReason.FAILED),
    "r4_2-healthy-turn-error-is-noted": (TurnEnd.ERROR, True,
                                         [fx.Answer, fx.Mark, fx.SaveError],
                                         RunState.RUNNING, None),
    "r6_2-auth-fails-even-when-healthy": (TurnEnd.AUTH, True,
                                          [fx.Mark, fx.SaveHealth, fx.SaveError, fx.Notify,
                                           fx.Escalate, fx.Escalate, fx.TellBlocked, fx.Kill],
                                          RunState.STOPPING, StopReason.FAILED),
    "r4_10-unknown-session-forgets-and-requeues": (TurnEnd.UNKNOWN_SESSION, False,
                                                   [fx.SaveSession, fx.Kill],
                                                   RunState.STOPPING,
                                                   StopReason.UNKNOWN_SESSION),
}


@pytest.mark.parametrize(("end", "healthy", "expected", "state", "reason"),
                         TURN_ROWS.values(), ids=TURN_ROWS.keys())
def test_turn_rules_row_by_row(end: TurnEnd, healthy: bool, expected: list[type],
                               state: RunState, reason: StopReason | None) -> None:
    """R4.2, R4.5, R4.10, R6.2, R8.5: what the end of a turn leads to. A turn that answered
    dequeues its message with its posts (`Answer`); one that failed leaves it queued."""
    run = running(healthy=healthy, session_id="sid")
    effects = run.saw(RESULTS[end], Health(), T0 + 1)
    assert kinds(effects) == expected
    assert (run.state, run.stop_reason, run.in_turn) == (state, reason, False)
    assert [a.ids for a in of(effects, fx.Answer)] == [(1,)] * (fx.Answer in expected)
    if end is TurnEnd.UNKNOWN_SESSION:
        assert run.session_id is None and of(effects, fx.SaveSession) == [fx.SaveSession(None)]
    if end is TurnEnd.AUTH:  # R6.2: the breaker opens at once, one alert for the login
        assert of(effects, fx.SaveHealth)[0].health.state is BreakerState.OPEN
        assert [e.key for e in of(effects, fx.Escalate)] == ["auth", "breaker:webui"]
        assert "Agent auth:" in (of(effects, fx.Escalate)[0].alert or "")


def test_r3_4_r4_11_a_hung_turn_tells_only_the_people_it_was_answering() -> None:
    """R3.4, R4.11: answered messages are done with; a later hang tells only the
    conversation whose message was still open, and the run holds nothing any more."""
    run = running(queued=(nudge(1, origin="general"),), healthy=True)
    assert fx.OfferQueue() not in run.saw(answers(nudge(1)), Health(), T0 + 1)  # none waits
    write(run, (nudge(2, origin="webui"),), T0 + 1)  # the next conversation's turn hangs
    effects = run.tick(Health(), T0 + 1 + 900)
    assert [(n.where, n.text.split(";")[0]) for n in of(effects, fx.Notify)] == [
        (Conversation("webui"), "webui stopped while answering")]
    assert of(effects, fx.TellBlocked)[0].told == (Conversation("webui"),)
    assert not run.in_turn


def test_r3_6_one_turn_answers_one_conversation() -> None:
    """R3.6: while a turn is open only its conversation's messages are written (the CLI
    folds them in); another conversation's wait in the queue until the turn has ended, and
    then the oldest waiting picks the next turn's conversation."""
    top, in_thread = Conversation("webui"), Conversation("webui", 7)
    first, other, same = nudge(1), thread_nudge(2, 7), nudge(3)
    run = running(queued=(first,))
    effects = run.nudged([first, other, same], Health(), T0 + 1)
    assert of(effects, fx.Write) == [fx.Write((same,), (same.text,))]
    run.wrote([(uuid_of(same), same)], T0 + 1)
    assert run.conversation == top
    ended = run.saw(answers(first, same), Health(), T0 + 2)
    assert of(ended, fx.Answer)[0].conversation == top and fx.OfferQueue() in ended
    assert of(run.nudged([other], Health(), T0 + 3), fx.Write) == [
        fx.Write((other,), (other.text,))]
    run.wrote([(uuid_of(other), other)], T0 + 3)
    run.saw(AssistantText("in the thread"), Health(), T0 + 4)
    assert of(run.saw(answers(other), Health(), T0 + 5), fx.Answer) == [
        fx.Answer(("in the thread",), 0, (2,), in_thread)]


def test_r4_10_after_a_session_is_forgotten_the_next_start_is_fresh() -> None:
    """R4.10: after "No conversation found" the exit retries and the start is a spawn."""
    run = running(session_id="sid")
    run.saw(UNKNOWN, Health(), T0 + 1)
    assert of(run.exited(1, [], Health(), T0 + 2), fx.Kick) == [fx.Kick()]
    assert run.nudged([nudge(1)], Health(), T0 + 3) == [fx.Spawn(2, None)]


def test_r5_3_quarantined_text_is_logged_not_posted() -> None:
    """R5.3: text held when the turn fails is never a Post; it is logged."""
    run = running(healthy=True)
    assert run.saw(AssistantText("API Error: 500"), Health(), T0 + 1) == []
    effects = run.saw(ERROR, Health(), T0 + 2)
    assert of(effects, fx.Post) == []
    assert any("withheld" in e.text for e in of(effects, fx.Log))


def test_r3_2_init_with_a_new_session_id_is_saved() -> None:
    """R3.2: the session id the CLI reports is the one resumed next time."""
    run = running()
    assert run.saw(Init("other", "model"), Health(), T0 + 1) == [fx.SaveSession("other")]
    assert run.saw(Init("other", "model"), Health(), T0 + 2) == []


# --- the timer table (R4.1, R4.5, R4.8, R5.2) ---------------------------------------------------


def test_timer_table_covers_every_phase() -> None:
    assert set(TIMERS) >= {(s, False) for s in RunState}


TIMER_ROWS = {
    # (healthy, in a turn, time after T0) -> (effects, state after)
    "r4_5-not-yet-healthy": (False, False, 59, [], RunState.RUNNING),
    "r4_5-healthy-after-60s": (False, False, 60, [fx.SaveHealth, fx.Recover],
                               RunState.RUNNING),
    "r4_8-in-turn-not-yet-hung": (True, True, 899, [], RunState.RUNNING),
    "r4_8-hung-turn-fails-alerts-kills": (True, True, 900,
                                          [fx.Mark, fx.SaveHealth, fx.SaveError, fx.Notify,
                                           fx.TellBlocked, fx.Alert, fx.Kill],
                                          RunState.STOPPING),
    "r4_8-idle-not-yet": (True, False, 1799, [], RunState.RUNNING),
    "r4_8-idle-stop": (True, False, 1800, [fx.Terminate], RunState.STOPPING),
}


@pytest.mark.parametrize(("healthy", "in_turn", "after", "expected", "state"),
                         TIMER_ROWS.values(), ids=TIMER_ROWS.keys())
def test_timer_rules_row_by_row(healthy: bool, in_turn: bool, after: float,
                                expected: list[type], state: RunState) -> None:
    """R4.5, R4.8: what the time does to a running session."""
    run = running(healthy=healthy, queued=(nudge(1),) if in_turn else ())
    assert run.next_deadline(Health()) == T0 + min(
        [60] * (not healthy) + ([900] if in_turn else [1800]))
    effects = run.tick(Health(), T0 + after)
    assert kinds(effects) == expected
    assert run.state is state
    if fx.Alert in expected:
        assert "hung" in of(effects, fx.Alert)[0].text
        assert run.stop_reason is StopReason.HUNG


def test_r4_8_a_hung_turn_is_counted_once_even_when_the_timer_fires_again() -> None:
    """R4.8: while the kill is in flight the timers leave the run alone."""
    run = running(healthy=True)
    assert fx.Kill in kinds(run.tick(Health(), T0 + 900))
    assert run.tick(Health(), T0 + 901) == [] and run.next_deadline(Health()) is None


def test_r5_2_flush_deadline_posts_a_batch() -> None:
    """R5.2: proven text waits at most flush_interval_s."""
    run = running(healthy=True)
    run.saw(AssistantText("part 1"), Health(), T0 + 1)
    run.saw(ToolUse("t1", "Bash"), Health(), T0 + 1)
    assert run.next_deadline(Health()) == T0 + 3
    assert run.tick(Health(), T0 + 3) == [fx.Post("part 1", 0, Conversation("webui"))]


def test_r4_1_always_on_lead_is_restarted_when_allowed() -> None:
    """R4.1: a stopped always_on lead is kicked with start once its gate allows it."""
    run = running(always_on=True, healthy=True)
    run.stop_requested(StopReason.ADMIN)
    run.exited(0, [], Health(), T0 + 10)
    h, _ = failed(Health(), T0 + 10, policy(CFG, AgentKind.LEAD), "x")
    assert run.next_deadline(h) == T0 + 130
    assert run.tick(h, T0 + 129) == []
    assert fx.Kick(start=True) in run.tick(h, T0 + 130)
    assert run.next_deadline(Health(), closing=True) is None  # R4.9: no restarts on the way out


def test_a_stopped_run_without_a_queue_or_always_on_has_no_deadline() -> None:
    """The timer sleeps for ever for an idle crew (issue 8 item 6)."""
    run = running(healthy=True)
    run.stop_requested(StopReason.IDLE)
    run.exited(0, [], Health(), T0 + 1800)
    assert run.next_deadline(Health()) is None


# --- stops, admin, illegal transitions --------------------------------------------------------


def test_r4_9_shutdown_takes_over_a_stop_in_flight() -> None:
    """R4.9: a shutdown waits for every exit, also of a run already being stopped."""
    run = running(healthy=True)
    assert run.stop_requested(StopReason.IDLE) == [fx.Terminate()]
    assert run.stop_requested(StopReason.ADMIN) == []
    assert run.stop_requested(StopReason.SHUTDOWN) == [fx.Terminate()]
    assert run.stop_reason is StopReason.SHUTDOWN


def test_r6_4_restart_skips_a_cooldown_but_not_an_open_breaker() -> None:
    """R6.4: an admin's restart clears a cooldown; an open breaker needs `reset`."""
    h, _ = failed(Health(), T0, policy(CFG, AgentKind.LEAD), "x")
    run = AgentRun(LEAD, CFG)
    assert run.admin_restart(Health(), T0) == []
    assert run.admin_restart(h, T0 + 1) == [fx.SaveHealth(replace(h, cooldown_until=0.0))]
    opened, _ = failed(h, T0, policy(CFG, AgentKind.LEAD), "x", auth=True)
    assert run.admin_restart(opened, T0 + 1) is None


def test_r6_4_status_state_says_why_a_stopped_agent_waits() -> None:
    """R6.4: `status` shows a blocked stopped agent as cooling down or paused."""
    h, _ = failed(Health(), T0, policy(CFG, AgentKind.LEAD), "x")
    opened, _ = failed(h, T0, policy(CFG, AgentKind.LEAD), "x", auth=True)
    assert status_state(RunState.STOPPED, h, T0) == "cooling down"
    assert status_state(RunState.STOPPED, opened, T0) == "paused"
    assert status_state(RunState.RUNNING, h, T0) == "running"
    assert status_state(RunState.STOPPED, h, T0 + 120) == "stopped"


ILLEGAL = {
    "started-while-stopped": lambda run: run.started("sid", 1, T0),
    "started-while-running": lambda run: (running().started("sid", 1, T0)),
    "start-failed-while-running": lambda run: running().start_failed("x", Health(), T0),
    "event-for-a-stopped-run": lambda run: run.saw(OK, Health(), T0),
    "exit-of-a-stopped-run": lambda run: run.exited(0, [], Health(), T0),
    "wrote-while-stopped": lambda run: run.wrote([nudge(1)], T0),
    "start-withdrawn-while-stopped": lambda run: run.start_withdrawn(T0),
}


@pytest.mark.parametrize("call", ILLEGAL.values(), ids=ILLEGAL.keys())
def test_an_illegal_transition_raises(call) -> None:
    """An event that cannot happen in the run's state is a LifecycleError, not a no-op."""
    with pytest.raises(LifecycleError):
        call(AgentRun(LEAD, CFG))


def test_exit_outcomes_are_all_used() -> None:
    assert set(AFTER_EXIT.values()) == set(ExitOutcome)
    assert set(AFTER_TURN.values()) == set(TurnOutcome)


def test_r10_4_r2_6_every_cli_post_of_an_agent_counts_one_hop() -> None:
    """R10.4/R2.6: `crewbridge post` continues the chain of the nudge being answered, and
    each post counts, so a loop of CLI posts reaches the hop limit."""
    from crewbridge.supervisor.lifecycle import AgentRun
    from crewbridge.supervisor.ports import AgentConfig, AgentKind, AgentSpec

    run = AgentRun(AgentSpec("webui", AgentKind.LEAD, "webui"), AgentConfig())
    run.hops = 3  # the nudge it answers came after three agent-to-agent hops
    assert [run.cli_post_hops() for _ in range(4)] == [3, 4, 5, 6]


# --- R8.5: a nudge stays queued until the turn that answers it ends ----------------------------


def test_r8_5_a_folded_turn_answers_every_message_it_lists() -> None:
    """R8.5: messages the CLI folded into one turn are all answered by its result: its posts
    and their dequeue are one `Answer`."""
    run = running(queued=(nudge(1), nudge(2), nudge(3)), healthy=True)
    run.saw(AssistantText("both done"), Health(), T0 + 1)
    effects = run.saw(answers(nudge(1), nudge(2)), Health(), T0 + 2)
    assert of(effects, fx.Answer) == [fx.Answer(("both done",), 0, (1, 2), Conversation("webui"))]
    assert of(effects, fx.Post) == [] and run.in_turn  # the third is still open
    assert of(run.saw(answers(nudge(3)), Health(), T0 + 3), fx.Answer) == [
        fx.Answer((), 0, (3,), Conversation("webui"))]
    assert not run.in_turn


def test_r8_5_a_result_naming_no_message_of_this_run_answers_nothing() -> None:
    """R8.5: uuids the run did not write (another process's) dequeue nothing."""
    run = running(healthy=True)
    effects = run.saw(TurnResult(False, "success", "x", "sid", (), answered=("other",)),
                      Health(), T0 + 1)
    assert of(effects, fx.Answer) == [fx.Answer((), 0, (), Conversation("webui"))] and run.in_turn


def test_r8_5_a_cli_that_lists_no_uuids_answers_in_order() -> None:
    """R8.5: without `user_message_uuids`, all but the `queued_turn_count` are answered."""
    run = running(queued=(nudge(1), nudge(2), nudge(3)), healthy=True)
    effects = run.saw(TurnResult(False, "success", "x", "sid", (), queued_turns=1),
                      Health(), T0 + 1)
    assert of(effects, fx.Answer)[0].ids == (1, 2)


def test_r8_5_a_running_session_is_never_written_the_same_message_twice() -> None:
    """R8.5, R3.1: a delivered, unanswered nudge is still queued; the next pass over the
    queue writes only what is new."""
    run = running(healthy=True)
    assert run.nudged([nudge(1)], Health(), T0 + 1) == []
    assert run.nudged([nudge(1), nudge(2)], Health(), T0 + 1) == [
        fx.Write((nudge(2),), ("hello",))]


def test_r8_5_a_message_attempted_before_is_delivered_with_a_note() -> None:
    """R8.5: a nudge an earlier run took and did not answer comes with a one-line note."""
    again = replace(nudge(1, "[alice in #webui] deploy"), attempted=True)
    run = running(queued=())
    [write_effect] = run.nudged([again], Health(), T0)
    assert isinstance(write_effect, fx.Write)
    note, text = write_effect.texts[0].split("\n", 1)
    assert "earlier attempt" in note and "cut short" in note and text == again.text


def test_r4_9_r8_5_while_closing_nothing_more_is_written() -> None:
    """R4.9: once the bot is stopping, a running session is given nothing new; it waits,
    queued, for the next start."""
    run = running(healthy=True)
    assert run.nudged([nudge(1), nudge(2)], Health(), T0 + 1, closing=True) == []


def test_r4_9_r8_5_a_turn_cut_short_by_the_shutdown_answers_nothing() -> None:
    """R4.9, R8.5: a shutdown mid-turn dequeues nothing and counts nothing; the message
    stays queued (attempted) for the next start."""
    run = running(healthy=True, queued=(nudge(1),))
    assert run.stop_requested(StopReason.SHUTDOWN) == [fx.Terminate()]
    effects = run.exited(-15, [], Health(), T0 + 1)
    assert kinds(effects) == [fx.ForgetProcess, fx.Mark] and not run.in_turn
    assert of(effects, fx.Mark) == [fx.Mark((1,), Mark.WAITING)]  # R13.7: ⏸️, still queued


# --- R4.11: a session that dies mid-turn ---------------------------------------------------------


EXIT_IN_TURN_ROWS = {
    # (stop reason, healthy) -> outcome, for a run in a turn
    "r4_11-unproven-exit-mid-turn": (None, False, ExitOutcome.CUT_SHORT),
    "r4_11-healthy-exit-mid-turn-is-a-failure": (None, True, ExitOutcome.CUT_SHORT),
    "r4_9-shutdown-mid-turn-stays-stopped": (StopReason.SHUTDOWN, True,
                                             ExitOutcome.STAY_STOPPED),
    "r6_4-admin-stop-mid-turn-redelivers": (StopReason.ADMIN, True, ExitOutcome.DELIVER_QUEUE),
}


@pytest.mark.parametrize(("reason", "healthy", "outcome"), EXIT_IN_TURN_ROWS.values(),
                         ids=EXIT_IN_TURN_ROWS.keys())
def test_exit_in_turn_rows(reason: StopReason | None, healthy: bool,
                           outcome: ExitOutcome) -> None:
    """R4.9, R4.11: an exit in the middle of a turn, by why it was stopping."""
    assert AFTER_EXIT[(reason, ExitPhase.IN_TURN)] is outcome


def test_r4_11_a_healthy_session_dying_mid_turn_fails_and_tells_who_waits_once() -> None:
    """R4.11: a healthy session that exits mid-turn counts as a failure; each conversation
    whose message the turn was answering gets one notice, and the blocked notice is not
    sent there again."""
    run = running(healthy=True, queued=(nudge(1, origin="general"), nudge(2, origin="general")))
    run.saw(AssistantText("working on it"), Health(), T0 + 1)
    effects = run.exited(3, ["crashing"], Health(), T0 + 2)
    h = of(effects, fx.SaveHealth)[0].health
    assert h.failures == 1 and h.cooldown_until == T0 + 2 + 120  # R4.3
    notices = of(effects, fx.Notify)
    assert [n.where for n in notices] == [Conversation("general")]
    assert notices[0].text.startswith("webui stopped while answering; it will try again at ")
    [tell] = of(effects, fx.TellBlocked)
    assert tell.told == (Conversation("general"),)
    queued = [nudge(1, origin="general"), nudge(3, origin="general")]
    assert kinds(run.tell_blocked(tell.blocked, queued, h, told=tell.told)) == [fx.SaveHealth]
    assert not run.in_turn and of(effects, fx.Kick) == []  # the cooldown's timer retries


def test_r4_11_an_exit_before_the_agent_began_is_not_said_to_be_mid_answer() -> None:
    """R4.11: a process that exits at once, having said nothing, "stopped unexpectedly"."""
    run = running()
    effects = run.exited(2, [], Health(), T0 + 1)
    assert of(effects, fx.Notify) == []
    tell = of(effects, fx.TellBlocked)[0]
    text = run.tell_blocked(tell.blocked, [nudge(1)], Health())[-1].text
    assert text.startswith("webui stopped unexpectedly and is cooling down")


NOTICE_ROWS = {
    # how the run failed -> what the blocked notice says
    "r4_11-spawn-error-failed-to-start": ("start", "webui failed to start and is cooling down"),
    "r4_11-turn-error-failed-while-answering": ("turn",
                                                "webui failed while answering and is cooling"),
}


@pytest.mark.parametrize(("how", "expected"), NOTICE_ROWS.values(), ids=NOTICE_ROWS.keys())
def test_r4_11_notices_say_what_happened(how: str, expected: str) -> None:
    """R4.11: "failed to start" only when the process did not start; "failed while
    answering" when a turn failed."""
    run = AgentRun(LEAD, CFG)
    run.nudged([nudge(1)], Health(), T0)
    if how == "start":
        effects = run.start_failed("agent command not found: nope", Health(), T0)
    else:
        run.started("sid", 1, T0)
        write(run, (nudge(1),))
        effects = run.saw(answers(nudge(1), is_error=True), Health(), T0 + 1)
        assert [n.text.split(";")[0] for n in of(effects, fx.Notify)] == [
            "webui failed while answering"]
    tell = of(effects, fx.TellBlocked)[0]
    later = run.tell_blocked(tell.blocked, [nudge(2, origin="general")], Health())
    assert of(later, fx.Notify)[0].text.startswith(expected)
    assert run.last_failure is (Failure.START if how == "start" else Failure.TURN)


# --- R4.12: "Recovered" only after the agent proved itself --------------------------------------


def test_r4_12_a_reset_closes_the_breaker_but_says_nothing_recovered() -> None:
    """R4.12: an admin's reset closes the breaker and leaves the escalation open; the first
    good turn after it closes the escalation with "Recovered"."""
    h = Health()
    for i in range(3):
        h, _ = failed(h, T0, policy(CFG, AgentKind.LEAD), f"exit {i}")
    run = AgentRun(LEAD, CFG)
    effects = run.reset(h)
    assert kinds(effects) == [fx.SaveHealth]
    assert effects[0].health.state is BreakerState.CLOSED
    run = running()
    proven = run.saw(answers(nudge(1)), Health(), T0 + 1)
    assert of(proven, fx.Recover) == [fx.Recover("breaker:webui",
                                                 "✅ Recovered: webui (lead in #webui) is "
                                                 "running again.")]


# --- R3.7: slots ------------------------------------------------------------------------------


def test_r3_7_make_room_stops_only_an_idle_run_resumably() -> None:
    """R3.7, R4.8: an idle run chosen to make room is stopped like an idle stop (its session
    kept, its next nudge resumes it); one that began a turn meanwhile keeps running."""
    busy = running()
    assert busy.make_room() == [] and busy.state is RunState.RUNNING
    idle = running(queued=())
    assert idle.make_room() == [fx.Terminate()]
    assert (idle.state, idle.stop_reason) == (RunState.STOPPING, StopReason.MAKE_ROOM)
    assert idle.make_room() == []  # already stopping
    effects = idle.exited(0, [], Health(), T0 + 1)
    assert kinds(effects) == [fx.ForgetProcess, fx.Kick] and idle.session_id == "sid"
    assert idle.nudged([nudge(2)], Health(), T0 + 2) == [fx.Spawn(2, "sid")]  # resumed
    starting = AgentRun(LEAD, CFG)
    starting.nudged([nudge(1)], Health(), T0)
    assert starting.make_room() == []


def test_r3_7_a_wait_for_a_slot_is_not_uptime() -> None:
    """R3.7, R4.2: a start that waited 100 s for a slot and whose process then exits at once
    is a failure: uptime counts from the process, not from the nudge."""
    run = AgentRun(LEAD, CFG)
    assert run.nudged([nudge(1)], Health(), T0) == [fx.Spawn(1, None)]
    run.started("sid", 4242, T0 + 100)
    assert run.next_deadline(Health()) == T0 + 100 + CFG.healthy_after_s
    effects = run.exited(2, [], Health(), T0 + 101)
    assert of(effects, fx.SaveError)[0].error == "exited with status 2 after 1.0s"


def test_r3_7_r4_9_a_withdrawn_start_counts_nothing_and_takes_nothing() -> None:
    """R3.7, R4.9: a start that waited for a slot while the bot stopped goes back to stopped
    with no failure and nothing requeued (nothing was taken from the queue)."""
    run = AgentRun(LEAD, CFG, session_id="old")
    run.nudged([nudge(1)], Health(), T0)
    assert run.start_withdrawn(T0 + 5) == []
    assert run.state is RunState.STOPPED and run.session_id == "old"


# --- R12.3: forks -----------------------------------------------------------------------------

FORK = AgentSpec("webui/3", AgentKind.FORK, "webui", thread=42, fork_from="lead-sid")


def test_r12_3_a_forks_first_start_forks_the_leads_session_later_ones_resume_its_own() -> None:
    """R12.3: with no session of its own a fork starts by forking the lead's; once it has
    one, it resumes that; should the CLI not know the session any more, the next start is a
    fresh one (R4.10) rather than another fork of a session that is gone."""
    run = AgentRun(FORK, CFG)
    assert run.nudged([nudge(1)], Health(), T0) == [fx.Spawn(1, "lead-sid", fork=True)]
    run.started("fork-sid", 7, T0)
    run.stop_requested(StopReason.IDLE)
    run.exited(0, [], Health(), T0 + 1)
    assert run.nudged([nudge(2)], Health(), T0 + 2) == [fx.Spawn(2, "fork-sid")]
    run.started("fork-sid", 8, T0 + 2)
    write(run, (nudge(2),), T0 + 2)
    run.saw(UNKNOWN, Health(), T0 + 3)
    run.exited(1, [], Health(), T0 + 4)
    assert run.nudged([nudge(2)], Health(), T0 + 5) == [fx.Spawn(3, None)]


def test_r12_3_a_forks_breaker_is_keyed_by_channel_and_thread() -> None:
    """R12.3: two threads' forks fail apart; a fork counts failures like its lead."""
    assert health_key(FORK) == "fork:webui/42" != health_key(replace(FORK, thread=43))
    assert policy(CFG, AgentKind.FORK) == policy(CFG, AgentKind.LEAD)


def test_r12_3_a_forks_command_line() -> None:
    """R12.3: `--resume <lead> --fork-session --session-id <new>` (the installed CLI refuses
    `--session-id` with `--resume` unless `--fork-session` is given)."""
    argv = agent_argv(["sh"], session_id="new", resume="lead-sid", prompt="", fork=True)
    assert argv[-5:] == ["--resume", "lead-sid", "--fork-session", "--session-id", "new"]
    assert agent_argv(["sh"], session_id="s", resume="s", prompt="")[-2:] == ["--resume", "s"]
    assert agent_argv(["sh"], session_id="s", resume=None, prompt="p",  # R13.5: the policy last
                      flags=("--model", "opus"))[-4:] == ["--append-system-prompt", "p",
                                                          "--model", "opus"]


def test_r13_8_the_turns_own_cost_is_recorded_for_the_messages_it_answered() -> None:
    """R13.8: a turn is recorded at the CLI's own figure for it (its
    `model_usage_since_last_result`) when there is one — the running total is the session's
    and goes on across a resume — else at the growth of the process's running total; with
    the messages it answered (whose senders it is counted for)."""
    run = running(queued=(nudge(1),))
    resumed = replace(answers(nudge(1)), total_cost_usd=3.0, turn_cost_usd=0.02,
                      duration_s=4.5)
    [usage] = of(run.saw(resumed, Health(), T0 + 1), fx.RecordUsage)
    assert usage.usage.cost_usd == 0.02
    assert usage.usage.duration_s == 4.5  # R14.3: crewbridge_turn_seconds


def test_r13_8_without_a_turns_own_cost_its_the_growth_of_the_running_total() -> None:
    """R13.8: a CLI that gives only a per-process running total: each turn is its growth,
    and a new process starts from zero."""
    run = running(queued=(nudge(1),))
    first = replace(answers(nudge(1)), total_cost_usd=0.25, input_tokens=10, output_tokens=3)
    assert of(run.saw(first, Health(), T0 + 1), fx.RecordUsage) == [
        fx.RecordUsage(TurnUsage(0.25, 10, 3, (nudge(1),)), Conversation("webui"))]
    write(run, (nudge(2),), T0 + 2)
    second = replace(answers(nudge(2)), total_cost_usd=0.40)
    [usage] = of(run.saw(second, Health(), T0 + 3), fx.RecordUsage)
    assert abs(usage.usage.cost_usd - 0.15) < 1e-9 and usage.usage.asked == (nudge(2),)
    run.stop_requested(StopReason.IDLE)
    run.exited(0, [], Health(), T0 + 4)
    run.nudged([nudge(3)], Health(), T0 + 5)
    run.started("sid", 9, T0 + 5)
    write(run, (nudge(3),), T0 + 5)
    [usage] = of(run.saw(replace(answers(nudge(3)), total_cost_usd=0.05), Health(), T0 + 6),
                 fx.RecordUsage)
    assert usage.usage.cost_usd == 0.05


# --- R13.6: a person stops a turn -------------------------------------------------------------


def test_r13_6_a_stopped_turn_is_answered_not_failed_and_the_session_lives_on() -> None:
    """R13.6: `stop_turn` sends `interrupt`; the interrupted (error) result is no failure —
    no kill, no cooldown, no health change — its text is quarantined, its messages leave
    the queue (a person ended them), and one line says who stopped it."""
    run = running(queued=(nudge(1), nudge(2)), healthy=True)
    assert run.stop_turn("bob") == [fx.Interrupt("int_1_1")]
    run.saw(AssistantText("half an answer"), Health(), T0 + 1)
    interrupted = TurnResult(True, "error_during_execution", "", "sid", (),
                             answered=(uuid_of(nudge(1)),))
    effects = run.saw(interrupted, Health(), T0 + 2)
    assert kinds(effects) == [fx.Answer, fx.Mark, fx.Notify]
    assert of(effects, fx.Answer) == [fx.Answer((), 0, (1, 2), Conversation("webui"))]
    assert of(effects, fx.Mark) == [fx.Mark((1, 2), Mark.CLEARED)]  # R13.7: 👀 taken back
    assert of(effects, fx.Notify)[0].text == "⏹ webui stopped by bob."
    assert (run.state, run.in_turn) == (RunState.RUNNING, False)
    assert run.stop_turn("bob") is None  # nothing left to stop
    write(run, (nudge(3),), T0 + 3)
    effects = run.saw(replace(ERROR, answered=(uuid_of(nudge(3)),)), Health(), T0 + 4)
    assert fx.Notify not in map(type, effects)  # a later failed turn is not "stopped"


def test_r13_8_a_paused_agent_takes_no_new_turn_and_says_so_once() -> None:
    """R13.8: while its channel's budget is spent, nothing is written or started; the
    latest sender hears it once per pause; once it lifts, the queue is delivered."""
    run = running(queued=(), healthy=True)
    why = "⏸️ #webui has spent its $1.00 budget for today"
    told = run.nudged([nudge(1)], Health(), T0, paused=why)
    assert told == [fx.Mark((1,), Mark.WAITING), fx.Notify(Conversation("webui"), why)]
    assert run.nudged([nudge(1), nudge(2)], Health(), T0, paused=why) == [
        fx.Mark((1, 2), Mark.WAITING)]  # R13.7: ⏸️ on each, the notice once
    assert run.nudged([nudge(1), nudge(2)], Health(), T0) == [
        fx.Write((nudge(1), nudge(2)), ("hello", "hello"))]
    stopped = AgentRun(LEAD, CFG)
    assert kinds(stopped.nudged([nudge(3)], Health(), T0, paused=why)) == [fx.Mark, fx.Notify]
    assert stopped.state is RunState.STOPPED  # not started either


def test_r13_8_a_rejected_rate_limit_pauses_until_its_reset_without_a_failure() -> None:
    """R13.8: a `rate_limit_event` `rejected` pauses the agent until `resetsAt`, with one
    notice; the refused turn is no failure and its message stays queued; at the reset the
    queue is delivered again (with the note that an earlier attempt was cut short)."""
    run = running(queued=(nudge(1),), healthy=True)
    reset = T0 + 600
    [told] = run.saw(RateLimit("rejected", reset), Health(), T0 + 1)
    assert isinstance(told, fx.Notify) and "usage limit" in told.text
    assert run.saw(RateLimit("rejected", reset), Health(), T0 + 1) == []  # said once
    effects = run.saw(replace(ERROR, answered=(uuid_of(nudge(1)),)), Health(), T0 + 2)
    assert not of(effects, fx.Answer) and not of(effects, fx.SaveHealth)  # queued, no failure
    assert not of(effects, fx.Kill) and run.state is RunState.RUNNING
    again = replace(nudge(1), attempted=True)
    assert run.nudged([again], Health(), T0 + 3) == [  # paused: told already
        fx.Mark((1,), Mark.WAITING)]
    assert run.next_deadline(Health()) == reset
    assert run.tick(Health(), reset) == [fx.Kick()]
    [write] = of(run.nudged([again], Health(), reset), fx.Write)
    assert write.nudges == (again,) and write.texts != (again.text,)  # with the note


def test_r13_8_rate_limit_events_are_parsed() -> None:
    """R13.8: `rate_limit_event`'s status and `resetsAt` (seconds, or milliseconds)."""
    line = ('{"type":"rate_limit_event","rate_limit_info":{"status":"rejected",'
            '"resetsAt":1767225600}}')
    assert parse_line(line) == [RateLimit("rejected", 1767225600.0)]
    ms = line.replace("1767225600", "1767225600000")
    assert parse_line(ms) == [RateLimit("rejected", 1767225600.0)]
    assert parse_line('{"type":"rate_limit_event","rate_limit_info":{"status":"allowed"}}') \
        == [RateLimit("allowed", None)]
    assert parse_line('{"type":"rate_limit_event","rate_limit_info":"x"}') == []
