"""The supervisor's contract: the data it is given and the services it asks of its host.

`supervisor/` is the ground floor. It imports nothing from `bot/` or `bridges/`; the core
implements these Protocols (the store, the host) and builds these records (an agent's spec,
the agent settings), in the manner of httpcore's `interfaces.py`: the lower layer owns the
interface, the upper layer plugs into it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import Protocol

from crewbridge.supervisor.breaker import Health
from crewbridge.supervisor.control import PermissionAsk


class AgentKind(StrEnum):
    LEAD = "lead"
    WORKER = "worker"
    FORK = "fork"  # a lead's session forked to answer one thread (R12.3)


@dataclass(frozen=True)
class Conversation:
    """What a turn answers and where its text goes (R3.6, R5.1): a channel's top level, or
    one of its threads (`thread`: the store's id of it)."""

    channel: str
    thread: int | None = None


class PermissionMode(StrEnum):
    """Claude Code's `--permission-mode` (R13.5)."""

    DEFAULT = "default"
    ACCEPT_EDITS = "acceptEdits"
    PLAN = "plan"
    BYPASS = "bypassPermissions"


class Mark(Enum):
    """The bot's reaction on a person's message, as an agent works on it (R13.7); the value
    is the emoji. A message carries one at a time: each replaces the one before."""

    WORKING = "👀"  # an agent started on it
    ANSWERED = "✅"
    WAITING = "⏸️"  # cooldown, breaker, budget, the plan's limit, a process slot
    FAILED = "❌"  # the turn answering it failed
    CLEARED = ""  # none: the turn was stopped by a person (R13.6), its notice says so


@dataclass(frozen=True)
class ToolPolicy:
    """What an agent may do without asking (R13.5), as its command line says it."""

    permission_mode: PermissionMode = PermissionMode.DEFAULT
    allowed_tools: tuple[str, ...] = ()  # Claude Code rules such as "Bash(npm test:*)"
    disallowed_tools: tuple[str, ...] = ()
    model: str = ""  # "" = the CLI's default
    approvals: bool = False  # ask in chat for what the mode does not allow (R13.1)

    def flags(self) -> tuple[str, ...]:
        flags = ["--permission-mode", str(self.permission_mode)]
        if self.approvals:
            flags += ["--permission-prompt-tool", "stdio"]
        if self.allowed_tools:
            flags += ["--allowedTools", ",".join(self.allowed_tools)]
        if self.disallowed_tools:
            flags += ["--disallowedTools", ",".join(self.disallowed_tools)]
        if self.model:
            flags += ["--model", self.model]
        return tuple(flags)


@dataclass(frozen=True)
class AgentSpec:
    """What is needed to (re)start an agent the same way every time (R3.3)."""

    name: str
    kind: AgentKind
    channel: str
    task_id: int | None = None
    prompt: str = ""
    workdir: str = "."
    command: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    thread: int | None = None  # a fork's thread (R12.3): its home, and its breaker's key
    fork_from: str | None = None  # a fork's first start forks this session (the lead's)
    policy: ToolPolicy = ToolPolicy()  # R13.5


@dataclass(frozen=True)
class AgentConfig:
    """The `[agent]` settings (R11.1), as the config reader builds them."""

    command: tuple[str, ...] = ("claude",)
    workdir: Path = Path(".")
    env: dict[str, str] = field(default_factory=dict)
    healthy_after_s: float = 60
    spawn_failure_cooldown_s: float = 120
    max_lead_restarts: int = 3
    max_worker_restarts: int = 3
    breaker_reset_s: float = 600
    breaker_max_s: float = 6 * 3600
    flush_interval_s: float = 2
    idle_stop_s: float = 1800
    turn_timeout_s: float = 900
    stop_grace_s: float = 5
    max_hops: int = 8
    login_command: tuple[str, ...] = ("claude", "auth", "login")
    login_timeout_s: float = 300
    max_live_agents: int = 16  # R3.7
    shutdown_grace_s: float = 10  # R4.9
    max_turn_output_chars: int = 40_000  # R5.8
    daily_budget_usd: float = 0.0  # R13.8, for every channel; 0: none
    permission_mode: PermissionMode = PermissionMode.DEFAULT  # R13.5, for every channel
    allowed_tools: tuple[str, ...] = ()
    disallowed_tools: tuple[str, ...] = ()
    model: str = ""
    approvals: bool = True  # R13.1: ask in chat for what the permission mode does not allow
    approval_timeout_s: float = 900  # R13.3: the bot's deadline; the CLI has none
    status_after_s: float = 5  # R13.7: a turn silent this long shows its status
    seen_after_s: float = 1  # R13.7: 👀 (and typing) once a turn has worked this long
    status_interval_s: float = 3  # R13.7: least time between two edits of it


@dataclass(frozen=True)
class AgentStatus:
    """One row of the admin `status` table (R6.4)."""

    name: str
    kind: str
    state: str
    channel: str
    task_id: int | None
    failures: int
    breaker: str
    last_error: str
    uptime_s: float | None
    queued: int


@dataclass(frozen=True)
class QueuedNudge:
    """A nudge waiting in an agent's durable queue (R3.4, R3.5)."""

    id: int
    agent: str
    text: str
    hops: int
    origin: str
    created_at: float = 0.0
    attempted: bool = False
    """Written to an agent before, by a run that did not answer it (R8.5): it is delivered
    again with a note that the earlier attempt was cut short."""
    thread: int | None = None  # the thread of `origin` it came from, and is answered in
    message: int | None = None  # the person's message it came from (None: an agent's text):
    # the marks of R13.7 go on it

    def conversation(self, home: str) -> Conversation:
        """The conversation this nudge came from (`home`: a channel, when it names none)."""
        return Conversation(self.origin or home, self.thread)


@dataclass(frozen=True)
class AgentRow:
    """What the store remembers of an agent across restarts."""

    name: str
    kind: AgentKind
    channel: str
    task_id: int | None
    session_id: str | None
    last_error: str


@dataclass(frozen=True)
class TurnUsage:
    """What one turn cost (R13.8): dollars (the difference of the process's running total)
    and tokens; `asked`: the queued nudges it answered, whose senders it is counted for;
    `duration_s`: how long it took, as the CLI said (R14.3), None when it did not say."""

    cost_usd: float
    input_tokens: int
    output_tokens: int
    asked: tuple[QueuedNudge, ...] = ()
    duration_s: float | None = None


class Clock(Protocol):
    """Time, injected, so that cooldowns of 120 s are tested in microseconds."""

    def now(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""


class AgentStore(Protocol):
    """The durable state the supervisor reads and writes (implemented by `bot.store.Store`)."""

    async def agent(self, name: str) -> AgentRow | None: ...
    async def agents(self) -> list[AgentRow]: ...
    async def set_session_id(self, name: str, session_id: str | None) -> None: ...
    async def set_agent_error(self, name: str, error: str) -> None: ...
    async def queued(self, agent: str) -> list[QueuedNudge]: ...
    async def queue_lengths(self) -> dict[str, int]: ...
    async def agents_with_queue(self) -> list[str]: ...
    async def mark_attempted(self, ids: Iterable[int]) -> None: ...
    async def health(self, key: str) -> Health: ...
    async def healths(self) -> dict[str, Health]: ...
    async def put_health(self, key: str, h: Health) -> None: ...
    async def open_escalation(self, key: str, detail: str, now: float) -> bool: ...
    async def close_escalation(self, key: str) -> bool: ...
    async def record_process(self, agent: str, pgid: int, started: str) -> None: ...
    async def forget_process(self, agent: str, pgid: int) -> None: ...
    async def take_processes(self) -> list[tuple[str, int, str]]: ...


class Host(Protocol):
    """What the supervisor asks of the rest of the bot: the one interface between them.

    The supervisor knows channels by name only; the host turns them into rooms and posts.
    """

    async def spec_for(self, name: str) -> AgentSpec | None:
        """How agent `name` is started (R3.3), or None when no such agent exists."""

    def has_open_task(self, name: str) -> bool:
        """Whether worker `name` still has an open task (R4.7)."""

    def paused(self, name: str) -> str | None:
        """Why agent `name` may take no new turn now (its channel's daily budget is spent,
        R13.8) — said once to whoever waits — or None."""

    async def agent_posted(self, agent: str, conversation: Conversation | None, text: str,
                           hops: int) -> None:
        """Post an agent's text into `conversation` (None: the agent's home, a turn that
        answers no one) and route it like a message (R2.6, R5.1)."""

    async def answered(self, agent: str, conversation: Conversation | None, texts: list[str],
                       hops: int, nudge_ids: list[int]) -> None:
        """A turn ended and answered these queued nudges: post its last texts (as
        `agent_posted` does) and take the nudges off the queue in one transaction, so a
        message leaves the queue exactly when its answer is in the outbox (R8.5)."""

    async def record_usage(self, agent: str, conversation: Conversation | None,
                           usage: TurnUsage) -> None:
        """Keep what a turn cost, by agent, channel, person and day (R13.8)."""

    async def show_status(self, agent: str, conversation: Conversation, text: str) -> None:
        """Show the running turn's ⏳ status line in `conversation` (R13.7): posted the
        first time, edited in place after that; one line per agent at a time."""

    async def end_status(self, agent: str, conversation: Conversation,
                         outcome: str | None) -> None:
        """The turn whose status line was shown has ended (R13.7): remove the line (None),
        or edit it into `outcome` (the turn failed or was stopped)."""

    async def mark(self, agent: str, messages: list[int], mark: Mark) -> None:
        """Put `mark` on the person's messages these queued nudges came from, in place of
        the bot's earlier mark on them (R13.7); a message that has it already is left
        alone, and one the bot cannot map (an agent's nudge) is skipped."""

    async def notice(self, where: Conversation, text: str) -> None:
        """A short notice from the bot into a conversation."""

    async def alert(self, text: str) -> None:
        """An ops alert for the admin room(s) (R6)."""

    async def permission_asked(self, agent: str, conversation: Conversation,
                               ask: PermissionAsk) -> None:
        """The agent waits for a person to allow or deny `ask` (R13.1): show it for a
        decision in `conversation`; the decision comes back with `Supervisor.decide`."""

    async def permission_withdrawn(self, agent: str, request_id: str, why: str) -> None:
        """The request is no longer waiting (the CLI withdrew it, the turn was stopped, the
        session ended): say so on its card (R13.3)."""
