"""An agent's run while it waits for a person's decision (R13.1, R13.3, R13.4, R13.6):
`AgentRun`'s open requests, driven with data and times like `test_lifecycle`."""

from __future__ import annotations

from crewbridge.supervisor import alerts
from crewbridge.supervisor import effects as fx
from crewbridge.supervisor.breaker import Health
from crewbridge.supervisor.control import PermissionAsk, PermissionWithdrawn, Verdict
from crewbridge.supervisor.ports import Conversation
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.rules import StopReason
from tests.unit.test_lifecycle import CFG, T0, answers, kinds, nudge, of, running

ASK = PermissionAsk("r-1", "Bash", {"command": "touch x"}, rule="Bash(touch x)")


def test_r13_1_a_request_is_shown_in_the_turns_conversation_and_answered_once() -> None:
    run = running(queued=(nudge(1),), healthy=True)
    assert run.saw(ASK, Health(), T0 + 1) == [fx.Ask(ASK, Conversation("webui"))]
    assert run.decide("r-1", Verdict.ALLOW, "", T0 + 2) == [fx.AnswerAsk(ASK, Verdict.ALLOW, "")]
    assert run.decide("r-1", Verdict.DENY, "late", T0 + 3) is None  # answered already
    assert run.decide("r-2", Verdict.ALLOW, "", T0 + 3) is None  # never asked


def test_r13_3_a_turn_waiting_for_a_person_is_not_hung() -> None:
    """R13.3: the CLI never times out a request; the bot's deadline is the approval's, not
    turn_timeout_s — and after the answer the hung clock counts from it."""
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)  # only the live status line stays timed (R13.7)
    assert run.next_deadline(Health()) == T0 + CFG.status_after_s
    assert run.tick(Health(), T0 + CFG.turn_timeout_s * 3) == []
    later = T0 + CFG.turn_timeout_s * 3
    run.decide("r-1", Verdict.ALLOW, "", later)
    assert run.next_deadline(Health()) == later + CFG.turn_timeout_s


def test_r13_3_a_withdrawn_request_says_so_and_cannot_be_decided() -> None:
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)
    assert run.saw(PermissionWithdrawn("r-1"), Health(), T0 + 2) == [
        fx.AskWithdrawn("r-1", alerts.ASK_WITHDRAWN)]
    assert run.saw(PermissionWithdrawn("r-1"), Health(), T0 + 3) == []  # once
    assert run.decide("r-1", Verdict.ALLOW, "", T0 + 4) is None


def test_r13_6_stopping_the_turn_withdraws_its_requests() -> None:
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)
    effects = run.stop_turn("bob")
    assert effects is not None and of(effects, fx.AskWithdrawn) == [
        fx.AskWithdrawn("r-1", alerts.ask_stopped("bob"))]
    assert run.asks == {}


def test_r13_3_an_exit_withdraws_open_requests_but_the_bots_shutdown_keeps_them() -> None:
    """R13.3, R13.4: the session that asked is gone, so its cards say so — unless the bot
    itself is stopping: the resumed agent asks again after the restart, and the card
    shown before is still there to decide."""
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)
    effects = run.exited(3, [], Health(), T0 + 2)
    assert of(effects, fx.AskWithdrawn) == [fx.AskWithdrawn("r-1", alerts.ASK_SESSION_ENDED)]
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)
    assert kinds(run.stop_requested(StopReason.SHUTDOWN)) == [fx.Terminate]
    assert of(run.exited(0, [], Health(), T0 + 2), fx.AskWithdrawn) == []
    assert run.state is RunState.STOPPED


def test_r13_1_the_turns_end_leaves_no_request_open() -> None:
    run = running(queued=(nudge(1),), healthy=True)
    run.saw(ASK, Health(), T0 + 1)
    effects = run.saw(answers(nudge(1)), Health(), T0 + 2)
    assert of(effects, fx.AskWithdrawn) == [fx.AskWithdrawn("r-1", alerts.ASK_WITHDRAWN)]
    assert run.decide("r-1", Verdict.ALLOW, "", T0 + 3) is None
