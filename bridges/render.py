"""Agent markdown → what each platform shows, in parts that fit its size limit (R5.2, R5.6).

Agents write GitHub-flavoured markdown; Slack speaks its own mrkdwn and Matrix takes an HTML
`formatted_body` beside a plain `body`. Both converters are small line-oriented passes rather
than a markdown library: chat output uses a handful of constructs, and owning the pass is how
we guarantee what matters here — code is never converted, and agent text is always escaped,
so it can neither inject markup nor trigger Slack's `<!channel>`-style control sequences.

Splitting works on the markdown, before rendering: cuts go where a reader expects them
(blank lines, then line ends, then anywhere) and never through a code block that could fit
a part whole. The caller passes the platform's `measure`, so a part is judged by what is
actually sent (`slack_measure`, `matrix_measure`).
"""

from __future__ import annotations

import html
import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

SLACK_LIMIT_CHARS = 4000
"""Slack's advice for one message's `text`; longer ones are truncated or split oddly."""

MATRIX_LIMIT_BYTES = 16000
"""Budget for `body` + `formatted_body` in UTF-8 bytes (`matrix_measure`).

A Matrix event may be at most 65,536 bytes of JSON. Clients escape non-ASCII as `\\uXXXX`,
which is at most 3x a character's UTF-8 length (6 bytes for a 2-3 byte character, 12 for a
4-byte one), so 16,000 bytes of content stay under the limit with room for the envelope.
"""

# --- code fences: shared by the splitter and both renderers --------------------------------

