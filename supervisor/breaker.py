"""Failure counting, spawn-failure cooldowns and the circuit breaker (R4.2–R4.6, R6.1, R6.2).

Everything that decides whether an agent may be started lives here, as pure functions over
one immutable `Health` record, with time passed in. The shell stores `Health` (so all of it
survives a restart, R4.6) and acts on the `Effect`s a transition returns.

The rules this module keeps:

- A failure starts a cooldown of `cooldown_s` and counts one consecutive failure.
- At `max_failures` consecutive failures the breaker opens for `reset_s`.
- When that wait has passed the breaker allows exactly one trial start (half-open);
  success closes it, failure reopens it with the wait doubled, capped at `max_reset_s`.
- An authentication failure opens the breaker at once: restarting cannot fix an expired
  token, so it must not be retried in a loop (R6.2).
- Success — a session that lived `healthy_after_s` or finished a good turn — resets the
  count and closes the breaker (R4.5).
- An admin `reset` clears everything at once (R4.4).
- An opening is announced once (`BreakerOpened`); reopening after a failed trial is the
  same episode and is not announced again (R6.1).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from enum import StrEnum


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # one trial start is in flight


@dataclass(frozen=True)
class Policy:
    """The limits a transition applies. No defaults: it is always built from the agent
    settings (`supervisor.ports.AgentConfig`), whose defaults are the only ones."""

    cooldown_s: float
    max_failures: int
    reset_s: float
    max_reset_s: float


@dataclass(frozen=True)
class Health:
    failures: int = 0
    cooldown_until: float = 0.0
    state: BreakerState = BreakerState.CLOSED
    retry_at: float = 0.0  # while open: when the trial start is allowed
    wait_s: float = 0.0  # while open: the current wait, doubled on each failed trial
    last_error: str = ""
    auth_failed: bool = False
    noticed_until: float = 0.0  # the block end the last "will be retried" notice announced

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Health:
        data = json.loads(text)
        data["state"] = BreakerState(data.get("state", "closed"))
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# --- effects the shell carries out ----------------------------------------------------------


@dataclass(frozen=True)
class BreakerOpened:
    failures: int
    last_error: str
    auth: bool


@dataclass(frozen=True)
class BreakerClosed:
    pass


Effect = BreakerOpened | BreakerClosed


# --- the gate -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Allowed:
    trial: bool = False  # a half-open trial: its outcome closes or reopens the breaker


class BlockReason(StrEnum):
    COOLDOWN = "cooldown"  # a spawn-failure cooldown runs (R4.3)
    BREAKER = "breaker"  # the breaker is open (R4.4)
    AUTH = "auth"  # the breaker is open because login failed (R6.2)


@dataclass(frozen=True)
class Blocked:
    until: float  # when a start will next be allowed
    reason: BlockReason


Gate = Allowed | Blocked


def gate(h: Health, now: float) -> Gate:
    """May the agent be started (spawned or resumed) now?

    Half-open is treated like open: the gate is asked only about a *stopped* agent, and a
    stopped agent whose breaker says a trial is under way lost that trial (the bot was
    restarted, or an admin stopped it) — it may have another, or it would wait forever.
    """
    if h.state in (BreakerState.OPEN, BreakerState.HALF_OPEN):
        if now >= h.retry_at:
            return Allowed(trial=True)
        return Blocked(h.retry_at, BlockReason.AUTH if h.auth_failed else BlockReason.BREAKER)
    if now < h.cooldown_until:
        return Blocked(h.cooldown_until, BlockReason.COOLDOWN)
    return Allowed()


# --- transitions ----------------------------------------------------------------------------


def failed(h: Health, now: float, p: Policy, error: str, *, auth: bool = False
           ) -> tuple[Health, list[Effect]]:
    """A start failed, an early exit, or a first turn that ended in error (R4.2, R4.3)."""
    failures = h.failures + 1
    base = replace(h, failures=failures, cooldown_until=now + p.cooldown_s,
                   last_error=error, auth_failed=h.auth_failed or auth)
    # An auth failure seen for the first time while already open still needs its alert (R6.2).
    newly_auth: list[Effect] = ([BreakerOpened(failures, error, True)]
                                if auth and not h.auth_failed else [])
    if h.state is BreakerState.HALF_OPEN:
        wait = min(max(h.wait_s, p.reset_s) * 2, p.max_reset_s)
        return (replace(base, state=BreakerState.OPEN, wait_s=wait, retry_at=now + wait),
                newly_auth)
    if h.state is BreakerState.OPEN:  # a failure reported late for an already-open breaker
        return base, newly_auth
    if auth or failures >= p.max_failures:
        opened = replace(base, state=BreakerState.OPEN, wait_s=p.reset_s, retry_at=now + p.reset_s)
        return opened, [BreakerOpened(failures, error, auth)]
    return base, []


def trial_started(h: Health) -> Health:
    """The half-open trial start is under way; further nudges wait for its outcome."""
    return replace(h, state=BreakerState.HALF_OPEN) if h.state is BreakerState.OPEN else h


def succeeded(h: Health) -> tuple[Health, list[Effect]]:
    """The session proved healthy (R4.5); an open breaker closes with one notice (R6.1)."""
    effects: list[Effect] = [BreakerClosed()] if h.state is not BreakerState.CLOSED else []
    return Health(last_error=h.last_error), effects


def reset(h: Health) -> tuple[Health, list[Effect]]:
    """An admin's `reset` (or a successful `auth login`): close and forget at once (R4.4).

    It is the same transition as a proven-healthy session: a person vouches for the agent.
    """
    return succeeded(h)


def should_notify_blocked(h: Health, blocked: Blocked) -> tuple[Health, bool]:
    """One notice per cooldown or opening, not one per queued message (R3.4)."""
    if h.noticed_until == blocked.until:
        return h, False
    return replace(h, noticed_until=blocked.until), True
