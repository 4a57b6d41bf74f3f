"""Fenced code blocks, as both the renderer and the splitter must read them (R5.2, R5.6).

The renderer must never convert code and the splitter must never cut through a block that
could fit a part whole; both depend on one reading of where a block opens and closes, so
it lives here once (CommonMark's rules, minus the rarely used corners).
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
