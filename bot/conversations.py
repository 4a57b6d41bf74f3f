"""Which conversation a message is in, and where the bot's posts go (R5.1, R12).

A conversation is a channel's top level or one of its threads (`Conversation`). A person's
top-level message in a channel with a lead opens a thread for its answers (R12.1, unless
the channel says `replies = "channel"`); a reply in a thread reaches the agent the thread
belongs to (R12.2, `Crew.thread_agent`); a turn's text goes into the conversation it
answers, in every room bound to that channel, a worker's also to her DMs (R1.6), and — when
no room would show it — to the agent's task's topic room or the general channel (R5.1).

The rules are `Crew`'s and `Rooms`'; this class holds the store look-ups around them, so
the App only carries out what it says.
"""

from __future__ import annotations

import logging

from crewbridge.bot.config import Config, Replies
from crewbridge.bot.crew import Crew
from crewbridge.bot.model import Platform, PostKind, RoomRef, dm_channel_of
from crewbridge.bot.rooms import Rooms
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import Said
from crewbridge.bot.store_threads import ThreadRow
from crewbridge.bridges.base import AuthorRole, Button, Inbound
from crewbridge.supervisor.ports import Conversation

log = logging.getLogger(__name__)


class UnknownThread(Exception):
    """A console reply names a thread number the channel does not have (R12.6)."""


class Conversations:
    def __init__(self, store: Store, rooms: Rooms, crew: Crew, config: Config):
        self.store = store
        self.rooms = rooms
        self.crew = crew
        self.config = config

    # --- a person's message ------------------------------------------------------------------

    async def thread_of(self, channel: str, msg: Inbound, now: float) -> ThreadRow | None:
        """The thread `msg` replies in, None for a top-level message. The console names a
        thread by its number (R12.6); an unknown number raises `UnknownThread`."""
        if msg.thread is None:
            return None
        if msg.platform == Platform.CONSOLE:
            thread = await self.store.thread_by_number(channel, int(msg.thread))
            if thread is None:
                raise UnknownThread(f"#{channel} has no thread {msg.thread}.")
            return thread
        return await self.store.thread_of_reply(channel, msg.platform, msg.room, msg.thread,
                                                now)

    async def thread_agent(self, thread: ThreadRow) -> str | None:
        """Whom a person's reply in `thread` reaches (R12.2); a fork, once chosen, owns the
        thread for good, so a change of the channel's `threads` setting leaves it be."""
        agent = self.crew.thread_agent(thread)
        if agent is not None and thread.owner is None and self.crew.fork_of(agent):
            await self.store.set_thread_owner(thread.id, agent)
        return agent

    def roots_thread(self, channel: str, nudges_anyone: bool) -> bool:
        """Whether a person's top-level message opens a thread for its answers (R12.1)."""
        return (nudges_anyone and self.crew.is_lead(channel)
                and self.config.channel_or_default(channel).replies is Replies.THREAD)

    # --- where the bot's posts go ------------------------------------------------------------

    def said(self, where: Conversation, author: str, text: str, *,
             kind: PostKind = PostKind.AGENT, role: AuthorRole = AuthorRole.BOT,
             origin: RoomRef | None = None, only: RoomRef | None = None,
             relay_of: int | None = None, buttons: tuple[Button, ...] = ()) -> Said:
        """`text` for every room of `where`'s channel but `origin` (or room `only` alone);
        a relay of a person's message does not go to the DMs attached to a worker."""
        if only is not None:
            targets = [only]
        else:
            rooms = self.rooms.rooms_of(where.channel, with_dms=kind is not PostKind.RELAY)
            targets = [r for r in rooms if r != origin]
        return Said(where.channel, author, text, tuple((r.platform, r.room) for r in targets),
                    kind, role, where.thread, relay_of, buttons)

    async def home(self, agent: str) -> Conversation:
        """Where a turn that answers no one posts (R5.1): a lead's channel, a fork's thread,
        a worker's task thread (else her DM channel)."""
        if self.crew.is_lead(agent):
            return Conversation(agent)
        if (fork := self.crew.fork_of(agent)) is not None:
            thread = await self.store.thread_by_number(*fork)
            return Conversation(fork[0], thread.id if thread else None)
        task = await self.store.latest_task_of(agent)
        if task is not None and task.status == "open":
            return Conversation(task.channel, task.thread)
        return Conversation(dm_channel_of(agent))

    def role_of(self, agent: str) -> AuthorRole:
        if self.crew.is_lead(agent):
            return AuthorRole.LEAD
        return AuthorRole.FORK if self.crew.fork_of(agent) else AuthorRole.WORKER

    async def agent_said(self, agent: str, where: Conversation | None, text: str, *,
                         turn: bool = True) -> tuple[Conversation, list[Said]]:
        """An agent's text: into the conversation its turn answers (or its home), a
        worker's turn's also to her DMs (R1.6); never nowhere (R5.1). With the conversation
        it went to, where what it routes is answered."""
        where = where or await self.home(agent)
        role = self.role_of(agent)
        said = [self.said(where, agent, text, role=role)]
        if turn and role is AuthorRole.WORKER and where.channel != dm_channel_of(agent):
            said.append(self.said(Conversation(dm_channel_of(agent)), agent, text, role=role))
        if not any(s.rooms for s in said):
            said = [self.said(await self._fallback(agent), agent, text, role=role)]
            if not said[0].rooms:
                log.warning("%s's post is shown nowhere: no room is bound to #%s or to its "
                            "task's channel; bind the general channel to a room", agent,
                            where.channel)
        return where, said

    async def _fallback(self, agent: str) -> Conversation:
        """Where a post goes that no room would show (R5.1): the topic room of the agent's
        task — its thread — else the general channel."""
        task = await self.store.latest_task_of(agent)
        if task is not None and self.rooms.rooms_of(task.channel):
            return Conversation(task.channel, task.thread)
        return Conversation(self.crew.general)
