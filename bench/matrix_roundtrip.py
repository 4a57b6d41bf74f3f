"""Matrix round trip: person → bot → fake agent → bot → person through a real Synapse, beside
a bare matrix-nio echo bot on the same homeserver (the floor), in the same run (issues 4, 10).
Both answer in the thread of the person's message (R12.1).

Why a floor: most of a Matrix round trip is the homeserver and the two long-poll syncs (the
bot's, to see the message; the person's, to see the answer). Those costs are the same for
any bot. Comparing against the thinnest possible bot on the same Synapse, interleaved message
by message, isolates what crewbridge adds — storing the message, routing, the agent's stdin
and stdout, the quarantine, the durable outbox — and gives a ratio that does not depend on
the machine or the day. Target: crewbridge's median within 1.1× of the echo bot's.

Encrypted (R15, `--encrypted`, or both phases with `--both`): the same, in two encrypted
rooms, with the person's client, the echo bot and crewbridge all encrypting (each with its
crypto store); every answer must reach the person encrypted. The echo bot is then matrix-nio
with its crypto on and `sync_forever` doing the key traffic. Target: within 1.15×.
In the plain phase crewbridge runs with `[matrix] encryption = false`, as the floor runs
without crypto: like against like (its default, crypto on, costs it about 4 ms a round
trip even in plain rooms: docs/benchmarks.md).

Set-up, all on 127.0.0.1:
- one Synapse from `.venv-synapse`, started by the test harness (`tests/platform/matrix/
  synapse.py`) with its rate limits raised, so neither bot ever waits on a 429;
- crewbridge: `crewbridge run` as a subprocess with one channel bound to room A, the fake
  agent as its lead (default echo reply), `flush_interval_s` at the spec's default of 2 s
  (a turn's text is posted at turn end, never on the timer, so it does not matter here);
- the floor: a second process (this module with `--echo-bot`) — matrix-nio `AsyncClient`,
  one `sync(timeout=0)`, then `sync_forever` with a `RoomMessageText` callback that sends
  `echo: <body>` back as an `m.notice` in the thread of the message (`m.thread` with the
  reply fallback, as crewbridge answers by default): no store, no routing, no agent;
- the person: one matrix-nio client (the tests' `Person`) in both rooms, with its own
  background long-poll sync.

Each sample is closed-loop: the person sends `ping rt-<n>`, and the clock stops when the
person's sync has delivered the bot's answer that contains `rt-<n>`, in the thread of the
ping (an answer anywhere else fails the run). crewbridge then reacts ✅ on the ping (R13.7;
a turn this quick gets no 👀): the run waits, off the clock, until the person sees it, so
the homeserver's work on that reaction is not charged to the next sample, the echo bot's
(and a ✅ that never comes fails the run). The two bots alternate
message by message (and which one goes first alternates every round), after a warm-up that
is not counted (it spawns the lead).

Run: `.venv/bin/python -m bench.matrix_roundtrip [--count 100] [--warmup 5]
[--encrypted | --both]`
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import logging
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

from nio import AsyncClient, AsyncClientConfig, JoinError, MatrixRoom, RoomMessageText
from nio.store import SqliteStore

from bench.common import FloorBot, machine, percentile, print_table
from tests.platform.matrix.synapse import (
    Account,
    Person,
    SynapseServer,
    body_of,
    check_synapse_installed,
    thread_of,
)
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

TARGET_RATIO = 1.1
TARGET_RATIO_ENCRYPTED = 1.15
REPLY_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
ECHO_TOKEN_ENV = "BENCH_ECHO_TOKEN"
ECHO_DEVICE_ENV = "BENCH_ECHO_DEVICE"
ECHO_STORE_ENV = "BENCH_ECHO_STORE"  # set: the echo bot encrypts, with its store there


# --- the floor: a bare matrix-nio echo bot (runs in its own process) ----------------------


async def echo_bot(homeserver: str, user_id: str, room: str) -> int:
    """The thinnest bot matrix-nio makes: join, skip history, echo every text as a notice
    in the thread of the message."""
    store = os.environ.get(ECHO_STORE_ENV, "")
    client = AsyncClient(homeserver, user_id, store_path=store, config=AsyncClientConfig(
        max_limit_exceeded=0, max_timeouts=3, encryption_enabled=bool(store),
        store=SqliteStore, request_timeout=60))
    client.restore_login(user_id, os.environ[ECHO_DEVICE_ENV], os.environ[ECHO_TOKEN_ENV])
    if store:
        await client.keys_upload()  # before "ready": the person encrypts to this device
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        joined = await client.join(room)
        if isinstance(joined, JoinError):
            print(f"echo bot: join failed: {joined.message}", file=sys.stderr, flush=True)
            return 1
        await client.sync(timeout=0)  # "now": old history must not replay into the callback

        async def on_text(r: MatrixRoom, event: RoomMessageText) -> None:
            if event.sender != user_id:
                thread = {"rel_type": "m.thread", "event_id": event.event_id,
                          "is_falling_back": True,
                          "m.in_reply_to": {"event_id": event.event_id}}
                await client.room_send(r.room_id, "m.room.message",
                                       {"msgtype": "m.notice", "body": f"echo: {event.body}",
                                        "m.relates_to": thread},
                                       ignore_unverified_devices=True)

        client.add_event_callback(on_text, RoomMessageText)  # type: ignore[arg-type]
        print("ready", flush=True)
        syncing = asyncio.create_task(client.sync_forever(timeout=30_000))
        await stop.wait()
        syncing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await syncing
        return 0
    finally:
        await client.close()


# --- numbers and output ----------------------------------------------------------------------





# --- the run ---------------------------------------------------------------------------------


class EchoProcess(FloorBot):
    """The echo bot as a subprocess, like crewbridge, so neither shares the person's loop."""

    def __init__(self, server: SynapseServer, account: Account, room: str,
                 store: Path | None):
        super().__init__("bench.matrix_roundtrip",
                         ["--echo-bot", server.url, account.user_id, room],
                         {ECHO_TOKEN_ENV: account.access_token,
                          ECHO_DEVICE_ENV: account.device_id,
                          ECHO_STORE_ENV: str(store) if store else ""})


