"""Run the core benchmarks with their defaults, one process each, and print their tables.

Each benchmark runs in its own interpreter (`python -m bench.<name>`), so one's memory,
agents and event loop cannot colour the next one's figures (the memory figure above all).
Benchmarks print figures and exit 0 whether or not a target is met; this exits non-zero only
when one of them could not run to the end.

The platform benchmarks (`matrix_roundtrip`, `slack_burst`, `slack_roundtrip`, `idle_cost`) and
the real-CLI ones (`fork_first_answer`, `stop_latency`) and `approval_card` run only when
named in `--only`.

Run: `.venv/bin/python -m bench.run_all [--only fanout,memory]` (or `make bench`)
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

from bench.common import REPO, machine

BENCHMARKS = ["inbound_throughput", "nudge_latency", "fanout", "memory", "breaker_isolation",
              "crew_scaling"]
# Run only when named with --only: they need the platform test harnesses (Synapse, the Slack
# emulator) and take minutes at the platforms' real rates (idle_cost: a fixed 60 s window), or
# the real Claude Code CLI of the test extras (fork_first_answer, stop_latency); approval_card
# (the Slack emulator) is run with them.
PLATFORM = ["matrix_roundtrip", "slack_burst", "slack_roundtrip", "idle_cost",
            "fork_first_answer", "stop_latency", "approval_card"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.run_all",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--only", default="", help="comma-separated names, e.g. fanout,memory")
    args = p.parse_args(argv)
    chosen = [n for n in args.only.split(",") if n] or BENCHMARKS
    known = BENCHMARKS + PLATFORM
    unknown = [n for n in chosen if n not in known]
    if unknown:
        p.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"crewbridge benchmarks, {now}\n{machine()}")
    failed = []
    for name in chosen:
        load = os.getloadavg()[0]
        print(f"\n=== bench.{name} (load average {load:.2f}) ===", flush=True)
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "-m", f"bench.{name}"], cwd=REPO, check=False)
        print(f"({time.monotonic() - t0:.1f} s, exit {done.returncode})", flush=True)
        if done.returncode != 0:
            failed.append(name)
    if failed:
        print(f"\nfailed to run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
