"""Fenced code blocks, as the splitter reads them (R5.2).

The splitter must never cut through a block that could fit a part whole, and closes and
reopens one it has to cut, so it needs to know where a block opens and closes — in the
markdown source, before any parsing (CommonMark's rules, minus the rarely used corners).
The renderers read fences through markdown-it (`bridges.md_parse`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Fence:
    """An open fenced code block."""

    opener: str  # the opening line as written, e.g. "```python"
    run: str  # the backticks or tildes that opened it
    info: str

    @property
    def language(self) -> str:
        return self.info.split()[0] if self.info else ""

    @property
    def closer(self) -> str:
        return self.opener[: self.opener.index(self.run)] + self.run

    def closed_by(self, line: str) -> bool:
        match = _FENCE_CLOSE.fullmatch(line.rstrip())
        return bool(match) and match[1][0] == self.run[0] and len(match[1]) >= len(self.run)


def open_fence(line: str) -> Fence | None:
    """The block `line` opens, or None when it is not an opening fence."""
    if not line.lstrip(" ").startswith(("```", "~~~")):  # the common case, cheaply
        return None
    match = _FENCE_OPEN.fullmatch(line.rstrip())
    if not match or (match[1][0] == "`" and "`" in match[2]):
        return None
    return Fence(opener=line.rstrip(), run=match[1], info=match[2].strip())
