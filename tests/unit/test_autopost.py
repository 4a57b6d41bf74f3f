"""The error quarantine and the batching of agent output (R5.2, R5.3, R5.4).

Time is passed in: every timing between text, the 2 s flush and the error result is a row
of a table or a draw of hypothesis, never a sleep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crewbridge.supervisor.autopost import (
    QUARANTINE_KEPT,
    Quarantined,
    QuarantineReason,
    TurnOutput,
    withheld_line,
)
from crewbridge.supervisor.protocol import (
    AgentEvent,
    ApiError,
    ApiRetry,
    AssistantText,
    Init,
    ToolResult,
    ToolUse,
    TurnResult,
    Unparsed,
    parse_line,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "claude"

TU = ToolUse("tool-1", "Bash")
TR = ToolResult("tool-1", False)
OK = TurnResult(False, "success", "", "s", ())
ERR = TurnResult(True, "success", "API Error: 500", "s", ())
TICK = "tick"
EOS = "end_of_stream"


def T(text: str) -> AssistantText:
    return AssistantText(text)


def E(text: str) -> ApiError:
    return ApiError("server_error", text)


Step = tuple[float, AgentEvent | str]


def run(script: list[Step], out: TurnOutput | None = None) -> list[tuple[float, str]]:
    """Play (time, event | TICK | EOS) steps; return every post with the time it came out."""
    out = out or TurnOutput(flush_interval_s=2.0)
    posts: list[tuple[float, str]] = []
    for now, step in script:
        if step == TICK:
            released = out.tick(now)
        elif step == EOS:
            released = out.end_of_stream(now)
        else:
            released = out.feed(step, now)
        posts += [(now, post) for post in released]
    return posts


QUARANTINE_TABLE = [
    pytest.param(
        [(0, T("hello")), (0.1, OK)],
        [(0.1, "hello")],
        id="r5_2-good-turn-posts-at-its-end",
    ),
    pytest.param(
        [(0, T("a")), (0, T("b")), (0, T("c")), (0.2, OK)],
        [(0.2, "a\n\nb\n\nc")],
        id="r5_2-one-post-per-turn-end-blocks-joined-by-blank-line",
    ),
    pytest.param(
        [(0, T("partial")), (5, TICK), (9, TICK), (9.001, ERR)],
        [],
        id="r5_3-held-text-never-flushed-by-the-timer-then-error-result",
    ),
    pytest.param(
        [(0, E("API Error: 401")), (2.5, TICK), (2.6, ERR)],
        [],
        id="r5_3-api-error-text-never-posted-timer-between-error-and-result",
    ),
    pytest.param(
        [(0, T("a")), (0, TU), (1, T("b")), (1.5, E("boom")), (3, TICK), (3, ERR)],
        [(3, "a")],
        id="r5_3-proven-text-of-a-failed-turn-is-posted-its-last-words-are-not",
    ),
    pytest.param(
        [(0, E("boom")), (0, T("after")), (0, TU), (0, T("more")), (0, TR), (5, TICK), (5, ERR)],
        [],
        id="r5_3-everything-after-an-api-error-in-the-turn-is-quarantined",
    ),
    pytest.param(
        [(0, E("boom")), (0, T("after")), (1, OK)],
        [],
        id="r5_3-a-success-result-does-not-unfail-a-turn-with-an-api-error",
    ),
    pytest.param(
        [(0, T("a")), (0, Init("s", "m")), (0, ApiRetry(1, "x")), (0, Unparsed("?")), (1, ERR)],
        [],
        id="r5_3-init-retry-and-unparsed-lines-do-not-prove-text",
    ),
    pytest.param(
        [(0, T("a")), (0, TR), (1, ERR)],
        [(1, "a")],
        id="r5_3-a-tool-result-proves-the-text-before-it",
    ),
    pytest.param(
        [(0, E("x")), (0, ERR), (1, T("back")), (2, OK)],
        [(2, "back")],
        id="r5_4-quarantine-ends-with-the-failed-turn",
    ),
    pytest.param(
        [(0, T("lost")), (0, ERR), (1, T("next")), (1, TU), (1.5, OK)],
        [(1.5, "next")],
        id="r5_4-turn-after-error-result-posts-normally",
    ),
    pytest.param(
        [
            (0, T("a")),
            (0.5, TU),
            (0.6, TR),
            (1.0, T("b")),
            (1.5, TU),
            (2.4, TICK),
            (2.5, TICK),
            (2.6, T("c")),
            (3.0, OK),
        ],
        [(2.5, "a\n\nb"), (3.0, "c")],
        id="r5_2-long-turn-flushes-every-interval-since-first-proven-text",
    ),
    pytest.param(
        [(0, T("a")), (0, TU), (3, T("b")), (3, TICK)],
        [(3, "a")],
        id="r5_2-feed-releases-an-overdue-batch-even-if-the-timer-is-late",
    ),
    pytest.param(
        [(0, T("a")), (0, TU), (0.5, T("b")), (1, EOS)],
        [(1, "a")],
        id="r5_3-end-of-stream-posts-proven-text-and-quarantines-held-text",
    ),
    pytest.param(
        [(0, T("  \n")), (0, TU), (1, T("")), (2, OK)],
        [],
        id="r5_2-blank-text-is-never-a-post",
    ),
    pytest.param(
        [(0, TU), (0, TR), (1, OK), (2, EOS)],
        [],
        id="r5_2-turn-without-text-posts-nothing",
    ),
]


@pytest.mark.parametrize(("script", "expected"), QUARANTINE_TABLE)
def test_r5_2_r5_3_r5_4_quarantine_table(script, expected):
    assert run(script) == expected


def test_r5_3_quarantined_text_is_kept_for_the_log_with_its_reason():
    out = TurnOutput()
    run(
        [
            (0, T("proven")),
            (0, TU),
            (0, T("held")),
            (0, E("the error")),
            (0, T("after")),
            (0, ERR),
            (1, T("unfinished")),
            (1, ERR),
            (2, T("crash")),
            (3, EOS),
        ],
        out,
    )
    assert out.take_quarantined() == [
        Quarantined("held", QuarantineReason.API_ERROR),
        Quarantined("the error", QuarantineReason.API_ERROR),
        Quarantined("after", QuarantineReason.AFTER_API_ERROR),
        Quarantined("unfinished", QuarantineReason.ERROR_RESULT),
        Quarantined("crash", QuarantineReason.NO_RESULT),
    ]
    assert out.take_quarantined() == []


def test_r5_3_quarantine_record_is_bounded_when_nobody_collects_it():
    out = TurnOutput()
    for turn in range(QUARANTINE_KEPT + 5):
        out.feed(E(f"error {turn}"), turn)
        out.feed(ERR, turn)
    kept = out.take_quarantined()
    assert len(kept) == QUARANTINE_KEPT
    assert kept[-1].text == f"error {QUARANTINE_KEPT + 4}"


def test_r5_3_failed_is_true_from_the_api_error_to_the_end_of_its_turn():
    out = TurnOutput()
    out.feed(T("a"), 0)
    assert not out.failed
    out.feed(E("boom"), 0)
    assert out.failed
    out.feed(TU, 0)
    assert out.failed
    out.feed(ERR, 0)
    assert not out.failed


def test_r5_2_next_deadline_counts_from_the_first_proven_text_only():
    out = TurnOutput(flush_interval_s=2.0)
    out.feed(T("a"), 10)
    assert out.next_deadline() is None  # held text waits for proof, not for time
    out.feed(TU, 11)
    assert out.next_deadline() == 13
    out.feed(T("b"), 12)
    out.feed(TU, 12.5)
    assert out.next_deadline() == 13
    assert out.tick(12.999) == []
    assert out.tick(13) == ["a\n\nb"]
    assert out.next_deadline() is None


def test_r5_2_flush_interval_is_configurable():
    out = TurnOutput(flush_interval_s=0.5)
    out.feed(T("a"), 0)
    out.feed(TU, 0)
    assert out.tick(0.5) == ["a"]


# --- the real CLI's output ---------------------------------------------------------------


def replay(name: str, *, step_s: float) -> tuple[list[str], TurnOutput]:
    """Feed a recorded session, ticking between lines with `step_s` of time passing."""
    out = TurnOutput()
    posts: list[str] = []
    now = 0.0
    for raw in (FIXTURES / name).read_bytes().splitlines():
        for event in parse_line(raw):
            posts += out.feed(event, now)
            now += step_s
            posts += out.tick(now)
    posts += out.end_of_stream(now)
    return posts, out


@pytest.mark.parametrize("step_s", [0.001, 2.0, 60.0])
def test_r5_3_not_logged_in_text_is_never_posted(step_s):
    posts, out = replay("claude-2.1.330-not-logged-in.jsonl", step_s=step_s)
    assert posts == []
    assert [q.text for q in out.quarantined] == ["Not logged in · Please run /login"]


@pytest.mark.parametrize("step_s", [0.001, 2.0, 60.0])
def test_r5_3_api_unreachable_text_is_never_posted(step_s):
    posts, _ = replay("claude-2.1.330-api-unreachable.jsonl", step_s=step_s)
    assert posts == []


@pytest.mark.parametrize("step_s", [0.001, 2.0, 60.0])
def test_r5_1_good_turn_text_is_posted_exactly_once(step_s):
    posts, out = replay("claude-2.1.330-one-good-turn.jsonl", step_s=step_s)
    assert posts == ["Hello from the loopback stub"]
    assert not out.quarantined


# --- property: random turns, random timing -----------------------------------------------


@dataclass
class Session:
    """A drawn session: what to feed, and what the quarantine must make of it."""

    steps: list[tuple[float, bool, AgentEvent]] = field(default_factory=list)
    ends_mid_turn: bool = False
    expected: list[str] = field(default_factory=list)  # in order, each exactly once
    forbidden: set[str] = field(default_factory=set)


@st.composite
def sessions(draw) -> Session:
    session = Session()
    names = iter(range(10_000))

    def add(event: AgentEvent) -> None:
        delay = draw(st.sampled_from([0.0, 0.001, 0.5, 1.999, 2.0, 2.001, 7.0]))
        session.steps.append((delay, draw(st.booleans()), event))

    def body() -> None:
        """Text and tool events; every text but a trailing one is proven by what follows."""
        items = draw(st.lists(st.sampled_from(["text", "tool_use", "tool_result"]), max_size=5))
        for index, item in enumerate(items):
            if item == "text":
                text = f"text-{next(names)}"
                add(T(text))
                proven = index < len(items) - 1
                (session.expected.append if proven else session.forbidden.add)(text)
            else:
                add(TU if item == "tool_use" else TR)

    for ending in draw(st.lists(st.sampled_from(["ok", "api_error", "text_then_error"]))):
        if ending == "ok":
            body()
            last = session.steps[-1][2] if session.steps else None
            if isinstance(last, AssistantText) and last.text in session.forbidden:
                session.forbidden.remove(last.text)  # a success result proves it
                session.expected.append(last.text)
            add(OK)
        elif ending == "api_error":
            body()
            error = f"error-{next(names)}"
            session.forbidden.add(error)
            add(E(error))
            for _ in range(draw(st.integers(0, 2))):
                after = f"after-{next(names)}"
                session.forbidden.add(after)
                add(draw(st.sampled_from([T(after), E(after)])))
                if draw(st.booleans()):
                    add(TU)
            add(ERR)
        else:
            body()
            last_words = f"last-{next(names)}"
            last = session.steps[-1][2] if session.steps else None
            if isinstance(last, AssistantText) and last.text in session.forbidden:
                session.forbidden.remove(last.text)  # the last words prove it
                session.expected.append(last.text)
            session.forbidden.add(last_words)
            add(T(last_words))
            add(ERR)
    if draw(st.booleans()):
        body()
        session.ends_mid_turn = True
    return session


@given(sessions())
def test_r5_3_r5_4_property_no_failed_text_leaks_and_no_good_text_is_lost(session):
    """R5.3/R5.4 under any timing: (a) no ApiError text and no held text of a failed turn
    is ever posted; (b) every good text is posted exactly once, in order; (c) no text is
    posted twice."""
    out = TurnOutput(flush_interval_s=2.0)
    posts: list[str] = []
    now = 0.0
    for delay, tick_first, event in session.steps:
        now += delay
        if tick_first:
            posts += out.tick(now)
            deadline = out.next_deadline()
            assert deadline is None or deadline > now
        posts += out.feed(event, now)
    if session.ends_mid_turn:
        posts += out.end_of_stream(now)
    posts += out.tick(now + 1000)

    emitted = [text for post in posts for text in post.split("\n\n")]
    assert not session.forbidden & set(emitted)  # (a)
    assert emitted == session.expected  # (b)
    assert len(set(emitted)) == len(emitted)  # (c)
    assert session.forbidden <= {q.text for q in out.quarantined}
    assert out.next_deadline() is None


# --- the per-turn output cap (R5.8) -------------------------------------------------------

CAP = 100
LINE_50 = "x" * 49 + "."  # 50 characters


def capped() -> TurnOutput:
    return TurnOutput(flush_interval_s=2.0, max_turn_chars=CAP)


LINE = "<withheld line>"


@pytest.mark.parametrize(("script", "posts", "withheld"), [
    # under the cap: untouched, no line
    ([(0, T(LINE_50)), (1, OK)], [LINE_50], 0),
    # one text over the cap: cut at the cap, the rest withheld and counted; the line closes
    # the turn's last post
    ([(0, T("y" * 250)), (1, OK)], ["y" * 100 + "\n\n" + LINE], 150),
    # the cap holds across the 2 s batches of one turn; with nothing left at the end, the
    # line is a post of its own
    ([(0, T(LINE_50)), (0.5, TU), (2.5, TICK), (3, T(LINE_50 * 2)), (3.5, TU), (5.5, TICK),
      (6, OK)], [LINE_50, LINE_50, LINE], 50),
    # a cut prefers the last paragraph break in the last quarter
    ([(0, T("a" * 90 + "\n\n" + "b" * 40)), (1, OK)], ["a" * 90 + "\n\n" + LINE], 42),
    # an error turn is capped the same way (what was proven is posted, up to the cap)
    ([(0, T("e" * 150)), (0.5, TU), (1, ERR)], ["e" * 100 + "\n\n" + LINE], 50),
])
def test_r5_8_a_turn_posts_at_most_the_cap_and_one_line_says_what_was_withheld(
        script: list[Step], posts: list[str], withheld: int) -> None:
    """R5.8: beyond `max_turn_output_chars` a turn posts nothing more but one line saying how
    much was withheld and that the whole text is in the log."""
    out = capped()
    texts = [text for _, text in run(script, out)]
    line = withheld_line(withheld, CAP)
    assert texts == [p.replace(LINE, line) for p in posts]
    assert sum(map(len, out.take_withheld())) == withheld
    if withheld:
        assert f"{withheld:,} more characters" in line and "in the bot's log" in line


def test_r5_8_the_cap_is_per_turn() -> None:
    out = capped()
    first = run([(0, T("z" * 150)), (1, OK)], out)
    second = run([(2, T(LINE_50)), (3, OK)], out)
    assert first[0][1].startswith("z" * 100) and "50 more characters" in first[0][1]
    assert [text for _, text in second] == [LINE_50]


def test_r5_8_a_flood_over_the_cap_posts_nothing_more_until_its_end() -> None:
    """R5.8: a runaway turn's batches past the cap are empty, never an empty post."""
    out = capped()
    script: list[Step] = [(0, T("w" * 120)), (0.1, TU)]
    script += [(2.0 + 2 * i, TICK) for i in range(5)]
    script += [(20, T("more")), (20.1, TU), (23, TICK), (24, OK)]
    texts = [text for _, text in run(script, out)]
    assert texts[0] == "w" * 100
    assert texts[1:] == [withheld_line(24, CAP)]
