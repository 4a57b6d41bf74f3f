"""markdown-it tokens → a Matrix `formatted_body` (R5.6).

Sanitised by construction: every tag comes from the tables below (all on the Matrix
spec's list of allowed tags), every piece of agent text is HTML-escaped after
markdown-it has decoded its entities, and attributes are only a checked `href`, an
`<ol start>` number and a `language-…` class. There is no raw HTML to let through:
the parser reads it as text. Images become links, as Matrix shows only `mxc://` images.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

from markdown_it.token import Token

from crewbridge.bridges.md_parse import parse, plain_text, safe_href

_BLOCK_TAGS = frozenset({
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "ul", "ol", "li",
    "table", "thead", "tbody", "tr", "th", "td",
})  # fmt: skip
"""Block tags emitted as markdown-it names them (its table alignment `style` is dropped:
Matrix allows no `style` attribute)."""

_INLINE_TAGS = {"strong": "strong", "em": "em", "s": "del"}
_LANGUAGE = re.compile(r"[\w+#.-]+")


def _escape(text: str) -> str:
    return html.escape(text, quote=False)


def to_matrix_html(md: str) -> str:
    """HTML for a Matrix `formatted_body`.

    Top-level blocks are separated by a newline; inside a paragraph a line break stays a
    `<br>`, as a chat reader expects of text written line by line.
    """
    return "".join(_blocks(parse(md)))


def _blocks(tokens: list[Token]) -> Iterator[str]:
    started = False
    for token in tokens:
        if token.level == 0 and token.nesting >= 0:
            if started:
                yield "\n"
            started = True
        if token.type == "inline":
            yield from _inline(token.children or [])
        elif token.type in ("fence", "code_block"):
            yield _code_block(token)
        elif token.type == "hr":
            yield "<hr>"
        elif token.tag in _BLOCK_TAGS and not token.hidden:
            yield _tag(token)
        elif token.nesting == 0 and token.content:  # nothing else is expected; never markup
            yield _escape(token.content)


def _tag(token: Token) -> str:
    if token.nesting < 0:
        return f"</{token.tag}>"
    start = token.attrs.get("start") if token.type == "ordered_list_open" else None
    return f'<{token.tag} start="{int(start)}">' if start is not None else f"<{token.tag}>"


def _code_block(token: Token) -> str:
    """`<pre><code>`, with a `language-…` class only when the info string's first word
    looks like a language name (it is the agent's text, and goes in an attribute)."""
    language = token.info.split()[0] if token.info.strip() else ""
    attr = f' class="language-{language}"' if _LANGUAGE.fullmatch(language) else ""
    return f"<pre><code{attr}>{_escape(token.content)}</code></pre>"


def _inline(children: list[Token]) -> Iterator[str]:
    links: list[bool] = []  # per open link: whether its `<a>` was written
    for token in children:
        kind = token.type
        if kind == "text":
            yield _escape(token.content)
        elif kind == "code_inline":
            yield f"<code>{_escape(token.content)}</code>"
        elif kind in ("softbreak", "hardbreak"):
            yield "<br>"
        elif kind.endswith(("_open", "_close")) and token.tag in _INLINE_TAGS:
            yield f"<{'/' if token.nesting < 0 else ''}{_INLINE_TAGS[token.tag]}>"
        elif kind == "link_open":
            href = safe_href(token)
            links.append(href is not None)
            if href is not None:
                yield f'<a href="{html.escape(href)}">'
        elif kind == "link_close":
            if links.pop():
                yield "</a>"
        elif kind == "image":
            yield _image(token, inside_link=any(links))
        elif token.content:
            yield _escape(token.content)


def _image(token: Token, *, inside_link: bool) -> str:
    alt = _escape(plain_text(token.children or []))
    href = safe_href(token)
    if href is None or inside_link:
        return alt
    return f'<a href="{html.escape(href)}">{alt or _escape(href)}</a>'
