"""A turn's live status shown (R13.7): the ⏳ message edited in place, then removed or turned
into the outcome; 👀 ✅ ⏸️ ❌ on the person's message; Matrix typing; the Stop button.

What to show and when is the supervisor's (`supervisor.progress` and the run's status
timer); this shows it. Edits go through the outbox in their room's order; a status edit is
the one kind the outbox may drop (a newer one replaces it), and they are spread so that all
turns' edits together stay under the platform's limit (Slack's Tier 3 for `chat.update`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace

from crewbridge.bot.config import Config
from crewbridge.bot.conversations import Conversations
from crewbridge.bot.model import BOT_NAME, Platform, PostKind, PostOp
from crewbridge.bot.outbox import Outbox
from crewbridge.bot.store import RoomMessage, Store
from crewbridge.bot.store_outbox import NewPost
from crewbridge.bridges.base import Acted, Bridge, Button
from crewbridge.supervisor.ports import Clock, Conversation, Mark

log = logging.getLogger(__name__)

STOP = Button("stop", "Stop", "🛑", "danger")
STOP_CHOICES = frozenset({"stop", "🛑"})
LEFT_OVER_KEY = "status.cards"  # the status messages shown, for a restart to take back
HEADROOM = 0.8  # of a platform's edit limit, the share status edits may use


def edit_gap(interval_s: float, live_cards: int, per_minute: float | None) -> float:
    """The least time between two edits of one status message: the configured interval,
    or longer when `live_cards` messages together would pass the platform's limit."""
    if not per_minute or live_cards <= 0:
        return interval_s
    return max(interval_s, 60.0 * live_cards / (per_minute * HEADROOM))


@dataclass
class Card:
    """One status message: its stored message, where, and when it was last edited."""

    message: int
    conversation: Conversation
    rooms: tuple[tuple[str, str], ...]
    edited_at: float


StopBy = Callable[[str, Conversation, Acted], Awaitable[None]]
"""Stop an agent's running turn in a conversation for whoever pressed Stop
(`bot.steer_ops.SteerOps.stop_pressed`)."""


