"""The whole bot, as a `crewbridge run` subprocess, on Slack: the emulator plays Slack and the
people in it, the fake agent plays Claude Code.

Every wait is on something observable — a post the bot made in the emulator, an ack, a line
the fake agent logged on receiving a message (`FAKE_AGENT_LOG`) — with a timeout. "Nothing
more happened" is proven by ordering: the lead handles messages in order, so once the reply
to a later marker message is posted, an earlier duplicate would have been answered first.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.platform.slack.emulator import Posted, SlackEmulator
from tests.support.botproc import (
    BotProcess,
    cleanup_data_dir,
    crewbridge,
    short_data_dir,
    write_config,
)

TIMEOUT = 15.0
PACE_S = 0.1
"""The bot's pace per channel in these tests, with an emulator limiting at the same rate:
Slack's one post per second per channel, ten times faster, so a burst of 30 takes 3 s."""


@dataclass
class SlackBot:
    """A running bot wired to the emulator, and what a test needs to observe it."""

    process: BotProcess
    emulator: SlackEmulator
    agent_log: Path
    socket: Path

    def received(self, agent: str) -> list[str]:
        """The messages `agent` has received so far, in order (from the fake agent's log)."""
        if not self.agent_log.exists():
            return []
        lines = self.agent_log.read_text(encoding="utf-8").splitlines()
        return [r["text"] for r in map(json.loads, lines) if r["agent"] == agent]

    async def until(self, predicate: Callable[[], bool], what: str,
                    timeout: float = TIMEOUT) -> None:
        """Wait for a condition the emulator cannot signal (the agent log), or fail with
        the bot's stderr so a failure explains itself."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline or self.process.proc.poll() is not None:
                raise AssertionError(f"timed out waiting for {what}\n--- bot stderr ---\n"
                                     f"{self.process.stderr[-4000:]}")
            await asyncio.sleep(0.05)

    async def post_containing(self, channel: str, text: str,
                              timeout: float = TIMEOUT) -> Posted:
        """The bot's first post in `channel` containing `text`, once it exists."""
        def found() -> bool:
            return any(text in p.text for p in self.emulator.posts(channel))
        try:
            await self.emulator.wait_until(found, timeout)
        except TimeoutError:
            raise AssertionError(
                f"no post containing {text!r} in {channel}; posts: "
                f"{[p.text for p in self.emulator.posts(channel)]}\n--- bot stderr ---\n"
                f"{self.process.stderr[-4000:]}") from None
        return next(p for p in self.emulator.posts(channel) if text in p.text)


@contextlib.asynccontextmanager
async def running_bot(emulator: SlackEmulator, tmp_path: Path, *,
                      channel: dict | None = None) -> AsyncIterator[SlackBot]:
    """`crewbridge run` with #webui (with `channel`'s settings) and #general bound on Slack
    and an admin channel; stopped cleanly on the way out."""
    emulator.add_channel("C0OPS", "crew-ops", is_private=True)
    emulator.posts_per_second = 1 / PACE_S
    data_dir = short_data_dir()
    agent_log = tmp_path / "agents.jsonl"
    config = write_config(
        tmp_path / "crewbridge.toml", data_dir=data_dir,
        channels=[{"name": "webui", "prompt": "You lead the web UI.", "slack": ["#webui"],
                   **(channel or {})}],
        extra={
            "admin": {"slack": ["C0OPS"]},
            "slack": {"mode": "socket", "bot_token": "${SLACK_BOT_TOKEN}",
                      "app_token": "${SLACK_APP_TOKEN}", "api_url": emulator.api_url,
                      "post_interval_s": PACE_S},
        })
    process = BotProcess(config, env={"SLACK_BOT_TOKEN": emulator.bot_token,
                                      "SLACK_APP_TOKEN": emulator.app_token,
                                      "FAKE_AGENT_LOG": str(agent_log)})
    bot = SlackBot(process, emulator, agent_log, data_dir / "control.sock")
    try:
        await bot.until(lambda: emulator.connections > 0 and bot.socket.exists(),
                        "the bot to connect to Slack")
        yield bot
        await process.stop_cleanly()
    finally:
        await asyncio.to_thread(process.close)
        cleanup_data_dir(data_dir)


@pytest.fixture
async def slack_bot(slack_emulator: SlackEmulator, tmp_path: Path) -> AsyncIterator[SlackBot]:
    async with running_bot(slack_emulator, tmp_path) as bot:
        yield bot


