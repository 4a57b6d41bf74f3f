"""Breaker isolation (issue 3): does a crash-looping lead slow the healthy agents down?

Two conditions, run one after the other in this process, each on a fresh App (own store,
own agents), with the same load:

- **baseline**: `--healthy` topic channels whose leads are running bench agents, plus
  channel `crasher` whose lead is the bundled fake agent, healthy (it echoes);
- **crash-loop**: the same, but `crasher`'s `env` has `FAKE_AGENT_MODE=crash-start`: its
  lead exits with status 2 before reading anything, every time it is started.

Both conditions send `crasher` the same messages, so they differ only in that agent's
health, not in the amount of traffic.

Time: why a fake clock and real processes together, and what that costs. The App gets a
`FakeClock`; the bench drives `--minutes` of fake time in steps of `--step` fake seconds, each
step `--step-ms` of real time long (defaults: 1 fake s per 10 ms, fake time 100x real).
Policy timers — cooldowns, breaker waits, `healthy_after_s`, idle stop, flush, the
supervisor's tick — run on the fake clock, so ten minutes of breaker life pass in six
seconds. Everything else — the agents' processes, their pipes, SQLite, the event loop — runs
in real time, and latency is measured in *real* time (`time.monotonic_ns()`, one clock for
the machine), from the `App.on_event` call to the healthy agent having read the nudge from
its stdin (`bench/stamp_agent.py`), exactly as in `bench.nudge_latency`. Two consequences:

- fake time moves while a real process starts: a crashing start that takes ~40 ms of real
  time is seen to die ~4 fake seconds after it started (the alert says "exited with status
  2 after 4.0s"). That is well inside `healthy_after_s` (60), so it counts as a failure, as
  it would in production; a much larger `--step`/`--step-ms` ratio would break that;
- the crash loop is 100x denser in real time than in production (five starts in six real
  seconds instead of in ten minutes), and so is the supervisor's tick (every 5 real ms). The
  comparison is therefore harsher than reality, for both conditions alike.

Load. In every step, `--per-step` messages go to the healthy leads, round-robin, spread
evenly over the step's real time, and one message goes to `#crasher` every `--crash-every`
fake seconds, so in the crash-loop condition it is asked to start again and again: each
start is a spawn that dies at once (a failure), then a cooldown, then the breaker opens;
after the breaker wait a nudge makes one half-open trial, which fails and reopens it with the
wait doubled. The default timers (`--cooldown 30`, `--reset 120`) are shorter than the
product's (120 s, 600 s) so that the ten minutes include an open → half-open → reopen cycle,
the path where a second alert could slip out; `--cooldown 120 --reset 600` gives the
product's defaults.

Figures: healthy p50/p99 per condition and the ratio crash-loop p99 / baseline p99 (target
≤ 1.10); admin-room posts (target: exactly 1 in the crash-loop condition, 0 in the
baseline); the crasher's failure count and breaker state; how long each of its starts
blocked the event loop (`subprocess.Popen`, which asyncio runs on the loop); how many of the
slow samples were sent just after one of its starts; posts that reached `#crasher` (only bot
notices may: no crash text leaks). `--rounds 2` (the default) runs baseline, crash-loop,
crash-loop, baseline (ABBA) and pools each condition's samples, to cancel drift in the
machine's load; the two baseline runs' p99 ratio is printed as the noise floor, since a
ratio inside it cannot be told from noise. `--unprotected` adds a run of the same crash loop
with no cooldown and a breaker that never opens, to show what the breaker saves.
`--attribute` adds a run of the baseline bot while the bench itself starts the same crashing
fake agent at the same steps as the crash-loop run's starts — same processes, same CPU, but
the bot knows nothing of them — to tell the cost of a crashing process starting from the
bot's handling of its failure.

Run: `.venv/bin/python -m bench.breaker_isolation [--healthy 50] [--minutes 10]`
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextvars
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from bench.common import (
    FAKE_AGENT_CMD,
    bench_app,
    ms,
    percentile,
    print_table,
    quiet_logs,
    verdict,
)
from crewbridge.bot.clock import FakeClock
from crewbridge.supervisor.session import Session

TARGET_RATIO = 1.10
NEAR_MS = 100


@dataclass
class Outcome:
    latencies: list[int] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    crasher_posts: list[str] = field(default_factory=list)
    crasher_failures: int = 0
    crasher_breaker: str = "-"
    crasher_nudges: int = 0
    healthy_breakers_open: int = 0
    real_s: float = 0.0
    crasher_starts: list[tuple[int, int]] = field(default_factory=list)  # (at, took) ns
    start_steps: list[int] = field(default_factory=list)  # the steps they happened in
    sent_at: list[int] = field(default_factory=list)  # when each latency sample was sent


_starting: contextvars.ContextVar[bool] = contextvars.ContextVar("starting", default=False)


class StartTimer:
    """When each `Session.start` of one agent began, and how long its `subprocess.Popen`
    (fork + exec, run synchronously on the event loop by asyncio) blocked the loop."""

    def __init__(self, name: str, into: list[tuple[int, int]]):
        self.name, self.into = name, into

    def __enter__(self) -> None:
        orig_start = self._orig_start = Session.start
        orig_popen = self._orig_popen = subprocess.Popen.__init__
        name, into = self.name, self.into

        async def start(session: Session) -> None:
            token = _starting.set(session.name == name)
            try:
                await orig_start(session)
            finally:
                _starting.reset(token)

        def popen(self: subprocess.Popen, *args: Any, **kw: Any) -> None:
            if not _starting.get():
                return orig_popen(self, *args, **kw)
            t0 = time.monotonic_ns()
            try:
                return orig_popen(self, *args, **kw)
            finally:
                into.append((t0, time.monotonic_ns() - t0))

        Session.start = start  # type: ignore[method-assign]
        subprocess.Popen.__init__ = popen  # type: ignore[method-assign]

    def __exit__(self, *exc: object) -> None:
        Session.start = self._orig_start  # type: ignore[method-assign]
        subprocess.Popen.__init__ = self._orig_popen  # type: ignore[method-assign]


async def condition(args: argparse.Namespace, crash: bool, protected: bool = True,
                    external_steps: frozenset[int] = frozenset()) -> Outcome:
    """One run. `external_steps`: steps at which the *bench* starts a crash-start fake agent
    itself, outside the bot (to tell the cost of a crashing process from the bot's handling
    of it)."""
    names = [f"h{i:02d}" for i in range(args.healthy)]
    channels: list[dict] = [{"name": n} for n in names]
    # The same 51st channel in both conditions, with the same messages: only its agent's
    # health differs, so the comparison is not one of more traffic against less.
    channels.append({"name": "crasher", "command": FAKE_AGENT_CMD,
                     "env": {"FAKE_AGENT_MODE": "crash-start"} if crash else {}})
    agent = {"spawn_failure_cooldown_s": args.cooldown, "breaker_reset_s": args.reset}
    if not protected:  # no cooldown, and a breaker that never opens
        agent.update(spawn_failure_cooldown_s=0, max_lead_restarts=1_000_000)
    clock = FakeClock(start=time.time())
    out = Outcome()
    with StartTimer("crasher", out.crasher_starts):
        async with bench_app(channels=channels, agent=agent, clock=clock) as b:
            await b.warm_up(names, lambda a: a)
            await asyncio.sleep(0.5)
            sent: list[tuple[str, str, int]] = []
            steps = round(args.minutes * 60 / args.step)
            crash_every = max(1, round(args.crash_every / args.step))
            step_real = args.step_ms / 1000
            start = time.monotonic()
            step_at: list[int] = []
            reaping: list[asyncio.Task] = []
            for s in range(steps):
                step_at.append(time.monotonic_ns())
                await clock.advance(args.step)
                if s in external_steps:
                    reaping.append(asyncio.create_task(crash_outside_the_bot()))
                if s % crash_every == 0:
                    await b.send("crasher", f"are you up? bench#c{s}")
                    out.crasher_nudges += 1
                for j in range(args.per_step):
                    delay = start + (s + j / args.per_step) * step_real - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    i = len(sent)
                    agent_name = names[i % len(names)]
                    t0 = await b.send(agent_name, f"how is it going? bench#h{i}")
                    sent.append((agent_name, f"h{i}", t0))
            out.real_s = time.monotonic() - start
            out.start_steps = [bisect.bisect_right(step_at, t0) - 1
                               for t0, _d in out.crasher_starts]
            await asyncio.gather(*reaping)
            if not await b.stamps.wait(((a, ident) for a, ident, _t in sent), timeout=60):
                raise RuntimeError("not every healthy nudge was delivered within 60 s")
            await asyncio.sleep(0.3)  # let the last posts (and any alert) reach the bridge
            out.latencies = [b.stamps.by_key[(a, ident)] - t0 for a, ident, t0 in sent]
            out.sent_at = [t0 for _a, _ident, t0 in sent]
            out.alerts = b.bridge.posts_to("ops")
            out.crasher_posts = b.bridge.posts_to("crasher")
            if crash:
                h = await b.app.store.health("lead:crasher")
                out.crasher_failures, out.crasher_breaker = h.failures, h.state.value
            for n in names:
                if (await b.app.store.health(f"lead:{n}")).state.value != "closed":
                    out.healthy_breakers_open += 1
    return out


async def crash_outside_the_bot() -> None:
    proc = await asyncio.create_subprocess_exec(
        *FAKE_AGENT_CMD, env={**os.environ, "FAKE_AGENT_MODE": "crash-start"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    await proc.wait()


def outside_starts(outcomes: list[Outcome]) -> list[int]:
    """Latencies of the samples not sent within NEAR_MS after (or during) a crasher start."""
    return [lat for o in outcomes for t0, lat in zip(o.sent_at, o.latencies, strict=True)
            if not any(0 <= t0 - at <= NEAR_MS * 1e6 or 0 <= at - t0 <= lat
                       for at, _d in o.crasher_starts)]


def per_run(outcomes: list[Outcome]) -> str:
    return ", ".join(f"{ms(percentile(o.latencies, 99)):.2f}" for o in outcomes) + " ms"


def near_starts(outcomes: list[Outcome], threshold: float) -> str:
    """How many slow samples were sent within NEAR_MS after one of the crasher's starts."""
    slow = near = 0
    for o in outcomes:
        for t0, lat in zip(o.sent_at, o.latencies, strict=True):
            if lat > threshold:
                slow += 1
                near += any(0 <= t0 - at <= NEAR_MS * 1e6 or 0 <= at - t0 <= lat
                            for at, _d in o.crasher_starts)
    return f"{near} of {slow}"


