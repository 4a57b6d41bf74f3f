"""The real `SlackBridge` in threads and under its authors' names, against the emulator
(R5.7, R8.3, R12.1, R12.2): what `send` posts where, what it returns, and what a person's
reply in a thread becomes. Nothing is mocked but the core (a recording sink)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from crewbridge.bridges.base import AuthorRole, Post, SendError, ThreadRef
from crewbridge.bridges.render import to_slack_mrkdwn
from tests.platform.slack.bridge_support import StartBridge
from tests.platform.slack.emulator import SlackEmulator
from tests.platform.slack.test_slack_bridge import long_markdown


@pytest.fixture
async def web(slack_emulator: SlackEmulator) -> AsyncIterator[AsyncWebClient]:
    """A plain Web API client, to read the workspace as a Slack client would."""
    yield AsyncWebClient(base_url=slack_emulator.api_url, token=slack_emulator.bot_token)


async def thread_texts(web: AsyncWebClient, channel: str, root: str) -> list[str]:
    """The thread under `root` as `conversations.replies` shows it: the root, then replies."""
    return [m["text"] for m in (await web.conversations_replies(channel=channel,
                                                                ts=root))["messages"]]


@pytest.mark.parametrize(("role", "icon", "markdown"), [
    (AuthorRole.LEAD, ":compass:", "## Plan\n\n1. build\n2. ship"),
    (AuthorRole.WORKER, ":hammer_and_wrench:", "```python\nprint('hi')\n```\nthat is all"),
    (AuthorRole.FORK, ":thread:", "- one\n- two"),
])
async def test_r5_7_the_author_is_the_sender_and_the_text_renders_as_its_block(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, role: AuthorRole, icon: str,
        markdown: str) -> None:
    """R5.7: the author is the post's `username` with its role's icon, and the text is the
    rendered markdown alone, so a post that starts with a heading, a code fence or a list
    starts with that block; `send` returns the post's `ts`. Its echo (a `bot_message` under
    the custom name) never reaches the core (R5.5)."""
    bridge, sink = await start_bridge()
    ts = await bridge.send("C0WEBUI", Post(markdown, "webui", role), key="k1")
    [posted] = slack_emulator.posts("C0WEBUI")
    assert (posted.username, posted.icon_emoji, posted.ts) == ("webui", icon, ts)
    assert posted.text == to_slack_mrkdwn(markdown)
    assert "webui" not in posted.text
    await slack_emulator.wait_until(lambda: len(slack_emulator.state.acks) == 1)  # the echo
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "marker")
    await sink.wait_inbound("marker")
    assert [m.text for m in sink.inbound] == ["marker"]


async def test_r5_7_a_post_without_an_author_shows_as_the_app(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R5.7: an empty author customises nothing: the post shows under the app's own name."""
    bridge, _ = await start_bridge()
    await bridge.send("C0WEBUI", Post("plain notice"), key="k1")
    [posted] = slack_emulator.posts("C0WEBUI")
    assert (posted.text, posted.username, posted.icon_emoji) == ("plain notice", None, None)


async def test_r12_1_a_post_in_a_thread_lands_in_that_thread(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, web: AsyncWebClient) -> None:
    """R12.1: a post whose thread has a root here goes under it (`thread_ts`): the thread
    shows the person's message then the answer; the channel's top level does not show it.
    A thread with no root in this room posts at the top level."""
    bridge, _ = await start_bridge()
    asked = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "is the build green?")
    root = asked.payload["event"]["ts"]
    ts = await bridge.send("C0WEBUI", Post("yes, **green**", "webui", AuthorRole.LEAD,
                                           ThreadRef(root, 1)), key="k1")
    await bridge.send("C0WEBUI", Post("elsewhere", "webui", thread=ThreadRef(None, 2)),
                      key="k2")
    assert [(p.thread_ts, p.ts) for p in slack_emulator.replies("C0WEBUI", root)] == [(root, ts)]
    assert await thread_texts(web, "C0WEBUI", root) == ["is the build green?", "yes, *green*"]
    history = (await web.conversations_history(channel="C0WEBUI"))["messages"]
    assert [m["text"] for m in history] == ["elsewhere", "is the build green?"]


async def test_r12_1_a_split_post_in_a_thread_puts_every_part_there_and_returns_the_first(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, web: AsyncWebClient) -> None:
    """R12.1, R5.2: every part of a long post goes into the thread, in order; the id
    returned is the first part's."""
    bridge, _ = await start_bridge()
    slack_emulator.post_burst = 10
    root = (await slack_emulator.post_as("U0ALICE", "C0WEBUI", "explain"))
    root_ts = root.payload["event"]["ts"]
    ts = await bridge.send("C0WEBUI", Post(long_markdown(), "webui", AuthorRole.LEAD,
                                           ThreadRef(root_ts, 1)), key="long")
    parts = slack_emulator.replies("C0WEBUI", root_ts)
    assert len(parts) >= 3 and parts == slack_emulator.posts("C0WEBUI")
    assert ts == parts[0].ts
    assert len(await thread_texts(web, "C0WEBUI", root_ts)) == 1 + len(parts)


