"""Failure counts, cooldowns and the circuit breaker: `supervisor.breaker` (R3.4, R4.2–R4.6,
R6.1, R6.2). Pure transitions over one `Health` record with time passed in — no sleeps.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crewbridge.supervisor.breaker import (
    Allowed,
    Blocked,
    BreakerClosed,
    BreakerOpened,
    BreakerState,
    Health,
    Policy,
    failed,
    gate,
    reset,
    should_notify_blocked,
    succeeded,
    trial_started,
)

P = Policy(cooldown_s=120, max_failures=3, reset_s=600, max_reset_s=6 * 3600)
T0 = 1_000.0


def fail_n(n: int, p: Policy = P, start: float = T0, step: float = 1.0
           ) -> tuple[Health, list[list[object]]]:
    h, effects = Health(), []
    for i in range(n):
        h, e = failed(h, start + i * step, p, f"error {i + 1}")
        effects.append(e)
    return h, effects


def opened(p: Policy = P, at: float = T0) -> Health:
    h = Health()
    for _ in range(p.max_failures):
        h, _ = failed(h, at, p, "exit 1")
    assert h.state is BreakerState.OPEN
    return h


# --- R4.3: failures and cooldowns ------------------------------------------------------------


def test_r4_3_failure_counts_and_starts_a_cooldown() -> None:
    """R4.3: one failure counts one and starts a cooldown of cooldown_s from now."""
    h, effects = failed(Health(), T0, P, "exit 1 after 2 s")
    assert (h.failures, h.cooldown_until, h.state) == (1, T0 + 120, BreakerState.CLOSED)
    assert h.last_error == "exit 1 after 2 s"
    assert effects == []


@pytest.mark.parametrize(("now", "expected"), [
    (T0, Blocked(T0 + 120, "cooldown")),
    (T0 + 119.999, Blocked(T0 + 120, "cooldown")),
    (T0 + 120, Allowed(trial=False)),
    (T0 + 5000, Allowed(trial=False)),
], ids=["at-failure", "just-before-end", "at-end", "long-after"])
def test_r4_3_gate_blocks_during_cooldown_only(now: float, expected: object) -> None:
    """R4.3/R3.4: no start while the spawn-failure cooldown runs; a normal start after it."""
    h, _ = failed(Health(), T0, P, "exit 1")
    assert gate(h, now) == expected


def test_r4_3_second_failure_restarts_the_cooldown_from_its_own_time() -> None:
    """R4.3: each failure's cooldown runs from that failure."""
    h, _ = fail_n(2, start=T0, step=200)
    assert (h.failures, h.cooldown_until) == (2, T0 + 200 + 120)


@pytest.mark.parametrize("cooldown", [0, 30, 120, 999])
def test_r4_3_cooldown_follows_policy(cooldown: float) -> None:
    """R4.3: the cooldown is the configured one."""
    h, _ = failed(Health(), T0, replace(P, cooldown_s=cooldown), "x")
    assert h.cooldown_until == T0 + cooldown


# --- R4.4 / R6.1: opening ---------------------------------------------------------------------


@pytest.mark.parametrize("max_failures", [1, 2, 3, 5])
def test_r4_4_opens_at_max_failures_with_exactly_one_alert(max_failures: int) -> None:
    """R4.4, R6.1: the breaker opens at the max_failures-th consecutive failure, with one
    BreakerOpened effect carrying the count and the last error."""
    p = replace(P, max_failures=max_failures)
    h, effects = fail_n(max_failures, p)
    assert all(e == [] for e in effects[:-1])
    assert effects[-1] == [BreakerOpened(max_failures, f"error {max_failures}", False)]
    last = T0 + max_failures - 1
    assert h.state is BreakerState.OPEN
    assert (h.retry_at, h.wait_s) == (last + 600, 600)


def test_r4_4_below_max_failures_the_breaker_stays_closed() -> None:
    """R4.4: two failures of a lead with max 3 leave it closed (only cooling down)."""
    h, effects = fail_n(2)
    assert h.state is BreakerState.CLOSED
    assert effects == [[], []]


