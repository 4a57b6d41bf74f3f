"""Process slots: `supervisor.slots` (R3.7, R3.5, R4.8). Pure: holders and waiting starts
in, the starts that go and the sessions stopped for room out — the table row by row, then
the executor's book of slots through a life of starts, turns and exits.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from crewbridge.supervisor.effects import Spawn
from crewbridge.supervisor.resolve import RunState
from crewbridge.supervisor.slots import Holder, Plan, Slots, Use, plan, use_of


def h(name: str, use: Use, last: float = 0.0) -> Holder:
    return Holder(name, use, last)


IDLE, TURN, STARTING, LEAVING = Use.IDLE, Use.IN_TURN, Use.STARTING, Use.LEAVING

PLAN_ROWS = {
    # (holders, waiting, limit) -> plan
    "r3_7-free-slot-start-goes": ([h("a", IDLE)], ["b"], 2, Plan(admit=("b",))),
    "r3_7-free-slots-go-in-arrival-order": ([], ["c", "a", "b"], 2, Plan(admit=("c", "a"))),
    "r3_7-full-evicts-least-recently-active-idle": (
        [h("a", IDLE, 30), h("b", IDLE, 10), h("c", IDLE, 20)], ["d"], 3,
        Plan(evict=("b",))),
    "r3_7-full-never-evicts-a-session-in-a-turn": (
        [h("a", TURN, 1), h("b", IDLE, 50)], ["c"], 2, Plan(evict=("b",))),
    "r3_7-full-never-evicts-a-starting-session": (
        [h("a", STARTING, 1), h("b", TURN, 2)], ["c"], 2, Plan()),
    "r3_7-full-all-in-a-turn-waits": ([h("a", TURN), h("b", TURN)], ["c", "d"], 2, Plan()),
    "r3_7-a-leaving-holder-frees-the-slot-nobody-else-stops": (
        [h("a", LEAVING), h("b", IDLE)], ["c"], 2, Plan()),
    "r3_7-one-eviction-per-start-not-covered-by-a-leaving-holder": (
        [h("a", LEAVING), h("b", IDLE, 5), h("c", IDLE, 1), h("d", IDLE, 3)], ["x", "y", "z"],
        4, Plan(evict=("c", "d"))),
    "r3_7-more-waiting-than-idle-evicts-every-idle": (
        [h("a", IDLE, 2), h("b", TURN), h("c", IDLE, 1)], ["x", "y", "z"], 3,
        Plan(evict=("c", "a"))),
    "r3_7-ties-broken-by-name": ([h("b", IDLE, 1), h("a", IDLE, 1)], ["c"], 2,
                                 Plan(evict=("a",))),
    "r3_7-nobody-waiting-nobody-stopped": ([h("a", IDLE), h("b", IDLE)], [], 2, Plan()),
    "r3_7-some-go-the-rest-make-room": ([h("a", IDLE, 1), h("b", IDLE, 2)], ["x", "y"], 3,
                                        Plan(admit=("x",), evict=("a",))),
    "r3_7-over-the-limit-admits-nothing": ([h("a", TURN), h("b", IDLE)], ["c"], 1,
                                           Plan(evict=("b",))),
}


@pytest.mark.parametrize(("holders", "waiting", "limit", "expected"), PLAN_ROWS.values(),
                         ids=PLAN_ROWS.keys())
def test_r3_7_plan_row_by_row(holders: list[Holder], waiting: list[str], limit: int,
                              expected: Plan) -> None:
    """R3.7: a free slot starts the head of the queue; a full house stops the least recently
    active idle session per start still waiting; sessions in a turn or starting are never
    stopped, and a session already leaving makes room for one start."""
    assert plan(holders, waiting, limit) == expected


USE_ROWS = {
    "running-between-turns-is-idle": (RunState.RUNNING, False, False, Use.IDLE),
    "running-in-a-turn": (RunState.RUNNING, True, False, Use.IN_TURN),
    "starting": (RunState.STARTING, False, False, Use.STARTING),
    "stopping-is-leaving": (RunState.STOPPING, True, False, Use.LEAVING),
    "exited-not-yet-handled-is-leaving": (RunState.STOPPED, False, False, Use.LEAVING),
    "chosen-to-make-room-is-leaving": (RunState.RUNNING, False, True, Use.LEAVING),
}


@pytest.mark.parametrize(("state", "in_turn", "asked", "expected"), USE_ROWS.values(),
                         ids=USE_ROWS.keys())
def test_r3_7_use_of_a_holder(state: RunState, in_turn: bool, asked: bool,
                              expected: Use) -> None:
    assert use_of(state, in_turn, asked_to_leave=asked) is expected


# --- the book ---------------------------------------------------------------------------------


@dataclass
class Run:
    state: RunState = RunState.RUNNING
    in_turn: bool = False
    last_activity: float = 0.0


def spawn(n: int) -> Spawn:
    return Spawn(n, None)


def test_r3_7_book_waits_for_a_turn_end_then_starts_in_arrival_order() -> None:
    """R3.7, R3.5: with both slots in a turn, starts wait; when a turn ends the idle session
    is asked to make room once (not again while its stop is pending), and the slot its exit
    frees goes to the first waiting start, then the next."""
    runs = {"a": Run(in_turn=True, last_activity=1), "b": Run(in_turn=True, last_activity=2)}
    book = Slots(2)
    for name in runs:
        book.want(name, spawn(1))
    assert book.decide(runs.__getitem__) == ([("a", spawn(1)), ("b", spawn(1))], ())
    book.want("c", spawn(1))
    book.want("d", spawn(1))
    assert book.decide(runs.__getitem__) == ([], ())  # everyone in a turn: wait
    runs["b"].in_turn = False  # b's turn ended
    assert book.decide(runs.__getitem__) == ([], ("b",))
    assert book.decide(runs.__getitem__) == ([], ())  # asked already: nobody else for c
    book.asked("b")
    runs["b"].state = RunState.STOPPING
    assert book.decide(runs.__getitem__) == ([], ())  # b leaving covers c; a is in a turn
    book.release("b")
    runs["c"] = Run(RunState.STARTING)
    assert book.decide(runs.__getitem__) == ([("c", spawn(1))], ())  # c, not d: arrival order
    assert list(book.waiting) == ["d"] and book.holding == {"a", "c"}


def test_r3_7_book_a_session_that_began_a_turn_keeps_its_slot() -> None:
    """R3.7: the chosen session began a turn before its stop was carried out: it keeps its
    slot (the run refuses), and the book may choose again."""
    runs = {"a": Run(last_activity=1), "b": Run(in_turn=True)}
    book = Slots(2)
    book.holding.update(runs)
    book.want("c", spawn(1))
    assert book.decide(runs.__getitem__) == ([], ("a",))
    runs["a"].in_turn = True
    book.asked("a")  # its run refused: it stays RUNNING, in a turn
    assert book.decide(runs.__getitem__) == ([], ())
    runs["a"].in_turn = False
    assert book.decide(runs.__getitem__) == ([], ("a",))


def test_r3_7_book_out_of_descriptors_waits_for_an_exit_first_in_line() -> None:
    """R3.7, R4.2: a start the OS refused for want of descriptors goes first again, and no
    start goes until a process exits (an idle holder is asked to make room for it)."""
    runs = {"a": Run(last_activity=1)}
    book = Slots(16)
    book.holding.add("a")
    book.want("z", spawn(2))
    book.want("x", spawn(1))
    admitted, _ = book.decide(runs.__getitem__)
    assert [n for n, _ in admitted] == ["z", "x"]
    book.retry("x", spawn(1))  # EMFILE
    book.retry("z", spawn(2))  # EMFILE
    assert list(book.waiting) == ["z", "x"]
    assert book.decide(runs.__getitem__) == ([], ("a",))  # room is made, nothing starts
    book.release("a")
    assert [n for n, _ in book.decide(runs.__getitem__)[0]] == ["z", "x"]


def test_r3_7_book_lift_without_holders_retries() -> None:
    book = Slots(4)
    book.want("a", spawn(1))
    book.decide(lambda _n: Run())
    book.retry("a", spawn(1))
    assert book.decide(lambda _n: Run()) == ([], ())
    book.lift()
    assert book.decide(lambda _n: Run()) == ([("a", spawn(1))], ())


def test_r4_9_withdraw_all_empties_the_queue_in_order() -> None:
    book = Slots(1)
    book.holding.add("a")
    book.want("b", spawn(1))
    book.want("c", spawn(3))
    assert book.withdraw_all() == [("b", spawn(1)), ("c", spawn(3))]
    assert not book.waiting
