"""Approvals carried out (R13.1–R13.4): cards posted and edited, decisions checked and
answered on the control protocol, the deadline kept, "Always allow" remembered.

The rules — what a card says, who may decide, what words and clicks mean — are pure
(`bot.approvals`); the store keeps every request with its card (`bot.store_approvals`), so
a restart of the bot loses none, and the supervisor's run knows which requests are live.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from crewbridge.bot.approvals import (
    Approval,
    ApprovalState,
    TypedVerdict,
    buttons,
    card_text,
    deny_message,
    expired_message,
    may_decide,
    refusal,
    verdict_of,
)
from crewbridge.bot.config import Config
from crewbridge.bot.conversations import Conversations
from crewbridge.bot.crew import Crew
from crewbridge.bot.model import BOT_NAME, Platform, PostKind, PostOp
from crewbridge.bot.outbox import Outbox
from crewbridge.bot.routing import split_nudge
from crewbridge.bot.store import Store
from crewbridge.bot.store_outbox import NewPost, Said
from crewbridge.bot.store_usage import Actor
from crewbridge.bridges.base import Acted, Bridge, Inbound, ThreadRef
from crewbridge.supervisor.control import PermissionAsk, Verdict
from crewbridge.supervisor.ports import AgentSpec, Clock, Conversation
from crewbridge.supervisor.supervisor import Supervisor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Decider:
    """Who decides, and where they did it (to answer them there alone, R13.2)."""

    platform: str
    room: str
    sender: str
    name: str

    @classmethod
    def of(cls, e: Inbound | Acted) -> Decider:
        return cls(e.platform, e.room, e.sender, e.sender_name)

    def actor(self, channel: str) -> Actor:
        return Actor(self.name, self.platform, channel, self.sender)


SpecFor = Callable[[str], Awaitable[AgentSpec | None]]


class ApprovalOps:
    def __init__(self, store: Store, crew: Crew, supervisor: Supervisor, config: Config,
                 outbox: Outbox, conversations: Conversations, bridges: Mapping[str, Bridge],
                 clock: Clock, spec_for: SpecFor):
        self.store = store
        self.crew = crew
        self.supervisor = supervisor
        self.config = config
        self.outbox = outbox
        self.conversations = conversations
        self.bridges = bridges
        self.clock = clock
        self.spec_for = spec_for
        self._changed = asyncio.Event()  # a request was added: the deadline may be sooner

    async def load(self) -> None:
        """The rules "Always allow" added, for the agents' command lines (R13.1)."""
        self.crew.tool_rules = await self.store.tool_rules()

    # --- what the supervisor reports --------------------------------------------------------

    async def asked(self, agent: str, conversation: Conversation, ask: PermissionAsk) -> None:
        """A card in the turn's conversation (R13.1); or, for a request asked again by an
        agent resumed after a restart, the card already shown (R13.4)."""
        live = set(self.supervisor.asking(agent)) - {ask.request_id}
        if await self.store.rebind_approval(agent, ask.tool, ask.input, ask.request_id, live):
            log.info("%s asked again for %s; its card stays open", agent, ask.tool)
            return
        view = self.supervisor.run_view(agent)
        askers = tuple(dict.fromkeys(split_nudge(t)[0] for t in view.asked)) if view else ()
        now = self.clock.now()
        request = Approval(0, agent, conversation.channel, conversation.thread, ask.request_id,
                           ask.tool, ask.input, ask.rule, ask.safety, askers,
                           deadline=now + self.config.agent.approval_timeout_s)

        def card(a: Approval) -> Said:
            return self.conversations.said(conversation, BOT_NAME, card_text(a),
                                           kind=PostKind.CARD, buttons=buttons(a))

        stored = await self.store.add_approval(request, card, now)
        self.outbox.stored([card(stored)])
        self._changed.set()

    async def withdrawn(self, agent: str, request_id: str, why: str) -> None:
        """The request waits no more (R13.3): its card says so."""
        a = await self.store.approval_of_request(agent, request_id)
        if a is not None and await self.store.settle_approval(
                a.id, ApprovalState.WITHDRAWN, "", why, self.clock.now()):
            await self._show(replace(a, state=ApprovalState.WITHDRAWN, reason=why))

    # --- what people do ---------------------------------------------------------------------

    async def acted(self, e: Acted) -> None:
        """A button pressed or a reaction on a card (R13.1); other posts' are no decision."""
        verdict = verdict_of(e.choice)
        a = await self.store.approval_of_ref(e.platform, e.room, e.ref) if verdict else None
        if a is not None and verdict is not None:
            await self.decide(a, verdict, "", Decider.of(e))

    async def typed(self, channel: str | None, msg: Inbound, typed: TypedVerdict) -> bool:
        """A decision typed (R13.1): `/allow 3` anywhere, or a bare word answering a card.
        False when a bare word answers no card: it is a message like any other."""
        a = await self._card_typed_to(channel, msg, typed)
        if a is None and typed.number is None:
            return False
        if a is None:
            await self.tell(Decider.of(msg), None, f"There is no approval request {typed.number}.")
        else:
            await self.decide(a, typed.verdict, typed.reason, Decider.of(msg))
        return True

    async def _card_typed_to(self, channel: str | None, msg: Inbound,
                             typed: TypedVerdict) -> Approval | None:
        """The request numbered; else the card replied to, the card a thread hangs under,
        or the newest request waiting in the thread the word was written in."""
        if typed.number is not None:
            return await self.store.approval(typed.number)
        for ref in (msg.reply_to, msg.thread):
            if ref and (a := await self.store.approval_of_ref(msg.platform, msg.room, ref)):
                return a
        if channel is None or msg.thread is None:
            return None
        if msg.platform == Platform.CONSOLE:
            row = await self.store.thread_by_number(channel, int(msg.thread))
            thread = row.id if row else None
        else:
            thread = await self.store.thread_rooted_at(msg.platform, msg.room, msg.thread)
        return await self.store.latest_pending(channel, thread) if thread else None

    async def tell(self, by: Decider, thread: int | None, text: str) -> None:
        """`text` to `by` alone where they acted, in the request's thread (R13.2)."""
        bridge = self.bridges.get(by.platform)
        if bridge is None:
            return
        target = await self.store.thread_target(thread, by.platform, by.room) if thread else None
        where = ThreadRef(target.root, target.number, target.latest) if target else None
        try:
            await bridge.tell(by.room, by.sender, text, where)
        except Exception:  # best effort: the refusal changes nothing either way
            log.warning("could not tell %s on %s: %s", by.name, by.platform, text,
                        exc_info=True)

    async def decide(self, a: Approval, verdict: Verdict, reason: str, by: Decider) -> None:
        """`by` decides request `a` (R13.1): refused privately unless they may (R13.2);
        answered on the control protocol; the card edited into the outcome (R13.3); "Always
        allow" remembered for the channel; every attempt audited (R13.9)."""
        channel = a.channel
        what = f"{verdict} request {a.id} ({a.agent}: {a.tool})"
        if verdict is Verdict.ALWAYS and not a.rule:
            verdict = Verdict.ALLOW  # the request forbids remembering (R13.2)
        if a.state is not ApprovalState.PENDING:
            await self._refuse(by, a, what, f"Request {a.id} is already {a.state}.")
            return
        ch = self.config.channel_or_default(channel)
        if not may_decide(by.platform, by.sender, by.name, a, approvers=ch.approvers,
                          admins=self.config.admin.users):
            await self._refuse(by, a, what, refusal(by.name, a))
            return
        state = ApprovalState.of(verdict)
        now = self.clock.now()
        if not await self.store.settle_approval(a.id, state, by.name, reason, now):
            await self._refuse(by, a, what, f"Request {a.id} was decided a moment ago.")
            return
        message = deny_message(by.name, reason) if verdict is Verdict.DENY else ""
        if not await self.supervisor.decide(a.agent, a.request_id, verdict, message):
            await self.store.reopen_approval(a.id)  # R13.4: the session that asked is gone
            await self._refuse(by, a, what, (
                f"{a.agent}'s session that asked for request {a.id} has ended, so nothing "
                f"was decided; if it still needs the tool it will ask again here."))
            return
        if state is ApprovalState.ALWAYS:
            await self._remember(a, by, now)
        await self.store.audit_act(by.actor(channel), what, state, now)
        await self._show(replace(a, state=state, decided_by=by.name, reason=reason))

    async def _refuse(self, by: Decider, a: Approval, what: str, text: str) -> None:
        await self.store.audit_act(by.actor(a.channel), what, f"refused: {text}",
                                   self.clock.now())
        await self.tell(by, a.thread, text)

    async def _remember(self, a: Approval, by: Decider, now: float) -> None:
        """"Always allow": the rule joins the channel's `--allowedTools` for its agents'
        later sessions (the running one was told with the answer)."""
        await self.store.add_tool_rule(a.channel, a.rule, by.name, now)
        rules = self.crew.tool_rules.get(a.channel, ())
        if a.rule not in rules:
            self.crew.tool_rules[a.channel] = (*rules, a.rule)
        for name in self.supervisor.run_views():
            spec = await self.spec_for(name)
            if spec is not None:
                self.supervisor.refresh_spec(spec)

    # --- the deadline (R13.3) ---------------------------------------------------------------

    async def run_deadlines(self) -> None:
        """Deny every request no one decided within `approval_timeout_s`; pending requests
        from before a restart keep their deadline (R13.4)."""
        while True:
            self._changed.clear()
            pending = await self.store.pending_approvals()
            now = self.clock.now()
            for a in (p for p in pending if p.deadline <= now):
                await self._expire(a)
            later = [p.deadline for p in pending if p.deadline > now]
            sleep = self.clock.sleep(min(later) - now) if later else asyncio.Event().wait()
            waits = [asyncio.ensure_future(sleep), asyncio.ensure_future(self._changed.wait())]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()

    async def _expire(self, a: Approval) -> None:
        timeout = self.config.agent.approval_timeout_s
        if not await self.store.settle_approval(a.id, ApprovalState.EXPIRED, "", "",
                                                self.clock.now()):
            return
        await self.supervisor.decide(a.agent, a.request_id, Verdict.DENY,
                                     expired_message(timeout))
        await self.store.audit_act(Actor(BOT_NAME, "bot", a.channel), f"deadline of request "
                                   f"{a.id} ({a.agent}: {a.tool})", "denied", self.clock.now())
        await self._show(replace(a, state=ApprovalState.EXPIRED))

    # --- the card ----------------------------------------------------------------------------

    async def _show(self, a: Approval) -> None:
        """Edit the card, in every room it was posted to, into `a`'s state (R13.3)."""
        if a.message is None:
            return
        said = self.conversations.said(Conversation(a.channel, a.thread), BOT_NAME,
                                       card_text(a), kind=PostKind.CARD)
        await self.outbox.add_changes(
            NewPost(p, r, said.text, PostKind.CARD, BOT_NAME, thread=a.thread,
                    message=a.message, op=PostOp.EDIT) for p, r in said.rooms)
