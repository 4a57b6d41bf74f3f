"""The live status and the marks of a run (R13.7), as `supervisor.lifecycle` decides them:
a quiet turn's ⏳ line (`ShowStatus`) after status_after_s and then at most every
status_interval_s, its end (`EndStatus`: removed, or edited into a failure or a stop), and
the marks on the people's messages (`Mark`: 👀 ✅ ⏸️ ❌). Driven like tests/unit/
test_lifecycle.py: data and times in, effects compared; the timers are run the way the
executor runs them, by `next_deadline` and `tick`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from crewbridge.supervisor import effects as fx
from crewbridge.supervisor.breaker import Health
from crewbridge.supervisor.control import PermissionAsk, Verdict
from crewbridge.supervisor.effects import Effect
from crewbridge.supervisor.lifecycle import AgentRun
from crewbridge.supervisor.ports import (
    AgentConfig,
    AgentKind,
    AgentSpec,
    Conversation,
    Mark,
    QueuedNudge,
)
from crewbridge.supervisor.protocol import AssistantText, RateLimit, ToolResult, ToolUse, TurnResult
from crewbridge.supervisor.rules import StopReason

CFG = AgentConfig(healthy_after_s=60, spawn_failure_cooldown_s=120, flush_interval_s=2,
                  turn_timeout_s=900, status_after_s=5, status_interval_s=3,
                  seen_after_s=0)  # 👀 at once (its delay has tests of its own)
LEAD = AgentSpec("webui", AgentKind.LEAD, "webui", workdir="/srv/webui")
T0 = 1_000.0
HERE = Conversation("webui")


def nudge(i: int, origin: str = "webui") -> QueuedNudge:
    return QueuedNudge(i, "webui", "hello", 0, origin, message=i)  # from message i


def result(*queued: QueuedNudge, is_error: bool = False, text: str = "done") -> TurnResult:
    return TurnResult(is_error, "success", text, "sid", (),
                      answered=tuple(f"u{q.id}" for q in queued))


def in_turn(*queued: QueuedNudge, healthy: bool = True) -> AgentRun:
    """A run started (and, if `healthy`, proven by the timer) before T0, written `queued`
    at T0: a turn begins."""
    queued = queued or (nudge(1),)
    start = T0 - CFG.healthy_after_s if healthy else T0
    run = AgentRun(LEAD, CFG)
    run.nudged(list(queued), Health(), start, start=True)
    run.started("sid", 42, start)
    if healthy:
        run.tick(Health(), T0)
    assert of(run.nudged(list(queued), Health(), T0), fx.Write)
    assert not of(run.wrote([(f"u{q.id}", q) for q in queued], T0), fx.Mark)
    assert of(run.tick(Health(), T0), fx.Mark) == [
        fx.Mark(tuple(dict.fromkeys(q.message for q in queued if q.message)), Mark.WORKING)]
    return run


def of(effects: list[Effect], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


def run_timers(run: AgentRun, until: float) -> list[tuple[float, Effect]]:
    """Tick at each deadline up to `until`, as the executor's timer does; what each gave."""
    seen: list[tuple[float, Effect]] = []
    while (at := run.next_deadline(Health())) is not None and at <= until:
        seen += [(at - T0, e) for e in run.tick(Health(), at)]
    return seen


def shown(seen: list[tuple[float, Effect]]) -> list[tuple[float, str]]:
    return [(at, e.text) for at, e in seen if isinstance(e, fx.ShowStatus)]


# --- when the ⏳ line is shown ---------------------------------------------------------------


def test_r13_7_a_quiet_turn_shows_its_status_after_status_after_s_then_every_interval() -> None:
    """R13.7: nothing for status_after_s, then the line in the turn's conversation, edited
    every status_interval_s with the current step and the elapsed time."""
    run = in_turn()
    assert run.next_deadline(Health()) == T0 + 5
    assert run.tick(Health(), T0 + 4.9) == []
    seen = run_timers(run, T0 + 11)
    assert shown(seen) == [(5, "⏳ webui — thinking · 5s"), (8, "⏳ webui — thinking · 8s"),
                           (11, "⏳ webui — thinking · 11s")]
    assert {e.conversation for _, e in seen if isinstance(e, fx.ShowStatus)} == {HERE}
    run.saw(ToolUse("t1", "Edit", {"file_path": "/srv/webui/src/app.py"}), Health(), T0 + 12)
    assert shown(run_timers(run, T0 + 17)) == [(14, "⏳ webui — Edit: src/app.py · 14s"),
                                               (17, "⏳ webui — Edit: src/app.py · 17s")]