def test_r6_1_no_second_alert_while_open() -> None:
    """R6.1: failures reported for an already-open breaker are not announced again, and do
    not move its retry time."""
    h = opened()
    retry_at = h.retry_at
    for i in range(5):
        h, effects = failed(h, T0 + 10 + i, P, "late exit")
        assert effects == []
    assert h.state is BreakerState.OPEN
    assert h.retry_at == retry_at


@pytest.mark.parametrize(("dt", "expected"), [
    (0, Blocked(T0 + 600, "breaker")),
    (121, Blocked(T0 + 600, "breaker")),  # the cooldown is over, the breaker still holds
    (599.999, Blocked(T0 + 600, "breaker")),
    (600, Allowed(trial=True)),
    (10_000, Allowed(trial=True)),
], ids=["at-open", "after-cooldown", "just-before-retry", "at-retry", "long-after"])
def test_r4_4_open_breaker_blocks_until_retry_at_then_allows_one_trial(
        dt: float, expected: object) -> None:
    """R4.4: no automatic restart and no nudge restarts it until reset_s has passed; then
    the gate allows a trial start."""
    assert gate(opened(), T0 + dt) == expected


def test_r4_4_trial_started_makes_it_half_open() -> None:
    """R4.4: the trial start is recorded (persisted, R4.6) as half-open; while it is under way
    the agent is starting or running, so resolve holds or delivers (see test_resolve) and no
    second start happens; only a stopped agent asks the gate."""
    h = trial_started(opened())
    assert h.state is BreakerState.HALF_OPEN
    assert h.retry_at == T0 + 600


@pytest.mark.parametrize("h", [Health(), fail_n(2)[0]], ids=["fresh", "cooling"])
def test_r4_4_trial_started_does_nothing_unless_open(h: Health) -> None:
    """R4.4: only an open breaker turns half-open."""
    assert trial_started(h) == h


def test_r4_4_failed_trial_doubles_the_wait_up_to_the_cap_without_new_alert() -> None:
    """R4.4, R6.1: each failed trial reopens with the wait doubled (600 → 1200 → 2400 …),
    capped at max_reset_s (6 h); it is the same episode, so no new BreakerOpened."""
    h = opened()
    now = T0
    waits = []
    for _ in range(8):
        now = h.retry_at
        assert gate(h, now) == Allowed(trial=True)
        h = trial_started(h)
        h, effects = failed(h, now + 5, P, "trial failed")
        assert effects == []
        assert h.state is BreakerState.OPEN
        assert h.retry_at == now + 5 + h.wait_s
        waits.append(h.wait_s)
    assert waits == [1200, 2400, 4800, 9600, 19200, 21600, 21600, 21600]


@pytest.mark.parametrize(("reset_s", "max_reset_s", "expected"), [
    (600, 6 * 3600, [1200, 2400, 4800]),
    (100, 250, [200, 250, 250]),
    (10, 10, [10, 10, 10]),
], ids=["default", "low-cap", "cap-equals-reset"])
def test_r4_4_doubling_follows_policy(reset_s: float, max_reset_s: float,
                                      expected: list[float]) -> None:
    """R4.4: the doubling and its cap are the configured ones."""
    p = replace(P, reset_s=reset_s, max_reset_s=max_reset_s)
    h = opened(p)
    waits = []
    for _ in expected:
        h, _ = failed(trial_started(h), h.retry_at, p, "x")
        waits.append(h.wait_s)
    assert waits == expected


# --- R4.5 / R6.1: closing ---------------------------------------------------------------------


def test_r4_5_success_resets_the_count_without_alert_when_closed() -> None:
    """R4.5: a session that lived past healthy_after_s resets the failure count; there was no
    alert, so there is no recovery notice either."""
    h, effects = succeeded(fail_n(2)[0])
    assert (h.failures, h.state, h.cooldown_until) == (0, BreakerState.CLOSED, 0.0)
    assert effects == []
    h, _ = failed(h, T0 + 500, P, "x")
    assert h.failures == 1  # counting starts again, it does not reach 3


