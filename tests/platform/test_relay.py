"""R1.4 across platforms: one `crewbridge run` bound to a Slack channel (on the local Slack
emulator) and a Matrix room (on the session's real Synapse) for the same channel, #webui,
and with the admin channel bound on both too.

Why a cross-platform test beside the per-platform tiers: the relay is the one place where
the two bridges feed each other. Each bridge drops its own echoes (Slack sends the bot's
posts back as `bot_id` events; Synapse returns the bot's notices in the next sync), and the
core must relay a person's message to the *other* room only. A mistake in any of the three
makes an echo loop or a double nudge that no single-platform test can see.

People: bob on Slack (`U0BOB`, display name "bob") and Alice on Matrix (a matrix-nio client,
display name "Alice"). The lead is the fake agent, which logs every message it receives
(`FAKE_AGENT_LOG`), so a test counts the nudges the lead got.

Every wait is on something observable with a timeout. "Nothing more happened" is proven by
ordering, never by a sleep: each test ends with a marker message from each platform and
waits for the lead's replies to both on both platforms. The lead answers in order, and each
platform delivers the bot's own echoes in timeline order before that platform's marker, so
an echo that was (wrongly) taken as input would have been relayed and answered before the
markers' replies appear. Only then are posts and nudges counted.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.platform.matrix.synapse import (
    Account,
    Person,
    SynapseServer,
    line_of,
    msgtype_of,
    thread_of,
)
from tests.platform.slack.emulator import SlackEmulator
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config

pytestmark = pytest.mark.timeout(120)

TIMEOUT = 20.0
PACE_S = 0.1
"""The bot's Slack pace per channel, with the emulator limiting at the same rate (Slack's
one post per second, ten times faster), so the tests never wait a second per post."""

SLACK_WEBUI = "C0WEBUI"
SLACK_OPS = "C0OPS"
MakePerson = Callable[..., Awaitable[Person]]


@dataclass
class RelayBot:
    """A running bot bound on both platforms, and how a test observes each side."""

    process: BotProcess
    emulator: SlackEmulator
    alice: Person
    account: Account
    rooms: dict[str, str]  # channel -> Matrix room id ("ops" is the admin room)
    agent_log: Path
    socket: Path

    @property
    def user_id(self) -> str:
        return self.account.user_id

    # --- what each side shows ------------------------------------------------------------

    def slack(self, channel: str = SLACK_WEBUI) -> list[str]:
        """Every post the bot made in a Slack channel, in order, as Slack shows it: the
        sender's name (`username`, R5.7) before the text."""
        return [f"{p.username}: {p.text}" if p.username else p.text
                for p in self.emulator.posts(channel)]

    def matrix(self, channel: str = "webui") -> list[str]:
        """Every message the bot sent to a channel's Matrix room, in order, each as its
        `author: text` line (`line_of`)."""
        return [line_of(e) for e in self.alice.messages(self.rooms[channel], sender=self.user_id)]

    def received(self, agent: str = "webui") -> list[str]:
        """What `agent` has received so far, in order (the fake agent's log)."""
        if not self.agent_log.exists():
            return []
        lines = self.agent_log.read_text(encoding="utf-8").splitlines()
        return [r["text"] for r in map(json.loads, lines) if r["agent"] == agent]

    def stderr(self) -> str:
        return self.process.stderr[-4000:]

    # --- waiting -------------------------------------------------------------------------

    async def on_slack(self, text: str, channel: str = SLACK_WEBUI) -> str:
        """The bot's first post containing `text` in a Slack channel, once it exists."""
        def found() -> bool:
            return any(text in t for t in self.slack(channel))
        try:
            await self.emulator.wait_until(found, TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no Slack post containing {text!r} in {channel}; posts: "
                                 f"{self.slack(channel)}\n--- bot stderr ---\n"
                                 f"{self.stderr()}") from None
        return next(t for t in self.slack(channel) if text in t)

    async def on_matrix(self, text: str, channel: str = "webui") -> dict[str, Any]:
        """The bot's first message containing `text` in a channel's Matrix room."""
        try:
            return await self.alice.wait_for_message(
                self.rooms[channel], lambda e: text in line_of(e), sender=self.user_id,
                timeout=TIMEOUT)
        except AssertionError as e:
            raise AssertionError(f"{e}\nbot posts there: {self.matrix(channel)}\n"
                                 f"--- bot stderr ---\n{self.stderr()}") from None

    async def on_both(self, text: str, channel: str = "webui") -> None:
        await self.on_slack(text, SLACK_OPS if channel == "ops" else SLACK_WEBUI)
        await self.on_matrix(text, channel)

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Wait for a condition no client can signal (the agent log is a file)."""
        deadline = time.monotonic() + TIMEOUT
        while not predicate():
            if time.monotonic() > deadline or self.process.proc.poll() is not None:
                raise AssertionError(f"timed out waiting for {what}\n--- bot stderr ---\n"
                                     f"{self.stderr()}")
            await asyncio.sleep(0.05)  # polling a file another process appends to

    async def settle(self) -> list[str]:
        """Post a marker from each platform and wait for the lead's answer to both on both
        sides: by then every earlier message, echo and relay has been handled (see the module
        doc). Returns the two markers (Slack's first)."""
        tag = uuid.uuid4().hex[:8]
        markers = [f"slack marker {tag}", f"matrix marker {tag}"]
        await self.emulator.post_as("U0BOB", SLACK_WEBUI, markers[0])
        await self.alice.send_text(self.rooms["webui"], markers[1])
        for marker in markers:
            await self.on_both(f"got it — `{marker}`")
        return markers


def count(posts: list[str], text: str) -> int:
    return sum(text in p for p in posts)


@pytest.fixture
async def relay(slack_emulator: SlackEmulator, synapse: SynapseServer, make_person: MakePerson,
                tmp_path: Path) -> AsyncIterator[RelayBot]:
    """`crewbridge run` with #webui bound to Slack `C0WEBUI` and a Matrix room, and the admin
    channel bound to Slack `C0OPS` and a Matrix room; returns once both bridges are up."""
    emulator = slack_emulator
    emulator.add_channel(SLACK_OPS, "crew-ops", is_private=True)
    emulator.posts_per_second = 1 / PACE_S
    alice = await make_person("alice")
    account = synapse.register(synapse.new_localpart("crew"), displayname="crew")
    rooms = {"webui": await alice.create_room(name="webui", invite=(account.user_id,)),
             "ops": await alice.create_room(name="crew-ops", invite=(account.user_id,))}
    data_dir = short_data_dir()
    agent_log = tmp_path / "agents.jsonl"
    config = write_config(
        tmp_path / "crewbridge.toml", data_dir=data_dir,
        channels=[{"name": "webui", "prompt": "You lead the web UI.",
                   "slack": [SLACK_WEBUI], "matrix": [rooms["webui"]]}],
        extra={
            "admin": {"slack": [SLACK_OPS], "matrix": [rooms["ops"]]},
            "slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                      "app_token": "${SLACK_APP_TOKEN}", "api_url": emulator.api_url,
                      "post_interval_s": PACE_S},
            "matrix": {"homeserver": synapse.url, "user_id": account.user_id,
                       "access_token": "${MATRIX_ACCESS_TOKEN}",
                       "allow_invites_from": [alice.user_id]},
        })
    process = BotProcess(config, env={"SLACK_BOT_TOKEN": emulator.bot_token,
                                      "SLACK_APP_TOKEN": emulator.app_token,
                                      "MATRIX_ACCESS_TOKEN": account.access_token,
                                      "FAKE_AGENT_LOG": str(agent_log)})
    bot = RelayBot(process, emulator, alice, account, rooms, agent_log,
                   data_dir / "control.sock")
    try:
        for room in rooms.values():
            try:
                await alice.wait_for_membership(room, account.user_id, "join", timeout=TIMEOUT)
            except AssertionError as e:
                raise AssertionError(f"{e}\n--- bot stderr ---\n{bot.stderr()}") from None
        await bot.until(lambda: emulator.connections > 0 and bot.socket.exists(),
                        "the bot to connect to Slack and open its control socket")
        yield bot
        await process.stop_cleanly()
    finally:
        await asyncio.to_thread(process.close)
        cleanup_data_dir(data_dir)