def test_r13_7_a_chatty_turn_shows_no_status() -> None:
    """R13.7: a turn that posts output more often than status_after_s needs no line, and
    its end has none to remove: its message is marked answered."""
    run = in_turn()
    seen: list[tuple[float, Effect]] = []
    for t in range(1, 40, 2):
        run.saw(AssistantText(f"step {t}"), Health(), T0 + t)
        run.saw(ToolUse(f"t{t}", "Bash", {"command": "make"}), Health(), T0 + t)
        seen += run_timers(run, T0 + t + 2)
    assert shown(seen) == []
    assert len(of([e for _, e in seen], fx.Post)) >= 10
    ended = run.saw(result(nudge(1)), Health(), T0 + 41)
    assert of(ended, fx.EndStatus) == [] and of(ended, fx.Mark) == [
        fx.Mark((1,), Mark.ANSWERED)]


def test_r13_7_output_silences_the_line_for_status_after_s() -> None:
    """R13.7: once output was posted, the line is edited again only after status_after_s
    more without output."""
    run = in_turn()
    assert shown(run_timers(run, T0 + 5)) == [(5, "⏳ webui — thinking · 5s")]
    run.saw(AssistantText("found it"), Health(), T0 + 6)
    run.saw(ToolUse("t1", "Bash", {"command": "npm test"}), Health(), T0 + 6)
    seen = run_timers(run, T0 + 14)
    assert [at for at, e in seen if isinstance(e, fx.Post)] == [8]
    assert shown(seen) == [(13, "⏳ webui — Bash: npm test · 13s")]


def test_r13_7_a_turn_waiting_for_approval_says_so_and_is_not_hung() -> None:
    """R13.7, R13.1: while a request waits for a person the line says so (the hung timer
    is off); once decided, it shows the tool again."""
    run = in_turn()
    ask = PermissionAsk("req-1", "Bash", {"command": "rm -rf build"})
    run.saw(ask, Health(), T0 + 1)
    assert shown(run_timers(run, T0 + 6)) == [
        (5, "⏳ webui — waiting for approval (Bash: rm -rf build) · 5s")]
    seen = run_timers(run, T0 + 1199)  # well past turn_timeout_s: not killed
    assert not of([e for _, e in seen], fx.Kill)
    assert shown(seen)[-1] == (1199, "⏳ webui — waiting for approval (Bash: rm -rf build)"
                                     " · 19m59s")
    assert run.decide("req-1", Verdict.ALLOW, "", T0 + 1200) == [
        fx.AnswerAsk(ask, Verdict.ALLOW, "")]
    assert shown(run_timers(run, T0 + 1202)) == [
        (1202, "⏳ webui — Bash: rm -rf build · 20m02s")]


# --- how the line ends -------------------------------------------------------------------------


def answered(run: AgentRun) -> list[Effect]:
    return run.saw(result(nudge(1)), Health(), T0 + 30)


def noted_error(run: AgentRun) -> list[Effect]:
    return run.saw(result(nudge(1), is_error=True, text="boom"), Health(), T0 + 30)


def stopped(run: AgentRun) -> list[Effect]:
    assert run.stop_turn("bob") is not None
    return run.saw(result(nudge(1), is_error=True, text=""), Health(), T0 + 30)


def crashed(run: AgentRun) -> list[Effect]:
    run.saw(ToolResult("t0", False), Health(), T0 + 1)  # it had begun on the message
    return run.exited(1, ["segfault"], Health(), T0 + 30)


def shut_down(run: AgentRun) -> list[Effect]:
    assert run.stop_requested(StopReason.SHUTDOWN) == [fx.Terminate()]
    return run.exited(-15, [], Health(), T0 + 30)


def hung(run: AgentRun) -> list[Effect]:
    return run.tick(Health(), T0 + 900)


def rate_limited(run: AgentRun) -> list[Effect]:
    run.saw(RateLimit("rejected", T0 + 600), Health(), T0 + 20)
    return run.saw(result(nudge(1), is_error=True, text="limit"), Health(), T0 + 30)


def forgotten(run: AgentRun) -> list[Effect]:
    gone = replace(result(nudge(1), is_error=True, text=""),
                   errors=("No conversation found with session ID: sid",))
    return run.saw(gone, Health(), T0 + 30)


