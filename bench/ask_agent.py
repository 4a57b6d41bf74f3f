"""A bench-only stream-json agent: the bundled fake agent, control protocol and all, plus
timestamps of what it writes and reads (for `bench.approval_card`).

`bench/stamp_agent.py` stamps user messages only, and reads stdin itself; approvals need
the fake agent's own stdin thread (`supervisor.fake_control`), which answers control
requests while a turn waits. So this runs `fake_agent.main` unchanged, with two taps:
every line the stdin thread reads, the moment before it is dispatched, and every line the
agent writes, the moment after it is flushed, is stamped `<ns> <read|wrote> <type> <id>`
into `$BENCH_STAMP_DIR/<agent>.events`, where `<type>` is the line's JSON `type` (a
`can_use_tool` request is `control_request`) and `<id>` the first `bid-<id>` token in the
line (`-` when there is none): a card's request and its answer carry the command, hence
the token, in their input.

`CLOCK_MONOTONIC` is one clock for the machine on Linux: the bot's process compares these
stamps with its own `time.monotonic_ns()`.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

from crewbridge.supervisor import fake_agent, fake_control

ID = re.compile(r"bid-([a-z0-9]+)")
TYPE = re.compile(r'"type":\s*"([a-z_]+)"')


def tap(fd: int) -> None:
    def stamp(way: str, line: str) -> None:
        now = time.monotonic_ns()
        kind, ident = TYPE.search(line), ID.search(line)
        os.write(fd, f"{now} {way} {kind.group(1) if kind else '-'} "
                     f"{ident.group(1) if ident else '-'}\n".encode())

    dispatch, emit = fake_control.Control._dispatch, fake_agent.Agent.emit

    def read(control: fake_control.Control, message: dict[str, Any]) -> None:
        stamp("read", json.dumps(message, ensure_ascii=False))
        dispatch(control, message)

    def wrote(agent: fake_agent.Agent, event: dict[str, Any]) -> None:
        emit(agent, event)
        stamp("wrote", json.dumps(event, ensure_ascii=False))

    fake_control.Control._dispatch = read  # type: ignore[method-assign]
    fake_agent.Agent.emit = wrote  # type: ignore[method-assign]


def main() -> None:
    name = os.environ.get("CREWBRIDGE_AGENT") or "agent"
    stamp_dir = os.environ.get("BENCH_STAMP_DIR")
    if stamp_dir:
        tap(os.open(os.path.join(stamp_dir, f"{name}.events"),
                    os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644))
    fake_agent.main()


if __name__ == "__main__":
    main()
