"""The supervisor's host (`supervisor.ports.Host`): what an agent's run asks of the rest of
the bot — how an agent starts, where its text goes, what its turn cost, its cards and its
status — answered from the App's parts, so that `App` stays wiring.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crewbridge.bot.model import BOT_NAME, Message, Nudge, Platform, PostKind
from crewbridge.bot.routing import route
from crewbridge.bot.store_outbox import Said
from crewbridge.bot.store_usage import turn_shares, utc_day
from crewbridge.supervisor.control import PermissionAsk
from crewbridge.supervisor.ports import AgentSpec, Conversation, Mark, TurnUsage

if TYPE_CHECKING:
    from crewbridge.bot.app import App


class CrewHost:
    def __init__(self, app: App):
        self.app = app

    # --- how an agent starts ------------------------------------------------------------

    async def spec_for(self, name: str) -> AgentSpec | None:
        """How agent `name` is started, from the config and its newest task (R3.3); a
        fork from its thread and the lead's session (R12.3)."""
        app, task = self.app, None
        if (fork := app.crew.fork_of(name)) is not None:
            thread = await app.store.thread_by_number(*fork)
            lead = await app.store.agent(fork[0])
            spec = (app.crew.fork_spec(name, thread.id, lead.session_id if lead else None)
                    if thread else None)
        else:
            if not app.crew.is_lead(name) and app.crew.is_worker(name):
                task = await app.store.latest_task_of(name)
            spec = app.crew.spec_for(name, task)
        if spec is not None:
            await app.store.upsert_agent(spec.name, spec.kind, spec.channel, spec.task_id)
        return spec

    def has_open_task(self, name: str) -> bool:
        return self.app.crew.has_open_task(name)

    def paused(self, name: str) -> str | None:
        return self.app.budget.paused(name)

    # --- what an agent says -------------------------------------------------------------

    async def agent_posted(self, agent: str, conversation: Conversation | None, text: str,
                           hops: int) -> None:
        await self.answered(agent, conversation, [text], hops, [])

    async def answered(self, agent: str, conversation: Conversation | None, texts: list[str],
                       hops: int, nudge_ids: list[int]) -> None:
        """Post an agent's texts into the conversation its turn answered (R5.1, R12), queue
        the nudges they route (R2.6), and dequeue the nudges the turn answered — one
        transaction (R8.5) — then deliver what was routed."""
        await self._agent_says(agent, conversation, texts, hops, nudge_ids, turn=True)

    async def cli_posted(self, agent: str, channel: str, text: str, hops: int) -> None:
        """`crewbridge post <channel>` by an agent: into that channel only (R7.2, R10.4)."""
        await self._agent_says(agent, Conversation(channel), [text], hops, [], turn=False)

    async def _agent_says(self, agent: str, conversation: Conversation | None,
                          texts: list[str], hops: int, nudge_ids: list[int], *,
                          turn: bool) -> None:
        app = self.app
        said: list[Said] = []
        nudges: list[Nudge] = []
        for text in texts:
            where, shown = await app.conversations.agent_said(agent, conversation, text,
                                                              turn=turn)
            said += shown
            message = Message(where.channel, agent, True, Platform.AGENT, text, hops,
                              top_level=where.thread is None, thread=where.thread)
            routing = route(message, app.crew.directory, app.config.agent.max_hops)
            nudges += routing.nudges
            said += [app.conversations.said(Conversation(n.channel, where.thread), BOT_NAME,
                                            n.text, kind=PostKind.NOTICE)
                     for n in routing.notices]
        if said or nudges or nudge_ids:
            await app.outbox.add_answer(said, nudges, nudge_ids)
        app.supervisor.schedule_kick(n.agent for n in nudges)

    async def record_usage(self, agent: str, conversation: Conversation | None,
                           usage: TurnUsage) -> None:
        """R13.8: a turn's cost and tokens, shared equally by the people it answered, added
        to the day's sums for the agent and the channel it answered in (its home channel
        when the turn answered no conversation)."""
        app = self.app
        await app.store.add_usage(utc_day(app.clock.now()), agent,
                                  conversation.channel if conversation else None,
                                  turn_shares(usage))
        home = await app.store.agent(agent) if conversation is None else None
        channel = conversation.channel if conversation else home.channel if home else ""
        app.metrics.turn_ended(usage, channel)
        await app.budget.spent(channel)  # R13.8: a warning, an alert, a pause

    async def notice(self, where: Conversation, text: str) -> None:
        await self.app.notice(where, text)

    async def alert(self, text: str) -> None:
        await self.app.alert(text)

    # --- cards and status (R13.1, R13.7) ------------------------------------------------

    async def permission_asked(self, agent: str, conversation: Conversation,
                               ask: PermissionAsk) -> None:
        await self.app.approvals.asked(agent, conversation, ask)

    async def permission_withdrawn(self, agent: str, request_id: str, why: str) -> None:
        await self.app.approvals.withdrawn(agent, request_id, why)

    async def show_status(self, agent: str, conversation: Conversation, text: str) -> None:
        await self.app.status.show(agent, conversation, text)

    async def end_status(self, agent: str, conversation: Conversation,
                         outcome: str | None) -> None:
        await self.app.status.end(agent, conversation, outcome)

    async def mark(self, agent: str, messages: list[int], mark: Mark) -> None:
        await self.app.status.mark(messages, mark)