END_ROWS: dict[str, tuple[Callable[[AgentRun], list[Effect]], bool, str | None,
                          Mark | None]] = {
    # how the turn ends, on a healthy run? -> the line's outcome, the mark on its message
    "r13_7-answered-removed-and-checked": (answered, True, None, Mark.ANSWERED),
    "r13_7-healthy-error-failed": (noted_error, True, "❌ webui failed while answering.",
                                   Mark.FAILED),
    "r13_7-first-turn-error-failed": (noted_error, False, "❌ webui failed while answering.",
                                      Mark.FAILED),
    "r13_7-r13_6-stopped-says-who": (stopped, True, "⏹ webui stopped by bob.", Mark.CLEARED),
    "r13_7-r4_11-crash-mid-turn-failed": (crashed, True, "❌ webui stopped while answering.",
                                          Mark.FAILED),
    "r13_7-r4_8-hung-failed": (hung, True, "❌ webui stopped while answering.", Mark.FAILED),
    "r13_7-r4_9-shutdown-cut-off-waits": (
        shut_down, True, "⏹ webui's turn was cut off (shutdown); it answers when it is back.",
        Mark.WAITING),
    "r13_7-r13_8-rate-limited-removed-waits": (rate_limited, True, None, Mark.WAITING),
    "r13_7-r4_10-forgotten-session-removed-retried": (forgotten, True, None, None),
}


@pytest.mark.parametrize(("end", "healthy", "outcome", "mark"), END_ROWS.values(),
                         ids=END_ROWS.keys())
def test_r13_7_a_shown_line_ends_with_the_turn(end: Callable[[AgentRun], list[Effect]],
                                               healthy: bool, outcome: str | None,
                                               mark: Mark | None) -> None:
    """R13.7: when the turn ends its line is removed, or, if the turn failed or was
    stopped, edited into that outcome, once; its message is marked accordingly."""
    run = in_turn(healthy=healthy)
    assert shown(run_timers(run, T0 + 5))
    effects = end(run)
    assert of(effects, fx.EndStatus) == [fx.EndStatus(HERE, outcome)]
    assert [m.mark for m in of(effects, fx.Mark)] == ([mark] if mark is not None else [])
    assert all(m.messages == (1,) for m in of(effects, fx.Mark))
    assert of(run.tick(Health(), T0 + 2000), fx.ShowStatus) == []  # its timer is gone


@pytest.mark.parametrize(("end", "healthy", "outcome", "mark"), END_ROWS.values(),
                         ids=END_ROWS.keys())
def test_r13_7_a_turn_that_showed_no_line_ends_none(end: Callable[[AgentRun], list[Effect]],
                                                     healthy: bool, outcome: str | None,
                                                     mark: Mark | None) -> None:
    """R13.7: `EndStatus` only for a turn whose line was shown; the marks are the same."""
    run = in_turn(healthy=healthy)
    effects = end(run)
    assert of(effects, fx.EndStatus) == []
    assert [m.mark for m in of(effects, fx.Mark)] == ([mark] if mark is not None else [])


def test_r13_7_r13_6_a_stopped_turns_line_is_its_notice() -> None:
    """R13.6, R13.7: the line edited into "stopped by" says it; no second notice. Without
    a line, the notice is posted as before."""
    run = in_turn()
    run_timers(run, T0 + 5)
    assert of(stopped(run), fx.Notify) == []
    quick = in_turn()
    assert [n.text for n in of(stopped(quick), fx.Notify)] == ["⏹ webui stopped by bob."]


def test_r13_7_r8_5_a_folded_result_ends_one_line_and_the_next_turn_starts_its_own() -> None:
    """R13.7: a result that leaves queued messages unanswered (the CLI runs them next)
    ends this turn's line; the next turn's line comes after its own quiet status_after_s."""
    run = in_turn(nudge(1), nudge(2))
    run_timers(run, T0 + 5)
    ended = run.saw(replace(result(nudge(1)), queued_turns=1), Health(), T0 + 6)
    assert of(ended, fx.EndStatus) == [fx.EndStatus(HERE, None)]
    assert of(ended, fx.Mark) == [fx.Mark((1,), Mark.ANSWERED)]
    assert run.in_turn and run.next_deadline(Health()) == T0 + 11
    assert shown(run_timers(run, T0 + 11)) == [(11, "⏳ webui — thinking · 5s")]


# --- the marks on the people's messages --------------------------------------------------------


