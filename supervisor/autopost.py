"""Which of an agent's text may be posted, and when: the error quarantine (R5.3, R5.4) and
the batching of output into posts (R5.2).

Everything that decides whether agent text reaches a channel lives in this module. The rules
it keeps:

1. An `ApiError` is never postable, and it marks the turn failed: any text after it in the
   same turn is quarantined too.
2. The most recent `AssistantText` of a turn is *held*. It becomes *proven* — moves to the
   flush buffer — only when an event shows the turn goes on (another text, a tool use, a
   tool result), or when a successful `TurnResult` ends the turn.
3. An error `TurnResult` (judged by `is_error`, never `subtype`) quarantines the held text.
   End of stream without a result does the same: a session that dies mid-turn failed.
4. Proven text is never lost and never withheld: it is posted at the turn's end (success or
   not), every `flush_interval_s` during a long turn, and at end of stream.
5. Quarantine is per turn: after any `TurnResult` the next turn starts clean.
6. A turn posts at most `max_turn_chars` characters (R5.8). What would pass the cap is
   withheld — kept in `withheld` for the caller to log whole — and the turn's last post
   ends with one line saying how much was withheld. The cap bounds what one runaway turn
   can cost the team's rooms (a 10 MB line would be thousands of posts).

Only rule 2's proven text ever enters the buffer, so no timing between the flush timer and
the error result can leak a failed turn's last words — the race DESIGN.md describes is
closed by construction, not by checking flags in time. Why proven text of a failed turn is
still posted: it may already have gone out on the timer, so withholding it at the result
would make what the channel sees depend on timing; posting it always keeps the outcome
deterministic, and text the agent went on from ("Let me look at the logs…") is the agent's
work, not the error.

The module is pure: time comes in as `now`, posts go out as return values, and what was
quarantined is kept in `quarantined` for the caller to log (`take_quarantined`). Like h11's
`_state.py`, the transitions are a table, `_TRANSITIONS`, readable and testable row by row.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum, StrEnum

from crewbridge.supervisor.protocol import (
    AgentEvent,
    ApiError,
    AssistantText,
    ToolResult,
    ToolUse,
    TurnResult,
)

POST_SEPARATOR = "\n\n"
"""Text blocks of one post are separate paragraphs."""

QUARANTINE_KEPT = 100
"""Quarantined texts kept for the log; a session whose owner never collects them stays small."""

MAX_TURN_CHARS = 40_000
"""The default cap on what one turn posts (R5.8, `max_turn_output_chars`)."""


def withheld_line(chars: int, cap: int) -> str:
    """The line that ends a turn whose output passed the cap."""
    return (f"_[{chars:,} more characters of this answer were withheld: a turn posts at most "
            f"{cap:,}. The whole text is in the bot's log.]_")


class _Phase(Enum):
    OPEN = "open"  # the current turn has not failed (also: between turns)
    FAILED = "failed"  # an ApiError was seen; the rest of the turn is quarantined


class _Kind(Enum):
    """What an incoming event means to the quarantine."""

    TEXT = "text"
    PROGRESS = "progress"  # tool use or tool result: the turn goes on
    API_ERROR = "api_error"
    RESULT_OK = "result_ok"
    RESULT_ERROR = "result_error"
    END_OF_STREAM = "end_of_stream"
    NEUTRAL = "neutral"  # init, api retry, unparsed lines: change nothing


class _Action(Enum):
    HOLD = "hold"  # prove the held text, hold the new one
    PROVE = "prove"  # prove the held text
    FAIL = "fail"  # quarantine the held text and this event's text
    QUARANTINE = "quarantine"  # quarantine this event's text
    END_OK = "end_ok"  # prove the held text, post everything
    END_FAILED = "end_failed"  # quarantine the held text, post what was proven
    NOTHING = "nothing"


_TRANSITIONS: dict[tuple[_Phase, _Kind], tuple[_Action, _Phase]] = {
    (_Phase.OPEN, _Kind.TEXT): (_Action.HOLD, _Phase.OPEN),
    (_Phase.OPEN, _Kind.PROGRESS): (_Action.PROVE, _Phase.OPEN),
    (_Phase.OPEN, _Kind.API_ERROR): (_Action.FAIL, _Phase.FAILED),
    (_Phase.OPEN, _Kind.RESULT_OK): (_Action.END_OK, _Phase.OPEN),
    (_Phase.OPEN, _Kind.RESULT_ERROR): (_Action.END_FAILED, _Phase.OPEN),
    (_Phase.OPEN, _Kind.END_OF_STREAM): (_Action.END_FAILED, _Phase.OPEN),
    (_Phase.OPEN, _Kind.NEUTRAL): (_Action.NOTHING, _Phase.OPEN),
    # Once failed, nothing more of this turn is postable, whatever follows. Nothing is held
    # here (FAIL quarantined it), so ending the turn only posts what was proven before.
    (_Phase.FAILED, _Kind.TEXT): (_Action.QUARANTINE, _Phase.FAILED),
    (_Phase.FAILED, _Kind.PROGRESS): (_Action.NOTHING, _Phase.FAILED),
    (_Phase.FAILED, _Kind.API_ERROR): (_Action.QUARANTINE, _Phase.FAILED),
    (_Phase.FAILED, _Kind.RESULT_OK): (_Action.END_FAILED, _Phase.OPEN),
    (_Phase.FAILED, _Kind.RESULT_ERROR): (_Action.END_FAILED, _Phase.OPEN),
    (_Phase.FAILED, _Kind.END_OF_STREAM): (_Action.END_FAILED, _Phase.OPEN),
    (_Phase.FAILED, _Kind.NEUTRAL): (_Action.NOTHING, _Phase.FAILED),
}


class QuarantineReason(StrEnum):
    API_ERROR = "api_error"  # the ApiError's own text, or the text held when it came
    AFTER_API_ERROR = "after_api_error"  # text later in a turn that had failed
    ERROR_RESULT = "error_result"  # the held text when the turn ended with is_error
    NO_RESULT = "no_result"  # the held text when the stream ended mid-turn


@dataclass(frozen=True)
class Quarantined:
    """Text that was kept out of the channel, for the log (never for a channel)."""

    text: str
    reason: QuarantineReason


def _kind(event: AgentEvent) -> _Kind:
    if isinstance(event, AssistantText):
        return _Kind.TEXT
    if isinstance(event, ToolUse | ToolResult):
        return _Kind.PROGRESS
    if isinstance(event, ApiError):
        return _Kind.API_ERROR
    if isinstance(event, TurnResult):
        return _Kind.RESULT_ERROR if event.is_error else _Kind.RESULT_OK
    return _Kind.NEUTRAL


class TurnOutput:
    """One session's output on its way to the channel: feed it every event, tick it on time.

    Every string returned by `feed`, `tick` and `end_of_stream` is one post; nothing else
    may be posted. Call `tick` at `next_deadline()` so a long turn is posted in batches.
    """

    def __init__(self, flush_interval_s: float = 2.0,
                 max_turn_chars: int = MAX_TURN_CHARS) -> None:
        self.flush_interval_s = flush_interval_s
        self.max_turn_chars = max_turn_chars
        self._posted_chars = 0  # in the current turn
        self._withheld_chars = 0
        self.withheld: deque[str] = deque(maxlen=QUARANTINE_KEPT)
        """Text over the cap, oldest first, for the log; `take_withheld` empties it."""
        self._phase = _Phase.OPEN
        self._held: str | None = None
        self._buffer: list[str] = []
        self._buffered_since: float | None = None
        self.quarantined: deque[Quarantined] = deque(maxlen=QUARANTINE_KEPT)
        """The latest quarantined texts, oldest first; `take_quarantined` empties it."""

    @property
    def failed(self) -> bool:
        """Whether the current turn has failed so far (an ApiError was seen in it)."""
        return self._phase is _Phase.FAILED

    def feed(self, event: AgentEvent, now: float) -> list[str]:
        """Apply one event; return the posts it releases (at most one).

        A buffer whose interval has passed is flushed here too, so a caller that feeds a
        busy stream gets its batches even if its timer runs late.
        """
        text = event.text if isinstance(event, AssistantText | ApiError) else ""
        return self._step(_kind(event), text, now)

    def tick(self, now: float) -> list[str]:
        """Post the proven text once `flush_interval_s` has passed since it began to wait."""
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        post = self._flush()
        return [post] if post else []

    def end_of_stream(self, now: float) -> list[str]:
        """The agent's stdout closed: post what was proven, quarantine what was held."""
        return self._step(_Kind.END_OF_STREAM, "", now)

    def next_deadline(self) -> float | None:
        """When `tick` should next be called; None while nothing proven is waiting."""
        if self._buffered_since is None:
            return None
        return self._buffered_since + self.flush_interval_s

    def take_quarantined(self) -> list[Quarantined]:
        """Hand over (and forget) the quarantined texts, so each is logged once."""
        taken = list(self.quarantined)
        self.quarantined.clear()
        return taken

    def take_withheld(self) -> list[str]:
        """Hand over (and forget) the text withheld over the cap, so each is logged once."""
        taken = list(self.withheld)
        self.withheld.clear()
        return taken

    # --- transitions ---------------------------------------------------------------------

    def _step(self, kind: _Kind, text: str, now: float) -> list[str]:
        action, self._phase = _TRANSITIONS[(self._phase, kind)]
        if action is _Action.HOLD:
            self._prove(now)
            self._held = text
        elif action is _Action.PROVE:
            self._prove(now)
        elif action is _Action.FAIL:
            self._quarantine_held(QuarantineReason.API_ERROR)
            self._quarantine(text, QuarantineReason.API_ERROR)
        elif action is _Action.QUARANTINE:
            self._quarantine(text, QuarantineReason.AFTER_API_ERROR)
        elif action is _Action.END_OK:
            self._prove(now)
            return self._end_turn()
        elif action is _Action.END_FAILED:
            self._quarantine_held(
                QuarantineReason.NO_RESULT
                if kind is _Kind.END_OF_STREAM
                else QuarantineReason.ERROR_RESULT
            )
            return self._end_turn()
        return self.tick(now)

    def _prove(self, now: float) -> None:
        if self._held is None:
            return
        if not self._held.strip():  # a blank block proves the one before it; nothing to post
            self._held = None
            return
        if self._buffered_since is None:
            self._buffered_since = now
        self._buffer.append(self._held)
        self._held = None

    def _quarantine_held(self, reason: QuarantineReason) -> None:
        if self._held is not None:
            self._quarantine(self._held, reason)
            self._held = None

    def _quarantine(self, text: str, reason: QuarantineReason) -> None:
        if text.strip():
            self.quarantined.append(Quarantined(text, reason))

    def _flush(self) -> str:
        """The buffer as one post, cut at the turn's cap ('' when all of it is over)."""
        post = POST_SEPARATOR.join(self._buffer)
        self._buffer = []
        self._buffered_since = None
        room = self.max_turn_chars - self._posted_chars
        if len(post) > room:
            kept = _cut(post, max(0, room))
            self.withheld.append(post[len(kept):])
            self._withheld_chars += len(post) - len(kept)
            post = kept
        self._posted_chars += len(post)
        return post

    def _end_turn(self) -> list[str]:
        """Post what is left of the turn (with the withheld line), then start the next clean."""
        posts = [self._flush()] if self._buffer else []
        if self._withheld_chars:
            line = withheld_line(self._withheld_chars, self.max_turn_chars)
            posts = [f"{posts[-1]}{POST_SEPARATOR}{line}" if posts and posts[-1] else line]
        self._posted_chars = self._withheld_chars = 0
        return [p for p in posts if p]


def _cut(text: str, limit: int) -> str:
    """At most `limit` characters of `text`, ending at a paragraph or line break when one
    is in the last quarter (a cut mid-sentence reads as a bug), else at the limit."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    for sep in (POST_SEPARATOR, "\n"):
        at = head.rfind(sep)
        if at >= limit * 3 // 4:
            return head[:at]
    return head
