"""Text a terminal program printed, made fit for a chat room: without its escapes.

A program that believes it writes to a terminal (the login command under a pseudo-terminal,
R6.5) or a tool's input and the CLI's `decision_reason` (R13.1) carry ANSI colour codes,
cursor moves and OSC sequences — `claude auth login` wraps its URL in an OSC 8 hyperlink
(`ESC ] 8 ;; URL BEL URL ESC ] 8 ;; BEL`). Removing the sequences leaves the URL intact.
"""

from __future__ import annotations

import re

_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def plain(text: str) -> str:
    """`text` without escape sequences and control characters (newlines and tabs kept)."""
    return _CONTROL.sub("", _ESCAPE.sub("", text))


def screen_line(raw: str) -> str:
    """One line as a terminal would show it: a carriage return starts the line over (a
    progress line redrawn in place shows its last state)."""
    return plain(raw.rstrip("\r").rsplit("\r", 1)[-1])