async def test_slack_message_appears_in_matrix_attributed_and_never_back_on_slack(
        relay: RelayBot) -> None:
    """R1.4, R1.3, R5.5: bob's message on Slack appears in the Matrix room exactly once as
    `bob (slack): …` (an m.notice, the bot's own output); it never comes back to Slack; the
    lead's reply appears once on each side; the lead is nudged once for it, naming bob and
    Slack."""
    text = "is the build green on main"
    await relay.emulator.post_as("U0BOB", SLACK_WEBUI, text)
    relayed = await relay.on_matrix(f"bob (slack): {text}")
    assert line_of(relayed) == f"bob (slack): {text}"
    assert msgtype_of(relayed) == "m.notice"
    await relay.on_slack(f"webui: got it — `{text}`")
    await relay.on_matrix(f"webui: got it — `{text}`")

    markers = await relay.settle()
    assert count(relay.matrix(), f"bob (slack): {text}") == 1, relay.matrix()
    assert count(relay.slack(), f"bob (slack): {text}") == 0, relay.slack()
    assert count(relay.slack(), f"webui: got it — `{text}`") == 1, relay.slack()
    assert count(relay.matrix(), f"webui: got it — `{text}`") == 1, relay.matrix()
    received = relay.received()
    assert len(received) == 3, received  # the message and the markers, nothing relayed
    assert text in received[0] and "bob" in received[0] and "slack" in received[0]
    assert all(any(m in r for r in received[1:]) for m in markers), received


