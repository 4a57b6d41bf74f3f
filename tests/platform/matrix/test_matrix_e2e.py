"""The whole bot, as a `crewbridge run` subprocess, on a real Synapse: people are matrix-nio
clients, the fake agent plays Claude Code.

Every wait is on something observable — a post the bot made in a room, a line the fake agent
logged on receiving a message (`FAKE_AGENT_LOG`) — with a timeout. "Nothing more happened"
is proven by ordering: the lead handles messages in order, so once its reply to a later
marker is in the room, an earlier duplicate would have been answered before it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.platform.matrix.synapse import (
    Account,
    Person,
    SynapseServer,
    body_of,
    msgtype_of,
    thread_of,
)
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

TIMEOUT = 20.0
MakePerson = Callable[..., Awaitable[Person]]


@dataclass
class MatrixBot:
    """A running `crewbridge run` on Synapse, the rooms it is bound to, and what a test
    needs to observe it."""

    server: SynapseServer
    account: Account
    config: Path
    data_dir: Path
    agent_log: Path
    rooms: dict[str, str]  # channel -> Matrix room id ("ops" is the admin room)
    env: dict[str, str]
    process: BotProcess | None = None
    stopped: list[BotProcess] = field(default_factory=list)

    @property
    def user_id(self) -> str:
        return self.account.user_id

    @property
    def socket(self) -> Path:
        return self.data_dir / "control.sock"

    def start(self) -> None:
        self.process = BotProcess(self.config, env=self.env)

    def stderr(self) -> str:
        return self.process.stderr[-4000:] if self.process else ""

    def received(self, agent: str) -> list[str]:
        """The messages `agent` has received so far, in order (from the fake agent's log)."""
        if not self.agent_log.exists():
            return []
        lines = self.agent_log.read_text(encoding="utf-8").splitlines()
        return [r["text"] for r in map(json.loads, lines) if r["agent"] == agent]

    async def until(self, predicate: Callable[[], Any], what: str,
                    timeout: float = TIMEOUT) -> None:
        """Wait for a condition no client can signal (the agent log), failing with the
        bot's stderr so a failure explains itself."""
        deadline = time.monotonic() + timeout
        while not predicate():
            exited = self.process is not None and self.process.proc.poll() is not None
            if time.monotonic() > deadline or exited:
                raise AssertionError(f"timed out waiting for {what}\n--- bot stderr ---\n"
                                     f"{self.stderr()}")
            await asyncio.sleep(0.05)  # polling a file another process appends to

    async def notice(self, person: Person, channel_or_room: str, text: str,
                     timeout: float = TIMEOUT) -> dict[str, Any]:
        """The bot's first post in a room containing `text`, as `person` sees it."""
        room = self.rooms.get(channel_or_room, channel_or_room)
        try:
            return await person.wait_for_message(room, lambda e: text in body_of(e),
                                                 sender=self.user_id, timeout=timeout)
        except AssertionError as e:
            posts = [body_of(m) for m in person.messages(room, sender=self.user_id)]
            raise AssertionError(f"{e}\nbot posts there: {posts}\n--- bot stderr ---\n"
                                 f"{self.stderr()}") from None

    def posts(self, person: Person, channel: str, text: str) -> list[str]:
        return [body_of(m) for m in person.messages(self.rooms[channel], sender=self.user_id)
                if text in body_of(m)]


async def launch(server: SynapseServer, alice: Person, tmp_path: Path, *,
                 channels: list[dict[str, Any]] | None = None,
                 agent: dict[str, Any] | None = None, encrypted: bool = False,
                 matrix: dict[str, Any] | None = None) -> MatrixBot:
    """Create #webui and the admin room (plus any extra `channels`; all `encrypted` if
    asked, R15), invite the bot, write its config (`matrix`: more of its `[matrix]`) and
    start it; return once it has joined every bound room."""
    account = server.register(server.new_localpart("crew"), displayname="crew")

    async def room(name: str) -> str:
        return await alice.create_room(name=name, invite=(account.user_id,),
                                       encrypted=encrypted)
    rooms = {"webui": await room("webui"), "ops": await room("crew-ops")}
    channel_cfg = [{"name": "webui", "prompt": "You lead the web UI.",
                    "matrix": [rooms["webui"]]}]
    for ch in channels or []:
        rooms[ch["name"]] = await room(ch["name"])
        channel_cfg.append({**ch, "matrix": [rooms[ch["name"]]]})
    data_dir = short_data_dir()
    agent_log = tmp_path / "agents.jsonl"
    config = write_config(
        tmp_path / "crewbridge.toml", data_dir=data_dir, agent=agent, channels=channel_cfg,
        extra={
            "admin": {"matrix": [rooms["ops"]]},
            "matrix": {"homeserver": server.url, "user_id": account.user_id,
                       "access_token": "${MATRIX_ACCESS_TOKEN}",
                       "allow_invites_from": [alice.user_id], **(matrix or {})},
        })
    bot = MatrixBot(server, account, config, data_dir, agent_log, rooms,
                    env={"MATRIX_ACCESS_TOKEN": account.access_token,
                         "FAKE_AGENT_LOG": str(agent_log)})
    bot.start()
    await wait_ready(bot, alice)
    return bot


async def wait_ready(bot: MatrixBot, alice: Person) -> None:
    """Bound rooms joined (start-up joins, R11.4) and the control socket listening."""
    try:
        for room in bot.rooms.values():
            await alice.wait_for_membership(room, bot.user_id, "join", timeout=TIMEOUT)
    except AssertionError as e:
        raise AssertionError(f"{e}\n--- bot stderr ---\n{bot.stderr()}") from None
    await bot.until(bot.socket.exists, "the control socket")


async def shut_down(bot: MatrixBot) -> None:
    """SIGTERM the bot; it must exit 0 with no traceback and nothing left open (R4.9)."""
    process = bot.process
    if process is None:
        return
    bot.process = None
    try:
        await process.stop_cleanly()
        assert "Unclosed" not in process.stderr, process.stderr[-4000:]  # HTTP session closed
    finally:
        await asyncio.to_thread(process.close)


@pytest.fixture
async def bots() -> AsyncIterator[list[MatrixBot]]:
    """Bots a test launched; each is shut down (and checked) after the test."""
    started: list[MatrixBot] = []
    yield started
    try:
        for bot in started:
            await shut_down(bot)
    finally:
        for bot in started:
            if bot.process is not None:
                await asyncio.to_thread(bot.process.close)
            cleanup_data_dir(bot.data_dir)


async def test_person_message_reaches_the_lead_and_the_reply_is_a_notice(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R1.3, R2.1, R2.7, R5.1, R5.5, R5.6, R5.7, R9.2, R12.1: a person's message in the
    room bound to #webui nudges its lead once, naming sender and platform; the reply is an
    m.notice with HTML and a plain body, under the lead's bold name line, in the thread of
    the message it answers; the bot's own notice nudges no one."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    asked = await alice.send_text(bot.rooms["webui"], "hello team, is the **build** green?")
    reply = await bot.notice(alice, "webui", "got it")

    assert "is the **build** green?" in body_of(reply)
    assert body_of(reply).startswith("webui:\n")
    assert msgtype_of(reply) == "m.notice"
    assert reply["content"]["format"] == "org.matrix.custom.html"
    assert reply["content"]["formatted_body"].startswith("<p><strong>webui</strong></p>")
    assert "<code>" in reply["content"]["formatted_body"]
    assert thread_of(reply) == asked
    assert reply["content"]["m.relates_to"]["m.in_reply_to"] == {"event_id": asked}
    marker = await alice.send_text(bot.rooms["webui"], "marker")
    assert thread_of(await bot.notice(alice, "webui", "marker")) == marker
    received = bot.received("webui")
    assert len(received) == 2, received
    assert "Alice" in received[0] and "matrix" in received[0]
    assert "is the **build** green?" in received[0]


async def test_at_all_reaches_the_lead_and_the_workers_of_the_room(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R2.3, R7.1, R7.2, R12.1, R12.4: `!task @carol …` in the #webui room starts worker
    carol, announced in the thread of the `!task` message; `@all` there reaches the lead
    and carol (who lives in dm-carol), and each answers in the thread of the `@all`
    message, under their own name."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    task = await alice.send_text(bot.rooms["webui"], "!task @carol fix the login bug")
    assert thread_of(await bot.notice(alice, "webui", "Task #1 for @carol")) == task
    everyone = await alice.send_text(bot.rooms["webui"], "@all standup in five minutes")
    await bot.until(
        lambda: all(any("standup in five minutes" in t for t in bot.received(agent))
                    for agent in ("webui", "carol")),
        "the lead and carol to receive @all")
    answers = await alice.wait_until(
        lambda: (found := [m for m in alice.messages(bot.rooms["webui"], sender=bot.user_id)
                           if "standup in five minutes" in body_of(m)])
        and len(found) >= 2 and found, what="the lead's and carol's answers", timeout=TIMEOUT)
    assert sorted(body_of(m).split(":\n", 1)[0] for m in answers) == ["carol", "webui"]
    assert [thread_of(m) for m in answers] == [everyone, everyone]


async def test_a_direct_room_attaches_to_a_worker(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R1.5, R1.6: the bot joins a direct room an allowed person opens and explains how to
    address a worker; `@carol …` reaches worker carol and attaches the DM; carol's answers
    come back in the DM; later unaddressed text goes to carol too, never to a lead."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    await alice.send_text(bot.rooms["webui"], "!task @carol fix the login bug")
    await bot.notice(alice, "webui", "Task #1 for @carol")

    dm = await alice.create_room(invite=(bot.user_id,), is_direct=True)
    await bot.notice(alice, dm, "@carol")  # the DM help lists the workers
    await alice.send_text(dm, "@carol how is it going?")
    reply = await bot.notice(alice, dm, "how is it going?")
    assert "got it" in body_of(reply)
    assert body_of(reply).startswith("carol:\n")
    assert thread_of(reply) is None  # R12.1 threads a topic room's messages, not a DM's
    await alice.send_text(dm, "any blockers?")
    await bot.notice(alice, dm, "any blockers?")
    assert any("any blockers?" in t for t in bot.received("carol"))
    assert not any("blockers" in t for t in bot.received("webui"))


async def test_admin_room_status_breaker_alert_and_reset(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R6.1, R6.4, R4.4: in the Matrix admin room `status` lists the agents; a lead that
    crashes at every start opens its breaker with exactly one alert there (its error text
    never reaches its team room); `reset <agent>` closes it and says so."""
    bot = await launch(synapse, alice, tmp_path, agent={"spawn_failure_cooldown_s": 0},
                       channels=[{"name": "broken", "env": {"FAKE_AGENT_MODE": "crash-start"}}])
    bots.append(bot)
    await alice.send_text(bot.rooms["webui"], "wake up")
    await bot.notice(alice, "webui", "got it")
    await alice.send_text(bot.rooms["ops"], "status")
    table = await bot.notice(alice, "ops", "webui")
    assert re.search(r"agent\s+kind\s+state", body_of(table)), body_of(table)

    await alice.send_text(bot.rooms["broken"], "please build the thing")
    alert = await bot.notice(alice, "ops", "Circuit breaker open: broken")
    assert "reset broken" in body_of(alert)
    await alice.send_text(bot.rooms["ops"], "reset broken")
    await bot.notice(alice, "ops", "Reset broken: breaker closed")
    assert len(bot.posts(alice, "ops", "Circuit breaker open: broken")) == 1
    team = [body_of(m) for m in alice.messages(bot.rooms["broken"], sender=bot.user_id)]
    assert not any("crash at start" in t for t in team), team


async def test_sigkill_then_restart_delivers_each_message_once(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R8.1, R8.2, R8.3: kill the bot with SIGKILL mid-conversation, post three messages,
    restart it: each reaches the lead once and is answered once; nothing said before the
    kill is delivered or answered again."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    room = bot.rooms["webui"]
    await alice.send_text(room, "before the crash")
    await bot.notice(alice, "webui", "before the crash")

    assert bot.process is not None
    await asyncio.to_thread(bot.process.kill)
    bot.process = None
    for text in ("one while down", "two while down", "three while down"):
        await alice.send_text(room, text)
    bot.start()
    await wait_ready(bot, alice)
    for text in ("one while down", "two while down", "three while down"):
        await bot.notice(alice, "webui", text)
    await alice.send_text(room, "marker after restart")
    await bot.notice(alice, "webui", "marker after restart")

    received = bot.received("webui")
    for text in ("before the crash", "one while down", "two while down", "three while down"):
        assert sum(text in t for t in received) == 1, (text, received)
        assert len(bot.posts(alice, "webui", text)) == 1, (text, bot.posts(alice, "webui", text))


async def test_burst_of_30_agent_posts_at_synapse_rate_limits_arrives_in_order(
        synapse_default_limits: SynapseServer, make_person: MakePerson, tmp_path: Path,
        bots: list[MatrixBot]) -> None:
    """R8.3: 30 posts by the lead at once (over the control socket, with its own token,
    R10.4), on a Synapse that answers 429s, all arrive, in order, once each. The homeserver
    keeps its default `rc_*` limits; only the bot's message rate is set (admin
    `override_ratelimit`, as operators do for bots) to 2/s after a burst of 10, so the
    outbox meets `M_LIMIT_EXCEEDED` many times within seconds instead of waiting Synapse's
    default 5 s per message (which would take over 100 s)."""
    server = synapse_default_limits
    alice = await make_person("alice", server=server)
    bot = await launch(server, alice, tmp_path)
    bots.append(bot)
    server.override_ratelimit(bot.user_id, per_second=2, burst_count=10)

    await alice.send_text(bot.rooms["webui"], "please fake:burst=30,webui")
    await bot.notice(alice, "webui", "burst 30", timeout=60)
    numbers = [int(m[1]) for b in bot.posts(alice, "webui", "burst")
               if (m := re.search(r"burst (\d\d)", b))]
    assert numbers == list(range(1, 31))
    assert "M_LIMIT_EXCEEDED" in bot.stderr() or "rate limit" in bot.stderr().lower(), \
        "the burst never met Synapse's rate limit"


async def test_unreachable_bound_room_stops_start_up_with_one_line_per_room(
        synapse: SynapseServer, alice: Person, tmp_path: Path) -> None:
    """R1.2, R11.4: a bound alias that does not exist and a room the bot was never invited
    to: the bot does not start, and says which rooms and why, one line each."""
    account = synapse.register(synapse.new_localpart("crew"))
    private = await alice.create_room(name="not for bots")
    data_dir = short_data_dir()
    config = write_config(
        tmp_path / "crewbridge.toml", data_dir=data_dir,
        channels=[{"name": "webui", "matrix": ["#no-such-room:crewbridge.test"]},
                  {"name": "docs", "matrix": [private]}],
        extra={"matrix": {"homeserver": synapse.url, "user_id": account.user_id,
                          "access_token": "${MATRIX_ACCESS_TOKEN}"}})
    process = BotProcess(config, env={"MATRIX_ACCESS_TOKEN": account.access_token})
    try:
        code = await asyncio.to_thread(process.wait_exit, TIMEOUT)
        stderr = process.stderr
        assert code != 0
        assert "Traceback" not in stderr
        lines = [line for line in stderr.splitlines() if line.startswith("crewbridge:")]
        assert any("#no-such-room:crewbridge.test" in line and "webui" in line
                   for line in lines), stderr
        assert any(private in line and "docs" in line and "invite" in line
                   for line in lines), stderr
        assert account.access_token not in stderr
    finally:
        await asyncio.to_thread(process.close)
        cleanup_data_dir(data_dir)
