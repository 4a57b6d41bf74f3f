"""Starting one agent process: its command line, its environment, its identity (R3.2, R3.3,
R10.4, R10.5). The executor decides *whether* to start; this module only starts.

Starts are serialised (one fork at a time) so that a burst of them never blocks the event
loop, and a start the OS refuses for want of descriptors or processes (EMFILE, ENFILE,
EAGAIN) is told apart from a start that failed: the first is not the agent's failure
(R4.2) and waits for a process to exit (R3.7).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from pathlib import Path

from crewbridge.supervisor.environment import AgentTokens, agent_environment
from crewbridge.supervisor.ports import AgentConfig, AgentSpec
from crewbridge.supervisor.protocol import AgentEvent
from crewbridge.supervisor.session import OutOfResources, Session, SpawnError, agent_argv


@dataclass(frozen=True)
class Started:
    session: Session
    session_id: str


@dataclass(frozen=True)
class NoResources:
    """The OS could not give the process what it needs now; try again when one exits."""

    reason: str


@dataclass(frozen=True)
class StartFailed:
    error: str


StartOutcome = Started | NoResources | StartFailed


class Starter:
    def __init__(self, cfg: AgentConfig, *, socket_path: Path,
                 withheld_env: Collection[str] = ()):
        self.cfg = cfg
        self.socket_path = socket_path
        self.withheld_env = frozenset(withheld_env)  # the config's ${NAME}s (R10.5)
        self.tokens = AgentTokens()  # whom a control-socket request speaks for (R10.4)
        self._forking = asyncio.Lock()  # one process start at a time

    async def start(self, spec: AgentSpec, resume: str | None,
                    on_event: Callable[[AgentEvent], Awaitable[None]],
                    on_exit: Callable[[int], Awaitable[None]], *,
                    fork: bool = False) -> StartOutcome:
        """Start `spec` fresh (a new session id), resumed (`resume`), or forked from
        `resume` under a new id (`fork`, R12.3)."""
        session_id = str(uuid.uuid4()) if fork or not resume else resume
        argv = agent_argv(spec.command, session_id=session_id, resume=resume,
                          prompt=spec.prompt, fork=fork, flags=spec.policy.flags())
        session = Session(spec.name, argv, cwd=Path(spec.workdir), env=self.environment(spec),
                          on_event=on_event, on_exit=on_exit)
        try:
            async with self._forking:
                await session.start()
        except OutOfResources as e:
            return NoResources(str(e))
        except SpawnError as e:
            return StartFailed(str(e))
        if spec.policy.approvals:
            await session.initialize()
        return Started(session, session_id)

    def environment(self, spec: AgentSpec) -> dict[str, str]:
        """The agent's environment: none of the bot's secrets, and who it is."""
        return agent_environment(
            os.environ, withheld=self.withheld_env, configured={**self.cfg.env, **spec.env},
            identity={"CREWBRIDGE_SOCKET": str(self.socket_path),
                      "CREWBRIDGE_AGENT": spec.name,
                      "CREWBRIDGE_TOKEN": self.tokens.issue(spec.name)})