async def test_matrix_message_appears_on_slack_attributed_and_never_back_in_matrix(
        relay: RelayBot) -> None:
    """R1.4, R1.3, R5.5: Alice's message in the Matrix room appears on Slack exactly once as
    `Alice (matrix): …`; it never comes back to the Matrix room; the lead's reply appears
    once on each side; the lead is nudged once for it, naming Alice and Matrix."""
    text = "please review the login page"
    await relay.alice.send_text(relay.rooms["webui"], text)
    relayed = await relay.on_slack(f"Alice (matrix): {text}")
    assert relayed == f"Alice (matrix): {text}"
    await relay.on_slack(f"webui: got it — `{text}`")
    await relay.on_matrix(f"webui: got it — `{text}`")

    await relay.settle()
    assert count(relay.slack(), f"Alice (matrix): {text}") == 1, relay.slack()
    assert count(relay.matrix(), f"Alice (matrix): {text}") == 0, relay.matrix()
    assert count(relay.slack(), f"webui: got it — `{text}`") == 1, relay.slack()
    assert count(relay.matrix(), f"webui: got it — `{text}`") == 1, relay.matrix()
    received = relay.received()
    assert len(received) == 3, received  # the message and the markers, nothing relayed
    assert text in received[0] and "Alice" in received[0] and "matrix" in received[0]


async def test_an_agent_post_appears_once_on_both_platforms_and_nudges_no_one(
        relay: RelayBot) -> None:
    """R1.4, R5.1, R5.5, R2.6: a post the lead makes on its own (`crewbridge post`, with its
    own token) appears once in the Slack channel and once in the Matrix room, attributed to
    the lead, and neither copy comes back as input: the lead is never nudged by it."""
    await relay.emulator.post_as("U0BOB", SLACK_WEBUI, "please fake:post=webui")
    await relay.on_both("webui: webui posted via CLI")

    await relay.settle()
    assert relay.slack().count("webui: webui posted via CLI") == 1, relay.slack()
    assert relay.matrix().count("webui: webui posted via CLI") == 1, relay.matrix()
    received = relay.received()
    assert len(received) == 3, received  # the request and the markers, not the post
    assert "fake:post=webui" in received[0] and all("marker" in r for r in received[1:])
    assert not any("posted via CLI" in r for r in received)


async def test_a_conversation_across_both_platforms_has_no_echo_and_one_nudge_each(
        relay: RelayBot) -> None:
    """R1.4, R2.1, R5.5: three messages from each side, interleaved without waiting: each
    person message appears exactly once in the other platform's room and never in its own;
    each lead reply exactly once on both; the lead is nudged exactly once per person
    message; and the bot made no other post anywhere (no relay of a relay)."""
    slack_texts = [f"slack note {i}" for i in range(3)]
    matrix_texts = [f"matrix note {i}" for i in range(3)]
    for s, m in zip(slack_texts, matrix_texts, strict=True):
        await relay.emulator.post_as("U0BOB", SLACK_WEBUI, s)
        await relay.alice.send_text(relay.rooms["webui"], m)
    for t in slack_texts + matrix_texts:
        await relay.on_both(f"got it — `{t}`")

    markers = await relay.settle()
    slack, matrix = relay.slack(), relay.matrix()
    for t in slack_texts:
        assert count(matrix, f"bob (slack): {t}") == 1, matrix
        assert count(slack, f"bob (slack): {t}") == 0, slack
    for t in matrix_texts:
        assert count(slack, f"Alice (matrix): {t}") == 1, slack
        assert count(matrix, f"Alice (matrix): {t}") == 0, matrix
    for t in [*slack_texts, *matrix_texts, *markers]:
        assert count(slack, f"got it — `{t}`") == 1, slack
        assert count(matrix, f"got it — `{t}`") == 1, matrix
    # Each side: 4 relays from the other (3 notes and a marker) and 8 replies.
    assert len(slack) == 12, slack
    assert len(matrix) == 12, matrix
    assert not any("(matrix)" in p for p in matrix) and not any("(slack)" in p for p in slack)
    received = relay.received()
    assert len(received) == 8, received
    for t in [*slack_texts, *matrix_texts, *markers]:
        assert sum(t in r for r in received) == 1, (t, received)
    assert relay.emulator.rate_limited == 0