def test_r4_4_r6_1_successful_trial_closes_with_one_recovered_notice() -> None:
    """R4.4, R6.1: success of the trial closes the breaker, with one BreakerClosed."""
    h = trial_started(opened())
    h, effects = succeeded(h)
    assert effects == [BreakerClosed()]
    assert (h.state, h.failures) == (BreakerState.CLOSED, 0)
    assert gate(h, T0 + 601) == Allowed(trial=False)
    h, effects = succeeded(h)
    assert effects == []


@pytest.mark.parametrize("h", [opened(), trial_started(opened()),
                               failed(Health(), T0, P, "bad token", auth=True)[0]],
                         ids=["open", "half-open", "auth-open"])
def test_r4_4_admin_reset_closes_at_once(h: Health) -> None:
    """R4.4, R6.4: `reset <agent>` closes the breaker and clears the cooldown at once."""
    h2, effects = reset(h)
    assert effects == [BreakerClosed()]
    assert (h2.state, h2.failures, h2.auth_failed) == (BreakerState.CLOSED, 0, False)
    assert gate(h2, T0 + 1) == Allowed(trial=False)  # the cooldown is gone too


def test_r4_4_reset_of_a_cooling_agent_clears_the_cooldown_without_notice() -> None:
    """R4.4: reset also clears a plain cooldown; nothing was announced, nothing is."""
    h, effects = reset(fail_n(1)[0])
    assert effects == []
    assert gate(h, T0 + 1) == Allowed(trial=False)


def test_r6_1_a_new_episode_after_recovery_is_announced_again() -> None:
    """R6.1: one alert per opening — after a recovery the next opening alerts once more."""
    h, closed = succeeded(opened())
    assert closed == [BreakerClosed()]
    for i in range(P.max_failures):
        h, effects = failed(h, T0 + 5000 + i, P, "again")
    assert h.state is BreakerState.OPEN
    assert effects == [BreakerOpened(3, "again", False)]


# --- R6.2: authentication failures -------------------------------------------------------------


def test_r6_2_auth_failure_opens_at_once_with_the_auth_flag() -> None:
    """R6.2: an expired login opens the breaker at the first failure (no restart loop),
    announced once as an auth failure; the gate says why."""
    h, effects = failed(Health(), T0, P, "401 authentication_failed", auth=True)
    assert effects == [BreakerOpened(1, "401 authentication_failed", True)]
    assert (h.state, h.auth_failed) == (BreakerState.OPEN, True)
    assert gate(h, T0 + 121) == Blocked(T0 + 600, "auth")
    h, effects = failed(h, T0 + 2, P, "401 again", auth=True)
    assert effects == []


def test_r6_2_auth_failure_after_ordinary_failures_opens_at_once() -> None:
    """R6.2: one ordinary failure, then an auth failure: open now, flagged auth."""
    h, effects = failed(fail_n(1)[0], T0 + 200, P, "401", auth=True)
    assert effects == [BreakerOpened(2, "401", True)]
    assert h.state is BreakerState.OPEN


# --- R3.4: one "will be retried" notice per block --------------------------------------------


def test_r3_4_notify_blocked_once_per_block_end() -> None:
    """R3.4: the sender gets one notice per cooldown, not one per queued message; a new
    cooldown or an opening is a new block and gets a new notice."""
    h, _ = failed(Health(), T0, P, "x")
    b = gate(h, T0 + 1)
    assert isinstance(b, Blocked)
    h, first = should_notify_blocked(h, b)
    h, second = should_notify_blocked(h, gate(h, T0 + 50))  # type: ignore[arg-type]
    assert (first, second) == (True, False)
    h, _ = failed(h, T0 + 130, P, "x")
    h, third = should_notify_blocked(h, gate(h, T0 + 131))  # type: ignore[arg-type]
    assert third is True
    h, _ = failed(h, T0 + 300, P, "x")  # the third failure opens the breaker
    b = gate(h, T0 + 301)
    assert b == Blocked(T0 + 900, "breaker")
    h, fourth = should_notify_blocked(h, b)
    h, fifth = should_notify_blocked(h, gate(h, T0 + 800))  # type: ignore[arg-type]
    assert (fourth, fifth) == (True, False)


