"""The live status of a turn (R13.7): `supervisor.progress` — the step its events show, the
short form of a tool's input, the elapsed time, and when a new status line is due. Pure:
events and times in, texts out."""

from __future__ import annotations

import pytest

from crewbridge.supervisor.control import PermissionAsk, PermissionWithdrawn
from crewbridge.supervisor.progress import MAX_STEP_CHARS, TurnProgress, elapsed, tool_step
from crewbridge.supervisor.protocol import AgentEvent, ApiRetry, AssistantText, ToolResult, ToolUse

T0 = 1_000.0


def progress(*, after_s: float = 5, interval_s: float = 3, workdir: str = "") -> TurnProgress:
    return TurnProgress("webui", T0, after_s=after_s, interval_s=interval_s, workdir=workdir)


ELAPSED_ROWS = {
    "r13_7-seconds": (12, "12s"),
    "r13_7-rounded-down": (12.99, "12s"),
    "r13_7-zero": (0, "0s"),
    "r13_7-minutes-two-digit-seconds": (65, "1m05s"),
    "r13_7-whole-minute": (120, "2m00s"),
    "r13_7-hours": (3725, "1h02m05s"),
}


@pytest.mark.parametrize(("seconds", "shown"), ELAPSED_ROWS.values(), ids=ELAPSED_ROWS.keys())
def test_r13_7_elapsed_time_is_shown_in_whole_seconds(seconds: float, shown: str) -> None:
    assert elapsed(seconds) == shown


LONG = "npm run test -- --reporter=verbose " + "x" * 100

TOOL_ROWS = {
    "r13_7-bash-command": ("Bash", {"command": "npm test"}, "", "Bash: npm test"),
    "r13_7-edit-path-relative-to-workdir": ("Edit", {"file_path": "/srv/webui/src/app.py",
                                                     "old_string": "a", "new_string": "b"},
                                            "/srv/webui", "Edit: src/app.py"),
    "r13_7-path-outside-workdir-kept": ("Read", {"file_path": "/etc/hosts"}, "/srv/webui",
                                        "Read: /etc/hosts"),
    "r13_7-grep-pattern": ("Grep", {"pattern": "TODO", "path": "src"}, "", "Grep: TODO"),
    "r13_7-web-fetch-url": ("WebFetch", {"url": "https://example.org", "prompt": "sum"}, "",
                            "WebFetch: https://example.org"),
    "r13_7-task-description": ("Task", {"description": "find the bug", "prompt": "…"}, "",
                               "Task: find the bug"),
    "r13_7-no-known-field-bare-name": ("TodoWrite", {"todos": [{"content": "x"}]}, "",
                                       "TodoWrite"),
    "r13_7-non-string-field-skipped": ("Bash", {"command": ["ls"]}, "", "Bash"),
    "r13_7-blank-field-skipped": ("Bash", {"command": "  \n "}, "", "Bash"),
    "r13_7-newlines-collapsed": ("Bash", {"command": "cd src &&\n  make\tall\r\n"}, "",
                                 "Bash: cd src && make all"),
    "r13_7-ansi-stripped": ("Bash", {"command": "\x1b[31mls\x1b[0m -l\x1b]0;title\x07"}, "",
                            "Bash: ls -l"),
    "r13_7-token-redacted": ("Bash", {"command": "curl -H 'Authorization: Bearer abcdefgh12345'"},
                             "", "Bash: curl -H 'Authorization: Bearer [redacted]'"),
    "r13_7-long-command-cut-at-the-end": ("Bash", {"command": LONG}, "",
                                          ("Bash: " + LONG)[:MAX_STEP_CHARS - 1] + "…"),
    "r13_7-long-path-keeps-its-file-name": ("Write", {"file_path": "/a/" + "d/" * 40 + "main.py"},
                                            "", "Write: …" + ("/a/" + "d/" * 40 + "main.py")[
                                                -(MAX_STEP_CHARS - len("Write: ") - 1):]),
}


@pytest.mark.parametrize(("tool", "tool_input", "workdir", "step"), TOOL_ROWS.values(),
                         ids=TOOL_ROWS.keys())
def test_r13_7_a_tool_step_is_the_tool_and_a_short_form_of_its_input(
        tool: str, tool_input: dict, workdir: str, step: str) -> None:
    """R13.7: one line of at most MAX_STEP_CHARS characters, safe to show in a room."""
    shown = tool_step(tool, tool_input, workdir)
    assert shown == step
    assert len(shown) <= MAX_STEP_CHARS and "\n" not in shown and "\x1b" not in shown


ASK = PermissionAsk("req-1", "Bash", {"command": "rm -rf build"})

