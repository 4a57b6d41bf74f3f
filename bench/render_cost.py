"""What rendering a long agent reply costs (R5.6), against markdown-it's own HTML renderer.

One 40,000-character reply (the most a turn posts, R5.8) of the kinds of markdown agents
write — prose with bold, code spans, links and bare URLs, headings, nested lists, fenced
code, a table — is rendered by:

- `markdown-it render()`: markdown-it-py's own HTML renderer over the same parser settings,
  the floor (parsing is most of the work; what crewbridge adds is walking the tokens);
- `to_matrix_html` and `to_slack_mrkdwn` on the whole reply;
- the whole send path of each platform: split to its limit, measuring candidate parts by
  rendering them, then rendering each part (as the bridges' `post_contents` and
  `post_texts` do);
- with `--old REV`, the hand-written converter `bridges/render.py` had at that commit
  (loaded from git, not copied here), alone and on the send path, on the same reply, for
  the before/after figure.

Each figure is the median of `--runs` timed calls after one untimed call, the calls taking
turns.

Run: `.venv/bin/python -m bench.render_cost [--runs 20] [--chars 40000] [--old 0fcbca5]`
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path

from crewbridge.bridges.md_parse import PARSER
from crewbridge.bridges.render import (
    MATRIX_LIMIT_BYTES,
    SLACK_LIMIT_CHARS,
    matrix_measure,
    slack_measure,
    to_matrix_html,
    to_slack_mrkdwn,
)
from crewbridge.bridges.split import split_message

REPO = Path(__file__).resolve().parents[1]
REPLY_CHARS = 40_000

_SECTION = """## Step {n}: what changed

The **supervisor** now keeps `AgentRun` per channel and thread, so a fork answers only its
thread; see [the design](https://example.org/design#forks) and
https://github.com/o/crewbridge/blob/main/supervisor/__init__.py for the entry points. A
*short* note: `max_live_agents` still caps them, and ~~nothing~~ little else moved.

- the store keeps each message's ids per room
  - Slack `ts`, Matrix event ids
    1. written once, on send
    2. read on every reply
- replies in a thread reach the thread's agent

```python
def route(message: Message) -> Agent:
    if message.thread and (agent := forks.get(message.thread)) is not None:
        return agent  # a <thread> reply, *not* the lead's
    return lead
```

| module | lines | job |
| :-- | --: | :-- |
| `bot/threads.py` | 212 | which conversation a message is in |
| `supervisor/forks.py` | 148 | starting `<lead>/<n>` |

> Open question: should `!done` in a task thread close the fork too? & what of <!here>?

"""


def agent_reply(chars: int = REPLY_CHARS) -> str:
    sections: list[str] = []
    while sum(map(len, sections)) < chars:
        sections.append(_SECTION.format(n=len(sections) + 1))
    return "".join(sections)[:chars].rsplit("\n\n", 1)[0]


def matrix_send(md: str, render: types.ModuleType | None = None) -> list[str]:
    to_html, measure = (render.to_matrix_html, render.matrix_measure) if render else (
        to_matrix_html, matrix_measure)
    return [to_html(part) for part in split_message(md, MATRIX_LIMIT_BYTES, measure=measure)]


def slack_send(md: str, render: types.ModuleType | None = None) -> list[str]:
    to_mrkdwn, measure = (render.to_slack_mrkdwn, render.slack_measure) if render else (
        to_slack_mrkdwn, slack_measure)
    return [to_mrkdwn(part) for part in split_message(md, SLACK_LIMIT_CHARS, measure=measure)]


def old_module(rev: str) -> types.ModuleType:
    """`bridges/render.py` as it was at `rev`, imported under another name."""
    source = subprocess.run(["git", "show", f"{rev}:bridges/render.py"], cwd=REPO,
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType(f"old_render_{rev}")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"{rev}:bridges/render.py", "exec"), module.__dict__)
    return module


def uncached(call: Callable[[], object]) -> Callable[[], object]:
    """`call` on a cold render cache, so each timed call renders (as a new reply does)."""

    def cold() -> object:
        to_matrix_html.cache_clear()
        to_slack_mrkdwn.cache_clear()
        return call()

    return cold


def median_ms(calls: list[Callable[[], object]], runs: int) -> list[float]:
    """Each call's median time; the calls take turns, so a change in the machine's load
    (it is shared) falls on all of them alike."""
    for call in calls:
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(runs):
        for call, kept in zip(calls, times, strict=True):
            start = time.perf_counter()
            call()
            kept.append(time.perf_counter() - start)
    return [statistics.median(kept) * 1000 for kept in times]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.render_cost")
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--chars", type=int, default=REPLY_CHARS, help="the reply's length")
    p.add_argument("--old", default="", help="a commit with the hand-written render.py")
    args = p.parse_args(argv)
    md = agent_reply(args.chars)
    rows: list[tuple[str, Callable[[], object]]] = [
        ("markdown-it parse() only", lambda: PARSER.parse(md)),
        ("markdown-it render() to HTML (floor)", lambda: PARSER.render(md)),
        ("to_matrix_html", lambda: to_matrix_html(md)),
        ("to_slack_mrkdwn", lambda: to_slack_mrkdwn(md)),
        ("Matrix send path (split + render)", lambda: matrix_send(md)),
        ("Slack send path (split + render)", lambda: slack_send(md)),
    ]
    if args.old:
        old = old_module(args.old)
        rows += [
            (f"old to_matrix_html ({args.old})", lambda: old.to_matrix_html(md)),
            (f"old to_slack_mrkdwn ({args.old})", lambda: old.to_slack_mrkdwn(md)),
            (f"old Matrix send path ({args.old})", lambda: matrix_send(md, old)),
            (f"old Slack send path ({args.old})", lambda: slack_send(md, old)),
        ]
    print(f"reply: {len(md):,} characters; {args.runs} runs each; Python "
          f"{platform.python_version()} on {platform.machine()}")
    medians = median_ms([uncached(call) for _, call in rows], args.runs)
    floor = medians[1]
    print(f"{'what':46} {'median ms':>10} {'x floor':>8}")
    for (name, _), ms in zip(rows, medians, strict=True):
        print(f"{name:46} {ms:10.1f} {ms / floor:8.2f}")
    print(f"parts: Matrix {len(matrix_send(md))}, Slack {len(slack_send(md))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
