"""markdown-it tokens → Slack mrkdwn (R5.6).

Slack's mrkdwn has bold, italic, strike, code, code blocks, `>` quotes and `<url|text>`
links, and nothing else: headings become bold lines, lists are written out with `•` and
numbers (nesting by indentation), tables become a code block of aligned columns, images
links. `&`, `<` and `>` are escaped in every piece of text, code included, as Slack
requires — so `<!channel>` or `<@U123>` that a person or an agent wrote is shown, not
acted on; the only `<…>` left raw are the links made here.

Blocks are kept apart as the author wrote them: a blank line between two blocks in the
source is a blank line in the post, none is none (markdown-it's line `map` says which).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from markdown_it.token import Token

from crewbridge.bridges.md_parse import parse, plain_text, safe_href

_MARKS = {"strong": "*", "em": "_", "s": "~"}
_BULLET = "•"
_INDENT = "    "
_RULE = "─" * 10  # Slack has no horizontal rule


def _escape(text: str) -> str:
    """The three characters Slack reserves for its control sequences (and nothing else)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_slack_mrkdwn(md: str) -> str:
    """Slack mrkdwn for agent markdown.

    Code blocks lose their language (Slack would print it as the first code line); `>`
    quotes nest as `> > `, which Slack shows as one quote level.
    """
    blocks, _ = _blocks(parse(md), 0)
    return _join(blocks)


@dataclass(frozen=True)
class _Block:
    text: str
    lines: tuple[int, int]  # the source lines it came from, end exclusive


def _lines(token: Token) -> tuple[int, int]:
    return (token.map[0], token.map[1]) if token.map else (0, 0)


def _join(blocks: list[_Block]) -> str:
    out: list[str] = []
    for index, block in enumerate(blocks):
        if index:
            gap = block.lines[0] > blocks[index - 1].lines[1]
            out.append("\n\n" if gap else "\n")
        out.append(block.text)
    return "".join(out)


def _blocks(tokens: list[Token], i: int) -> tuple[list[_Block], int]:
    """The blocks from `tokens[i]` up to the close of the container they are in (or the
    end); returns them and the index after that close. Recursion follows block nesting
    only, which markdown-it caps (`maxNesting`)."""
    blocks: list[_Block] = []
    while i < len(tokens) and tokens[i].nesting >= 0:
        token = tokens[i]
        text, i = _block(tokens, i)
        blocks.append(_Block(text, _lines(token)))
    return blocks, i + 1


def _block(tokens: list[Token], i: int) -> tuple[str, int]:
    """One block starting at `tokens[i]`, and the index after it."""
    token = tokens[i]
    kind = token.type
    if kind in ("fence", "code_block"):
        return _code(token.content), i + 1
    if kind == "hr":
        return _RULE, i + 1
    if kind == "paragraph_open":
        return _inline(tokens[i + 1]), i + 3
    if kind == "heading_open":
        text = _inline(tokens[i + 1], heading=True)
        return (f"*{text}*" if text else ""), i + 3
    if kind == "blockquote_open":
        blocks, i = _blocks(tokens, i + 1)
        lines = _join(blocks).split("\n")
        return "\n".join(f"> {line}" if line else ">" for line in lines), i
    if kind in ("bullet_list_open", "ordered_list_open"):
        return _list(tokens, i)
    if kind == "table_open":
        return _table(tokens, i)
    if token.nesting == 1:  # nothing else is expected; its content is still shown
        blocks, i = _blocks(tokens, i + 1)
        return _join(blocks), i
    return _escape(token.content), i + 1


def _code(content: str) -> str:
    """A code block; its last line is ended even when the text ended inside the block."""
    end = "" if content.endswith("\n") or not content else "\n"
    return f"```\n{_escape(content)}{end}```"


def _list(tokens: list[Token], i: int) -> tuple[str, int]:
    ordered = tokens[i].type == "ordered_list_open"
    number = int(tokens[i].attrs.get("start", 1)) if ordered else 0
    items: list[_Block] = []
    i += 1
    while tokens[i].type == "list_item_open":
        item = tokens[i]
        blocks, i = _blocks(tokens, i + 1)
        marker = f"{number}." if ordered else _BULLET
        number += 1
        first, *rest = _join(blocks).split("\n") if blocks else [""]
        lines = [f"{marker} {first}".rstrip(), *(_INDENT + line if line else "" for line in rest)]
        items.append(_Block("\n".join(lines), _lines(item)))
    return _join(items), i + 1


def _inline(token: Token, *, heading: bool = False) -> str:
    """One line's inline tokens. A heading is already bold: Slack cannot nest bold in bold,
    so bold inside one is unmarked. A link's label is gathered and checked before it is
    written, so a link whose label is its URL is written `<url>`."""
    out: list[str] = []
    links: list[tuple[int, str | None]] = []  # per open link: where its label starts, URL
    for child in token.children or []:
        kind = child.type
        if kind == "text":
            out.append(_escape(child.content))
        elif kind == "code_inline":
            out.append(f"`{_escape(child.content)}`")
        elif kind in ("softbreak", "hardbreak"):
            out.append(" " if links else "\n")  # a Slack link cannot span lines
        elif kind.endswith(("_open", "_close")) and child.tag in _MARKS:
            out.append("" if heading and child.tag == "strong" else _MARKS[child.tag])
        elif kind == "link_open":
            links.append((len(out), safe_href(child)))
        elif kind == "link_close":
            start, url = links.pop()
            if url is not None:
                out[start:] = [_link(url, "".join(out[start:]))]
        elif kind == "image":
            alt = _escape(plain_text(child.children or []))
            url = safe_href(child)
            out.append(alt if url is None or links else _link(url, alt))
        elif child.content:
            out.append(_escape(child.content))
    return "".join(out)


def _link(url: str, label: str) -> str:
    target = _escape(url).replace("|", "%7C")
    return f"<{target}>" if label in ("", target) else f"<{target}|{label}>"


# --- tables: Slack has none, so a code block of aligned columns --------------------------

_ALIGN = {"text-align:right": str.rjust, "text-align:center": str.center}


def _table(tokens: list[Token], i: int) -> tuple[str, int]:
    rows: list[list[str]] = []
    aligns: list[str] = []
    depth = 0
    while True:
        token = tokens[i]
        depth += token.nesting
        i += 1
        if token.type == "tr_open":
            rows.append([])
        elif token.type in ("th_open", "td_open"):
            if len(rows) == 1:
                aligns.append(str(token.attrs.get("style", "")))
        elif token.type == "inline":
            rows[-1].append(plain_text(token.children or []))
        if depth == 0:
            return _code(_layout(rows, aligns)), i


def _width(text: str) -> int:
    """Columns a monospace font gives `text`: wide East Asian characters take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def _layout(rows: list[list[str]], aligns: list[str]) -> str:
    widths = [max(_width(row[c]) for row in rows) for c in range(len(aligns))]

    def cell(text: str, column: int) -> str:
        pad = widths[column] - _width(text) + len(text)
        return _ALIGN.get(aligns[column], str.ljust)(text, pad)

    lines = [" | ".join(cell(text, c) for c, text in enumerate(row)).rstrip() for row in rows]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "".join(line + "\n" for line in lines)

