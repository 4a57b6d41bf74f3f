"""Status edits against Slack's Tier 3 limit (R13.7): 20 turns running at once, each with a
live ⏳ status message, on a bridge that says Slack's limit (`edits_per_minute = 50`).

Each turn is a lead of its own channel waiting for a tool decision (the fake agent's
`fake:ask`), so it stays in its turn as long as the run lasts and its status is due every
`status_interval_s` (3 s). Time is the App's fake clock, advanced in 0.25 s steps for
`--minutes` simulated minutes; the bridge counts every `edit` it is asked for, by simulated
time. Unspaced, 20 turns would edit 20 × 60 / 3 = 400 times a minute; the floor is Slack's
50. The figure: the most edits in any 60 s window, and each card's least gap between edits.

    .venv/bin/python -m bench.status_edits [--turns 20] [--minutes 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import time
from collections import defaultdict

from bench.common import machine, quiet_logs
from crewbridge.bot.app import App
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import Inbound
from tests.integration.harness import Recorder
from tests.support.botproc import FAKE_AGENT, short_data_dir, write_config

TIER3_PER_MINUTE = 50
STEP_S = 0.25


class CountingSlack(Recorder):
    """A recording bridge that stamps each edit with the bot's (fake) time."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(platform="slack", edits_per_minute=TIER3_PER_MINUTE)
        self.clock = clock
        self.edit_times: dict[str, list[float]] = defaultdict(list)

    async def edit(self, room, ref, post) -> None:  # type: ignore[no-untyped-def]
        await super().edit(room, ref, post)
        if post.text.startswith("⏳"):
            self.edit_times[ref].append(self.clock.now())


async def run(turns: int, minutes: float) -> dict[str, float]:
    import tempfile
    from pathlib import Path

    tmp = Path(tempfile.mkdtemp(prefix="bench-status-"))
    channels = [{"name": f"team{i:02d}", "slack": [f"C{i:04d}"]} for i in range(turns)]
    config = load_config(write_config(
        tmp / "c.toml", data_dir=short_data_dir(), agent={"command": [FAKE_AGENT],
                                                           "approval_timeout_s": 3600,
                                                           "max_live_agents": turns + 1},
        channels=channels,
        extra={"slack": {"bot_token": "xoxb-bench", "app_token": "xapp-bench"}}))
    clock = FakeClock(start=time.time())
    slack = CountingSlack(clock)
    app = App(config, clock=clock, bridges={"slack": slack})
    await app.start()
    try:
        for i in range(turns):
            await app.on_event(Inbound("slack", f"C{i:04d}", "U0ALICE", "alice",
                                       "fake:ask=Bash:npm_test", f"Ev{i}", time.time(),
                                       ref=f"1700000000.{i:06d}"))
        deadline = time.monotonic() + 60
        while sum(1 for _, p in slack.sent if p.text.startswith("🔐")) < turns:
            if time.monotonic() > deadline:
                raise RuntimeError("not every turn asked")
            await asyncio.sleep(0.05)
        start = clock.now()
        for _ in range(int(minutes * 60 / STEP_S)):
            await clock.advance(STEP_S)
            await app.supervisor.tick()
            await app.outbox.drain(5)
        times = sorted(t - start for ts in slack.edit_times.values() for t in ts)
        window = max((sum(1 for u in times if t <= u < t + 60) for t in times), default=0)
        gaps = [b - a for ts in slack.edit_times.values() for a, b in itertools.pairwise(ts)]
        cards = sum(1 for _, p in slack.sent if p.text.startswith("⏳"))
        return {"turns": turns, "status_cards": cards, "edits": len(times),
                "max_edits_per_60s": window, "least_gap_s": min(gaps, default=0.0),
                "unspaced_per_minute": turns * 60 / config.agent.status_interval_s}
    finally:
        await app.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=3)
    args = parser.parse_args()
    quiet_logs()
    print(machine())
    result = asyncio.run(run(args.turns, args.minutes))
    for key, value in result.items():
        print(f"{key:>22}: {value:g}")
    print(f"{'tier3_limit_per_minute':>22}: {TIER3_PER_MINUTE}")
    print("PASS" if result["max_edits_per_60s"] <= TIER3_PER_MINUTE else "FAIL")


if __name__ == "__main__":
    main()
