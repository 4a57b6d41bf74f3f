"""Agent markdown → what each platform shows (R5.6), and what a part of it costs (R5.2).

Agents write GitHub-flavoured markdown; Slack speaks its own mrkdwn and Matrix takes an HTML
`formatted_body` beside a plain `body` (the markdown itself). markdown-it-py parses it
(`bridges.md_parse`); `bridges.render_mrkdwn` and `bridges.render_html` write its tokens
for each platform. This module is the face the bridges use: the converters, and each
platform's budget and `measure`, so that `bridges.split` judges a part by what is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

from crewbridge.bridges import render_html, render_mrkdwn

# The splitter measures every part it returns by rendering it, and the bridge then renders
# that part to send it: remembering the last few renders makes the second one free (a
# post that fits one part is rendered once, not twice).
to_matrix_html = lru_cache(maxsize=32)(render_html.to_matrix_html)
to_slack_mrkdwn = lru_cache(maxsize=32)(render_mrkdwn.to_slack_mrkdwn)

SLACK_LIMIT_CHARS = 4000
"""Slack's advice for one message's `text`; longer ones are truncated or split oddly."""

MATRIX_LIMIT_BYTES = 16000
"""Budget for `body` + `formatted_body` in UTF-8 bytes (`matrix_measure`).

A Matrix event may be at most 65,536 bytes of JSON. Clients escape non-ASCII as `\\uXXXX`,
which is at most 3x a character's UTF-8 length (6 bytes for a 2-3 byte character, 12 for a
4-byte one), so 16,000 bytes of content stay under the limit with room for the envelope.
"""


T = TypeVar("T")

OFF_LOOP_CHARS = 8000
"""From this length a post is rendered and split on a worker thread (`rendered`)."""


async def rendered(text: str, work: Callable[[str], T]) -> T:
    """`work(text)` — render and split a post — off the event loop when the post is long.

    markdown-it over a 40,000-character answer takes a few hundred ms of CPU; on the loop
    that would stall every other room, the agents' pipes and the platforms' heartbeats for
    as long. A short post renders in place, where a thread hop would cost more than the work.
    """
    if len(text) < OFF_LOOP_CHARS:
        return work(text)
    return await asyncio.to_thread(work, text)


def slack_measure(md: str) -> int:
    """The length Slack counts for `md`: characters of the rendered mrkdwn."""
    return len(to_slack_mrkdwn(md))


def matrix_measure(md: str) -> int:
    """What one Matrix post of `md` costs: UTF-8 bytes of the plain `body` (the markdown)
    plus the `formatted_body` HTML, the two fields that grow with the text."""
    return len(md.encode("utf-8", "surrogatepass")) + len(
        to_matrix_html(md).encode("utf-8", "surrogatepass")
    )


__all__ = [
    "MATRIX_LIMIT_BYTES",
    "SLACK_LIMIT_CHARS",
    "matrix_measure",
    "rendered",
    "slack_measure",
    "to_matrix_html",
    "to_slack_mrkdwn",
]
