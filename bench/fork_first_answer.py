"""Time to the first answer of a forked session vs a fresh one, on the real CLI (R12.3).

A reply in a thread under a lead's answer starts a session forked from the lead's
(`claude … --resume <lead> --fork-session --session-id <new>`, in the lead's working
directory); a message to an agent with no session starts a fresh one (`--session-id <new>`).
This measures what the fork costs a person waiting for the thread's first answer: the real
Claude Code CLI bundled in `claude-agent-sdk`, against the loopback Messages API of the
agent tests (`tests/agent/messages_api.py`, which answers at once, so the figures are the
CLI's own start-up, loading of the lead's transcript and the bigger first request).

Set-up: a private HOME and config directory; one lead session given `--lead-turns` turns of
`--chars`-character messages (its history), ended. Then `--runs` rounds, each one fresh
session and one fork of the lead (which goes first alternates each round), after one
uncounted round (disk caches). Each sample starts the CLI with the flags crewbridge gives it,
writes one user message at once and stops the clock at the first assistant text and at the
turn's `result` (crewbridge posts a turn's text at its end, so the result is when the
person sees the answer); then the input is closed and the process waits out, untimed.

Run: `.venv/bin/python -m bench.fork_first_answer [--runs 20] [--lead-turns 20] [--chars 1000]`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import machine, percentile, print_table
from tests.agent.claude_cli import Claude, session_turns
from tests.agent.messages_api import MessagesAPI, Text, bundled_claude


@dataclass
class Samples:
    """Seconds from spawning the CLI to its first text and to its turn's result."""

    first_text: list[float] = field(default_factory=list)
    result: list[float] = field(default_factory=list)


async def first_answer(claude_bin: Path, env: dict[str, str], cwd: Path, *args: str,
                       into: Samples | None) -> str:
    """Start the CLI with `args`, send one message, time it; return the session it was in."""
    t0 = time.monotonic()
    claude = await Claude.start(claude_bin, env, cwd, *args)
    try:
        await claude.send("a first question in a new thread")
        first_text: float | None = None
        while line := await claude.line():
            event = json.loads(line)
            if first_text is None and event["type"] == "assistant":
                first_text = time.monotonic() - t0
            if event["type"] == "result":
                done = time.monotonic() - t0
                break
        else:
            raise RuntimeError(f"the CLI ended without a result: {args}")
        if event["is_error"] or first_text is None:
            raise RuntimeError(f"the turn failed: {event}")
        await claude.finish()
    finally:
        claude.kill()
    if into is not None:
        into.first_text.append(first_text)
        into.result.append(done)
    return str(event["session_id"])


async def run(runs: int, lead_turns: int, chars: int) -> int:
    claude_bin = bundled_claude()
    home = Path(tempfile.mkdtemp(prefix="crewbridge-fork-bench-"))
    workdir = home / "lead-work"
    workdir.mkdir()
    fresh, fork = Samples(), Samples()
    try:
        async with MessagesAPI(default=Text("Here is the answer.")) as api:
            env = api.env(home)
            lead = str(uuid.uuid4())
            texts = [f"lead turn {i}: " + "context " * (chars // 8) for i in range(lead_turns)]
            _, _, code, _ = await session_turns(claude_bin, env, workdir, texts, session_id=lead)
            if code != 0:
                print(f"the lead session failed (exit {code})", file=sys.stderr)
                return 1
            (transcript,) = (home / ".claude" / "projects").glob(f"*/{lead}.jsonl")
            lead_kib = transcript.stat().st_size / 1024

            request_kib: dict[str, float] = {}  # the size of each kind's first request
            for round_no in range(runs + 1):
                into = (fresh, fork) if round_no else (None, None)
                kinds = [("fresh", into[0]), ("fork", into[1])]
                for kind, samples in kinds if round_no % 2 else reversed(kinds):
                    new = str(uuid.uuid4())
                    args = (("--session-id", new) if kind == "fresh" else
                            ("--resume", lead, "--fork-session", "--session-id", new))
                    got = await first_answer(claude_bin, env, workdir, *args, into=samples)
                    if got != new:
                        print(f"{kind}: the CLI answered in {got}, not {new}", file=sys.stderr)
                        return 1
                    request_kib[kind] = len(json.dumps(api.message_requests[-1].body)) / 1024
    finally:
        shutil.rmtree(home, ignore_errors=True)

    def row(label: str, of: str) -> tuple[str, ...]:
        a, b = getattr(fresh, of), getattr(fork, of)
        return (label, f"{percentile(a, 50) * 1000:.0f} ms", f"{percentile(a, 90) * 1000:.0f} ms",
                f"{percentile(b, 50) * 1000:.0f} ms", f"{percentile(b, 90) * 1000:.0f} ms",
                f"{percentile(b, 50) / percentile(a, 50):.2f}x")

    version = subprocess.run([str(claude_bin), "--version"], capture_output=True, text=True,
                             check=False).stdout.strip()
    print(f"\n{machine()}; {version}; {runs} runs each after 1 uncounted round")
    print(f"lead: {lead_turns} turns of {chars} characters, transcript {lead_kib:.0f} KiB")
    print_table(
        "time to the first answer: fork (--resume <lead> --fork-session) vs fresh (--session-id)",
        [row("first assistant text", "first_text"), row("turn result (answer posted)", "result")],
        headers=("figure", "fresh median", "fresh p90", "fork median", "fork p90",
                 "fork / fresh (median)"))
    print(f"(the turn's request to the Messages API: fresh {request_kib['fresh']:.0f} KiB, "
          f"fork {request_kib['fork']:.0f} KiB of JSON)")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.fork_first_answer",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20, help="samples of each kind")
    p.add_argument("--lead-turns", type=int, default=20, help="turns in the lead's history")
    p.add_argument("--chars", type=int, default=1000, help="characters per lead message")
    args = p.parse_args(argv)
    if min(args.runs, args.lead_turns) < 1:
        p.error("--runs and --lead-turns must be at least 1")
    return asyncio.run(run(args.runs, args.lead_turns, args.chars))


if __name__ == "__main__":
    sys.exit(main())