async def round_trip(person: Person, room: str, bot: str, token: str,
                     encrypted: bool = False, *, marked: bool = False) -> float:
    """Send `ping <token>`; seconds until the person's sync shows `bot`'s answer to it in
    the ping's thread (and, `encrypted`, came encrypted). `marked`: then, off the clock,
    wait for the bot's ✅ on the ping (R13.7), so that the homeserver's work on it is not
    charged to the next round trip — the other bot's."""
    t0 = time.perf_counter()
    ping = await person.send_text(room, f"ping {token}")
    answer = await person.wait_for_message(room, lambda e: token in body_of(e), sender=bot,
                                           timeout=REPLY_TIMEOUT_S)
    took = time.perf_counter() - t0
    if thread_of(answer) != ping:
        raise AssertionError(f"the answer to {token} is not in its thread: {answer}")
    if encrypted and not person.was_encrypted(answer["event_id"]):
        raise AssertionError(f"the answer to {token} was not encrypted: {answer}")
    if marked:
        await person.wait_until(lambda: person.reactions(room, ping, sender=bot),
                                timeout=REPLY_TIMEOUT_S, what=f"the ✅ on {token}")
    return took


async def measure(server: SynapseServer, work: Path, count: int, warmup: int,
                  encrypted: bool = False) -> int:
    phase = "encrypted" if encrypted else "plain"
    if encrypted:
        (work / f"person-{phase}").mkdir()
        (work / f"echo-{phase}").mkdir()
    person = await Person.connect(
        server, server.register(server.new_localpart("person"), displayname="person"),
        encryption=encrypted, store_dir=work / f"person-{phase}" if encrypted else None)
    crew = server.register(server.new_localpart("crew"), displayname="crew")
    echo = server.register(server.new_localpart("echo"), displayname="echo")
    rooms = {"crewbridge": await person.create_room(name="bench", invite=(crew.user_id,),
                                                    encrypted=encrypted),
             "echo": await person.create_room(name="echo", invite=(echo.user_id,),
                                              encrypted=encrypted)}
    bots = {"crewbridge": crew.user_id, "echo": echo.user_id}
    data_dir = short_data_dir()
    config = write_config(
        work / "crewbridge.toml", data_dir=data_dir,
        agent={"flush_interval_s": 2},
        channels=[{"name": "bench", "matrix": [rooms["crewbridge"]]}],
        extra={"matrix": {"homeserver": server.url, "user_id": crew.user_id,
                          "access_token": "${MATRIX_ACCESS_TOKEN}",
                          "encryption": encrypted}})  # like the floor: crypto on or off
    bot: BotProcess | None = None
    echo_proc: EchoProcess | None = None
    try:
        bot = BotProcess(config, env={"MATRIX_ACCESS_TOKEN": crew.access_token})
        echo_proc = EchoProcess(server, echo, rooms["echo"],
                                work / f"echo-{phase}" if encrypted else None)
        await asyncio.to_thread(bot.wait_ready, READY_TIMEOUT_S)
        await asyncio.to_thread(echo_proc.wait_ready)
        for name, room in rooms.items():
            await person.wait_for_membership(room, bots[name], "join", timeout=READY_TIMEOUT_S)

        samples: dict[str, list[float]] = {"crewbridge": [], "echo": []}
        for i in range(warmup + count):
            order = ["crewbridge", "echo"] if i % 2 == 0 else ["echo", "crewbridge"]
            for name in order:
                try:
                    took = await round_trip(person, rooms[name], bots[name],
                                            f"rt-{name}-{i}", encrypted,
                                            marked=name == "crewbridge")
                except AssertionError as e:
                    stderr = bot.stderr[-3000:] if name == "crewbridge" else ""
                    print(f"{name}: no answer to message {i}: {e}\n{stderr}", file=sys.stderr)
                    return 1
                if i >= warmup:
                    samples[name].append(took)
    finally:
        await person.close()
        if echo_proc is not None:
            await asyncio.to_thread(echo_proc.stop)
        if bot is not None:
            code = await asyncio.to_thread(bot.terminate)
            await asyncio.to_thread(bot.close)
            if code != 0:
                print(f"crewbridge exited {code}: {bot.stderr[-2000:]}", file=sys.stderr)
        cleanup_data_dir(data_dir)

    def row(name: str) -> list[str]:
        s = samples[name]
        return [name, str(len(s)), f"{percentile(s, 50) * 1e3:.1f}",
                f"{percentile(s, 90) * 1e3:.1f}", f"{percentile(s, 99) * 1e3:.1f}",
                f"{min(s) * 1e3:.1f}", f"{max(s) * 1e3:.1f}"]

    print_table(f"Matrix round trip ({phase} rooms), person -> bot -> person (ms)",
                [row("echo"), row("crewbridge")],
                ["bot", "n", "median", "p90", "p99", "min", "max"])
    median = {name: percentile(s, 50) for name, s in samples.items()}
    ratio = median["crewbridge"] / median["echo"]
    p99_ratio = percentile(samples["crewbridge"], 99) / percentile(samples["echo"], 99)
    target = TARGET_RATIO_ENCRYPTED if encrypted else TARGET_RATIO
    verdict = "met" if ratio <= target else "MISSED"
    print_table(f"crewbridge against the floor ({phase})", [
                ["median ratio (crewbridge / echo)", f"{ratio:.2f}x",
                 f"<= {target}x ({verdict})"],
                 ["p99 ratio (crewbridge / echo)", f"{p99_ratio:.2f}x", ""],
                 ["median added by crewbridge",
                  f"{(median['crewbridge'] - median['echo']) * 1e3:.1f} ms",
                  ""]])
    return 0