def test_r3_4_r4_6_notice_state_survives_a_restart() -> None:
    """R3.4, R4.6: after a restart the same block is not announced a second time."""
    h, _ = failed(Health(), T0, P, "x")
    b = gate(h, T0)
    assert isinstance(b, Blocked)
    h, _ = should_notify_blocked(h, b)
    h = Health.from_json(h.to_json())
    assert should_notify_blocked(h, b)[1] is False


# --- R4.6: persistence -------------------------------------------------------------------------


@pytest.mark.parametrize("h", [
    Health(),
    fail_n(2)[0],
    opened(),
    trial_started(opened()),
    failed(Health(), T0, P, "401 «token» expired\nline 2", auth=True)[0],
], ids=["fresh", "cooling", "open", "half-open", "auth"])
def test_r4_6_health_json_round_trip(h: Health) -> None:
    """R4.6: cooldowns, failure counts and breaker states survive a restart unchanged."""
    back = Health.from_json(h.to_json())
    assert back == h
    assert isinstance(back.state, BreakerState)


def test_r4_6_health_from_older_or_newer_records() -> None:
    """R4.6: a record missing newer fields gets defaults; unknown fields are ignored."""
    assert Health.from_json('{"failures": 2, "state": "open", "retry_at": 5}') == Health(
        failures=2, state=BreakerState.OPEN, retry_at=5)
    assert Health.from_json('{"failures": 1, "future_field": true}') == Health(failures=1)


finite = st.floats(min_value=0, max_value=1e12, allow_nan=False, allow_infinity=False)


@given(st.builds(Health, failures=st.integers(0, 10**6), cooldown_until=finite,
                 state=st.sampled_from(list(BreakerState)), retry_at=finite, wait_s=finite,
                 last_error=st.text(max_size=200), auth_failed=st.booleans(),
                 noticed_until=finite))
def test_r4_6_health_json_round_trip_property(h: Health) -> None:
    """R4.6: any Health survives to_json/from_json exactly."""
    assert Health.from_json(h.to_json()) == h


# --- sequences -----------------------------------------------------------------------------

OPS = st.sampled_from(["fail", "auth", "ok", "trial", "reset", "start-if-allowed"])


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    reset_s = draw(st.floats(1, 5000))
    return Policy(cooldown_s=draw(st.floats(0, 1000)), max_failures=draw(st.integers(1, 5)),
                  reset_s=reset_s, max_reset_s=reset_s * draw(st.floats(1, 64)))