@pytest.mark.parametrize("broadcast", [False, True])
async def test_r12_2_a_persons_reply_in_a_thread_names_its_root(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, broadcast: bool) -> None:
    """R12.2: a person's reply in a thread reaches the core with `thread` = the root's ts and
    `ref` = its own ts; a reply also sent to the channel (`thread_broadcast`) is a reply in
    the thread too. The root itself is in no thread, and its ref is its ts."""
    _, sink = await start_bridge()
    asked = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "the root")
    root_ts = asked.payload["event"]["ts"]
    replied = await slack_emulator.reply_as("U0BOB", "C0WEBUI", root_ts, "a reply",
                                            broadcast=broadcast)
    root, reply = await sink.wait_inbound("the root"), await sink.wait_inbound("a reply")
    assert (root.thread, root.ref, root.root_ref) == (None, root_ts, root_ts)
    assert (reply.thread, reply.ref) == (root_ts, replied.payload["event"]["ts"])
    assert reply.event_id == replied.event_id != reply.ref


async def test_r8_3_a_threaded_post_whose_answer_was_lost_is_found_in_its_thread(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3, R12.1: Slack took a post in a thread but the answer was lost; the retry marked
    `maybe_sent` looks in the thread (`conversations.replies`: a reply is not in the
    channel's history), finds the part, does not post it again and returns its ts."""
    bridge, _ = await start_bridge()
    root = (await slack_emulator.post_as("U0ALICE", "C0WEBUI", "the root")).payload["event"]["ts"]
    post = Post("only once, in the thread", "webui", AuthorRole.LEAD, ThreadRef(root, 1))
    slack_emulator.lose_next_answers("chat.postMessage")
    with pytest.raises(SendError):
        await bridge.send("C0WEBUI", post, key="ob-7")
    ts = await bridge.send("C0WEBUI", post, key="ob-7", maybe_sent=True)
    [posted] = slack_emulator.posts("C0WEBUI")
    assert ts == posted.ts and posted.thread_ts == root
    [read] = slack_emulator.calls("conversations.replies")
    assert (read.params["ts"], read.params["channel"]) == (root, "C0WEBUI")
    assert slack_emulator.calls("conversations.history") == []


async def test_r8_3_a_split_threaded_post_pending_at_a_restart_posts_only_its_missing_parts(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3, R12.1: the bot died after Slack took the first two parts of a long post in a
    thread; a new bridge (nothing in its store) sends it with `maybe_sent`: the missing
    parts go into the thread, each part is there once, and the id returned is part 1's."""
    first, _ = await start_bridge()
    root = (await slack_emulator.post_as("U0ALICE", "C0WEBUI", "the root")).payload["event"]["ts"]
    post = Post(long_markdown(), "webui", AuthorRole.LEAD, ThreadRef(root, 1))
    slack_emulator.post_burst = 2
    with pytest.raises(SendError):
        await first.send("C0WEBUI", post, key="ob-9")
    before = slack_emulator.replies("C0WEBUI", root)
    assert len(before) == 2
    slack_emulator.post_burst = 10
    slack_emulator.refill_rate_limits()
    after_restart, _ = await start_bridge()
    assert await after_restart.send("C0WEBUI", post, key="ob-9", maybe_sent=True) == before[0].ts
    parts = slack_emulator.replies("C0WEBUI", root)
    assert parts[:2] == before and len({p.text for p in parts}) == len(parts) >= 3


@pytest.mark.parametrize("granted", [True, False])
async def test_r5_7_start_up_warns_when_slack_would_ignore_the_names(
        slack_emulator: SlackEmulator, start_bridge: StartBridge,
        caplog: pytest.LogCaptureFixture, granted: bool) -> None:
    """R5.7: a token without `chat:write.customize` (an app installed from an older
    manifest) starts, with one warning that names the scope and what to do."""
    if not granted:
        slack_emulator.scopes.remove("chat:write.customize")
    with caplog.at_level(logging.WARNING, logger="crewbridge.bridges.slack"):
        await start_bridge()
    warnings = [r.getMessage() for r in caplog.records if r.name == "crewbridge.bridges.slack"]
    assert warnings == ([] if granted else [
        "slack: the bot token lacks the scope chat:write.customize, so posts show as the app "
        "and not under each agent's name: add it to the app and reinstall it "
        "(docs/operations/slack.md)"])


async def test_r8_3_posts_reuse_one_kept_connection(slack_emulator: SlackEmulator,
                                                    start_bridge: StartBridge) -> None:
    """R8.3, R9.1: every Web API call after start-up goes over the connection the bridge
    keeps (slack_sdk alone opens, and on Slack TLS-handshakes, a new one per call: most of
    a post's time)."""
    bridge, _ = await start_bridge()
    for i in range(3):
        await bridge.send("C0WEBUI", Post(f"post {i}", "webui"), key=f"k{i}")
    peers = [c.peer for c in slack_emulator.calls("chat.postMessage")]
    assert len(peers) == 3 and len(set(peers)) == 1, peers
    assert slack_emulator.calls("auth.test")[0].peer == peers[0]