async def run(count: int, warmup: int, phases: tuple[bool, ...] = (False,)) -> int:
    try:
        python = check_synapse_installed()
    except RuntimeError as e:
        print(f"matrix_roundtrip: {e}", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-matrix-", dir="/tmp"))
    server = SynapseServer(work / "synapse", rate_limits="raised", python=python)
    try:
        t0 = time.monotonic()
        await asyncio.to_thread(server.start)
        print(f"Synapse on {server.url} (started in {time.monotonic() - t0:.1f} s)")
        for encrypted in phases:
            code = await measure(server, work, count, warmup, encrypted)
            if code:
                return code
        return 0
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.matrix_roundtrip",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--count", type=int, default=100, help="measured messages per bot")
    p.add_argument("--warmup", type=int, default=5, help="uncounted messages per bot first")
    p.add_argument("--encrypted", action="store_true",
                   help="in encrypted rooms (R15), against an encrypting echo bot")
    p.add_argument("--both", action="store_true",
                   help="plain rooms, then encrypted ones, in one run")
    p.add_argument("--echo-bot", nargs=3, metavar=("HOMESERVER", "USER_ID", "ROOM"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.echo_bot:
        return asyncio.run(echo_bot(*args.echo_bot))
    logging.getLogger("nio").setLevel(logging.ERROR)  # its per-device session warnings
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench.matrix_roundtrip, {now}\n{machine()}\n"
          f"load average at start {os.getloadavg()[0]:.2f}")
    phases = (False, True) if args.both else (True,) if args.encrypted else (False,)
    code = asyncio.run(run(args.count, args.warmup, phases))
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return code


if __name__ == "__main__":
    sys.exit(main())