def test_r13_7_messages_waiting_for_a_slot_are_marked_waiting() -> None:
    """R13.7, R3.7: a start that waits for a process slot marks its queue ⏸️."""
    run = AgentRun(LEAD, CFG)
    assert of(run.nudged([nudge(1)], Health(), T0), fx.Spawn)
    assert run.waiting_for_slot([nudge(1), nudge(2)]) == [fx.Mark((1, 2), Mark.WAITING)]
    assert run.waiting_for_slot([]) == []


def test_r13_7_r4_11_a_failed_turns_messages_keep_their_cross_the_others_wait() -> None:
    """R13.7: after a failed turn its messages are ❌ (their conversation was told it
    failed); messages of other conversations waiting for the cooldown are ⏸️."""
    run = in_turn(nudge(1), healthy=False)
    effects = run.saw(result(nudge(1), is_error=True, text="boom"), Health(), T0 + 1)
    assert of(effects, fx.Mark) == [fx.Mark((1,), Mark.FAILED)]
    [tell] = of(effects, fx.TellBlocked)
    h = of(effects, fx.SaveHealth)[0].health
    queued = [nudge(1), nudge(2, origin="general")]
    assert of(run.tell_blocked(tell.blocked, queued, h, told=tell.told), fx.Mark) == [
        fx.Mark((2,), Mark.WAITING)]


def test_r13_7_r13_8_a_pause_mid_turn_leaves_the_open_turns_messages_working() -> None:
    """R13.7, R13.8: a budget spent while a turn runs marks what waits ⏸️, not the
    messages that turn is answering."""
    run = in_turn(nudge(1))
    effects = run.nudged([nudge(1), nudge(2)], Health(), T0 + 1, paused="⏸️ spent")
    assert of(effects, fx.Mark) == [fx.Mark((2,), Mark.WAITING)]


def test_r13_7_a_turn_answered_within_seen_after_s_gets_its_tick_alone() -> None:
    """R13.7: 👀 (and with it Matrix typing) is for a turn that works a while: one answered
    within `seen_after_s` marks its message ✅ only, so a quick answer is not preceded by
    a 👀 that is gone a moment later, nor made to wait behind it on the platform."""
    run = AgentRun(LEAD, replace(CFG, seen_after_s=1))
    run.nudged([nudge(1)], Health(), T0, start=True)
    run.started("sid", 42, T0)
    run.nudged([nudge(1)], Health(), T0)
    assert not of(run.wrote([("u1", nudge(1))], T0), fx.Mark)
    assert run.next_deadline(Health()) == T0 + 1
    effects = run.saw(result(nudge(1)), Health(), T0 + 0.9)
    assert of(effects, fx.Mark) == [fx.Mark((1,), Mark.ANSWERED)]
    assert not of(run_timers(run, T0 + 60), fx.Mark)


def test_r13_7_messages_a_turn_works_on_for_seen_after_s_get_their_eyes_together() -> None:
    """R13.7: 👀 comes `seen_after_s` after the turn took its first message, on every
    message it has taken by then (one written later in the same turn waits no longer); a
    message answered before that gets none."""
    run = AgentRun(LEAD, replace(CFG, seen_after_s=1))
    run.nudged([nudge(1)], Health(), T0, start=True)
    run.started("sid", 42, T0)
    run.nudged([nudge(1)], Health(), T0)
    run.wrote([("u1", nudge(1))], T0)
    run.nudged([nudge(1), nudge(2), nudge(3)], Health(), T0 + 0.5)
    run.wrote([("u2", nudge(2)), ("u3", nudge(3))], T0 + 0.5)
    answered = run.saw(replace(result(nudge(1)), queued_turns=2), Health(), T0 + 0.7)
    assert of(answered, fx.Mark) == [fx.Mark((1,), Mark.ANSWERED)]
    assert run.next_deadline(Health()) == T0 + 1
    assert run.tick(Health(), T0 + 1) == [fx.Mark((2, 3), Mark.WORKING)]
    assert not of(run.tick(Health(), T0 + 2), fx.Mark)


def test_r13_7_marks_go_on_the_people_s_messages_once_each() -> None:
    """R13.7: a mark is on the person's message a nudge came from: two nudges of one message
    (it mentioned the agent twice over, say) mark it once; a nudge an agent's text made has
    no message of a person, and no mark."""
    of_one = [replace(nudge(1), message=7), replace(nudge(2), message=7)]
    from_an_agent = replace(nudge(3), message=None)
    run = in_turn(*of_one, from_an_agent)
    effects = run.saw(result(*of_one, from_an_agent), Health(), T0 + 2)
    assert of(effects, fx.Mark) == [fx.Mark((7,), Mark.ANSWERED)]
