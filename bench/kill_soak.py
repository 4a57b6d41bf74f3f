"""Kill soak: a person writes numbered messages while the bot is SIGKILLed and SIGTERMed at
random moments; every message must be answered exactly once (issue 9, R8.5, R4.9).

What runs, all on 127.0.0.1:
- one Synapse from `.venv-synapse` (the test harness, `tests/platform/matrix/synapse.py`,
  rate limits raised), a person (the harness's matrix-nio `Person`, with its own background
  sync) and two rooms the person made: the lead's room (channel `soak`) and the admin room;
- `crewbridge run` as a subprocess (`tests/support/botproc.py`), always on the same config
  and data directory, with the bundled fake agent (`crewbridge-fake-agent`) as the lead and
  `FAKE_AGENT_DELAY=0.3,2`, so every turn takes 0.3-2 s and a kill usually lands mid-turn.
  The spec's default timers are kept (`flush_interval_s = 2`, `stop_grace_s = 5`).

The run:
1. The person sends `msg-001` … `msg-<N>` to the lead's room at a steady pace
   (`--interval`), whether the bot is up or not (Synapse keeps them; the bot's saved sync
   position, R8.2, hands them over after the restart).
2. At the same time the killer works through a kill schedule drawn from `--seed`:
   `--kills` SIGKILLs and `--terms` SIGTERMs in a shuffled order, each sent a random
   `--uptime` seconds after the bot said it was running. After each one the bot is started
   again at once on the same data directory. A SIGTERM must be a clean stop (R4.9: exit 0,
   no traceback). The schedule is printed, with what each signal caught: messages sent,
   answered, and in a turn (the agent had started a turn for it since the previous signal,
   per its `FAKE_AGENT_LOG`, and no answer was in the room yet: what the signal cut short).
   The seed fixes the schedule; the turn lengths (the fake agent's own `random`) and the
   machine's timing are not repeatable, so two runs with one seed are alike, not identical.
3. When both are done the bot is left running; the person sends a marker (`msg-end`) and
   waits (bounded by `--settle`) for its answer. The lead answers in order, and R8.5 puts
   re-deliveries first, so once the marker is answered the backlog has been worked off;
   then up to `QUIET_S` more for the last unanswered messages. The bot is then stopped
   with SIGTERM (a last clean stop).

How answers are counted, from what the person's client saw in the lead's room: an answer
is a post by the bot that holds the fake agent's echo (`got it — \\`msg-017\\``); every
`msg-<n>` it quotes is answered by it (a post that quotes one number twice answers it once).
So a message is answered *once* when exactly one post quotes it, *lost* when none does and
*duplicated* when two or more do. With `--fold` (`FAKE_AGENT_FOLD=1`: a turn answers every
message that arrived while the previous one ran, as Claude Code 2.1.332 does) one post
quotes several numbers and each of them counts as answered by it; that is the same rule,
so folding changes how many posts there are, not the figures. Without `--fold` (the
default) every message has a turn and a post of its own.
Target: lost = 0 and duplicated = 0. The exit status is 0 only then, 1 when a target is
missed (or the marker went unanswered), 2 when the soak could not run (no Synapse, the bot
would not start).

Also watched, because a bot can fail here in ways other than losing answers:
- each SIGTERM's exit status, its stop time and any traceback;
- each restart's time to "crewbridge is running", and restarts that failed;
- agent processes (`pgrep -f crewbridge-fake-agent`, kept to this run's by a marker in their
  environment): how many outlived the bot that started them, and how many were still there
  once the next bot was running (orphans: R4.9 says a new start ends them);
- the bot's other posts in the lead's room and its posts in the admin room (alerts);
- tracebacks and ERROR lines in the bot's logs, summed over every incarnation.

Run: `.venv/bin/python -m bench.kill_soak [--kills 25] [--terms 5] [--messages 100]
[--seed 9] [--interval 1.2] [--uptime 0.3,4] [--delay 0.3,2] [--fold] [--settle 180]
[--logs DIR]` (about 3-4 minutes with the defaults on 2 CPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import enum
import os
import random
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import machine, print_table
from tests.platform.matrix.synapse import Person, SynapseServer, body_of, check_synapse_installed
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

TOKEN_RE = re.compile(r"\bmsg-(\d+)\b")
ANSWER_MARK = "got it"  # the fake agent's echo: `got it — \`<text>\``
MARKER = "msg-end"  # not a number: never counted
MARKER_ENV = "KILL_SOAK_RUN"  # put in every agent's environment, to tell this run's agents
READY_TIMEOUT_S = 60.0
TERM_TIMEOUT_S = 60.0  # a SIGTERM stop slower than this is recorded as hung, then killed
RESTART_ATTEMPTS = 3
QUIET_S = 5.0  # after the marker is answered, how long the last unanswered may still come
ORPHAN_WAIT_S = 5.0  # after the final stop, how long agents may take to go


class Sig(enum.Enum):
    KILL = "SIGKILL"
    TERM = "SIGTERM"


@dataclass(frozen=True)
class Stop:
    """One entry of the kill schedule: which signal, how long after "running" to send it."""

    sig: Sig
    uptime_s: float


def kill_schedule(seed: int, kills: int, terms: int,
                  uptime: tuple[float, float]) -> list[Stop]:
    """The signals in a shuffled order, each with its uptime; the same for the same seed."""
    rng = random.Random(seed)
    sigs = [Sig.KILL] * kills + [Sig.TERM] * terms
    rng.shuffle(sigs)
    return [Stop(s, round(rng.uniform(*uptime), 2)) for s in sigs]


def label(n: int, messages: int) -> str:
    return f"msg-{n:0{max(3, len(str(messages)))}d}"


def numbers_in(text: str, messages: int) -> set[int]:
    """The message numbers a text quotes (each once), within 1..messages."""
    return {n for n in map(int, TOKEN_RE.findall(text)) if 1 <= n <= messages}


@dataclass
class Tally:
    """How often each message was answered, from the answers in the order they were posted."""

    counts: Counter[int]
    messages: int
    out_of_order: int  # answers whose first number is below one answered before it

    @property
    def once(self) -> list[int]:
        return [n for n in range(1, self.messages + 1) if self.counts[n] == 1]

    @property
    def lost(self) -> list[int]:
        return [n for n in range(1, self.messages + 1) if self.counts[n] == 0]

    @property
    def duplicated(self) -> list[int]:
        return [n for n in range(1, self.messages + 1) if self.counts[n] > 1]


def tally(answers: Sequence[str], messages: int) -> Tally:
    counts: Counter[int] = Counter()
    highest = 0
    out_of_order = 0
    for text in answers:
        nums = numbers_in(text, messages)
        counts.update(nums)
        if nums and min(nums) < highest:
            out_of_order += 1
        highest = max([highest, *nums])
    return Tally(counts, messages, out_of_order)


# --- this run's agent processes ----------------------------------------------------------


def soak_agents(marker: str) -> dict[int, int]:
    """pid -> parent pid of every live fake agent started by this run's bots.

    `pgrep -f crewbridge-fake-agent` finds every fake agent on the machine (other people's
    tests run them too); the marker each of ours holds in its environment picks ours.
    """
    found = subprocess.run(["pgrep", "-f", "crewbridge-fake-agent"], capture_output=True,
                           text=True, check=False).stdout.split()
    tag = f"{MARKER_ENV}={marker}".encode()
    ours: dict[int, int] = {}
    for pid in map(int, found):
        with contextlib.suppress(OSError, ValueError, IndexError):
            if tag in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                stat = Path(f"/proc/{pid}/stat").read_text()
                fields = stat[stat.rfind(")") + 2:].split()
                if fields[0] != "Z":
                    ours[pid] = int(fields[1])
    return ours


# --- the soak ----------------------------------------------------------------------------


@dataclass
class Cycle:
    """One signal and the restart after it, as printed in the kill schedule."""

    n: int
    stop: Stop
    at_s: float = 0.0  # when the signal was sent, seconds after the first message
    sent: int = 0
    answered: int = 0
    in_turn: int = 0  # a turn for it started since the last signal, no answer
    exit_code: int | None = None
    stop_s: float = 0.0
    traceback: bool = False
    agents_left: int = 0  # our agents alive right after the bot exited
    orphans: int = 0  # agents of an earlier bot still alive when the next one was running
    restart_s: float = 0.0
    restart_failures: int = 0


@dataclass
class Soak:
    server: SynapseServer
    person: Person
    bot_user: str
    rooms: dict[str, str]  # "lead", "admin"
    config: Path
    env: dict[str, str]
    agent_log: Path
    marker: str
    messages: int
    logs: Path | None
    bot: BotProcess | None = None
    incarnations: int = 0
    failed_starts: list[str] = field(default_factory=list)
    stderr_stats: Counter[str] = field(default_factory=Counter)
    error_lines: Counter[str] = field(default_factory=Counter)
    t0: float = 0.0
    sent: int = 0

    # --- what the person sees, what the agent received -----------------------------------

    def posts(self, room: str) -> list[str]:
        return [body_of(e) for e in self.person.messages(self.rooms[room], sender=self.bot_user)]

    def answers(self) -> list[str]:
        return [p for p in self.posts("lead") if ANSWER_MARK in p]

    def answered(self) -> set[int]:
        return set().union(*(numbers_in(a, self.messages) for a in self.answers()))

    def taken(self) -> list[set[int]]:
        """Each message the agent took into a turn, in order (one entry per log line): the
        fake agent logs a message (`FAKE_AGENT_LOG`) when a turn for it starts, not when it
        reaches its stdin."""
        if not self.agent_log.exists():
            return []
        return [numbers_in(line, self.messages)
                for line in self.agent_log.read_text(encoding="utf-8").splitlines()]

    def deliveries(self) -> Counter[int]:
        """How many times the agent took each message into a turn."""
        got: Counter[int] = Counter()
        for turn in self.taken():
            got.update(turn)
        return got

    # --- the bot's life ------------------------------------------------------------------

    async def start_bot(self) -> tuple[float, int]:
        """Start `crewbridge run` until it says it runs; (seconds it took, failed tries)."""
        for attempt in range(RESTART_ATTEMPTS):
            self.incarnations += 1
            t = time.monotonic()
            bot = BotProcess(self.config, env=self.env)
            try:
                await asyncio.to_thread(bot.wait_ready, READY_TIMEOUT_S)
            except AssertionError:
                self.failed_starts.append(bot.stderr[-1500:])
                bot.kill()
                await self.retire(bot)
                continue
            self.bot = bot
            return time.monotonic() - t, attempt
        raise RuntimeError(f"the bot did not start in {RESTART_ATTEMPTS} tries:\n"
                           f"{self.failed_starts[-1]}")

    async def retire(self, bot: BotProcess) -> None:
        """Close a dead bot's pipes, keep what its log says (and the log, with --logs)."""
        await asyncio.to_thread(bot.close)
        text = bot.stderr_path.read_text(errors="replace")
        self.stderr_stats["Traceback"] += text.count("Traceback")
        for line in text.splitlines():
            parts = line.split(" ", 3)  # "<date> <time> <LEVEL> <logger>: <message>"
            level = parts[2] if len(parts) == 4 else ""
            if level in ("WARNING", "ERROR", "CRITICAL"):
                self.stderr_stats[level] += 1
                if level != "WARNING":
                    self.error_lines[normalise(line)] += 1
        if self.logs is not None:
            shutil.copy(bot.stderr_path, self.logs / f"bot-{self.incarnations:02d}.log")
        bot.stderr_path.unlink(missing_ok=True)

    async def signal_bot(self, stop: Stop, cycle: Cycle) -> None:
        """Send the signal, wait for the exit, and note what it left behind."""
        bot = self.bot
        assert bot is not None
        self.bot = None
        t = time.monotonic()
        if stop.sig is Sig.KILL:
            await asyncio.to_thread(bot.kill)
            cycle.exit_code = bot.proc.returncode
        else:
            try:
                cycle.exit_code = await asyncio.to_thread(bot.terminate, TERM_TIMEOUT_S)
            except AssertionError:  # it did not stop: recorded as exit None, then killed
                await asyncio.to_thread(bot.kill)
        cycle.stop_s = time.monotonic() - t
        cycle.traceback = "Traceback" in bot.stderr
        cycle.agents_left = len(soak_agents(self.marker))
        await self.retire(bot)

    def orphans(self) -> int:
        """Our agents whose parent is not the running bot."""
        pid = self.bot.proc.pid if self.bot else None
        return sum(1 for ppid in soak_agents(self.marker).values() if ppid != pid)

    # --- the two halves of the run -------------------------------------------------------

    async def send_all(self, interval: float) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(1, self.messages + 1):
            await asyncio.sleep(max(0.0, start + (n - 1) * interval - loop.time()))
            await self.person.send_text(self.rooms["lead"], label(n, self.messages))
            self.sent = n

    async def kill_all(self, schedule: Sequence[Stop]) -> list[Cycle]:
        cycles = []
        turns_before = 0
        for n, stop in enumerate(schedule, 1):
            await asyncio.sleep(stop.uptime_s)
            answered = self.answered()
            turns = self.taken()
            started = set().union(*turns[turns_before:])
            turns_before = len(turns)
            cycle = Cycle(n, stop, at_s=time.monotonic() - self.t0, sent=self.sent,
                          answered=len(answered), in_turn=len(started - answered))
            await self.signal_bot(stop, cycle)
            cycle.restart_s, cycle.restart_failures = await self.start_bot()
            cycle.orphans = self.orphans()
            cycles.append(cycle)
            print(f"  {n:2d} {stop.sig.value} at {cycle.at_s:6.1f} s: sent {cycle.sent}, "
                  f"answered {cycle.answered}, in a turn {cycle.in_turn}; exit "
                  f"{cycle.exit_code}, {cycle.agents_left} agent(s) left, restarted in "
                  f"{cycle.restart_s:.1f} s, {cycle.orphans} orphan(s)", flush=True)
        return cycles

    async def settle(self, timeout: float) -> tuple[float | None, float]:
        """Send the marker; seconds until it was answered (None: never), and the wait."""
        t = time.monotonic()
        await self.person.send_text(self.rooms["lead"], MARKER)
        try:
            await self.person.wait_for_message(
                self.rooms["lead"], lambda e: MARKER in body_of(e), sender=self.bot_user,
                timeout=timeout)
        except AssertionError:
            return None, time.monotonic() - t
        marker_s = time.monotonic() - t
        want = set(range(1, self.messages + 1))
        with contextlib.suppress(AssertionError):
            await self.person.wait_until(lambda: want <= self.answered(), timeout=QUIET_S,
                                         what="the last answers")
        return marker_s, time.monotonic() - t


