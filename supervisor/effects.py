"""What an `AgentRun` asks its executor to do: one frozen dataclass per kind of work.

The run (`supervisor.lifecycle`) returns them in the order they must be carried out; the
executor (`supervisor.supervisor`) does each and nothing else. Four of them answer back —
the executor reports their outcome by calling the run again: `Spawn` with `started` or
`start_failed`, `Write` with `wrote`, `TellBlocked` with `tell_blocked`, `OfferQueue` with
`nudged`. In the manner of httpcore's "decide under the lock, return the work".
"""

from __future__ import annotations

from dataclasses import dataclass

from crewbridge.supervisor import ports
from crewbridge.supervisor.breaker import Blocked, Health
from crewbridge.supervisor.control import PermissionAsk, Verdict
from crewbridge.supervisor.ports import Conversation, QueuedNudge, TurnUsage


@dataclass(frozen=True)
class Spawn:
    """Start a process for run `run_id`, resuming session `resume` or (None) a fresh one
    under a new id; answer with `started` or `start_failed`."""

    run_id: int
    resume: str | None
    fork: bool = False  # `resume` is the session to fork a new one from (R12.3)


@dataclass(frozen=True)
class Write:
    """Write these nudges to the session's stdin, in order, nudge i as `texts[i]`, each as a
    user message with a new uuid; answer with `wrote` and the uuids of those written."""

    nudges: tuple[QueuedNudge, ...]
    texts: tuple[str, ...]


@dataclass(frozen=True)
class Kill:
    """SIGKILL the session now."""


@dataclass(frozen=True)
class Terminate:
    """Stop the session gracefully (stdin closed, SIGTERM, SIGKILL after the grace period);
    carried out outside the lock, since its end is the exit the lock must let in."""


@dataclass(frozen=True)
class MarkAttempted:
    """Mark queued nudges as written to an agent: if no turn answers them, their next
    delivery says that an earlier attempt was cut short (R8.5). Marked just after the
    write, while the agent reads them, so the mark costs a delivery no time; a bot killed
    between the two loses only that note, never the message."""

    ids: tuple[int, ...]


@dataclass(frozen=True)
class Answer:
    """A turn ended having answered these queued nudges: post its last texts (routed like
    `Post`) and take the nudges off the queue, in one transaction (R8.5)."""

    texts: tuple[str, ...]
    hops: int
    ids: tuple[int, ...]
    conversation: Conversation | None = None


@dataclass(frozen=True)
class Interrupt:
    """Send the running turn the `interrupt` control request (R13.6)."""

    request_id: str


@dataclass(frozen=True)
class Ask:
    """The agent asks to use a tool (R13.1): show it for a decision in `conversation`."""

    ask: PermissionAsk
    conversation: Conversation


@dataclass(frozen=True)
class AskWithdrawn:
    """A request no longer waits for a decision (R13.3), and why."""

    request_id: str
    why: str


@dataclass(frozen=True)
class AnswerAsk:
    """Answer the agent's request on the control protocol (R13.1)."""

    ask: PermissionAsk
    verdict: Verdict
    message: str = ""


@dataclass(frozen=True)
class RecordUsage:
    """Keep what a turn cost (R13.8), for the conversation it answered."""

    usage: TurnUsage
    conversation: Conversation | None = None


@dataclass(frozen=True)
class ShowStatus:
    """Show (post, then edit) the running turn's status line (R13.7)."""

    conversation: Conversation
    text: str


@dataclass(frozen=True)
class EndStatus:
    """The turn whose status line was shown ended: remove the line (None), or edit it into
    the outcome of a turn that failed or was stopped (R13.7)."""

    conversation: Conversation
    outcome: str | None = None


@dataclass(frozen=True)
class Mark:
    """React on these people's messages, which queued nudges came from (R13.7)."""

    messages: tuple[int, ...]
    mark: ports.Mark


@dataclass(frozen=True)
class OfferQueue:
    """Read the agent's queue and offer it with `nudged`."""


@dataclass(frozen=True)
class TellBlocked:
    """Read the agent's queue and answer with `tell_blocked`; `told`: the conversations
    that were just told already (R4.11: one notice per conversation)."""

    blocked: Blocked
    told: tuple[Conversation, ...] = ()


@dataclass(frozen=True)
class SaveHealth:
    health: Health


@dataclass(frozen=True)
class SaveSession:
    session_id: str | None


@dataclass(frozen=True)
class SaveError:
    error: str


@dataclass(frozen=True)
class RecordProcess:
    pid: int


@dataclass(frozen=True)
class ForgetProcess:
    pid: int


@dataclass(frozen=True)
class Post:
    """Post agent text into the conversation its turn answers (None: the agent's home),
    routed like a message with these hops (R2.6, R5.1)."""

    text: str
    hops: int
    conversation: Conversation | None = None


@dataclass(frozen=True)
class Notify:
    where: Conversation
    text: str


@dataclass(frozen=True)
class Alert:
    text: str


@dataclass(frozen=True)
class Escalate:
    """Open escalation `key`; send `alert` only if it was not open yet (R6.1)."""

    key: str
    detail: str
    alert: str | None


@dataclass(frozen=True)
class Recover:
    """Close escalation `key`; send `alert` only if it was open."""

    key: str
    alert: str | None


@dataclass(frozen=True)
class Kick:
    """Schedule a pass over this agent's queue, as its own task; `start` even if empty."""

    start: bool = False


@dataclass(frozen=True)
class Log:
    level: int
    text: str


Effect = (Spawn | Write | Kill | Terminate | Interrupt | Ask | AskWithdrawn | AnswerAsk
          | MarkAttempted | Answer | RecordUsage | ShowStatus | EndStatus | Mark
          | OfferQueue
          | TellBlocked
          | SaveHealth | SaveSession | SaveError | RecordProcess | ForgetProcess | Post
          | Notify | Alert | Escalate | Recover | Kick | Log)
