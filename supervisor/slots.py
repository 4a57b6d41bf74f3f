"""Who may start, and who makes room, when at most `max_live_agents` processes run (R3.7).

A slot is one agent process (three pipes in the bot). The executor holds a slot for a run
from the moment its start is let go until its process has exited (or its spawn failed);
starts that find every slot held wait, in arrival order. This module is the whole rule,
decided without doing it:

| slots                                  | a start waiting at the head of the queue     |
|----------------------------------------|----------------------------------------------|
| one free                               | goes now                                     |
| none free, a holder already leaving    | waits for that slot (nobody else is stopped) |
| none free, some holder idle            | the least recently active idle one is stopped |
| none free, every holder busy           | waits until a turn ends or a process exits   |

Idle means running and between turns: a session in a turn, or one still starting, is
never stopped for room, so nobody's answer is cut short. A stopped session keeps its
session id and is resumed by its next nudge (as an idle stop, R4.8).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import islice
from typing import Protocol

from crewbridge.supervisor.effects import Spawn
from crewbridge.supervisor.resolve import RunState

WAITING_FOR_SLOT = "waiting for a slot"
"""The `status` state of an agent whose start waits for a slot (R6.4)."""


class Use(Enum):
    """What the holder of a slot is doing, as far as making room is concerned."""

    STARTING = "starting"  # its process is being started
    IN_TURN = "in a turn"  # answering someone
    IDLE = "idle"  # running between turns: may be stopped to make room
    LEAVING = "leaving"  # on its way out already: the slot frees without our asking


def use_of(state: RunState, in_turn: bool, *, asked_to_leave: bool = False) -> Use:
    """A holder's use from its run. `asked_to_leave`: already chosen to make room, its stop
    not carried out yet (it must not be chosen twice, nor someone else in its stead)."""
    if asked_to_leave or state in (RunState.STOPPING, RunState.STOPPED):
        return Use.LEAVING  # STOPPED: exited, its exit about to be handled
    if state is RunState.STARTING:
        return Use.STARTING
    return Use.IN_TURN if in_turn else Use.IDLE


@dataclass(frozen=True)
class Holder:
    """One live process: whose it is, what it is doing, when it last did anything."""

    name: str
    use: Use
    last_activity: float


@dataclass(frozen=True)
class Plan:
    """What to do now: the waiting starts that go (in arrival order) and the idle sessions
    to stop so that the next waiting starts can go when they have exited."""

    admit: tuple[str, ...] = ()
    evict: tuple[str, ...] = ()


def plan(holders: Sequence[Holder], waiting: Sequence[str], limit: int) -> Plan:
    """The table above, for every waiting start at once.

    `waiting` is in arrival order: the first starts take the free slots. Each start still
    waiting after that needs one slot to free; a holder already leaving frees one, and for
    each start left over the least recently active idle holder is stopped. Nobody is
    stopped for a start that a leaving holder's slot will take.
    """
    free = max(0, limit - len(holders))
    admit = tuple(waiting[:free])
    leaving = sum(h.use is Use.LEAVING for h in holders)
    short = len(waiting) - len(admit) - leaving
    if short <= 0:
        return Plan(admit)
    idle = sorted((h for h in holders if h.use is Use.IDLE),
                  key=lambda h: (h.last_activity, h.name))
    return Plan(admit, tuple(h.name for h in idle[:short]))


class RunFacts(Protocol):
    """What the book reads of a holder's run (an `AgentRun`)."""

    @property
    def state(self) -> RunState: ...
    @property
    def in_turn(self) -> bool: ...
    @property
    def last_activity(self) -> float: ...


class Slots:
    """The executor's book of slots: who holds one, who waits for one, in arrival order.

    No I/O and no waiting: `decide` applies `plan` to the book and says what to do now.
    The executor calls it whenever a slot may have freed or a holder may have become idle,
    carries out the starts it lets go and the stops it asks for, and tells the book when a
    process has gone (`release`) or the OS refused a start for want of descriptors
    (`retry`).
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.holding: set[str] = set()
        self.waiting: dict[str, Spawn] = {}
        self.leaving: set[str] = set()  # chosen to make room, their stop not carried out yet
        self.cap: int | None = None  # after EMFILE: no more holders than this until one exits

    def want(self, name: str, spawn: Spawn) -> None:
        """A start joins the back of the queue."""
        self.waiting[name] = spawn

    def release(self, name: str) -> None:
        """`name`'s process has gone (or never came): its slot, and its descriptors, are free."""
        self.holding.discard(name)
        self.leaving.discard(name)
        self.cap = None

    def retry(self, name: str, spawn: Spawn) -> None:
        """The OS had no descriptor or process to spare: the start goes first again, and no
        start is let go until a process exits (idle holders are stopped to that end) or the
        executor lifts the cap after a while."""
        self.holding.discard(name)
        self.waiting = {name: spawn, **self.waiting}
        self.cap = len(self.holding)

    def lift(self) -> None:
        self.cap = None

    def asked(self, name: str) -> None:
        """The holder chosen to make room has been asked (it is stopping now, or kept its slot
        because it began a turn meanwhile): its run says which from here on."""
        self.leaving.discard(name)

    def withdraw_all(self) -> list[tuple[str, Spawn]]:
        """Every waiting start, taken from the queue (the bot is stopping)."""
        taken, self.waiting = list(self.waiting.items()), {}
        return taken

    def decide(self, run_of: Callable[[str], RunFacts]) -> tuple[list[tuple[str, Spawn]],
                                                                 tuple[str, ...]]:
        """The starts that go now (each now holds a slot) and the holders to stop."""
        holders = [Holder(name, use_of(r.state, r.in_turn, asked_to_leave=name in self.leaving),
                          r.last_activity)
                   for name in self.holding for r in (run_of(name),)]
        limit = self.limit if self.cap is None else min(self.limit, self.cap)
        # Only the head of the queue can matter: at most `limit` starts go, and at most
        # `limit` holders are idle or leaving, so a thousand waiting cost what 2 x limit do.
        p = plan(holders, list(islice(self.waiting, 2 * self.limit)), limit)
        admitted = [(name, self.waiting.pop(name)) for name in p.admit]
        self.holding.update(p.admit)
        self.leaving.update(p.evict)
        return admitted, p.evict