class StatusOps:
    def __init__(self, store: Store, outbox: Outbox, conversations: Conversations,
                 bridges: Mapping[str, Bridge], config: Config, clock: Clock, stop_by: StopBy):
        self.store = store
        self.outbox = outbox
        self.conversations = conversations
        self.bridges = bridges
        self.config = config
        self.clock = clock
        self.stop_by = stop_by
        self._cards: dict[str, Card] = {}  # by agent: its running turn's status message
        self._origins: dict[int, RoomMessage | None] = {}  # person's message -> where it is
        self._marked: dict[int, str] = {}  # message -> the mark on it now
        self._typing: Counter[tuple[str, str]] = Counter()  # turns running, per room
        self._typing_wanted: dict[tuple[str, str], bool] = {}
        self._typists: dict[tuple[str, str], asyncio.Task] = {}

    # --- the status message -----------------------------------------------------------------

    async def show(self, agent: str, conversation: Conversation, text: str) -> None:
        card = self._cards.get(agent)
        now = self.clock.now()
        if card is None or card.conversation != conversation:
            await self._post(agent, conversation, text, now)
            return
        if now - card.edited_at < self._gap(card):
            return  # the next one, a few seconds on, says more anyway
        card.edited_at = now
        await self._change(card, text, PostOp.EDIT, PostKind.STATUS, (STOP,))

    async def end(self, agent: str, conversation: Conversation, outcome: str | None) -> None:
        """Remove the message, or (a failed or stopped turn) edit it into the outcome."""
        card = self._cards.pop(agent, None)
        if card is None:
            return
        await self._forget_left_over(card.message)
        if outcome is None:
            await self._change(card, "", PostOp.DELETE, PostKind.STATUS, ())
        else:
            await self._change(card, outcome, PostOp.EDIT, PostKind.NOTICE, ())

    async def _post(self, agent: str, conversation: Conversation, text: str,
                    now: float) -> None:
        said = self.conversations.said(conversation, BOT_NAME, text, kind=PostKind.STATUS,
                                       buttons=(STOP,))
        rooms = tuple(r for r in said.rooms if r[0] != Platform.CONSOLE
                      or self.config.console.show_progress)
        if not rooms:
            return
        said = replace(said, rooms=rooms)
        [message] = await self.store.add_said([said], now)
        self.outbox.stored([said])
        self._cards[agent] = Card(message, conversation, rooms, now)
        await self._remember_left_over(message, rooms)

    async def _change(self, card: Card, text: str, op: PostOp, kind: PostKind,
                      buttons: tuple[Button, ...]) -> None:
        await self.outbox.add_changes(
            NewPost(p, r, text, kind, BOT_NAME, thread=card.conversation.thread,
                    message=card.message, op=op, buttons=buttons) for p, r in card.rooms)

    def _gap(self, card: Card) -> float:
        limits = [self.bridges[p].edits_per_minute for p, _ in card.rooms if p in self.bridges]
        per_minute = min((x for x in limits if x), default=None)
        live = sum(1 for c in self._cards.values()
                   if any(p in {q for q, _ in card.rooms} for p, _ in c.rooms))
        return edit_gap(self.config.agent.status_interval_s, live, per_minute)

    # --- status messages a restart left behind ----------------------------------------------

    async def take_back_left_overs(self) -> None:
        """The status messages of turns the bot's last run did not end are stale: deleted."""
        left = json.loads(await self.store.get_value(LEFT_OVER_KEY) or "{}")
        for message, rooms in left.items():
            await self.outbox.add_changes(
                NewPost(p, r, "", PostKind.STATUS, BOT_NAME, message=int(message),
                        op=PostOp.DELETE) for p, r in rooms)
        await self.store.delete_value(LEFT_OVER_KEY)

    async def _remember_left_over(self, message: int, rooms: tuple[tuple[str, str], ...]
                                  ) -> None:
        left = json.loads(await self.store.get_value(LEFT_OVER_KEY) or "{}")
        left[str(message)] = rooms
        await self.store.put_value(LEFT_OVER_KEY, json.dumps(left))

    async def _forget_left_over(self, message: int) -> None:
        left = json.loads(await self.store.get_value(LEFT_OVER_KEY) or "{}")
        if left.pop(str(message), None) is not None:
            await self.store.put_value(LEFT_OVER_KEY, json.dumps(left))

    # --- marks on the person's message ------------------------------------------------------

    async def mark(self, messages: list[int], mark: Mark) -> None:
        """Put `mark` on these people's messages, in the room each was written in, in place
        of the mark before (R13.7). Answered and cleared messages are done with; a waiting
        or failed one comes back as 👀 when it is given again."""
        final = mark in (Mark.ANSWERED, Mark.CLEARED)
        changes: list[NewPost] = []
        for origin in await self._origins_of(messages, forget=final):
            before = self._marked.pop(origin.id, None)
            if before != mark.value:
                if before:
                    changes.append(NewPost(origin.platform, origin.room, before,
                                           message=origin.id, op=PostOp.UNREACT))
                if mark.value:
                    changes.append(NewPost(origin.platform, origin.room, mark.value,
                                           message=origin.id, op=PostOp.REACT))
                await self._type(origin, was=before == Mark.WORKING.value,
                                 now=mark is Mark.WORKING)
            if not final:
                self._marked[origin.id] = mark.value
        await self.outbox.add_changes(changes)

    async def _origins_of(self, messages: list[int], *, forget: bool) -> list[RoomMessage]:
        """Where these messages were written (those on a platform), looked up once."""
        missing = [i for i in messages if i not in self._origins]
        found = await self.store.written_where(missing)
        self._origins.update({i: found.get(i) for i in missing})
        origins = [self._origins.pop(i) if forget else self._origins[i] for i in messages]
        return [o for o in dict.fromkeys(origins) if o and o.platform != Platform.CONSOLE]

    async def _type(self, origin: RoomMessage, *, was: bool, now: bool) -> None:
        """Matrix shows the bot typing in a room while a turn for it runs (R13.7)."""
        bridge = self.bridges.get(origin.platform)
        if bridge is None or origin.platform != Platform.MATRIX or was == now:
            return
        room = (origin.platform, origin.room)
        count = self._typing[room] + (1 if now else -1)
        if count > 0:
            self._typing[room] = count
        else:
            self._typing.pop(room, None)
        if (now and count == 1) or (not now and count <= 0):  # the first in, the last out
            self._typing_wanted[room] = now
            typist = self._typists.get(room)
            if typist is None or typist.done():  # not awaited: the answer must not wait on it
                self._typists[room] = asyncio.create_task(self._typist(bridge, room),
                                                          name=f"typing-{origin.room}")

    async def _typist(self, bridge: Bridge, room: tuple[str, str]) -> None:
        """Tell the platform until it shows what is wanted now (on and off in order)."""
        shown: bool | None = None
        while shown != self._typing_wanted.get(room):
            shown = self._typing_wanted[room]
            try:
                await bridge.typing(room[1], shown)
            except Exception:  # best effort
                log.debug("typing in %s failed", room[1], exc_info=True)

    # --- the Stop button (R13.6) -------------------------------------------------------------

    async def acted(self, e: Acted) -> bool:
        """A Stop pressed (or 🛑 reacted) on a status message; False: not one of ours."""
        if e.choice.replace("\ufe0f", "") not in STOP_CHOICES:
            return False
        for agent, card in list(self._cards.items()):
            if await self.store.ref_in(card.message, e.platform, e.room) == e.ref:
                await self.stop_by(agent, card.conversation, e)
                return True
        return False

