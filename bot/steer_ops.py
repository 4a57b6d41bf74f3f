"""Steering agents from chat (R13): stopping a running turn (R13.6), by whom (R13.2).

The rules — who may steer, which agent a room means — are pure (`bot.inbound.may_steer`,
`Crew.agent_of_channel`, `Crew.thread_agent`); this carries them out against the running
supervisor, whose run says which messages the turn answers and so who asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from crewbridge.bot.config import Config
from crewbridge.bot.crew import Crew
from crewbridge.bot.inbound import may_steer
from crewbridge.bot.model import RoomRef
from crewbridge.bot.routing import split_nudge
from crewbridge.bot.store import Store
from crewbridge.bot.store_usage import Actor
from crewbridge.bridges.base import Acted, Inbound
from crewbridge.supervisor.ports import Conversation
from crewbridge.supervisor.supervisor import Supervisor


class SteerOps:
    def __init__(self, store: Store, crew: Crew,
                 supervisor: Supervisor, config: Config,
                 bot_says: Callable[..., Awaitable[None]], now: Callable[[], float],
                 tell: Callable[[Acted, int | None, str], Awaitable[None]]):
        self.store = store
        self.crew = crew
        self.supervisor = supervisor
        self.config = config
        self.bot_says = bot_says  # (conversation, text, *, only=room)
        self.now = now
        self.tell = tell  # (who, thread id, text): to them alone

    async def stop_turn(self, channel: str, msg: Inbound,
                         recorded: tuple[int, int | None] | None, agent: str | None,
                         only: RoomRef) -> None:
        """`!stop` (R13.6): the named agent's turn; in a thread, the turns answering that
        thread (the lead's answer to its root, the fork's or the worker's); at a room's top
        level, its lead's or its DM's worker's — by someone who may steer it (R13.2). The
        answer, or the refusal, goes to the room it was typed in, in its thread."""
        thread_id = recorded[1] if recorded else None
        where = Conversation(channel, thread_id)
        if agent is not None:
            agents = [agent]
        elif thread_id is not None:
            agents = self.supervisor.answering(where) or await self._owner(thread_id)
        else:
            agents = [a for a in [self.crew.agent_of_channel(channel)] if a]
        if not agents:
            await self.bot_says(where, "Nothing to stop here: write `!stop @<agent>`.",
                                only=only)
            return
        for name in agents:
            answer = self._refusal(msg, channel, name) or await self.supervisor.stop_turn(
                name, msg.sender_name)
            await self.store.audit_act(Actor.of(msg, channel), f"!stop @{name}", answer,
                                       self.now())  # R13.9
            await self.bot_says(where, answer, only=only)

    async def stop_pressed(self, agent: str, where: Conversation, e: Acted) -> None:
        """The Stop button (Slack) or 🛑 (Matrix) on `agent`'s status message (R13.6): as
        `!stop @agent`, by someone who may steer it; a refusal is told to them alone."""
        answer = self._refusal(e, where.channel, agent)
        if answer is None:
            await self.supervisor.stop_turn(agent, e.sender_name)  # the stop says who
        await self.store.audit_act(Actor.of(e, where.channel), f"Stop @{agent}",
                                   answer or "stopped", self.now())  # R13.9
        if answer is not None:
            await self.tell(e, where.thread, answer)

    async def _owner(self, thread_id: int) -> list[str]:
        """The agent a thread belongs to, when no turn is answering it now."""
        thread = await self.store.thread(thread_id)
        agent = self.crew.thread_agent(thread) if thread else None
        return [agent] if agent else []

    def _refusal(self, msg: Inbound | Acted, channel: str, agent: str) -> str | None:
        """Why `msg`'s sender may not stop `agent`'s running turn; None when they may (or
        when there is no turn: the supervisor says so)."""
        view = self.supervisor.run_view(agent)
        if view is None or not view.in_turn:
            return None
        askers = [split_nudge(text)[0] for text in view.asked]
        approvers = self.config.channel_or_default(channel).approvers
        if may_steer(msg, approvers, self.config.admin.users, askers):
            return None
        return (f"{msg.sender_name}, only the people who may approve for #{channel} can "
                f"stop {agent}; nothing was stopped.")