_FENCE_OPEN = re.compile(r" {0,3}(`{3,}|~{3,})(.*)")
_FENCE_CLOSE = re.compile(r" {0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class _Fence:
    """An open fenced code block (CommonMark rules, minus the rarely used corners)."""

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


def _open_fence(line: str) -> _Fence | None:
    if not line.lstrip(" ").startswith(("```", "~~~")):  # the common case, cheaply
        return None
    match = _FENCE_OPEN.fullmatch(line.rstrip())
    if not match or (match[1][0] == "`" and "`" in match[2]):
        return None
    return _Fence(opener=line.rstrip(), run=match[1], info=match[2].strip())


@dataclass(frozen=True)
class _Code:
    fence: _Fence
    lines: list[str]
    closed: bool  # False when the text ended inside the block


def _scan(md: str) -> Iterator[str | _Code]:
    """The lines of `md`, with each fenced block gathered into one `_Code`."""
    lines = md.split("\n")
    i = 0
    while i < len(lines):
        fence = _open_fence(lines[i])
        if fence is None:
            yield lines[i]
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not fence.closed_by(lines[j]):
            j += 1
        yield _Code(fence, lines[i + 1 : j], closed=j < len(lines))
        i = j + 1


# --- inline markdown: one pass, two output styles -------------------------------------------

_PROTECTED = re.compile(
    r"(?P<code>(`+)(?!`).+?(?<!`)\2(?!`))"
    r"|\[(?P<label>[^\]\n]+)\]\((?P<url>(?:[^()\s]|\([^()\s]*\))+)\)"
    r"|(?P<bare>https?://[^\s<>]+)"
)
# A span never runs past the next delimiter like its own (`**a **b` cannot be one bold span
# holding `**`): an opener without a closer then costs a scan to the next delimiter, not to
# the end of the line, which keeps a line full of stray `*` linear instead of quadratic.
# The one exception is a whole bold span inside an italic one (`*a **b** c*`, `***both***`),
# which agents write often; italic is tried first so the bold inside cannot take its `*`.
_BOLD_IN_ITALIC = r"\*\*(?=[^\s*])(?:[^*]|\*(?!\*))+?(?<=[^\s*])\*\*"
_EMPHASIS = re.compile(
    rf"\*(?=[^\s*]|\*\*[^\s*])(?P<italic>(?:[^*]|{_BOLD_IN_ITALIC})+?)"
    r"(?:(?<=[^\s*])|(?<=\*\*))\*(?!\*)"
    r"|\*\*(?=\S)(?P<bold>(?:[^*]|\*(?!\*))+?)(?<=\S)\*\*"
    r"|(?<!\w)__(?=\S)(?P<bold_>(?:[^_]|_(?!_))+?)(?<=\S)__(?!\w)"
    r"|~~(?=\S)(?P<strike>(?:[^~]|~(?!~))+?)(?<=\S)~~"
    r"|(?<!\w)_(?=[^\s_])(?P<italic_>[^_]+?)(?<=[^\s_])_(?!\w)"
)
_MARKUP = re.compile(r"[`\[*_~:\x00]")  # what can start a construct `_inline` converts
_PLACEHOLDER = re.compile("\x00(\\d+)\x00")
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_MAX_NESTING = 3


@dataclass(frozen=True)
class _Style:
    """How one platform writes the inline constructs."""

    escape: Callable[[str], str]
    code: Callable[[str], str]  # the whole code span as written -> output
    link: Callable[[str, str], str]  # escaped label, url -> output
    marks: dict[str, tuple[str, str]]  # emphasis group name -> (open, close)


def _inline(text: str, style: _Style) -> str:
    """Render one line's inline markdown.

    Code spans and links are cut out first (into numbered NUL placeholders) so that nothing
    inside them is escaped twice or read as emphasis — `snake_case` in a URL stays a URL.
    """
    if not _MARKUP.search(text):  # most lines of prose: nothing to convert
        return style.escape(text)
    protected: list[str] = []

    def protect(match: re.Match[str]) -> str:
        if match["code"]:
            rendered = style.code(match["code"])
        elif match["bare"]:
            rendered = style.escape(match["bare"])
        elif match["url"].lower().startswith(_LINK_SCHEMES):
            rendered = style.link(style.escape(match["label"]), match["url"])
        else:
            rendered = style.escape(match[0])
        protected.append(rendered)
        return f"\x00{len(protected) - 1}\x00"

    masked = _PROTECTED.sub(protect, text.replace("\x00", "\ufffd"))
    rendered = _emphasis(style.escape(masked), style, 0)
    return _PLACEHOLDER.sub(lambda match: protected[int(match[1])], rendered)


def _emphasis(text: str, style: _Style, depth: int) -> str:
    if depth >= _MAX_NESTING:
        return text

    def mark(match: re.Match[str]) -> str:
        name = match.lastgroup or ""
        opening, closing = style.marks[name]
        return opening + _emphasis(match[name], style, depth + 1) + closing

    return _EMPHASIS.sub(mark, text)


_HEADING = re.compile(r" {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_RULE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_QUOTE = re.compile(r" {0,3}>[ \t]?(.*)")
_BULLET = re.compile(r"([ \t]*)([-*+])[ \t]+(.*)")
_NUMBERED = re.compile(r"([ \t]*)(\d{1,9})([.)])[ \t]+(.*)")


# --- Slack mrkdwn ------------------------------------------------------------------------


def _slack_escape(text: str) -> str:
    """The three characters Slack reserves for its control sequences (and nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK = _Style(
    escape=_slack_escape,
    code=_slack_escape,
    link=lambda label, url: f"<{_slack_escape(url).replace('|', '%7C')}|{label}>",
    marks={
        "bold": ("*", "*"),
        "bold_": ("*", "*"),
        "italic": ("_", "_"),
        "italic_": ("_", "_"),
        "strike": ("~", "~"),
    },
)

_SLACK_HEADING = replace(  # a heading is already bold; Slack cannot nest bold in bold
    _SLACK, marks={**_SLACK.marks, "bold": ("", ""), "bold_": ("", "")}
)


def to_slack_mrkdwn(md: str) -> str:
    """Slack mrkdwn for agent markdown.

    Slack has no headings (they become bold lines), no language hints on code blocks (it
    would print `python` as the first code line, so the info string is dropped) and a
    single level of `>` quotes. `&`, `<` and `>` are escaped everywhere, code included, as
    Slack requires; only the `<url|label>` links made here are left unescaped.
    """
    out: list[str] = []
    for item in _scan(md):
        if isinstance(item, _Code):
            out.append("```")
            out += [_slack_escape(line) for line in item.lines]
            if item.closed:
                out.append("```")
        else:
            out.append(_slack_line(item))
    return "\n".join(out)


def _slack_line(line: str) -> str:
    if heading := _HEADING.fullmatch(line):
        return f"*{_inline(heading[2], _SLACK_HEADING)}*" if heading[2] else ""
    if quote := _QUOTE.fullmatch(line):
        return "> " + _inline(quote[1], _SLACK)
    if item := _BULLET.fullmatch(line) or _NUMBERED.fullmatch(line):
        marker_end = item.start(item.lastindex or 0)
        return _slack_escape(line[:marker_end]) + _inline(line[marker_end:], _SLACK)
    return _inline(line, _SLACK)


def slack_measure(md: str) -> int:
    """The length Slack counts for `md`: characters of the rendered mrkdwn."""
    return len(to_slack_mrkdwn(md))


# --- Matrix HTML -------------------------------------------------------------------------


def _html_escape(text: str) -> str:
    return html.escape(text, quote=False)


def _html_code(span: str) -> str:
    ticks = len(span) - len(span.lstrip("`"))
    return f"<code>{_html_escape(span[ticks:-ticks])}</code>"


_MATRIX = _Style(
    escape=_html_escape,
    code=_html_code,
    link=lambda label, url: f'<a href="{html.escape(url, quote=True)}">{label}</a>',
    marks={
        "bold": ("<strong>", "</strong>"),
        "bold_": ("<strong>", "</strong>"),
        "italic": ("<em>", "</em>"),
        "italic_": ("<em>", "</em>"),
        "strike": ("<del>", "</del>"),
    },
)


class _HtmlBlocks:
    """Collects rendered lines into the block that is open (paragraph, list or quote)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.kind: str | None = None  # "p" | "ul" | "ol" | "blockquote"
        self.items: list[str] = []
        self.start = 1

    def add(self, kind: str, rendered: str, start: int = 1) -> None:
        if kind != self.kind:
            self.close()
            self.kind, self.start = kind, start
        self.items.append(rendered)

    def continue_item(self, rendered: str) -> None:
        self.items[-1] += "<br>" + rendered

    def block(self, rendered: str) -> None:
        self.close()
        self.out.append(rendered)

    def close(self) -> None:
        if self.kind in ("ul", "ol"):
            start = f' start="{self.start}"' if self.kind == "ol" and self.start != 1 else ""
            items = "".join(f"<li>{item}</li>" for item in self.items)
            self.out.append(f"<{self.kind}{start}>{items}</{self.kind}>")
        elif self.kind is not None:
            self.out.append(f"<{self.kind}>{'<br>'.join(self.items)}</{self.kind}>")
        self.kind, self.items = None, []


def to_matrix_html(md: str) -> str:
    """HTML for a Matrix `formatted_body`, from the subset of markdown chat output uses.

    Every character of agent text is HTML-escaped and only tags written here are emitted;
    links are made only for http, https and mailto URLs. Lines inside a paragraph keep
    their breaks (`<br>`), as a chat reader expects; lists are flat (nested items become
    items of the same list).
    """
    blocks = _HtmlBlocks()
    for item in _scan(md):
        if isinstance(item, _Code):
            language = item.fence.language
            attr = f' class="language-{html.escape(language, quote=True)}"' if language else ""
            code = _html_escape("".join(line + "\n" for line in item.lines))
            blocks.block(f"<pre><code{attr}>{code}</code></pre>")
        elif not item.strip():
            blocks.close()
        elif heading := _HEADING.fullmatch(item):
            level = len(heading[1])
            blocks.block(f"<h{level}>{_inline(heading[2], _MATRIX)}</h{level}>")
        elif _RULE.fullmatch(item):
            blocks.block("<hr>")
        elif quote := _QUOTE.fullmatch(item):
            blocks.add("blockquote", _inline(quote[1], _MATRIX))
        elif bullet := _BULLET.fullmatch(item):
            blocks.add("ul", _inline(bullet[3], _MATRIX))
        elif numbered := _NUMBERED.fullmatch(item):
            blocks.add("ol", _inline(numbered[4], _MATRIX), start=int(numbered[2]))
        elif blocks.kind in ("ul", "ol") and item.startswith(("  ", "\t")):
            blocks.continue_item(_inline(item.strip(), _MATRIX))
        else:
            blocks.add("p", _inline(item, _MATRIX))
    blocks.close()
    return "\n".join(blocks.out)


def matrix_measure(md: str) -> int:
    """What one Matrix post of `md` costs: UTF-8 bytes of the plain `body` (the markdown)
    plus the `formatted_body` HTML, the two fields that grow with the text."""
    return len(md.encode("utf-8", "surrogatepass")) + len(
        to_matrix_html(md).encode("utf-8", "surrogatepass")
    )


# --- splitting ---------------------------------------------------------------------------


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
    if measure(text) <= limit:
        return [text]
    return _Splitter(text, limit, measure).parts()


@dataclass(frozen=True)
class _Region:
    """The body of one fenced block, and the lines that close and reopen it at a cut."""

    start: int  # first character of the body
    end: int  # start of the closing line (end of the text when unclosed)
    closed_at: int  # end of the closing line (end of the text when unclosed)
    reopen: str
    close: str


class _Splitter:
    def __init__(self, text: str, limit: int, measure: Callable[[str], int]) -> None:
        self.text, self.limit, self.measure = text, limit, measure
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

        roles: list[str] = []  # text | open | body | close, per line
        self.regions: list[_Region] = []
        fence: _Fence | None = None
        body_start = 0
        for i, line in enumerate(lines):
            if fence is None:
                fence = _open_fence(line)
                roles.append("text" if fence is None else "open")
                body_start = ends[i] + 1
            elif fence.closed_by(line):
                roles.append("close")
                self.regions.append(
                    _Region(body_start, starts[i], ends[i], fence.opener, fence.closer)
                )
                fence = None
            else:
                roles.append("body")
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
            if roles[i] == "open" or roles[j] == "close":
                continue
            self.cut_ends.append(ends[i])
            self.cut_next.append(starts[j])
            outside = roles[i] in ("text", "close") and roles[j] in ("text", "open")
            if outside and (j > i + 1 or roles[i] == "close" or roles[j] == "open"):
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
        low, step = start, max(self.limit, 1)
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

        # 2. The farthest line cut that fits: those up to `low` do, search the rest.
        first = bisect_right(self.cut_ends, start)
        known = bisect_right(self.cut_ends, low)
        best = self._last_fitting(
            self.cut_ends, known, bisect_left(self.cut_ends, high), (low, high), size
        )
        if best >= first:
            # 3. Prefer the farthest paragraph cut before it.
            para = bisect_right(self.para_ends, self.cut_ends[best]) - 1
            if para >= 0 and self.para_ends[para] > start and fits(self.para_ends[para]):
                return self.para_ends[para], self.para_next[para]
            if fits(self.cut_ends[best]):
                return self.cut_ends[best], self.cut_next[best]

        # 4. No line fits whole: cut inside it, after a space if there is one late enough.
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
