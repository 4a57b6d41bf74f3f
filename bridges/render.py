"""Agent markdown → what each platform shows (R5.6), and what a part of it costs (R5.2).

Agents write GitHub-flavoured markdown; Slack speaks its own mrkdwn and Matrix takes an HTML
`formatted_body` beside a plain `body`. Both converters are small line-oriented passes rather
than a markdown library: chat output uses a handful of constructs, and owning the pass is how
we guarantee what matters here — code is never converted, and agent text is always escaped,
so it can neither inject markup nor trigger Slack's `<!channel>`-style control sequences.

Splitting is `bridges.split`'s job; this module gives it each platform's budget and
`measure`, so a part is judged by what is actually sent.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

from bridges.fences import Fence, open_fence

SLACK_LIMIT_CHARS = 4000
"""Slack's advice for one message's `text`; longer ones are truncated or split oddly."""

MATRIX_LIMIT_BYTES = 16000
"""Budget for `body` + `formatted_body` in UTF-8 bytes (`matrix_measure`).

A Matrix event may be at most 65,536 bytes of JSON. Clients escape non-ASCII as `\\uXXXX`,
which is at most 3x a character's UTF-8 length (6 bytes for a 2-3 byte character, 12 for a
4-byte one), so 16,000 bytes of content stay under the limit with room for the envelope.
"""

# --- code blocks: never converted (their fences are read by `bridges.fences`) --------------


@dataclass(frozen=True)
class _Code:
    fence: Fence
    lines: list[str]
    closed: bool  # False when the text ended inside the block


def _scan(md: str) -> Iterator[str | _Code]:
    """The lines of `md`, with each fenced block gathered into one `_Code`."""
    lines = md.split("\n")
    i = 0
    while i < len(lines):
        fence = open_fence(lines[i])
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


class _Block(StrEnum):
    """The blocks that gather lines, named by their HTML tag."""

    PARAGRAPH = "p"
    BULLETS = "ul"
    NUMBERED = "ol"
    QUOTE = "blockquote"


_LISTS = (_Block.BULLETS, _Block.NUMBERED)


class _HtmlBlocks:
    """Collects rendered lines into the block that is open (paragraph, list or quote)."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.kind: _Block | None = None
        self.items: list[str] = []
        self.start = 1

    def add(self, kind: _Block, rendered: str, start: int = 1) -> None:
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
        if self.kind in _LISTS:
            numbered = self.kind is _Block.NUMBERED
            start = f' start="{self.start}"' if numbered and self.start != 1 else ""
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
            blocks.add(_Block.QUOTE, _inline(quote[1], _MATRIX))
        elif bullet := _BULLET.fullmatch(item):
            blocks.add(_Block.BULLETS, _inline(bullet[3], _MATRIX))
        elif numbered := _NUMBERED.fullmatch(item):
            blocks.add(_Block.NUMBERED, _inline(numbered[4], _MATRIX), start=int(numbered[2]))
        elif blocks.kind in _LISTS and item.startswith(("  ", "\t")):
            blocks.continue_item(_inline(item.strip(), _MATRIX))
        else:
            blocks.add(_Block.PARAGRAPH, _inline(item, _MATRIX))
    blocks.close()
    return "\n".join(blocks.out)


def matrix_measure(md: str) -> int:
    """What one Matrix post of `md` costs: UTF-8 bytes of the plain `body` (the markdown)
    plus the `formatted_body` HTML, the two fields that grow with the text."""
    return len(md.encode("utf-8", "surrogatepass")) + len(
        to_matrix_html(md).encode("utf-8", "surrogatepass")
    )