async def test_admin_room_bound_on_both_relays_a_command_and_answers_on_both(
        relay: RelayBot) -> None:
    """R1.4, R6.4, R5.5: `status` in the Slack admin channel appears in the Matrix admin room
    as `bob (slack): status`, its answer appears once on both, and neither the relay nor the
    answer is taken as a command again (one answer per side, not two)."""
    await relay.emulator.post_as("U0BOB", SLACK_OPS, "status")
    relayed = await relay.on_matrix("bob (slack): status", "ops")
    assert line_of(relayed) == "bob (slack): status"
    await relay.on_both("crewbridge: No agents yet", "ops")  # the answer to `status`

    # Markers, one from each side: the answers to `tasks` come after every earlier echo.
    await relay.alice.send_text(relay.rooms["ops"], "tasks")
    await relay.on_slack("Alice (matrix): tasks", SLACK_OPS)
    await relay.emulator.post_as("U0BOB", SLACK_OPS, "tasks")
    await relay.on_matrix("bob (slack): tasks", "ops")
    await relay.emulator.wait_until(
        lambda: count(relay.slack(SLACK_OPS), "No open tasks.") == 2, TIMEOUT)
    await relay.alice.wait_until(lambda: count(relay.matrix("ops"), "No open tasks.") == 2,
                                 timeout=TIMEOUT, what="two answers to `tasks` in Matrix")

    slack, matrix = relay.slack(SLACK_OPS), relay.matrix("ops")
    assert count(matrix, "bob (slack): status") == 1, matrix
    assert count(slack, "bob (slack): status") == 0, slack
    assert count(slack, "Alice (matrix): tasks") == 1, slack
    assert count(matrix, "Alice (matrix): tasks") == 0, matrix
    assert count(matrix, "bob (slack): tasks") == 1, matrix
    for side in (slack, matrix):
        assert count(side, "No agents yet") == 1, side
        assert count(side, "No open tasks.") == 2, side
    # Nothing else: Slack shows Alice's relay and three answers; Matrix bob's two relays
    # and the same three answers.
    assert len(slack) == 4, slack
    assert len(matrix) == 5, matrix


async def test_r12_5_a_thread_is_one_thread_on_both_platforms_whichever_side_writes(
        relay: RelayBot) -> None:
    """R12.5, R12.2, R12.3: a thread started on Slack is the thread of its relay on Matrix.
    The lead answers in both; a reply written in the Matrix thread shows in the Slack
    thread and is answered in both by the thread's fork; a reply written in the Slack thread
    shows in the Matrix thread and is answered there too. Nothing lands at the top level."""
    room = relay.rooms["webui"]
    root = await relay.emulator.post_as("U0BOB", SLACK_WEBUI, "the thread root")
    root_ts = root.payload["event"]["ts"]
    relayed = await relay.on_matrix("bob (slack): the thread root")
    on_matrix = relayed["event_id"]

    def slack_thread() -> list[str]:
        return [f"{p.username}: {p.text}" for p in relay.emulator.replies(SLACK_WEBUI, root_ts)]

    def matrix_thread() -> list[str]:
        return [line_of(e) for e in relay.alice.messages(room, sender=relay.user_id)
                if thread_of(e) == on_matrix]

    async def in_both(text: str) -> None:
        await relay.until(lambda: any(text in t for t in slack_thread())
                          and any(text in t for t in matrix_thread()), f"{text!r} in both")

    await in_both("webui: got it — `the thread root`")
    await relay.alice.send_text(room, "asked on matrix", thread=on_matrix)
    await relay.until(lambda: "Alice (matrix): asked on matrix" in slack_thread(),
                      "the Matrix reply in the Slack thread")
    await in_both("webui/1: got it — `asked on matrix`")
    await relay.emulator.reply_as("U0BOB", SLACK_WEBUI, root_ts, "asked on slack")
    await relay.until(lambda: "bob (slack): asked on slack" in matrix_thread(),
                      "the Slack reply in the Matrix thread")
    await in_both("webui/1: got it — `asked on slack`")
    assert relay.received() == ["[bob via slack in #webui] the thread root"]
    assert [t for t in relay.received("webui/1") if "asked on" in t] == [
        "[Alice via matrix in #webui] asked on matrix", "[bob via slack in #webui] asked on slack"]
    assert relay.slack() == ["webui: got it — `the thread root`",
                             "Alice (matrix): asked on matrix",
                             "webui/1: got it — `asked on matrix`",
                             "webui/1: got it — `asked on slack`"]  # all of them in the thread
    assert not any(p.thread_ts is None for p in relay.emulator.posts(SLACK_WEBUI))
    assert [line_of(e) for e in relay.alice.messages(room, sender=relay.user_id)
            if thread_of(e) is None] == ["bob (slack): the thread root"]
