"""What a turn is doing now, and when the live status line shows it (R13.7).

People cannot see a headless agent work: a turn that runs for minutes without a word looks
like a hung bot. `TurnProgress` follows one turn's events and decides what its ⏳ status
line says — the current step (thinking; the tool and a short form of its input; writing;
waiting for a person's approval) and the elapsed time — and when a new version of it is
due: first after `after_s` without posted output, then at most every `interval_s`, and
only when its text changed. Output the turn posts is status enough: it silences the line
for another `after_s`.

Pure, like `supervisor.autopost`: events and times come in, texts go out, and the run
(`supervisor.lifecycle`) turns them into effects. Tool input is the agent's to write and a
room's to read, so its short form is cleaned like error text: one line, no terminal escapes,
nothing that looks like a token (`supervisor.redact`).
"""

from __future__ import annotations

import math
import re
from enum import StrEnum
from typing import Any

from crewbridge.supervisor.control import PermissionAsk, PermissionWithdrawn
from crewbridge.supervisor.protocol import AgentEvent, AssistantText, ToolResult, ToolUse
from crewbridge.supervisor.redact import redact

MAX_STEP_CHARS = 60
"""A tool step (`Bash: npm test`) is cut to this; the line stays one line on a phone."""

ELLIPSIS = "…"

INPUT_KEYS: tuple[tuple[str, bool], ...] = (
    ("command", False),
    ("file_path", True),
    ("notebook_path", True),
    ("pattern", False),
    ("path", True),
    ("url", False),
    ("query", False),
    ("description", False),
    ("prompt", False),
)
"""Which field of a tool's input says what it does, first match wins (Claude Code's tools:
Bash's `command`, Edit/Write/Read's `file_path`, Grep/Glob's `pattern`, WebFetch's `url`,
Task's `description`, …); True: it is a path, cut at the front so its file name stays."""

_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
_SPACE = re.compile(r"[\s\x00-\x1f\x7f]+")


class Step(StrEnum):
    THINKING = "thinking"
    TOOL = "tool"  # its text is the tool and its input
    WRITING = "writing"
    WAITING = "waiting for approval"  # a `can_use_tool` request waits for a person (R13.1)


def elapsed(seconds: float) -> str:
    """`12s`, `1m05s`, `1h02m05s`: whole seconds, rounded down."""
    s = max(0, math.floor(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    if h:
        return f"{h}h{m:02d}m{s:02d}s"
    return f"{m}m{s:02d}s" if m else f"{s}s"


def one_line(text: str) -> str:
    """Terminal escapes dropped, every run of white space and control characters one space."""
    return _SPACE.sub(" ", _ESCAPE.sub("", text)).strip()


def shorten(text: str, limit: int, *, keep_end: bool = False) -> str:
    if len(text) <= limit:
        return text
    return ELLIPSIS + text[-(limit - 1):] if keep_end else text[:limit - 1] + ELLIPSIS


def tool_step(tool: str, tool_input: dict[str, Any], workdir: str = "") -> str:
    """`Bash: npm test`, `Edit: src/app.py` (relative to `workdir`), or the bare tool name,
    at most `MAX_STEP_CHARS` characters on one line."""
    name = one_line(tool) or "tool"
    key = next(((k, is_path) for k, is_path in INPUT_KEYS
                if isinstance(tool_input.get(k), str) and tool_input[k].strip()), None)
    if key is None:
        return shorten(name, MAX_STEP_CHARS)
    value = one_line(redact(tool_input[key[0]]))
    if key[1] and workdir and value.startswith(workdir.rstrip("/") + "/"):
        value = value[len(workdir.rstrip("/")) + 1:]
    room = MAX_STEP_CHARS - len(name) - 2
    if room < 8:
        return shorten(name, MAX_STEP_CHARS)
    return f"{name}: {shorten(value, room, keep_end=key[1])}"


class TurnProgress:
    """One turn's step and elapsed time, and when its status line is next due (R13.7)."""

    def __init__(self, agent: str, started_at: float, *, after_s: float, interval_s: float,
                 workdir: str = "") -> None:
        self.agent = agent
        self.started_at = started_at
        self.after_s = after_s
        self.interval_s = interval_s
        self.workdir = workdir
        self.step, self.tool = Step.THINKING, ""
        self.asks: dict[str, str] = {}  # request id -> the tool step it asks to run
        self.quiet_since = started_at  # the turn's start, or its latest posted output
        self.shown: str | None = None  # the text last shown, if any was
        self.shown_at = -math.inf

    def saw(self, event: AgentEvent) -> None:
        """One event of the turn: it moves the step."""
        if isinstance(event, ToolUse):
            self.step, self.tool = Step.TOOL, tool_step(event.name, event.input, self.workdir)
        elif isinstance(event, ToolResult):
            self.step = Step.THINKING
        elif isinstance(event, AssistantText):
            self.step = Step.WRITING
        elif isinstance(event, PermissionAsk):
            self.asks[event.request_id] = tool_step(event.tool, event.input, self.workdir)
        elif isinstance(event, PermissionWithdrawn):
            self.asks.pop(event.request_id, None)

    def decided(self, request_id: str) -> None:
        """A person answered a request: the turn goes on with (or without) the tool."""
        if (tool := self.asks.pop(request_id, None)) is not None:
            self.step, self.tool = Step.TOOL, tool

    def posted(self, now: float) -> None:
        """The turn posted output: that shows it is alive, the line waits `after_s` again."""
        self.quiet_since = now

    def text(self, now: float) -> str:
        """`⏳ webui — Bash: npm test · 1m05s`."""
        if self.asks:
            step = f"{Step.WAITING} ({next(reversed(self.asks.values()))})"
        else:
            step = self.tool if self.step is Step.TOOL else str(self.step)
        return f"⏳ {self.agent} — {step} · {elapsed(now - self.started_at)}"

    def next_due(self) -> float:
        """When the line may next change: `after_s` after the latest output, `interval_s`
        after the last edit, and — the elapsed time counting in whole seconds — not before
        its second changes unless the step did."""
        due = max(self.quiet_since + self.after_s, self.shown_at + self.interval_s)
        if self.shown is not None and self.text(due) == self.shown:
            due = self.started_at + math.floor(due - self.started_at) + 1
        return due

    def take(self, now: float) -> str | None:
        """The line to show now (it counts as shown), or None when none is due."""
        if now < self.next_due():
            return None
        text = self.text(now)
        if text == self.shown:
            return None
        self.shown, self.shown_at = text, now
        return text
