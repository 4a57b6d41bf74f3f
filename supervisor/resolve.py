"""What a nudge does to an agent, given its run state and health (R3.1–R3.5).

Every nudge is first written to the agent's durable queue; this decision says what the
supervisor does about that queue now. The table is the whole rule:

| run state           | gate                  | action                         |
|---------------------|-----------------------|--------------------------------|
| running             | (any)                 | Deliver — write to stdin       |
| starting / stopping | (any)                 | Hold — the resulting session gets it |
| stopped             | blocked (cooldown, breaker, auth) | Wait — keep queued, notify once |
| stopped             | allowed, session id   | Resume (`--resume <id>`)       |
| stopped             | allowed, no session id| Spawn (fresh `--session-id`)   |

The resume path and the spawn path pass through the same gate: a dead lead whose breaker
is open is not resumed by a message either (the bug this project was started to fix).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from crewbridge.supervisor.breaker import Allowed, Blocked, Health, gate


class RunState(StrEnum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


@dataclass(frozen=True)
class Deliver:
    pass


@dataclass(frozen=True)
class Hold:
    pass


@dataclass(frozen=True)
class Wait:
    blocked: Blocked


@dataclass(frozen=True)
class Resume:
    session_id: str
    trial: bool = False


@dataclass(frozen=True)
class Spawn:
    trial: bool = False


Action = Deliver | Hold | Wait | Resume | Spawn


def resolve(run: RunState, session_id: str | None, health: Health, now: float) -> Action:
    if run is RunState.RUNNING:
        return Deliver()
    if run in (RunState.STARTING, RunState.STOPPING):
        return Hold()
    g = gate(health, now)
    if isinstance(g, Blocked):
        return Wait(g)
    assert isinstance(g, Allowed)
    return Resume(session_id, g.trial) if session_id else Spawn(g.trial)