def normalise(line: str) -> str:
    """A log line without its time stamp and numbers, to count lines of one kind."""
    line = re.sub(r"^\S+ \S+ ", "", line)
    return re.sub(r"\d+", "#", line)[:140]


def summarise(posts: Sequence[str], top: int = 8) -> list[list[str]]:
    kinds = Counter(re.sub(r"\d+", "#", p.replace("\n", " "))[:100] for p in posts)
    return [[str(c), k] for k, c in kinds.most_common(top)]


# --- set-up and report --------------------------------------------------------------------


async def soak(args: argparse.Namespace, server: SynapseServer, work: Path) -> int:
    schedule = kill_schedule(args.seed, args.kills, args.terms, args.uptime)
    person = await Person.connect(server, server.register(server.new_localpart("person"),
                                                          displayname="person"))
    crew = server.register(server.new_localpart("crew"), displayname="crew")
    rooms = {"lead": await person.create_room(name="soak", invite=(crew.user_id,)),
             "admin": await person.create_room(name="crew-ops", invite=(crew.user_id,))}
    data_dir = short_data_dir()
    marker = secrets.token_hex(8)
    agent_log = work / "agents.jsonl"
    agent_env = {"FAKE_AGENT_DELAY": f"{args.delay[0]},{args.delay[1]}",
                 "FAKE_AGENT_LOG": str(agent_log), MARKER_ENV: marker}
    if args.fold:
        agent_env["FAKE_AGENT_FOLD"] = "1"
    config = write_config(
        work / "crewbridge.toml", data_dir=data_dir,
        agent={"flush_interval_s": 2, "stop_grace_s": 5, "env": agent_env},
        channels=[{"name": "soak", "prompt": "You lead the soak.", "matrix": [rooms["lead"]]}],
        extra={"admin": {"matrix": [rooms["admin"]]},
               "matrix": {"homeserver": server.url, "user_id": crew.user_id,
                          "access_token": "${MATRIX_ACCESS_TOKEN}",
                          "allow_invites_from": [person.user_id]}})
    logs = Path(args.logs) if args.logs else None
    if logs is not None:
        logs.mkdir(parents=True, exist_ok=True)
    run = Soak(server, person, crew.user_id, rooms, config,
               {"MATRIX_ACCESS_TOKEN": crew.access_token}, agent_log, marker, args.messages,
               logs)
    try:
        try:
            await run.start_bot()
            for room in rooms.values():
                await person.wait_for_membership(room, crew.user_id, "join",
                                                 timeout=READY_TIMEOUT_S)
        except (RuntimeError, AssertionError) as e:
            print(f"kill_soak: the bot did not start: {e}", file=sys.stderr)
            return 2
        print(f"\nkill schedule (seed {args.seed}): {args.kills} SIGKILL + {args.terms} "
              f"SIGTERM, uptime {args.uptime[0]}-{args.uptime[1]} s after each start; "
              f"{args.messages} messages, one every {args.interval} s", flush=True)
        run.t0 = time.monotonic()
        sender = asyncio.create_task(run.send_all(args.interval))
        try:
            cycles = await run.kill_all(schedule)
        except RuntimeError as e:
            sender.cancel()
            print(f"kill_soak: {e}", file=sys.stderr)
            return 2
        await sender
        soak_s = time.monotonic() - run.t0
        marker_s, settle_s = await run.settle(args.settle)
        final = Cycle(0, Stop(Sig.TERM, 0))
        await run.signal_bot(final.stop, final)
        leftover = soak_agents(marker)
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while leftover and time.monotonic() < deadline:
            await asyncio.sleep(0.1)  # polling processes we did not start
            leftover = soak_agents(marker)
        return report(args, run, schedule, cycles, final, soak_s, marker_s, settle_s,
                      len(leftover))
    finally:
        if run.bot is not None:
            run.bot.kill()
            await run.retire(run.bot)
        await person.close()
        for pid in soak_agents(marker):  # ours only, by the marker in their environment
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if logs is not None and agent_log.exists():
            shutil.copy(agent_log, logs / "agents.jsonl")
        cleanup_data_dir(data_dir)


