"""The one reading of agent markdown both renderers share (R5.6): markdown-it-py's tokens.

Agents write GitHub-flavoured markdown, so the parser is CommonMark with GFM tables and
strikethrough, as markdown-it parses them — not a hand-written pass. Two settings carry
the safety the renderers build on: raw HTML is off (`<script>`, `<!channel>` and `<@U1>`
arrive as text, never as markup), and bare URLs are linkified (schema-prefixed ones only:
with fuzzy matching `setup.py` would become a link to Paraguay), so `__init__` inside a
URL stays part of the URL instead of turning it bold.

The renderers walk the flat token stream rather than markdown-it's `SyntaxTreeNode`:
block nesting is capped by markdown-it (`maxNesting`), but emphasis is not, and a line of
5,000 `*` would nest thousands deep and overflow any recursive walk.
"""

from __future__ import annotations

from collections.abc import Iterable

from markdown_it import MarkdownIt
from markdown_it.token import Token

# Configured once here and shared (the bench times it bare): never reconfigure it elsewhere.
PARSER = MarkdownIt("commonmark", {"html": False, "linkify": True}).enable(
    ["table", "strikethrough", "linkify"]
)
PARSER.linkify.set({"fuzzy_link": False, "fuzzy_email": False, "fuzzy_ip": False})

LINK_SCHEMES = ("http://", "https://", "mailto:")
"""The only URLs a post may link to (R5.6); any other link is shown as its text."""


def parse(md: str) -> list[Token]:
    """The block tokens of `md`; each `inline` token holds its line's inline tokens."""
    return PARSER.parse(md)


def safe_href(token: Token) -> str | None:
    """The URL a `link_open` or `image` token may link to, or None when its scheme is not
    http, https or mailto (markdown-it has already percent-encoded it)."""
    url = str(token.attrs.get("href" if token.type == "link_open" else "src", ""))
    return url if url.lower().startswith(LINK_SCHEMES) else None


def plain_text(tokens: Iterable[Token]) -> str:
    """The text a reader sees in inline `tokens`, without marks: an image's alt text, a
    table cell in a code block. Iterative, for the same reason the renderers are."""
    out: list[str] = []
    pending = list(reversed(list(tokens)))
    while pending:
        token = pending.pop()
        if token.type in ("text", "code_inline"):
            out.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            out.append(" ")
        elif token.children:  # an image: its alt text
            pending.extend(reversed(token.children))
    return "".join(out)