STEP_ROWS: dict[str, tuple[list[AgentEvent], str]] = {
    "r13_7-a-new-turn-is-thinking": ([], "thinking"),
    "r13_7-a-tool-use-shows-the-tool": ([ToolUse("t1", "Bash", {"command": "npm test"})],
                                        "Bash: npm test"),
    "r13_7-after-the-tool-result-thinking": ([ToolUse("t1", "Bash", {"command": "ls"}),
                                              ToolResult("t1", False)], "thinking"),
    "r13_7-text-is-writing": ([AssistantText("Here is")], "writing"),
    "r13_7-other-events-change-nothing": ([ToolUse("t1", "Grep", {"pattern": "x"}),
                                           ApiRetry(1, "overloaded")], "Grep: x"),
    "r13_7-an-ask-waits-for-approval": ([ToolUse("t1", "Bash", {"command": "rm -rf build"}),
                                         ASK], "waiting for approval (Bash: rm -rf build)"),
    "r13_7-a-withdrawn-ask-waits-no-more": ([AssistantText("hm"), ASK,
                                             PermissionWithdrawn("req-1")], "writing"),
    "r13_7-a-withdrawal-of-another-request": ([ASK, PermissionWithdrawn("other")],
                                              "waiting for approval (Bash: rm -rf build)"),
}


@pytest.mark.parametrize(("events", "step"), STEP_ROWS.values(), ids=STEP_ROWS.keys())
def test_r13_7_the_step_follows_the_turns_events(events: list[AgentEvent], step: str) -> None:
    p = progress()
    for event in events:
        p.saw(event)
    assert p.text(T0 + 65) == f"⏳ webui — {step} · 1m05s"


def test_r13_7_a_decided_request_goes_on_with_its_tool() -> None:
    """R13.7, R13.1: once a person decided, the turn runs (or is refused) the tool it
    asked for; a decision of a request it does not hold changes nothing."""
    p = progress()
    p.saw(ASK)
    p.decided("other")
    assert "waiting for approval" in p.text(T0)
    p.decided("req-1")
    assert p.text(T0 + 7) == "⏳ webui — Bash: rm -rf build · 7s"


# (what happens, at seconds after T0) -> the line taken then (None: none is due)
QUIET = [("take", 4.9, None), ("take", 5, "thinking · 5s"), ("take", 7.9, None),
         ("take", 8, "thinking · 8s"), ("take", 11.5, "thinking · 11s")]
CHATTY = [("posted", 3, None), ("take", 5, None), ("take", 7.9, None),
          ("take", 8, "thinking · 8s"), ("posted", 9, None), ("take", 11, None),
          ("take", 14, "thinking · 14s")]
STEP_CHANGED = [("take", 5, "thinking · 5s"), ("tool", 6, None), ("take", 7, None),
                ("take", 8, "Bash: npm test · 8s")]

DUE_ROWS = {
    "r13_7-a-quiet-turn-after-status_after_s-then-every-interval": (3, QUIET),
    "r13_7-posted-output-silences-it-for-status_after_s": (3, CHATTY),
    "r13_7-a-new-step-waits-for-the-interval": (3, STEP_CHANGED),
    "r13_7-no-edit-within-the-same-second-and-step": (0.25, [
        ("take", 5, "thinking · 5s"), ("take", 5.5, None), ("take", 6, "thinking · 6s")]),
    "r13_7-a-new-step-within-the-second-is-shown": (0.25, [
        ("take", 5, "thinking · 5s"), ("tool", 5.1, None), ("take", 5.25, "Bash: npm test · 5s")]),
}


@pytest.mark.parametrize(("interval", "script"), DUE_ROWS.values(), ids=DUE_ROWS.keys())
def test_r13_7_when_a_status_line_is_due(interval: float,
                                         script: list[tuple[str, float, str | None]]) -> None:
    """R13.7: first after status_after_s without posted output, then at most every
    status_interval_s and only when the text changed; `next_due` is never later than the
    next line that `take` gives, nor a time at which `take` gives none."""
    p = progress(interval_s=interval)
    for what, at, shown in script:
        now = T0 + at
        if what == "posted":
            p.posted(now)
        elif what == "tool":
            p.saw(ToolUse("t1", "Bash", {"command": "npm test"}))
        else:
            due = p.next_due()
            line = p.take(now)
            assert line == (f"⏳ webui — {shown}" if shown else None)
            assert (line is not None) == (now >= due)


def test_r13_7_next_due_moves_with_output_and_edits() -> None:
    p = progress()
    assert p.next_due() == T0 + 5
    p.posted(T0 + 2)
    assert p.next_due() == T0 + 7
    assert p.take(T0 + 7) is not None
    assert p.next_due() == T0 + 10
    assert p.shown == "⏳ webui — thinking · 7s"