async def test_message_in_bound_channel_reaches_the_lead_and_the_reply_is_posted(
        slack_bot: SlackBot) -> None:
    """R1.3, R2.1, R2.7, R5.1, R9.1: a person's message in #webui nudges its lead once, naming
    the sender and the platform; the lead's reply is posted by the bot in the thread of that
    message (R12.1), under the lead's name with the lead's icon and no name in its text
    (R5.7); the bot's own post, echoed back by Slack, nudges no one (R5.5)."""
    emulator = slack_bot.emulator
    asked = await emulator.post_as("U0ALICE", "C0WEBUI", "hello team, is the build green?")
    reply = await slack_bot.post_containing("C0WEBUI", "got it")
    assert "is the build green?" in reply.text
    assert reply.thread_ts == asked.payload["event"]["ts"]
    assert (reply.username, reply.icon_emoji) == ("webui", ":compass:")
    assert reply.text.startswith("got it")
    await emulator.wait_until(lambda: len(emulator.state.acks) >= 2)  # the message, the echo
    received = slack_bot.received("webui")
    assert len(received) == 1
    assert "alice" in received[0] and "slack" in received[0]
    assert "is the build green?" in received[0]


async def test_at_all_in_a_topic_channel_nudges_its_lead_and_workers(slack_bot: SlackBot) -> None:
    """R2.3, R7.1, R7.2: `!task @carol …` in #webui starts worker carol, announced in the
    thread of the `!task` message (R12.4); `@all` in #webui then reaches the lead and carol,
    though carol lives in dm-carol, and both answers appear in the thread of the `@all`
    message, each under its author's name (R12.4, R5.1, R5.7): no DM was ever opened."""
    emulator = slack_bot.emulator
    task = await emulator.post_as("U0ALICE", "C0WEBUI", "!task @carol fix the login bug")
    announced = await slack_bot.post_containing("C0WEBUI", "Task #1 for @carol")
    assert announced.thread_ts == task.payload["event"]["ts"]
    asked = await emulator.post_as("U0BOB", "C0WEBUI", "@all standup in five minutes")
    await slack_bot.until(
        lambda: all(any("standup in five minutes" in t for t in slack_bot.received(agent))
                    for agent in ("webui", "carol")),
        "the lead and carol to receive @all")
    root = asked.payload["event"]["ts"]
    await emulator.wait_until(lambda: {p.username for p in emulator.replies("C0WEBUI", root)
                                       if "standup in five minutes" in p.text}
                              == {"webui", "carol"}, TIMEOUT)


async def test_a_reply_in_the_thread_is_answered_there_by_a_fork(slack_bot: SlackBot) -> None:
    """R12.2, R12.3, R5.7: a person's reply in the thread of the lead's answer reaches a
    session forked from the lead's, whose answer comes back in that thread under the fork's
    name with the fork's icon; the lead's own session does not hear the reply."""
    emulator = slack_bot.emulator
    asked = await emulator.post_as("U0ALICE", "C0WEBUI", "what is the plan?")
    root = asked.payload["event"]["ts"]
    await slack_bot.post_containing("C0WEBUI", "what is the plan?")
    await emulator.reply_as("U0BOB", "C0WEBUI", root, "and the deadline?")
    answer = await slack_bot.post_containing("C0WEBUI", "and the deadline?")
    assert answer.thread_ts == root
    assert (answer.username, answer.icon_emoji) == ("webui/1", ":thread:")
    assert any("and the deadline?" in t for t in slack_bot.received("webui/1"))
    assert not any("deadline" in t for t in slack_bot.received("webui"))


async def test_a_dm_attaches_to_a_worker_and_gets_its_answers(slack_bot: SlackBot) -> None:
    """R1.6: in the bot's IM, `@carol …` reaches worker carol and attaches the DM; carol's
    answers are posted in the DM; later unaddressed text goes to carol too."""
    emulator = slack_bot.emulator
    await emulator.post_as("U0ALICE", "C0WEBUI", "!task @carol fix the login bug")
    await slack_bot.post_containing("C0WEBUI", "Task #1 for @carol")
    await emulator.post_as("U0ALICE", "D0ALICE", "@carol how is it going?")
    reply = await slack_bot.post_containing("D0ALICE", "how is it going?")
    assert "got it" in reply.text
    await emulator.post_as("U0ALICE", "D0ALICE", "any blockers?")
    await slack_bot.post_containing("D0ALICE", "any blockers?")
    assert any("any blockers?" in t for t in slack_bot.received("carol"))
    assert not any("blockers" in t for t in slack_bot.received("webui"))