def noise_floor(outcomes: list[Outcome]) -> str:
    p99s = [percentile(o.latencies, 99) for o in outcomes]
    return f"{max(p99s) / min(p99s):.2f}" if len(p99s) > 1 else "n/a (--rounds 1)"


def pooled(outcomes: list[Outcome]) -> list[int]:
    return [x for o in outcomes for x in o.latencies]


async def run(args: argparse.Namespace) -> int:
    order = [False, True] + ([True, False] if args.rounds >= 2 else [])
    order *= max(1, args.rounds // 2)
    results: dict[bool, list[Outcome]] = {False: [], True: []}
    load0 = os.getloadavg()[0]
    for crash in order:
        results[crash].append(await condition(args, crash))
    unprotected = await condition(args, True, protected=False) if args.unprotected else None
    outside = None
    if args.attribute:
        steps = frozenset(results[True][0].start_steps)
        outside = await condition(args, False, external_steps=steps)
    load1 = os.getloadavg()[0]
    base, loop = pooled(results[False]), pooled(results[True])
    ratio = percentile(loop, 99) / percentile(base, 99)
    alerts_per_run = [len(o.alerts) for o in results[True]]
    base_alerts = [len(o.alerts) for o in results[False]]
    leaked = [p for o in results[True] for p in o.crasher_posts
              if not p.startswith("crewbridge: ")]
    one = results[True][0]
    away = outside_starts(results[True])
    rows = [
        ("fake time per condition", f"{args.minutes:g} min in {args.step:g} s steps",
         f"{one.real_s:.1f} s real; {len(order)} runs, load avg {load0:.1f} -> {load1:.1f}"),
        ("healthy leads", f"{args.healthy}, {len(base)} samples per condition",
         f"{args.per_step} msgs per step"),
        ("baseline p50 / p99", f"{ms(percentile(base, 50)):.2f} / "
                               f"{ms(percentile(base, 99)):.2f} ms", ""),
        ("crash-loop p50 / p99", f"{ms(percentile(loop, 50)):.2f} / "
                                 f"{ms(percentile(loop, 99)):.2f} ms", ""),
        ("p99 ratio crash-loop / baseline", f"{ratio:.3f}",
         f"<= {TARGET_RATIO:.2f} ({verdict(ratio <= TARGET_RATIO)})"),
        ("p50 ratio", f"{percentile(loop, 50) / percentile(base, 50):.2f}", ""),
        ("p99 of each run, baseline", per_run(results[False]), "in run order"),
        ("p99 of each run, crash-loop", per_run(results[True]), "in run order"),
        ("noise floor: baseline runs' p99 max/min", noise_floor(results[False]),
         "a ratio inside this is noise"),
        ("admin alerts, crash-loop", ", ".join(map(str, alerts_per_run)),
         f"exactly 1 ({verdict(all(n == 1 for n in alerts_per_run))})"),
        ("admin alerts, baseline", ", ".join(map(str, base_alerts)),
         f"0 ({verdict(not any(base_alerts))})"),
        ("crasher nudges / failures / breaker", f"{one.crasher_nudges} / "
         f"{one.crasher_failures} / {one.crasher_breaker}",
         f"cooldown {args.cooldown:g} s, reset {args.reset:g} s"),
        ("crasher starts / loop blocked", f"{len(one.crasher_starts)} / "
         f"{ms(sum(d for _t, d in one.crasher_starts)):.1f} ms in all",
         f"max {ms(max((d for _t, d in one.crasher_starts), default=0)):.1f} ms in one "
         "Popen (fork + exec)"),
        ("slow crash-loop samples near a start", near_starts(results[True], percentile(base, 99)),
         f"over baseline p99, sent <= {NEAR_MS} ms after a crasher start"),
        ("crash-loop p99 away from its starts", f"{ms(percentile(away, 99)):.2f} ms",
         f"ratio {percentile(away, 99) / percentile(base, 99):.2f}; {len(away)} samples "
         f"> {NEAR_MS} ms after any start"),
        ("crasher posts: notices / leaked", f"{len(one.crasher_posts) - len(leaked)} / "
                                            f"{len(leaked)}", "leaked must be 0"),
        ("healthy breakers not closed", str(sum(o.healthy_breakers_open
                                                for v in results.values() for o in v)), "0"),
    ]
    if unprotected is not None:
        u = unprotected.latencies
        rows += [
            ("unprotected crash-loop p50 / p99", f"{ms(percentile(u, 50)):.2f} / "
             f"{ms(percentile(u, 99)):.2f} ms", "no cooldown, breaker never opens"),
            ("unprotected p99 ratio", f"{percentile(u, 99) / percentile(base, 99):.2f}",
             f"{len(unprotected.crasher_starts)} crasher starts, "
             f"{len(unprotected.alerts)} alerts"),
        ]
    if outside is not None:
        o = outside.latencies
        rows += [
            ("same starts outside the bot: p50 / p99", f"{ms(percentile(o, 50)):.2f} / "
             f"{ms(percentile(o, 99)):.2f} ms", "baseline bot; the bench starts the crasher"),
            ("  p99 ratio to baseline", f"{percentile(o, 99) / percentile(base, 99):.2f}",
             f"at steps {sorted(set(one.start_steps))}"),
        ]
    print_table("breaker isolation: healthy delivery latency with a crash-looping lead", rows)
    if args.verbose:
        for text in one.alerts:
            print(f"  alert: {text}")
        for text in one.crasher_posts:
            print(f"  #crasher: {text}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.breaker_isolation",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--healthy", type=int, default=50)
    p.add_argument("--minutes", type=float, default=10.0, help="fake minutes per condition")
    p.add_argument("--step", type=float, default=1.0, help="fake seconds per step")
    p.add_argument("--step-ms", type=float, default=10.0, help="real milliseconds per step")
    p.add_argument("--per-step", type=int, default=2, help="healthy messages per step")
    p.add_argument("--crash-every", type=float, default=5.0,
                   help="fake seconds between messages to the crasher")
    p.add_argument("--cooldown", type=float, default=30.0, help="spawn_failure_cooldown_s")
    p.add_argument("--reset", type=float, default=120.0, help="breaker_reset_s")
    p.add_argument("--rounds", type=int, default=2,
                   help="1: baseline then crash-loop; 2 (default): ABBA order, pooled")
    p.add_argument("--unprotected", action="store_true",
                   help="also run the crash loop with no cooldown and no breaker, to compare")
    p.add_argument("--attribute", action="store_true",
                   help="also run the baseline while the bench itself starts the same crashing "
                        "process at the same steps, outside the bot")
    p.add_argument("-v", "--verbose", action="store_true", help="print the alert and notices")
    args = p.parse_args(argv)
    quiet_logs()  # ERROR and above: the crash loop's warnings are expected
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