def report(args: argparse.Namespace, run: Soak, schedule: Sequence[Stop],
           cycles: Sequence[Cycle], final: Cycle, soak_s: float, marker_s: float | None,
           settle_s: float, leftover: int) -> int:
    print_table("kill schedule, as it ran", [
        [str(c.n), c.stop.sig.value, f"{c.stop.uptime_s:.2f}", f"{c.at_s:.1f}", str(c.sent),
         str(c.answered), str(c.in_turn), str(c.exit_code), f"{c.stop_s:.2f}",
         "yes" if c.traceback else "", str(c.agents_left), f"{c.restart_s:.1f}",
         str(c.restart_failures or ""), str(c.orphans)] for c in cycles],
        ["#", "signal", "uptime s", "at s", "sent", "answered", "in a turn", "exit",
         "stop s", "traceback", "agents left", "restart s", "failed starts", "orphans"])

    answers = run.answers()
    t = tally(answers, args.messages)
    delivered = run.deliveries()
    terms = [c for c in cycles if c.stop.sig is Sig.TERM] + [final]
    kills = [c for c in cycles if c.stop.sig is Sig.KILL]
    clean = [c for c in terms if c.exit_code == 0 and not c.traceback]
    lost, dup = t.lost, t.duplicated
    print_table(f"kill soak: {args.messages} messages, {len(cycles)} signals "
                f"({args.kills} SIGKILL, {args.terms} SIGTERM), seed {args.seed}", [
        ["answered exactly once", str(len(t.once)), f"{args.messages}"],
        ["lost (no answer)", str(len(lost)), "0 (" + ("met" if not lost else "MISSED") + ")"],
        ["duplicated (> 1 answer)", str(len(dup)),
         "0 (" + ("met" if not dup else "MISSED") + ")"],
        ["marker answered after the soak", "never" if marker_s is None else f"{marker_s:.1f} s",
         f"within {args.settle:.0f} s"],
        ["answer posts in the lead's room", str(sum(1 for a in answers
                                                     if numbers_in(a, args.messages))),
         f"{args.messages}" + (" or fewer (folded)" if args.fold else "")],
        ["answers out of order", str(t.out_of_order), "(R8.5: in order)"],
        ["messages taken into a turn (agent log)", str(sum(delivered.values())),
         f"{sum(1 for n in range(1, args.messages + 1) if delivered[n] > 1)} messages more "
         f"than once, {sum(1 for n in range(1, args.messages + 1) if not delivered[n])} never"],
        ["lost, of them with a turn started", str(sum(1 for n in lost if delivered[n])),
         "the rest never got a turn"],
        ["clean SIGTERM stops (exit 0, no traceback)", f"{len(clean)} of {len(terms)}",
         f"all (R4.9); slowest {max(c.stop_s for c in terms):.1f} s"],
        ["bot starts that failed", str(len(run.failed_starts)), "0"],
        ["restart time median / max",
         f"{sorted(c.restart_s for c in cycles)[len(cycles) // 2]:.1f} / "
         f"{max(c.restart_s for c in cycles):.1f} s" if cycles else "-", ""],
        ["SIGKILLs that an agent outlived", f"{len([c for c in kills if c.agents_left])} "
         f"of {len(kills)}", f"max {max((c.agents_left for c in kills), default=0)} at once; "
         "the next start must end them"],
        ["orphans once the next bot ran (total)", str(sum(c.orphans for c in cycles)), "0"],
        ["agents left after the final stop", str(leftover), "0"],
        ["tracebacks / ERROR lines in the bot's logs",
         f"{run.stderr_stats['Traceback']} / {run.stderr_stats['ERROR']}",
         f"over {run.incarnations} bot processes"],
        ["soak / settle time", f"{soak_s:.0f} s / {settle_s:.0f} s", ""],
    ])
    if lost:
        print(f"\nlost: {', '.join(label(n, args.messages) for n in lost)}")
    if dup:
        print("duplicated: " + ", ".join(f"{label(n, args.messages)} x{t.counts[n]}"
                                         for n in dup))
    others = [p for p in run.posts("lead") if ANSWER_MARK not in p]
    if others:
        print_table("the bot's other posts in the lead's room", summarise(others),
                    ["count", "post (digits as #)"])
    admin = run.posts("admin")
    if admin:
        print_table("the bot's posts in the admin room", summarise(admin),
                    ["count", "post (digits as #)"])
    if run.error_lines:
        print_table("ERROR lines in the bot's logs", [[str(c), k] for k, c in
                                                       run.error_lines.most_common(8)],
                    ["count", "line (digits as #)"])
    for text in run.failed_starts[:2]:
        print(f"\na failed start, its log:\n{text}")
    ok = not lost and not dup and marker_s is not None
    print(f"\nverdict: {'met' if ok else 'MISSED'} (lost {len(lost)}, duplicated {len(dup)})")
    return 0 if ok else 1


def pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


async def run(args: argparse.Namespace) -> int:
    try:
        python = check_synapse_installed()
    except RuntimeError as e:
        print(f"kill_soak: {e}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-soak-", dir="/tmp"))
    server = SynapseServer(work / "synapse", rate_limits="raised", python=python)
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(server.start)
        print(f"Synapse on {server.url} (started in {time.monotonic() - t0:.1f} s)")
        return await soak(args, server, work)
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.kill_soak",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--kills", type=int, default=25, help="SIGKILLs (default 25)")
    p.add_argument("--terms", type=int, default=5, help="SIGTERMs (default 5)")
    p.add_argument("--messages", type=int, default=100, help="numbered messages (default 100)")
    p.add_argument("--seed", type=int, default=9, help="seed of the kill schedule (default 9)")
    p.add_argument("--interval", type=float, default=1.2,
                   help="seconds between the person's messages (default 1.2)")
    p.add_argument("--uptime", type=pair, default=(0.3, 4.0), metavar="MIN,MAX",
                   help="seconds the bot runs before each signal (default 0.3,4)")
    p.add_argument("--delay", type=pair, default=(0.3, 2.0), metavar="MIN,MAX",
                   help="FAKE_AGENT_DELAY: seconds each turn takes (default 0.3,2)")
    p.add_argument("--fold", action="store_true",
                   help="FAKE_AGENT_FOLD=1: a turn answers every message that arrived meanwhile")
    p.add_argument("--settle", type=float, default=180.0,
                   help="seconds to wait for the marker's answer at the end (default 180)")
    p.add_argument("--logs", metavar="DIR", help="keep every bot's log and the agent log here")
    args = p.parse_args(argv)
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = shlex.join(["python", "-m", "bench.kill_soak", *(argv if argv is not None
                                                               else sys.argv[1:])])
    print(f"bench.kill_soak, {now}\n{machine()}\n{command}\nseed {args.seed}\n"
          f"load average at start {os.getloadavg()[0]:.2f}", flush=True)
    code = asyncio.run(run(args))
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
