"""Splitting agent markdown into parts that fit a platform's size limit (R5.2).

Splitting works on the markdown, before rendering: cuts go where a reader expects them
(blank lines, then line ends, then anywhere) and never through a code block that could fit
a part whole. The caller passes the platform's `measure` (`render.slack_measure`,
`render.matrix_measure`), so a part is judged by what is actually sent; this module knows
nothing of any platform's syntax beyond fenced code.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

from crewbridge.bridges.fences import Fence, open_fence


def split_message(text: str, limit: int, *, measure: Callable[[str], int] = len) -> list[str]:
    """Cut `text` into parts with `measure(part) <= limit`, in order, losing no content.

    Cuts are tried at paragraph boundaries outside code (blank lines, the edges of a fenced
    block), then at line ends, then inside a line (after a space when there is one in the
    second half). A fenced block that fits a part by itself is never cut. One that does not
    is cut at line ends: the part before the cut closes the fence, the next reopens it with
    the same opening line, so each part renders on its own.

    What "losing no content" means, exactly: remove the fence lines added at a cut, and each
    part is a slice of `text`; the slices appear in order and what lies between two of them
    (and before the first, after the last) is whitespace only — the blank lines or the one
    space where the cut was made.

    `measure` should grow with the text (as `len` and the platforms' measures do); the
    search calls it a logarithmic number of times per part on slices about the part's size,
    so a megabyte splits in linear time. Every part returned has been measured. Raises
    `ValueError` only when not even one character fits in `limit`.
    """
    if not text.strip():
        return []
    whole = measure(text)
    if whole <= limit:
        return [text]
    # The first probe of each part: as many characters as the whole text suggests fill
    # `limit`, a little over so the probe brackets the cut rather than falls short of it.
    first_probe = max(1, len(text) * limit * 11 // (whole * 10))
    return _Splitter(text, limit, measure, first_probe).parts()


class _Role(Enum):
    """What a line is to the fenced blocks around it."""

    TEXT = "text"
    OPEN = "open"  # a block's opening fence
    BODY = "body"
    CLOSE = "close"  # a block's closing fence


_OUTSIDE_BEFORE = frozenset({_Role.TEXT, _Role.CLOSE})  # a cut after such a line is outside code
_OUTSIDE_AFTER = frozenset({_Role.TEXT, _Role.OPEN})  # and before such a line


@dataclass(frozen=True)
class _Region:
    """The body of one fenced block, and the lines that close and reopen it at a cut."""

    start: int  # first character of the body
    end: int  # start of the closing line (end of the text when unclosed)
    closed_at: int  # end of the closing line (end of the text when unclosed)
    reopen: str
    close: str


class _Splitter:
    def __init__(
        self, text: str, limit: int, measure: Callable[[str], int], first_probe: int
    ) -> None:
        self.text, self.limit, self.measure, self.first_probe = text, limit, measure, first_probe
        lines = text.split("\n")
        starts: list[int] = []
        position = 0
        for line in lines:
            starts.append(position)
            position += len(line) + 1
        ends = [start + len(line) for start, line in zip(starts, lines, strict=True)]
        filled = [i for i, line in enumerate(lines) if line.strip()]
        self.first = starts[filled[0]]
        self.end = ends[filled[-1]]

        roles: list[_Role] = []
        self.regions: list[_Region] = []
        fence: Fence | None = None
        body_start = 0
        for i, line in enumerate(lines):
            if fence is None:
                fence = open_fence(line)
                roles.append(_Role.TEXT if fence is None else _Role.OPEN)
                body_start = ends[i] + 1
            elif fence.closed_by(line):
                roles.append(_Role.CLOSE)
                self.regions.append(
                    _Region(body_start, starts[i], ends[i], fence.opener, fence.closer)
                )
                fence = None
            else:
                roles.append(_Role.BODY)
        if fence is not None:
            self.regions.append(
                _Region(body_start, self.end, self.end, fence.opener, fence.closer)
            )
        self.region_starts = [region.start for region in self.regions]

        # Cuts between consecutive non-blank lines: (end of one, start of the next). A fence
        # is never cut right after its opening line or right before its closing line (that
        # would leave an empty block); "paragraph" cuts are those outside code.
        self.cut_ends: list[int] = []
        self.cut_next: list[int] = []
        self.para_ends: list[int] = []
        self.para_next: list[int] = []
        for i, j in pairwise(filled):
            if roles[i] is _Role.OPEN or roles[j] is _Role.CLOSE:
                continue
            self.cut_ends.append(ends[i])
            self.cut_next.append(starts[j])
            outside = roles[i] in _OUTSIDE_BEFORE and roles[j] in _OUTSIDE_AFTER
            if outside and (j > i + 1 or roles[i] is _Role.CLOSE or roles[j] is _Role.OPEN):
                self.para_ends.append(ends[i])
                self.para_next.append(starts[j])

    def parts(self) -> list[str]:
        parts: list[str] = []
        start: int | None = self.first
        while start is not None:
            end, following, wrap = self._next_cut(start)
            part = self._assemble(start, end, wrap)
            if part.strip():
                parts.append(part)
            start = following if following is not None and following < self.end else None
        return parts

    def _region_at(self, position: int, *, ending: bool = False) -> _Region | None:
        """The fenced block whose body holds `position`.

        For the end of a part the closing line counts as inside too: a part cut there
        still needs the fence closed, and counting it keeps a part's size growing with its
        end, which the search relies on (else a cut through "```" would look cheapest).
        """
        index = bisect_right(self.region_starts, position) - 1
        if index < 0:
            return None
        region = self.regions[index]
        return region if position < (region.closed_at if ending else region.end) else None

    def _assemble(self, start: int, end: int, wrap: bool) -> str:
        part = self.text[start:end]
        if not wrap:
            return part
        if opened := self._region_at(start):
            part = opened.reopen + "\n" + part
        if unclosed := self._region_at(end, ending=True):
            part = part + "\n" + unclosed.close
        return part

    def _next_cut(self, start: int) -> tuple[int, int | None, bool]:
        """Where the part from `start` ends, where the next begins (None: last), and
        whether fences are closed and reopened around it."""
        for wrap in (True, False):  # fence lines cost room; drop them before failing
            cut = self._search(start, wrap)
            if cut is not None:
                return (*cut, wrap)
        raise ValueError(f"split_message: not one character fits in limit {self.limit}")

    def _search(self, start: int, wrap: bool) -> tuple[int, int | None] | None:
        sizes: dict[int, int] = {start: 0}

        def size(end: int) -> int:
            if end not in sizes:
                sizes[end] = self.measure(self._assemble(start, end, wrap))
            return sizes[end]

        def fits(end: int) -> bool:
            return size(end) <= self.limit

        # 1. Bracket the farthest fitting end by doubling: fits(low), not fits(high).
        low, step = start, self.first_probe
        while True:
            if low + step >= self.end:
                if fits(self.end):
                    return self.end, None
                high = self.end
                break
            if not fits(low + step):
                high = low + step
                break
            low, step = low + step, step * 2

        # 2. The farthest paragraph cut that fits, else the farthest line cut: those up to
        # `low` fit, the rest are searched. Paragraph cuts are searched first, and on their
        # own, because they are far fewer: each probe is a render of a whole part.
        for ends, nexts in ((self.para_ends, self.para_next), (self.cut_ends, self.cut_next)):
            first = bisect_right(ends, start)
            best = self._last_fitting(
                ends, bisect_right(ends, low), bisect_left(ends, high), (low, high), size
            )
            if best >= first and fits(ends[best]):
                return ends[best], nexts[best]

        # 3. No line fits whole: cut inside it, after a space if there is one late enough.
        chars = range(low, high)
        end = chars[self._last_fitting(chars, 1, len(chars), (low, high), size)]
        if end <= start or not fits(end):
            return None
        space = self.text.rfind(" ", (start + end) // 2, end)
        if space > start and fits(space):
            return space, space + 1
        return end, end + 1 if self.text[end] == "\n" else end

    def _last_fitting(
        self,
        ends: Sequence[int],
        lo: int,
        hi: int,
        bracket: tuple[int, int],
        size: Callable[[int], int],
    ) -> int:
        """The index of the last of `ends[lo:hi]` that fits, or `lo - 1` when none does.

        Those ends lie inside `bracket` = (an end that fits, one that does not). Sizes grow
        almost linearly with the text, so the next probe is interpolated between the two —
        usually two or three measures find the cut — and bisection takes over whenever a
        probe fails to halve the range, which bounds the worst case to about 2·log2(n).
        """
        low, high = bracket
        low_size, high_size = size(low), size(high)
        interpolate = True
        while lo < hi:
            if interpolate and high_size > low_size:
                target = low + (self.limit - low_size) * (high - low) / (high_size - low_size)
                probe = min(max(bisect_right(ends, target, lo, hi) - 1, lo), hi - 1)
            else:
                probe = (lo + hi) // 2
            width = hi - lo
            if size(ends[probe]) <= self.limit:
                lo, low, low_size = probe + 1, ends[probe], size(ends[probe])
            else:
                hi, high, high_size = probe, ends[probe], size(ends[probe])
            interpolate = 2 * (hi - lo) <= width
        return lo - 1
