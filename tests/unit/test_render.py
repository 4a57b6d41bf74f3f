"""Rendering agent markdown for Slack and Matrix (R5.6), and the platforms' measures the
splitter judges parts by (R5.2; the splitter itself is tested in test_split.py)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from crewbridge.bridges.render import (
    MATRIX_LIMIT_BYTES,
    SLACK_LIMIT_CHARS,
    matrix_measure,
    slack_measure,
    to_matrix_html,
    to_slack_mrkdwn,
)


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def test_r5_2_platform_measures_count_what_is_sent():
    assert slack_measure("a & b") == len("a &amp; b")
    assert matrix_measure("**é**") == utf8("**é**") + utf8("<p><strong>é</strong></p>")
    assert SLACK_LIMIT_CHARS == 4000
    assert MATRIX_LIMIT_BYTES * 3 < 65_536  # \u-escaping at most triples the bytes


# --- Slack mrkdwn ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        ("**bold** and __bold__", "*bold* and *bold*"),
        ("*italic* and _italic_", "_italic_ and _italic_"),
        ("~~struck~~", "~struck~"),
        ("**bold _nested_**", "*bold _nested_*"),
        ("*italic **bold***", "_italic *bold*_"),
        ("***both***", "_*both*_"),
        ("*a **b** c* and **d *e* f**", "_a *b* c_ and *d _e_ f*"),
        ("*a ** b*", "_a ** b_"),  # CommonMark: `**` with spaces round it closes nothing
        ("2 * 3 * 4 and a*b", "2 * 3 * 4 and a*b"),
        (
            "[the docs](https://example.org/a_b?x=1&y=2)",
            "<https://example.org/a_b?x=1&amp;y=2|the docs>",
        ),
        ("[a|b](https://example.org/x|y)", "<https://example.org/x%7Cy|a|b>"),
        ("[two\nlines](https://e.org)", "<https://e.org|two lines>"),
        ("[mail](mailto:a@example.org)", "<mailto:a@example.org|mail>"),
        ("[ftp](ftp://example.org/f)", "ftp"),
        ("# Heading", "*Heading*"),
        ("## **Already bold** heading ##", "*Already bold heading*"),
        ("# Title\ntext", "*Title*\ntext"),
        ("> quoted <b>", "> quoted &lt;b&gt;"),
        ("> q\n>\n> > nested", "> q\n>\n> > nested"),
        ("keep `**code** <x> _y_` verbatim", "keep `**code** &lt;x&gt; _y_` verbatim"),
        ("```python\n**x** = _y_ < 3\n```", "```\n**x** = _y_ &lt; 3\n```"),
        ("```\nunclosed", "```\nunclosed\n```"),
        ("    indented code *x*", "```\nindented code *x*\n```"),
        ("snake_case_name and 2*3", "snake_case_name and 2*3"),
        ("one\n\ntwo\nthree", "one\n\ntwo\nthree"),
        ("text\n\n---\n\nmore", "text\n\n──────────\n\nmore"),
        ("NUL\x00here", "NUL\ufffdhere"),
    ],
)
def test_r5_6_slack_mrkdwn(md, mrkdwn):
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        ("- one\n- **two**\n* three\n1. four", "• one\n• *two*\n• three\n1. four"),
        ("3) c\n4) d", "3. c\n4. d"),
        (
            "- a\n  - b\n    1. c\n    2. d\n- e",
            "• a\n    • b\n        1. c\n        2. d\n• e",
        ),
        (
            "1. first\n   - x\n     - y\n2. second",
            "1. first\n    • x\n        • y\n2. second",
        ),
        ("- a\n\n  more of a\n- b", "• a\n\n    more of a\n• b"),
        ("- ```\n  *x*\n  ```", "• ```\n    *x*\n    ```"),
    ],
)
def test_r5_6_slack_nested_lists_are_indented(md, mrkdwn):
    """R5.6: bullets become `•`, numbers keep their count, each level indents by four."""
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        (
            "| a | b |\n|:-|-:|\n| 1 | **22** |\n| long cell | x |",
            "```\na         |  b\n----------+---\n1         | 22\nlong cell |  x\n```",
        ),
        (
            "| name | c |\n|:-:|---|\n| x | `<b>` & [l](https://e.org) |",
            "```\nname | c\n-----+--------\n x   | &lt;b&gt; &amp; l\n```",
        ),
        ("| 表 | b |\n|---|---|\n| 漢字 | x |", "```\n表   | b\n-----+--\n漢字 | x\n```"),
    ],
)
def test_r5_6_slack_tables_become_aligned_code_blocks(md, mrkdwn):
    """R5.6: Slack has no tables; a GFM table is a code block with its columns aligned
    (as markdown-it aligns them: `:-` left, `-:` right, `:-:` centred; wide characters
    count two columns) and its text still escaped."""
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        ("<https://example.org/a>", "<https://example.org/a>"),
        ("<a@example.org>", "<mailto:a@example.org|a@example.org>"),
        ("see https://example.org/_a_/b.", "see <https://example.org/_a_/b>."),
        ("https://x.org/bot/__init__.py", "<https://x.org/bot/__init__.py>"),
        ("setup.py and example.com", "setup.py and example.com"),
        ("![alt *x*](https://e.org/i.png)", "<https://e.org/i.png|alt x>"),
        ("![](https://e.org/i.png)", "<https://e.org/i.png>"),
        ("[![logo](https://e.org/i.png)](https://e.org/)", "<https://e.org/|logo>"),
        ("&amp; &lt; &gt; &copy; &#x41;", "&amp; &lt; &gt; © A"),
    ],
)
def test_r5_6_slack_autolinks_images_and_entities(md, mrkdwn):
    """R5.6: autolinks and bare http(s) URLs are links (so `_` or `__` in a URL is never
    emphasis), images are links, entities are decoded and then escaped again for Slack."""
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        ("<!channel> <!here> <!everyone>", "&lt;!channel&gt; &lt;!here&gt; &lt;!everyone&gt;"),
        ("hi <@U1> and <#C1|general>", "hi &lt;@U1&gt; and &lt;#C1|general&gt;"),
        ("a & b < c > d", "a &amp; b &lt; c &gt; d"),
        ("`<!channel>`", "`&lt;!channel&gt;`"),
        ("```\n<!here>\n```", "```\n&lt;!here&gt;\n```"),
        ("[<!channel>](https://e.org)", "<https://e.org|&lt;!channel&gt;>"),
        ("# <!here>", "*&lt;!here&gt;*"),
        ("| <@U1> |\n|---|\n| x |", "```\n&lt;@U1&gt;\n-----\nx\n```"),
        ("[x](javascript:alert(1))", "[x](javascript:alert(1))"),
        ("![x](javascript:alert(1))", "![x](javascript:alert(1))"),
        ("<javascript:alert(1)>", "&lt;javascript:alert(1)&gt;"),
        ("<slack://open>", "slack://open"),
    ],
)
def test_r5_6_slack_nothing_pings_and_only_safe_links(md, mrkdwn):
    """R5.6: `<!channel>`, `<!here>`, `<@U1>` written by a person or an agent are shown as
    text wherever they stand; a link to anything but http, https or mailto is its text."""
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    ("md", "mrkdwn"),
    [
        ("```sh\nrm -rf *\n```\nthat was it", "```\nrm -rf *\n```\nthat was it"),
        ("## Plan\n\n1. a", "*Plan*\n\n1. a"),
        ("- first\n- second", "• first\n• second"),
        ("| k | v |\n|---|---|\n| a | 1 |", "```\nk | v\n--+--\na | 1\n```"),
    ],
)
def test_r5_6_slack_post_starting_with_a_block_renders_as_that_block(md, mrkdwn):
    """R5.6/R5.7: nothing is glued before the markdown, so a post that opens with a code
    fence, a heading, a list or a table renders as that block."""
    assert to_slack_mrkdwn(md) == mrkdwn


@pytest.mark.parametrize(
    "unit", ["*a ", "_a ", "**a ", "__a ", "~~a ", "``a `", "[a]( ", "*a **b ", "***a ", "![a"]
)
def test_r5_6_stray_delimiters_render_in_linear_time(unit):
    """R5.6: a long line of unmatched `*` once took minutes (each opener scanned to the end
    of the line); markdown-it's delimiter matching is linear. Quadratic would not finish
    here, and no text is lost on the way."""
    line = unit * 20_000
    assert to_slack_mrkdwn(line).count("a") >= 20_000
    assert to_matrix_html(line).count("a") >= 20_000


def test_r5_6_deep_emphasis_does_not_overflow_the_renderers():
    """R5.6: markdown-it caps block nesting but not emphasis: 5,000 `*` each side nest
    thousands deep, which a recursive walk of the tokens could not render."""
    md = "*" * 5000 + "a" + "*" * 5000
    assert to_slack_mrkdwn(md).count("a") == 1
    assert to_matrix_html(md).count("<em>") + to_matrix_html(md).count("<strong>") > 1000


_SLACK_LINK = re.compile(r"<(?:https?://|mailto:)[^<>|]*(?:\|[^<>]*)?>")
markdownish = st.lists(
    st.sampled_from(
        [
            *"abc <>&\"'`*_~[]()#-:/.!@|\n",
            *["https://", "javascript:", "mailto:", "```", "<script>", "&amp;", "**", "> ", "1. "],
            *["![", "- ", "  ", "|---|", "&copy;", "<!channel>", "<@U1>"],
        ]
    ),
    max_size=40,
).map("".join)


@given(markdownish)
@example(">* >")  # found by Hypothesis: a quote in a list item in a quote
def test_r5_6_property_slack_output_has_no_control_sequence_but_our_links(md):
    """R5.6: agent text can't @-mention the channel or forge links: every `<` or `&` is
    one we wrote, and `>` appears raw only to end our links or to start a quote."""
    out = _SLACK_LINK.sub("", to_slack_mrkdwn(md))
    assert "<" not in out
    assert not re.search(r"&(?!amp;|lt;|gt;)", out)
    # a quote's `>` may follow a list's bullet (`>* >`: a quote in a list in a quote)
    assert all(">" not in re.sub(r"^(?:[ •\d.]|> ?)*", "", line) for line in out.split("\n"))


# --- Matrix HTML -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("md", "html"),
    [
        ("hello", "<p>hello</p>"),
        ("one\ntwo", "<p>one<br>two</p>"),
        ("one  \ntwo", "<p>one<br>two</p>"),
        ("one\n\ntwo", "<p>one</p>\n<p>two</p>"),
        (
            "**b** __b__ *i* _i_ ~~s~~ `c`",
            "<p><strong>b</strong> <strong>b</strong> <em>i</em> <em>i</em> <del>s</del> "
            "<code>c</code></p>",
        ),
        ("``a `tick` b``", "<p><code>a `tick` b</code></p>"),
        (
            "```python\nif x < 1:\n    **y**\n```",
            '<pre><code class="language-python">if x &lt; 1:\n    **y**\n</code></pre>',
        ),
        ("```\nplain\n```", "<pre><code>plain\n</code></pre>"),
        ("```\nunclosed", "<pre><code>unclosed</code></pre>"),
        ('```"><script>\nx\n```', "<pre><code>x\n</code></pre>"),
        ("```c++ extra\nx\n```", '<pre><code class="language-c++">x\n</code></pre>'),
        ("# One\n### Three", "<h1>One</h1>\n<h3>Three</h3>"),
        ("1. a\n2. b", "<ol><li>a</li><li>b</li></ol>"),
        ("3) c\n4) d", '<ol start="3"><li>c</li><li>d</li></ol>'),
        ("- a\n\n  more\n- b", "<ul><li><p>a</p><p>more</p></li><li><p>b</p></li></ul>"),
        ("> said\n> this", "<blockquote><p>said<br>this</p></blockquote>"),
        ("text\n\n---\n\nmore", "<p>text</p>\n<hr>\n<p>more</p>"),
        (
            '[docs](https://example.org/?a=1&b="2")',
            '<p><a href="https://example.org/?a=1&amp;b=%222%22">docs</a></p>',
        ),
        ("[mail](mailto:a@example.org)", '<p><a href="mailto:a@example.org">mail</a></p>'),
        ("[ftp](ftp://example.org/f) [rel](docs/x.md)", "<p>ftp rel</p>"),
        ("snake_case_name", "<p>snake_case_name</p>"),
        ("**bold *it* x** a * b", "<p><strong>bold <em>it</em> x</strong> a * b</p>"),
        ("*it **bold***", "<p><em>it <strong>bold</strong></em></p>"),
        ("NUL\x00here", "<p>NUL\ufffdhere</p>"),
    ],
)
def test_r5_6_matrix_html(md, html):
    assert to_matrix_html(md) == html


@pytest.mark.parametrize(
    ("md", "html"),
    [
        (
            "- a\n  - b\n    1. c\n    2. d\n- e",
            "<ul><li>a<ul><li>b<ol><li>c</li><li>d</li></ol></li></ul></li><li>e</li></ul>",
        ),
        (
            "| a | b |\n|:-|-:|\n| 1 | **2** |",
            "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
            "<tbody><tr><td>1</td><td><strong>2</strong></td></tr></tbody></table>",
        ),
        (
            "<https://example.org/a> <a@example.org>",
            '<p><a href="https://example.org/a">https://example.org/a</a> '
            '<a href="mailto:a@example.org">a@example.org</a></p>',
        ),
        (
            "see https://x.org/bot/__init__.py.",
            '<p>see <a href="https://x.org/bot/__init__.py">https://x.org/bot/__init__.py</a>.'
            "</p>",
        ),
        ("&amp; &lt; &gt; &copy; &#x41; &bogus;", "<p>&amp; &lt; &gt; © A &amp;bogus;</p>"),
        ("![alt *x*](https://e.org/i.png)", '<p><a href="https://e.org/i.png">alt x</a></p>'),
        ("![](https://e.org/i.png)", '<p><a href="https://e.org/i.png">https://e.org/i.png</a></p>'),
        ("[![logo](https://e.org/i.png)](https://e.org/)", '<p><a href="https://e.org/">logo</a></p>'),
    ],
)
def test_r5_6_matrix_tables_nested_lists_autolinks_entities_images(md, html):
    """R5.6: GFM tables are `<table>` (no `style`: Matrix allows none), lists nest, bare
    and `<…>` URLs are links, entities decode then escape, images are links (a Matrix
    `<img>` needs an mxc:// URL)."""
    assert to_matrix_html(md) == html


@pytest.mark.parametrize(
    ("md", "html"),
    [
        (
            "<script>alert('x')</script> & co",
            "<p>&lt;script&gt;alert('x')&lt;/script&gt; &amp; co</p>",
        ),
        ("<script>\nalert(1)\n</script>", "<p>&lt;script&gt;<br>alert(1)<br>&lt;/script&gt;</p>"),
        ('<img src=x onerror="alert(1)">', '<p>&lt;img src=x onerror="alert(1)"&gt;</p>'),
        (
            '<a href="javascript:alert(1)">x</a>',
            '<p>&lt;a href="javascript:alert(1)"&gt;x&lt;/a&gt;</p>',
        ),
        ("[x](javascript:alert(1))", "<p>[x](javascript:alert(1))</p>"),
        ("[x](JavaScript:alert(1))", "<p>[x](JavaScript:alert(1))</p>"),
        ("![x](javascript:alert(1))", "<p>![x](javascript:alert(1))</p>"),
        ("[x](data:text/html,<b>)", "<p>[x](data:text/html,&lt;b&gt;)</p>"),
        ('[x](https://e.org/"onmouseover="a)', '<p><a href="https://e.org/%22onmouseover=%22a">x</a></p>'),
    ],
)
def test_r5_6_matrix_raw_html_and_unsafe_links_are_inert(md, html):
    """R5.6: raw HTML in the markdown is shown as text, never injected; only http, https
    and mailto URLs become links."""
    assert to_matrix_html(md) == html


@pytest.mark.parametrize(
    ("md", "html"),
    [
        (
            "```sh\nrm -rf * <x>\n```\nthat was it",
            '<pre><code class="language-sh">rm -rf * &lt;x&gt;\n</code></pre>\n<p>that was it</p>',
        ),
        ("## Plan\n\n1. a", "<h2>Plan</h2>\n<ol><li>a</li></ol>"),
        ("- first\n- second", "<ul><li>first</li><li>second</li></ul>"),
        (
            "| k |\n|---|\n| a |",
            "<table><thead><tr><th>k</th></tr></thead><tbody><tr><td>a</td></tr></tbody></table>",
        ),
    ],
)
def test_r5_6_matrix_post_starting_with_a_block_renders_as_that_block(md, html):
    """R5.6/R5.7: a post that opens with a code fence, a heading, a list or a table renders
    as that block (code verbatim, `*` and `<` included)."""
    assert to_matrix_html(md) == html


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))


