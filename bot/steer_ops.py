"""Steering agents from chat (R13): stopping a running turn (R13.6), by whom (R13.2).

The rules — who may steer, which agent a room means — are pure (`bot.inbound.may_steer`,
`Crew.agent_of_channel`, `Crew.thread_agent`); this carries them out against the running
supervisor, whose run says which messages the turn answers and so who asked.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from bot.config import Config
from bot.conversations import Conversations
from bot.crew import Crew
from bot.inbound import may_steer
from bot.model import RoomRef
from bot.routing import split_nudge
from bot.store import Store
from bot.store_usage import Actor
from bridges.base import Inbound
from supervisor.ports import Conversation
from supervisor.supervisor import Supervisor


class SteerOps:
    def __init__(self, store: Store, crew: Crew, conversations: Conversations,
                 supervisor: Supervisor, config: Config,
                 bot_says: Callable[..., Awaitable[None]], now: Callable[[], float]):
        self.store = store
        self.crew = crew
        self.conversations = conversations
        self.supervisor = supervisor
        self.config = config
        self.bot_says = bot_says  # (conversation, text, *, only=room)
        self.now = now

    async def stop_turn(self, channel: str, msg: Inbound,
                         recorded: tuple[int, int | None] | None, agent: str | None,
                         only: RoomRef) -> None:
        """`!stop` (R13.6): the named agent's turn, else that of the thread's agent, the
        DM's worker or the channel's lead; by someone who may steer it (R13.2). The answer,
        or the refusal, goes to the room it was typed in, in its thread."""
        thread_id = recorded[1] if recorded else None
        where = Conversation(channel, thread_id)
        thread = await self.store.thread(thread_id) if thread_id else None
        agent = agent or (await self.conversations.thread_agent(thread) if thread
                          else self.crew.agent_of_channel(channel))
        if agent is None:
            await self.bot_says(where, "Nothing to stop here: write `!stop @<agent>`.",
                                only=only)
            return
        view = self.supervisor.run_view(agent)
        askers = [split_nudge(text)[0] for text in view.asked] if view else []
        approvers = self.config.channel_or_default(channel).approvers
        if not may_steer(msg, approvers, self.config.admin.users, askers):
            answer = (f"{msg.sender_name}, only the people who may approve for #{channel} "
                      f"can stop {agent}; nothing was stopped.")
        else:
            answer = await self.supervisor.stop_turn(agent, msg.sender_name)
        await self.store.audit_act(Actor.of(msg, channel), f"!stop @{agent}", answer,
                                   self.now())  # R13.9
        await self.bot_says(where, answer, only=only)
