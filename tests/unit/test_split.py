"""Splitting posts to the platforms' limits (R5.2): where the cuts go, that nothing is
lost, and that the work stays linear."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crewbridge.bridges.render import (
    MATRIX_LIMIT_BYTES,
    SLACK_LIMIT_CHARS,
    matrix_measure,
    slack_measure,
)
from crewbridge.bridges.split import split_message


def utf8(text: str) -> int:
    return len(text.encode("utf-8"))


# --- splitting: what "nothing is lost" means ---------------------------------------------


def _is_fence_line(line: str) -> bool:
    return line.lstrip(" ").startswith(("```", "~~~"))


def _bodies(part: str) -> list[str]:
    """The part, and the part without the fence lines a cut may have added around it."""
    lines = part.split("\n")
    opened = len(lines) > 1 and _is_fence_line(lines[0])
    closed = len(lines) > 1 and _is_fence_line(lines[-1])
    bodies = [part]
    if closed:
        bodies.append("\n".join(lines[:-1]))
    if opened:
        bodies.append("\n".join(lines[1:]))
    if opened and closed and len(lines) > 2:
        bodies.append("\n".join(lines[1:-1]))
    return bodies


def loses_nothing(text: str, parts: list[str]) -> bool:
    """Whether, with added fence lines removed, the parts are slices of `text` in order with
    nothing but whitespace between them, before the first and after the last."""

    @cache
    def explained(index: int, position: int) -> bool:
        if index == len(parts):
            return not text[position:].strip()
        for body in _bodies(parts[index]):
            gap_end = position
            while True:
                if text.startswith(body, gap_end) and explained(index + 1, gap_end + len(body)):
                    return True
                if gap_end < len(text) and text[gap_end].isspace():
                    gap_end += 1
                else:
                    break
        return False

    return explained(0, 0)


def test_loses_nothing_can_tell_a_lost_character():
    assert loses_nothing("ab\n\ncd", ["ab", "cd"])
    assert not loses_nothing("ab\n\ncd", ["ab", "c"])
    assert not loses_nothing("ab\n\ncd", ["cd", "ab"])
    assert not loses_nothing("ab x cd", ["ab", "cd"])


# --- splitting: examples -----------------------------------------------------------------


def test_r5_2_a_post_that_fits_is_one_part_unchanged():
    assert split_message("hello\n\nworld\n", 100) == ["hello\n\nworld\n"]
    assert split_message(" \n\n ", 100) == []


def test_r5_2_split_prefers_paragraph_boundaries():
    p1, p2, p3 = "a" * 30, "b" * 30, "c" * 30
    assert split_message(f"{p1}\n\n{p2}\n\n{p3}", 65) == [f"{p1}\n\n{p2}", p3]


def test_r5_2_split_prefers_a_paragraph_boundary_to_a_fuller_part():
    text = "short intro\n\n" + "\n".join(f"line {i:02}" for i in range(10))
    parts = split_message(text, 50)
    assert parts[0] == "short intro"
    assert all(len(part) <= 50 for part in parts)
    assert loses_nothing(text, parts)


def test_r5_2_split_falls_back_to_line_boundaries():
    text = "\n".join(f"line {i:02}" for i in range(10))  # 7 chars a line
    assert split_message(text, 23) == [
        "line 00\nline 01\nline 02",
        "line 03\nline 04\nline 05",
        "line 06\nline 07\nline 08",
        "line 09",
    ]


def test_r5_2_a_long_line_is_cut_after_a_space_else_anywhere():
    assert split_message("aaaa bbbb cccc dddd", 10) == ["aaaa bbbb", "cccc dddd"]
    assert split_message("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_r5_2_a_code_block_that_fits_a_part_is_never_cut():
    fence = "```python\n" + "\n".join(f"x = {i}" for i in range(8)) + "\n```"
    text = "intro " * 8 + "\n\n" + fence + "\n\nafter"
    parts = split_message(text, len(fence) + 5)
    assert fence in parts
    assert loses_nothing(text, parts)


def test_r5_2_a_code_block_too_big_is_closed_and_reopened_at_line_ends():
    code = [f"    value_{i} = compute({i})" for i in range(20)]
    text = "~~~~python\n" + "\n".join(code) + "\n~~~~"
    parts = split_message(text, 120)
    assert len(parts) > 1
    for part in parts:
        assert len(part) <= 120
        assert part.startswith("~~~~python\n") and part.endswith("\n~~~~")
        assert all(line in code for line in part.split("\n")[1:-1])  # whole lines only
    assert loses_nothing(text, parts)


def test_r5_2_a_cut_never_goes_through_the_closing_fence_line():
    """Regression (found by hypothesis): cutting inside "```" looked cheaper than closing."""
    text = "```python\n\n" + ";" * 16 + "\n```"
    assert split_message(text, 30) == ["```python\n\n" + ";" * 15 + "\n```", "```python\n;\n```"]


def test_r5_2_an_unclosed_code_block_is_not_closed_by_the_last_part():
    text = "```\n" + "\n".join(f"line {i}" for i in range(20))
    parts = split_message(text, 40)
    assert all(part.endswith("\n```") for part in parts[:-1])
    assert not parts[-1].endswith("```")
    assert loses_nothing(text, parts)


def test_r5_2_split_by_bytes_counts_multibyte_characters():
    text = "é" * 50 + "\n\n" + "🙂" * 30
    parts = split_message(text, 40, measure=utf8)
    assert all(utf8(part) <= 40 for part in parts)
    assert "".join(parts) == text.replace("\n", "")


def test_r5_2_fence_lines_are_dropped_when_they_alone_exceed_the_limit():
    text = "```" + "i" * 30 + "\n" + "code\n" * 10 + "```"
    parts = split_message(text, 20)
    assert all(len(part) <= 20 for part in parts)


def test_r5_2_a_limit_below_one_character_is_an_error():
    with pytest.raises(ValueError, match="limit"):
        split_message("🙂🙂", 3, measure=utf8)


def test_r5_2_a_megabyte_splits_in_linear_work():
    """R5.2: no quadratic behaviour — counted in characters measured, not in seconds."""
    paragraph = " ".join(f"word{i}" for i in range(60))
    code = "```js\n" + "\n".join(f"let v{i} = {i};" for i in range(300)) + "\n```"
    text = "\n\n".join([paragraph] * 1500 + [code] * 40 + ["x" * 200_000])
    assert len(text) > 1_000_000
    measured = 0

    def counting(part: str) -> int:
        nonlocal measured
        measured += len(part)
        return len(part)

    limit = 4000  # about a Slack post
    parts = split_message(text, limit, measure=counting)
    assert all(len(part) <= limit for part in parts)
    assert measured < 20 * len(text)
    fences_and_space = re.compile(r"```(?:js)?|\s")
    assert fences_and_space.sub("", "".join(parts)) == fences_and_space.sub("", text)


# --- splitting: properties ---------------------------------------------------------------

prose_line = st.text(alphabet="abcdé漢🙂 *_<>&#-", min_size=1, max_size=90).filter(str.strip)
code_line = st.text(alphabet="xyz(){}=; é", max_size=70)
paragraph = st.lists(prose_line, min_size=1, max_size=4).map("\n".join)


@st.composite
def fences(draw) -> str:
    info = draw(st.sampled_from(["", "python", "js"]))
    lines = draw(st.lists(code_line, max_size=8))
    return "\n".join([f"```{info}", *lines, "```"])


@st.composite
def documents(draw) -> tuple[str, list[str]]:
    blocks = draw(st.lists(paragraph | fences(), min_size=1, max_size=8))
    text = ""
    for block in blocks:
        text += draw(st.sampled_from(["\n", "\n\n", "\n\n\n"])) if text else ""
        text += block
    if draw(st.booleans()):  # the agent stopped inside a code block
        text += "\n```sh\n" + "\n".join(draw(st.lists(code_line, max_size=6)))
    return text, [block for block in blocks if block.startswith("```")]


@given(documents(), st.integers(30, 400), st.sampled_from([len, utf8]))
def test_r5_2_property_split_fits_loses_nothing_and_keeps_small_code_blocks_whole(
    document, limit, measure
):
    text, code_blocks = document
    parts = split_message(text, limit, measure=measure)
    assert all(measure(part) <= limit for part in parts)
    assert all(part.strip() for part in parts)
    assert loses_nothing(text, parts)
    for block in code_blocks:
        if measure(block) <= limit:
            assert any(block in part for part in parts), block
    for part in parts[:-1]:  # every part but the last renders with its fences balanced
        assert sum(_is_fence_line(line) for line in part.split("\n")) % 2 == 0


@given(st.text(), st.integers(12, 200))
def test_r5_2_property_split_never_fails_on_arbitrary_text(text, limit):
    parts = split_message(text, limit)
    assert all(len(part) <= limit for part in parts)
    assert loses_nothing(text, parts)


def _agent_reply() -> str:
    section = "\n\n".join([
        "## Step\n\nThe **supervisor** keeps `AgentRun` per thread; see "
        "[the design](https://example.org/design) and https://example.org/a/__init__.py.",
        "- one\n  - two\n    1. three\n- four",
        "```python\n" + "\n".join(f"x{i} = f({i}) * 2  # <{i}>" for i in range(12)) + "\n```",
        "| a | b |\n| :-- | --: |\n" + "\n".join(f"| `k{i}` | {i} |" for i in range(8)),
        "> a quote & <!here>",
    ])
    return "\n\n".join([section] * 40)


@pytest.mark.parametrize(
    ("limit", "measure"), [(SLACK_LIMIT_CHARS, slack_measure), (MATRIX_LIMIT_BYTES, matrix_measure)]
)
def test_r5_2_a_long_reply_is_rendered_few_times_to_split(limit, measure):
    """R5.2: each measure of a part is a markdown render, so the search must be frugal:
    paragraph cuts are searched before line cuts, and the first probe is sized from the
    whole text's measure rather than the limit in characters (Matrix's measure is ~2.3×
    the characters). Counted in characters rendered, not in seconds: the search before
    these two changes rendered 6.2× (Slack) and 6.4× (Matrix) the text for this reply."""
    text = _agent_reply()
    measured = 0

    def counting(part: str) -> int:
        nonlocal measured
        measured += len(part)
        return measure(part)

    parts = split_message(text, limit, measure=counting)
    assert len(parts) > 3
    assert measured < 5 * len(text)  # now about 4×
