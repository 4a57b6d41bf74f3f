"""What a nudge does to an agent in a given state: `supervisor.resolve.resolve` (R3.1–R3.5).

One row per line of the table in resolve.py's docstring, with the health records that put
the gate in each state. Time is a number passed in.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crewbridge.supervisor.breaker import (
    Blocked,
    BreakerState,
    Health,
    Policy,
    failed,
    trial_started,
)
from crewbridge.supervisor.resolve import Deliver, Hold, Resume, RunState, Spawn, Wait, resolve

NOW = 10_000.0
P = Policy(cooldown_s=120, max_failures=3, reset_s=600, max_reset_s=6 * 3600)

HEALTHY = Health()
FAILED_ONCE = failed(HEALTHY, NOW - 10, P, "exit 1")[0]  # cooldown until NOW + 110
COOLED = failed(HEALTHY, NOW - 500, P, "exit 1")[0]  # cooldown over, 1 failure
OPEN = Health(failures=3, cooldown_until=NOW - 1, state=BreakerState.OPEN, retry_at=NOW + 300,
              wait_s=600, last_error="boom")
OPEN_AUTH = Health(failures=1, state=BreakerState.OPEN, retry_at=NOW + 300, wait_s=600,
                   auth_failed=True)
HALF_OPEN_DUE = Health(failures=3, state=BreakerState.OPEN, retry_at=NOW - 1, wait_s=600)
IN_TRIAL = trial_started(HALF_OPEN_DUE)

SID = "0f8fad5b-d9cb-469f-a165-70867728950e"

ROWS = {
    # R3.1 — running: write to stdin, whatever the health says
    "r3_1-running-delivers": (RunState.RUNNING, SID, HEALTHY, Deliver()),
    "r3_1-running-delivers-in-cooldown": (RunState.RUNNING, None, FAILED_ONCE, Deliver()),
    "r3_1-running-delivers-breaker-open": (RunState.RUNNING, SID, OPEN, Deliver()),
    # R3.5 — a start or stop in flight: hold for the resulting session
    "r3_5-starting-holds": (RunState.STARTING, SID, HEALTHY, Hold()),
    "r3_5-stopping-holds": (RunState.STOPPING, None, HEALTHY, Hold()),
    "r3_5-starting-holds-breaker-open": (RunState.STARTING, SID, OPEN, Hold()),
    "r3_5-stopping-holds-in-cooldown": (RunState.STOPPING, SID, FAILED_ONCE, Hold()),
    # R3.4 — stopped and blocked: wait (queued), whichever path a start would take
    "r3_4-cooldown-waits-spawn-path": (RunState.STOPPED, None, FAILED_ONCE,
                                       Wait(Blocked(NOW + 110, "cooldown"))),
    "r3_4-cooldown-waits-resume-path": (RunState.STOPPED, SID, FAILED_ONCE,
                                        Wait(Blocked(NOW + 110, "cooldown"))),
    "r3_4-breaker-open-waits-spawn-path": (RunState.STOPPED, None, OPEN,
                                           Wait(Blocked(NOW + 300, "breaker"))),
    "r3_4-breaker-open-waits-resume-path": (RunState.STOPPED, SID, OPEN,
                                            Wait(Blocked(NOW + 300, "breaker"))),
    "r6_2-auth-open-waits-resume-path": (RunState.STOPPED, SID, OPEN_AUTH,
                                         Wait(Blocked(NOW + 300, "auth"))),
    # R3.2 / R3.3 — stopped and allowed
    "r3_2-resume-with-session-id": (RunState.STOPPED, SID, HEALTHY, Resume(SID)),
    "r3_2-resume-after-cooldown-ended": (RunState.STOPPED, SID, COOLED, Resume(SID)),
    "r3_3-spawn-without-session-id": (RunState.STOPPED, None, HEALTHY, Spawn()),
    "r3_3-spawn-empty-session-id": (RunState.STOPPED, "", HEALTHY, Spawn()),
    "r3_3-spawn-after-cooldown-ended": (RunState.STOPPED, None, COOLED, Spawn()),
    # R4.4 — half-open: exactly one trial start, marked as such
    "r4_4-half-open-resume-is-trial": (RunState.STOPPED, SID, HALF_OPEN_DUE, Resume(SID, True)),
    "r4_4-half-open-spawn-is-trial": (RunState.STOPPED, None, HALF_OPEN_DUE, Spawn(True)),
}


@pytest.mark.parametrize(("run", "session_id", "health", "expected"), list(ROWS.values()),
                         ids=list(ROWS))
def test_r3_resolution_table(run: RunState, session_id: str | None, health: Health,
                             expected: object) -> None:
    """R3.1–R3.5, R4.4, R6.2: the action for each run state and gate."""
    assert resolve(run, session_id, health, NOW) == expected


@pytest.mark.parametrize(("run", "expected"), [
    (RunState.STARTING, Hold()),
    (RunState.RUNNING, Deliver()),
    (RunState.STOPPING, Hold()),
], ids=["trial-starting", "trial-running", "trial-stopping"])
def test_r4_4_trial_in_flight_holds_back_other_starts(run: RunState, expected: object) -> None:
    """R4.4/R3.5: while the one half-open trial is under way, nudges go to it — no second start."""
    assert resolve(run, SID, IN_TRIAL, NOW + 5) == expected


@pytest.mark.parametrize(("sid", "expected"), [(SID, Resume(SID, True)), (None, Spawn(True))],
                         ids=["resume-path", "spawn-path"])
def test_r4_4_lost_trial_gets_another_trial(sid: str | None, expected: object) -> None:
    """R4.4, R4.6: half-open but stopped means the trial was lost (bot restarted, admin
    stop): the next nudge makes one trial start again — a trial, never a normal start."""
    assert resolve(RunState.STOPPED, sid, IN_TRIAL, NOW + 5) == expected


def test_r3_4_breaker_open_is_not_bypassed_by_a_session_id() -> None:
    """R3.4/R4.4 — the original bug: a dead lead with an open breaker and a stored session id
    must not be resumed by a message, before or after its cooldown ran out."""
    h = Health()
    for i in range(P.max_failures):
        h, _ = failed(h, NOW + i, P, "exit 1")
    assert h.state is BreakerState.OPEN
    for now in (NOW + 3, NOW + P.cooldown_s + 10, h.retry_at - 0.001):
        action = resolve(RunState.STOPPED, SID, h, now)
        assert isinstance(action, Wait), now
        assert action.blocked.reason == "breaker"


@given(st.sampled_from(list(RunState)), st.one_of(st.none(), st.just(SID)),
       st.floats(0, 1e6), st.floats(0, 1e6), st.sampled_from(list(BreakerState)))
def test_r3_never_starts_when_blocked(run: RunState, sid: str | None, now: float,
                                      until: float, state: BreakerState) -> None:
    """R3.4: for any state, a start (Resume or Spawn) happens only when the gate allows it,
    and a non-trial start never happens while the breaker is not closed."""
    h = Health(cooldown_until=until, state=state, retry_at=until)
    action = resolve(run, sid, h, now)
    if isinstance(action, Resume | Spawn):
        assert run is RunState.STOPPED
        assert now >= until
        assert action.trial == (state is not BreakerState.CLOSED)
        assert isinstance(action, Resume) == bool(sid)