async def test_status_in_the_admin_channel_lists_the_agents(slack_bot: SlackBot) -> None:
    """R6.4: `status` in the Slack admin channel answers there with the agents table."""
    emulator = slack_bot.emulator
    await emulator.post_as("U0ALICE", "C0WEBUI", "wake up")
    await slack_bot.post_containing("C0WEBUI", "got it")
    await emulator.post_as("U0ALICE", "C0OPS", "status")
    table = await slack_bot.post_containing("C0OPS", "webui")
    assert re.search(r"agent\s+kind\s+state", table.text), table.text


async def test_slack_redeliveries_are_ignored_end_to_end(slack_bot: SlackBot) -> None:
    """R8.1: Slack's retry of an event (same event_id, `retry_attempt`) is acked but neither
    stored nor routed again: the lead hears the message once and answers once."""
    emulator = slack_bot.emulator
    first = await emulator.post_as("U0ALICE", "C0WEBUI", "deploy only once")
    retry = await emulator.redeliver(first, attempt=1)
    await emulator.wait_ack(first.envelope_id or "", TIMEOUT)
    await emulator.wait_ack(retry.envelope_id or "", TIMEOUT)
    await emulator.post_as("U0ALICE", "C0WEBUI", "marker")
    await slack_bot.post_containing("C0WEBUI", "marker")
    assert sum("deploy only once" in t for t in slack_bot.received("webui")) == 1
    assert sum("deploy only once" in p.text for p in emulator.posts("C0WEBUI")) == 1


async def test_a_post_whose_answer_was_lost_appears_once(slack_bot: SlackBot) -> None:
    """R8.3, R12.1: Slack takes the lead's reply in the thread of the person's message but
    the bot gets a 500 back; the outbox's retry looks for it in that thread
    (`conversations.replies`), finds it and does not post it again."""
    emulator = slack_bot.emulator
    emulator.lose_next_answers("chat.postMessage")
    asked = await emulator.post_as("U0ALICE", "C0WEBUI", "say this once")
    root = asked.payload["event"]["ts"]
    await slack_bot.post_containing("C0WEBUI", "say this once")
    await slack_bot.until(lambda: [c.params.get("ts") for c in
                                   emulator.calls("conversations.replies")] == [root],
                          "the retry to look for the post in its thread")
    await emulator.post_as("U0ALICE", "C0WEBUI", "marker")
    await slack_bot.post_containing("C0WEBUI", "marker")
    assert sum("say this once" in p.text for p in emulator.posts("C0WEBUI")) == 1
    assert [p.thread_ts for p in emulator.posts("C0WEBUI") if "say this once" in p.text] == [root]


async def test_a_burst_of_agent_posts_is_paced_in_order_with_no_429(slack_bot: SlackBot) -> None:
    """R8.3: 30 posts the lead makes at once over the control socket (with its own token,
    R10.4) go out in order, paced to the channel's rate, and Slack's per-channel limiter
    never answers 429."""
    emulator = slack_bot.emulator
    await emulator.post_as("U0ALICE", "C0WEBUI", "please fake:burst=30,webui")
    await emulator.wait_until(
        lambda: sum(bool(re.search(r"burst \d\d", p.text))
                    for p in emulator.posts("C0WEBUI")) == 30, TIMEOUT)
    numbers = [int(m[1]) for p in emulator.posts("C0WEBUI")
               if (m := re.search(r"burst (\d\d)", p.text))]
    assert numbers == list(range(1, 31))
    assert emulator.rate_limited == 0


async def test_a_bad_bot_token_stops_start_up_with_one_clear_line(
        slack_emulator: SlackEmulator, tmp_path: Path) -> None:
    """R9.1, R11.2: a revoked bot token: `crewbridge run` exits non-zero with one line that
    names the problem, and no traceback."""
    data_dir = short_data_dir()
    config = write_config(tmp_path / "crewbridge.toml", data_dir=data_dir, extra={
        "slack": {"mode": "socket", "bot_token": "xoxb-revoked", "app_token": "xapp-1",
                  "api_url": slack_emulator.api_url}})
    try:
        # In a thread: the emulator lives in this event loop and must keep answering.
        result = await asyncio.to_thread(crewbridge, "run", "--config", str(config),
                                         timeout=TIMEOUT)
    finally:
        cleanup_data_dir(data_dir)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "crewbridge: slack: Slack rejected the bot token (invalid_auth)"]
    assert "xoxb-revoked" not in result.stderr