@settings(max_examples=300, deadline=None)
@given(policies(), st.lists(st.tuples(OPS, st.floats(0, 3000)), max_size=60))
def test_r4_4_r6_1_invariants_over_random_sequences(p: Policy, steps: list) -> None:
    """R4.4, R6.1, R3.4 over any sequence of failures, successes, trials and resets:
    - the wait never exceeds max_reset_s, and no retry is further away than that;
    - BreakerOpened never twice without a BreakerClosed in between (one alert per episode;
      plus at most one auth alert, R6.2), and BreakerClosed only after a BreakerOpened (one
      "recovered" per alert);
    - the gate never allows a non-trial start while the breaker is open or half-open, and
      never reports a block that ends in the past;
    - success and reset always leave a closed breaker with no failures counted.
    """
    h, now, announced, announced_auth = Health(), 0.0, False, False
    for op, dt in steps:
        now += dt
        effects: list = []
        if op in ("fail", "auth"):
            h, effects = failed(h, now, p, op, auth=op == "auth")
        elif op == "ok":
            h, effects = succeeded(h)
        elif op == "reset":
            h, effects = reset(h)
        elif op == "trial":
            h = trial_started(h)
        elif op == "start-if-allowed":  # what the supervisor does on a nudge
            g = gate(h, now)
            if isinstance(g, Allowed) and g.trial:
                h = trial_started(h)
        for e in effects:
            if isinstance(e, BreakerOpened):
                # one opening alert per episode; an auth failure first seen on an open breaker
                # adds its one auth alert (R6.2) — never more
                if e.auth:
                    assert not announced_auth, "auth alert twice in one episode"
                    announced_auth = True
                else:
                    assert not announced, "BreakerOpened twice in one episode"
                announced = True
            else:
                assert isinstance(e, BreakerClosed)
                assert announced, "BreakerClosed without a BreakerOpened"
                announced = announced_auth = False
        assert announced == (h.state is not BreakerState.CLOSED)
        assert h.wait_s <= p.max_reset_s
        if h.state is not BreakerState.CLOSED:
            assert h.retry_at <= now + p.max_reset_s
        g = gate(h, now)
        if h.state is not BreakerState.CLOSED:
            assert isinstance(g, Blocked) or g.trial, "non-trial start while open"
            assert isinstance(g, Allowed) or g.until > now, "blocked until a past time"
        assert announced_auth <= h.auth_failed
        if op in ("ok", "reset"):
            assert (h.state, h.failures) == (BreakerState.CLOSED, 0)


# --- bugs found ----------------------------------------------------------------------------


def test_r4_4_r4_6_trial_interrupted_by_restart_does_not_block_forever() -> None:
    """R4.4 + R4.6: after reset_s 'the next nudge makes one trial start'. The bot was stopped
    while a trial ran (HALF_OPEN persisted, R4.6), or an admin stopped the trial; the agent is
    stopped with no trial in flight, so the next nudge gets another trial — it is never
    blocked for good, and never told a retry time in the past.
    (Found by this suite as an xfail; fixed in ce39af2.)"""
    h = Health.from_json(trial_started(opened()).to_json())
    for later in (h.retry_at, h.retry_at + 86_400):
        assert gate(h, later) == Allowed(trial=True)


def test_r6_2_auth_failure_of_a_trial_is_announced_as_auth() -> None:
    """R6.2: WHEN an agent's error is an authentication failure THEN one 'agent auth expired'
    alert is posted. The breaker opened for crashes (alert without auth); 600 s later the
    trial fails with HTTP 401: one effect with auth=True carries the auth alert; a second
    auth failure adds none. (Found by this suite as an xfail; fixed in ce39af2.)"""
    h = trial_started(opened())
    h, effects = failed(h, h.retry_at + 5, P, "401 authentication_failed", auth=True)
    assert h.auth_failed
    assert effects == [BreakerOpened(P.max_failures + 1, "401 authentication_failed", True)]
    h, effects = failed(trial_started(h), h.retry_at + 5, P, "401 again", auth=True)
    assert effects == []


def test_r6_2_late_auth_failure_on_an_open_breaker_is_announced_once() -> None:
    """R6.2: an auth failure reported for an already-open (non-auth) breaker alerts once."""
    h = opened()
    h, first = failed(h, T0 + 1, P, "401", auth=True)
    h, second = failed(h, T0 + 2, P, "401", auth=True)
    assert [e.auth for e in first if isinstance(e, BreakerOpened)] == [True]
    assert second == []


def test_r6_2_auth_failure_of_a_trial_sets_the_flag_and_reopens() -> None:
    """R6.2: the failed trial at least records the auth failure and reopens (no loop)."""
    h = trial_started(opened())
    h, _ = failed(h, h.retry_at + 5, P, "401", auth=True)
    assert (h.state, h.auth_failed) == (BreakerState.OPEN, True)
    assert gate(h, h.retry_at - 1) == Blocked(h.retry_at, "auth")

