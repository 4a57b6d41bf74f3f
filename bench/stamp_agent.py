"""A bench-only stream-json agent: the bundled fake agent plus a receive timestamp.

The fake agent (`supervisor.fake_agent`) logs what it received (`FAKE_AGENT_LOG`) but not
*when*, so the latency benchmarks cannot tell from it when a nudge reached the agent. This
script reads stdin exactly as the fake agent does, and for every line it takes
`time.monotonic_ns()` the moment the line is read — before parsing, before answering — and
appends `<ns> <id>` to `$BENCH_STAMP_DIR/<agent>.stamps`, where `<id>` is the first
`bench#<id>` token in the message text (`-` when there is none). Then it hands the message to
the fake agent's own `handle`, so the turn it answers (init, echo text, success result) is the
fake agent's, byte for byte.

`CLOCK_MONOTONIC` is one clock for the whole machine on Linux, so the bot process can compare
these stamps with its own `time.monotonic_ns()`.

With `FAKE_AGENT_MODE` set (`crash-start`, `auth`, …) it is just the fake agent, unstamped.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time

from crewbridge.supervisor import fake_agent

ID = re.compile(rb"bench#([A-Za-z0-9_.:-]+)")


def main() -> None:
    if os.environ.get("FAKE_AGENT_MODE"):
        fake_agent.main()
        return
    args = fake_agent.parse_args(sys.argv[1:])
    name = os.environ.get("CREWBRIDGE_AGENT") or "agent"
    agent = fake_agent.Agent(name=name,
                             session_id=args.resume or args.session_id or fake_agent._uuid())
    stamp_dir = os.environ.get("BENCH_STAMP_DIR")
    fd = (os.open(os.path.join(stamp_dir, f"{name}.stamps"),
                  os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if stamp_dir else None)
    stdin = sys.stdin.buffer
    try:
        while raw := stdin.readline():
            now = time.monotonic_ns()
            if fd is not None:
                m = ID.search(raw)
                os.write(fd, b"%d %s\n" % (now, m.group(1) if m else b"-"))
            line = raw.strip()
            if not line:
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(message, dict) and message.get("type") == "user":
                fake_agent.handle(agent, [message], "")  # one message, one turn
    except (KeyboardInterrupt, BrokenPipeError):
        os._exit(0)
    sys.exit(0)


if __name__ == "__main__":
    main()