ALLOWED_TAGS = {
    "p", "br", "strong", "em", "del", "code", "pre", "a", "ul", "ol", "li", "blockquote", "hr",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
"""What the converter emits: a subset of the tags the Matrix spec allows in HTML bodies."""


@given(markdownish)
def test_r5_6_property_matrix_html_carries_only_our_markup(md):
    """R5.6: whatever the agent writes, the HTML holds only the tags and attributes the
    converter emits, and links only to http, https or mailto."""
    parser = _Tags()
    parser.feed(to_matrix_html(md))
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS
        for name, value in attrs:
            assert (tag, name) in {("a", "href"), ("code", "class"), ("ol", "start")}
            if name == "href":
                assert value.startswith(("http://", "https://", "mailto:"))


async def test_r5_6_a_long_post_renders_off_the_event_loop() -> None:
    """R5.6, R3.7: a 40,000-character answer renders on a worker thread (a few hundred ms
    of markdown-it must not stall the loop); a short one in place."""
    import threading

    from crewbridge.bridges.render import OFF_LOOP_CHARS, rendered

    loop_thread = threading.get_ident()
    assert await rendered("short", lambda t: (threading.get_ident(), t)) == (loop_thread, "short")
    long_text = "x" * OFF_LOOP_CHARS
    where, text = await rendered(long_text, lambda t: (threading.get_ident(), t))
    assert where != loop_thread and text == long_text
