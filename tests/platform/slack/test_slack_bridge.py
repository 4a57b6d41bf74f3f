"""The real `SlackBridge` (real slack-bolt and slack_sdk) against the local Slack emulator.

Nothing here is mocked but the core: the sink is a recorder and the key-value store a dict.
Every wait is on a condition (an event reaching the sink, an ack reaching the emulator), and
"nothing reached the sink" is proven by ordering: a marker message sent after the event under
test is awaited, and the bridge hands events to the sink in order, acking each only after
the sink returned.
"""

from __future__ import annotations

import dataclasses
import json
import re
import traceback

import pytest

from crewbridge.bridges.base import (
    ConnectionChanged,
    Inbound,
    Post,
    RateLimited,
    RoomJoined,
    RoomUnresolvable,
    SendError,
)
from crewbridge.bridges.render import to_slack_mrkdwn
from crewbridge.bridges.settings import SlackConfig
from crewbridge.bridges.slack import SlackBridge, SlackStartError
from crewbridge.bridges.slack_events import SLACK_TEXT_LIMIT
from tests.platform.slack.bridge_support import TIMEOUT, MemoryKV, Sink, StartBridge, slack_config
from tests.platform.slack.emulator import SlackEmulator

# --- inbound -------------------------------------------------------------------------------


async def test_socket_mode_message_becomes_one_inbound_with_names(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R9.1, R1.3, R12: a person's message over Socket Mode is one Inbound, names resolved
    (sender and mentions, cached), its `ts` the ref a reply names it by, acked once the
    sink has it."""
    _, sink = await start_bridge()
    delivery = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "hi <@U0BOB>, look &amp; see")
    message = await sink.wait_inbound("hi @bob, look & see")
    await slack_emulator.wait_ack(delivery.envelope_id or "")
    assert message == Inbound(platform="slack", room="C0WEBUI", sender="U0ALICE",
                              sender_name="alice", text="hi @bob, look & see",
                              event_id=delivery.event_id, ts=message.ts, is_direct=False,
                              ref=delivery.payload["event"]["ts"])
    assert message.ts == float(delivery.payload["event"]["ts"])

    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "again")
    await sink.wait_inbound("again")
    assert len(sink.inbound) == 2
    looked_up = [c.params["user"] for c in slack_emulator.calls("users.info")]
    assert sorted(looked_up) == ["U0ALICE", "U0BOB"]  # each once: the cache answered


async def test_bot_mention_prefix_is_stripped(slack_emulator: SlackEmulator,
                                              start_bridge: StartBridge) -> None:
    """R2.2: addressing the bot (`@crewbridge: …`) is not content; routing sees the rest."""
    _, sink = await start_bridge()
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "<@UBOT0001>: @lead please fix it")
    assert (await sink.wait_inbound("@lead please fix it")).sender_name == "alice"


async def test_im_message_is_direct(slack_emulator: SlackEmulator,
                                    start_bridge: StartBridge) -> None:
    """R1.6: a message in the bot's IM is marked direct, so the core can attach workers."""
    _, sink = await start_bridge()
    await slack_emulator.post_as("U0ALICE", "D0ALICE", "@carol start on the tests")
    message = await sink.wait_inbound("@carol start on the tests")
    assert message.is_direct and message.room == "D0ALICE"


async def test_thread_reply_keeps_its_thread(slack_emulator: SlackEmulator,
                                             start_bridge: StartBridge) -> None:
    """R1.3: a reply in a thread is stored with the thread it belongs to."""
    _, sink = await start_bridge()
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "in a thread", thread_ts="1700000000.000100")
    assert (await sink.wait_inbound("in a thread")).thread == "1700000000.000100"


async def test_own_and_other_bots_messages_never_reach_the_sink(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R5.5: the bot's own posts (echoed back by Slack), other bots, bot_message and edits
    are acked and dropped; only the person's message after them reaches the core."""
    bridge, sink = await start_bridge()
    await bridge.send("C0WEBUI", Post("agent output"), key="k1")  # Slack echoes it as an event
    emu = slack_emulator
    emu.add_user("U0OTHERBOT", "ci-bot", is_bot=True)
    for payload in [
        emu.message_event("U0OTHERBOT", "C0WEBUI", "build passed", bot_id="B0OTHER"),
        emu.message_event("U0OTHERBOT", "C0WEBUI", "legacy hook", subtype="bot_message",
                          bot_id="B0HOOK"),
        emu.message_event("U0ALICE", "C0WEBUI", "edited", subtype="message_changed"),
        emu.message_event("U0ALICE", "C0WEBUI", "", subtype="channel_join"),
    ]:
        await emu.deliver(payload)
    await emu.wait_until(lambda: len(emu.state.acks) == 5)  # the echo and the four above
    await emu.post_as("U0ALICE", "C0WEBUI", "marker")
    await sink.wait_inbound("marker")
    assert [m.text for m in sink.inbound] == ["marker"]


async def test_member_joined_channel_for_the_bot_is_room_joined(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R1.5: the bot being added to a channel is reported; someone else joining is not."""
    _, sink = await start_bridge()
    for user in ("U0BOB", "UBOT0001"):
        await slack_emulator.deliver(slack_emulator.event_callback({
            "type": "member_joined_channel", "user": user, "channel": "C0NEW",
            "channel_type": "C", "team": slack_emulator.team_id, "inviter": "U0ALICE"}))
    await sink.wait_for(lambda: bool(sink.events))
    assert sink.events == [RoomJoined("slack", "C0NEW", inviter="U0ALICE")]


async def test_http_mode_signed_event_becomes_inbound(slack_emulator: SlackEmulator,
                                                      start_bridge: StartBridge) -> None:
    """R9.1: HTTP Events API: a correctly signed callback is answered 200 and delivered."""
    bridge, sink = await start_bridge(mode="http")
    assert bridge.events_url is not None and bridge.events_url.startswith("http://127.0.0.1:")
    delivery = await slack_emulator.post_as("U0BOB", "C0WEBUI", "over http")
    assert delivery.status == 200
    assert (await sink.wait_inbound("over http")).event_id == delivery.event_id


async def test_http_mode_answers_slacks_url_verification(slack_emulator: SlackEmulator,
                                                         start_bridge: StartBridge) -> None:
    """R9.1: setting the Request URL in the app settings works: Slack's signed
    `url_verification` challenge is answered with the challenge."""
    _, sink = await start_bridge(mode="http")
    challenge = {"token": "legacy", "challenge": "3eZbrw1aBm2rZgRNFdxV", "type": "url_verification"}
    answer = await slack_emulator.deliver(challenge)
    assert answer.status == 200
    assert json.loads(answer.body) == {"challenge": "3eZbrw1aBm2rZgRNFdxV"}
    assert sink.events == []


@pytest.mark.parametrize("signature", ["forged", "stale", "missing"])
async def test_http_mode_rejects_bad_signatures(slack_emulator: SlackEmulator,
                                                start_bridge: StartBridge,
                                                signature: str) -> None:
    """R9.1: forged, stale (10 min old) or missing signatures get 401 and nothing runs."""
    _, sink = await start_bridge(mode="http")
    payload = slack_emulator.message_event("U0ALICE", "C0WEBUI", "sneaky")
    rejected = await slack_emulator.deliver(payload, signature=signature)  # type: ignore[arg-type]
    assert rejected.status == 401
    await slack_emulator.post_as("U0BOB", "C0WEBUI", "marker")
    await sink.wait_inbound("marker")
    assert [m.text for m in sink.inbound] == ["marker"]
    assert [c.params["user"] for c in slack_emulator.calls("users.info")] == ["U0BOB"]


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_redelivery_keeps_the_event_id(slack_emulator: SlackEmulator,
                                             start_bridge: StartBridge, mode: str) -> None:
    """R8.1: a Slack retry (`retry_attempt` / `X-Slack-Retry-Num`) reaches the core with the
    same event_id as the first delivery, so the store's dedup ignores it."""
    _, sink = await start_bridge(mode=mode)
    first = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "only once please")
    retry = await slack_emulator.redeliver(first, attempt=1)
    if mode == "http":
        assert (first.status, retry.status) == (200, 200)
    await sink.wait_for(lambda: len(sink.inbound) == 2)
    assert [m.event_id for m in sink.inbound] == [first.event_id, first.event_id]


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_an_event_the_core_did_not_store_is_not_acked(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, mode: str) -> None:
    """R1.3, R8.1: the ack waits for the sink; when the core could not store an event, Slack
    gets no ack (Socket Mode) or a 500 (HTTP), so it delivers it again, and the retry is
    taken with the same event_id."""
    _, sink = await start_bridge(mode=mode)
    sink.refuse = 1
    first = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "store me")
    marker = await slack_emulator.post_as("U0ALICE", "C0WEBUI", "marker")
    await sink.wait_inbound("marker")
    if mode == "socket":
        await slack_emulator.wait_ack(marker.envelope_id or "")
        assert first.envelope_id not in slack_emulator.state.acks
    else:
        assert (first.status, marker.status) == (500, 200)
    retry = await slack_emulator.redeliver(first)
    assert (await sink.wait_inbound("store me")).event_id == first.event_id
    if mode == "socket":
        await slack_emulator.wait_ack(retry.envelope_id or "")


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_r5_8_text_that_is_not_unicode_arrives_cleaned(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, mode: str) -> None:
    """R5.8: a message whose JSON carries a lone surrogate and a NUL (`\\ud800`, `\\u0000`)
    reaches the core as valid Unicode that can be stored, not as an error or nothing."""
    _, sink = await start_bridge(mode=mode)
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "half \ud800 a pair\x00!")
    inbound = await sink.wait_inbound("half \ufffd a pair!")
    inbound.text.encode("utf-8")


# --- outbound ------------------------------------------------------------------------------


def long_markdown() -> str:
    """About 10,000 characters of agent markdown: paragraphs, bold, a link, a code block."""
    paragraphs = [f"Paragraph {i:02d} is **important** and says: " + "lorem ipsum " * 25
                  for i in range(30)]
    paragraphs.insert(15, "```python\n" + "\n".join(f"x{i} = {i}" for i in range(40)) + "\n```")
    paragraphs.append("See [the docs](https://example.org/docs) for more.")
    return "\n\n".join(paragraphs)


async def test_long_markdown_is_rendered_and_split_in_order(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R5.2, R5.6: 10,000 characters of markdown become several mrkdwn posts, each under
    4,000 characters, in order, with nothing lost and the code block intact."""
    bridge, _ = await start_bridge()
    slack_emulator.post_burst = 10
    text = long_markdown()
    assert len(text) > 10_000
    await bridge.send("C0WEBUI", Post(text), key="long")
    posts = slack_emulator.posts("C0WEBUI")
    assert len(posts) >= 3
    assert all(len(p.text) < 4000 for p in posts)
    joined = "\n".join(p.text for p in posts)
    assert re.findall(r"Paragraph (\d\d)", joined) == [f"{i:02d}" for i in range(30)]
    assert "**" not in joined and "*important*" in joined
    assert "<https://example.org/docs|the docs>" in joined
    assert sum(p.text.count("```") for p in posts) == 2
    assert any("x0 = 0" in p.text and "x39 = 39" in p.text for p in posts)
    assert re.sub(r"\s+", "", joined) == re.sub(r"\s+", "", to_slack_mrkdwn(text))
    assert all(p.params.get("unfurl_links") is False for p in posts)


async def test_a_retried_split_post_does_not_repeat_parts(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3: when part 2 of a split post hits the rate limit, the outbox's retry (same key)
    posts parts 2.. only; every part appears exactly once, in order. R12: the retry still
    returns part 1's `ts`, the id a reply under the post names."""
    bridge, _ = await start_bridge()
    slack_emulator.post_burst = 1
    text = long_markdown()
    with pytest.raises(RateLimited):
        await bridge.send("C0WEBUI", Post(text), key="split-1")
    [first] = slack_emulator.posts("C0WEBUI")
    assert bridge._kv.values == {  # type: ignore[attr-defined]
        "slack.sent_parts.split-1": f"1 {first.ts}"}
    slack_emulator.post_burst = 10
    slack_emulator.refill_rate_limits()
    assert await bridge.send("C0WEBUI", Post(text), key="split-1") == first.ts
    assert bridge._kv.values == {}  # the post is whole: nothing kept for it  # type: ignore
    posts = slack_emulator.posts("C0WEBUI")
    joined = "\n".join(p.text for p in posts)
    assert re.findall(r"Paragraph (\d\d)", joined) == [f"{i:02d}" for i in range(30)]
    assert len(posts) == len(set(p.text for p in posts))
    assert all(len(p.text) <= SLACK_TEXT_LIMIT for p in posts)


async def test_a_post_whose_answer_was_lost_is_not_posted_twice(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3: Slack took the post but the answer was lost (a 500): the retry, marked
    `maybe_sent`, finds the post in the channel by its metadata and does not post it again;
    a post that is not there is posted."""
    bridge, _ = await start_bridge()
    slack_emulator.lose_next_answers("chat.postMessage")
    with pytest.raises(SendError) as lost:
        await bridge.send("C0WEBUI", Post("only once"), key="ob-7")
    assert not lost.value.permanent
    await bridge.send("C0WEBUI", Post("only once"), key="ob-7", maybe_sent=True)
    await bridge.send("C0WEBUI", Post("never sent before"), key="ob-8", maybe_sent=True)
    assert [p.text for p in slack_emulator.posts("C0WEBUI")] == ["only once", "never sent before"]
    assert len(slack_emulator.calls("conversations.history")) == 2


async def test_a_split_post_pending_at_a_restart_posts_only_its_missing_parts(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3: the bot died after Slack took parts 1 and 2 of a split post and before anything
    recorded it (a new bridge, nothing in its store). Sent again with `maybe_sent`, only
    the missing parts are posted: every part once, in order."""
    first, _ = await start_bridge()
    text = long_markdown()
    slack_emulator.post_burst = 2
    with pytest.raises(RateLimited):
        await first.send("C0WEBUI", Post(text), key="ob-9")
    assert len(slack_emulator.posts("C0WEBUI")) == 2
    slack_emulator.post_burst = 10
    slack_emulator.refill_rate_limits()
    after_restart, _ = await start_bridge()  # its key-value store is empty
    await after_restart.send("C0WEBUI", Post(text), key="ob-9", maybe_sent=True)
    joined = "\n".join(p.text for p in slack_emulator.posts("C0WEBUI"))
    assert re.findall(r"Paragraph (\d\d)", joined) == [f"{i:02d}" for i in range(30)]


async def test_unreadable_history_posts_anyway(slack_emulator: SlackEmulator,
                                              start_bridge: StartBridge) -> None:
    """R8.3: without the `*:history` scope the check cannot be made; the post goes out
    (a message twice is better than one lost). A 429 on the check is a RateLimited."""
    bridge, _ = await start_bridge()
    slack_emulator.fail_next("conversations.history", status=200, error="missing_scope")
    await bridge.send("C0WEBUI", Post("still delivered"), key="ob-10", maybe_sent=True)
    assert [p.text for p in slack_emulator.posts("C0WEBUI")] == ["still delivered"]
    slack_emulator.fail_next("conversations.history", retry_after=4)
    with pytest.raises(RateLimited) as caught:
        await bridge.send("C0WEBUI", Post("later"), key="ob-11", maybe_sent=True)
    assert caught.value.retry_after_s == 4.0


async def test_429_raises_rate_limited_with_the_retry_after_value(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R8.3: a 429 surfaces at once as RateLimited(Retry-After); the SDK does not sleep and
    retry behind the outbox's back (one call, nothing posted)."""
    bridge, _ = await start_bridge()
    slack_emulator.fail_next("chat.postMessage", retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await bridge.send("C0WEBUI", Post("hello"), key="p1")
    assert caught.value.retry_after_s == 7.0
    assert len(slack_emulator.calls("chat.postMessage")) == 1
    assert slack_emulator.posts("C0WEBUI") == []
    await bridge.send("C0WEBUI", Post("hello"), key="p1")
    assert [p.text for p in slack_emulator.posts("C0WEBUI")] == ["hello"]


def test_posts_are_paced_to_one_per_second_per_channel_by_default() -> None:
    """R8.3: the outbox paces Slack posts by the bridge's interval: Slack's one per second
    unless `[slack] post_interval_s` says otherwise."""
    config = SlackConfig(bot_token="xoxb-1")
    assert SlackBridge(config, MemoryKV()).post_interval_s == 1.0
    fast = dataclasses.replace(config, post_interval_s=0.25)
    assert SlackBridge(fast, MemoryKV()).post_interval_s == 0.25


async def test_send_errors_say_whether_a_retry_can_help(slack_emulator: SlackEmulator,
                                                        start_bridge: StartBridge) -> None:
    """R8.3: channel_not_found / not_in_channel are permanent (the outbox gives up);
    a Slack internal_error is worth retrying."""
    bridge, _ = await start_bridge()
    slack_emulator.add_channel("C0OUTSIDE", "outside", bot_is_member=False)
    for room in ("C0NOWHERE", "C0OUTSIDE"):
        with pytest.raises(SendError) as caught:
            await bridge.send(room, Post("hello"), key=f"to-{room}")
        assert caught.value.permanent and room in str(caught.value)
    slack_emulator.fail_next("chat.postMessage", status=200, error="internal_error")
    with pytest.raises(SendError) as transient:
        await bridge.send("C0WEBUI", Post("hello"), key="t")
    assert not transient.value.permanent and not isinstance(transient.value, RateLimited)


# --- connection ------------------------------------------------------------------------------


async def test_disconnect_envelope_reconnects_and_reports_it(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R6.3: Slack's `disconnect` envelope: the SDK reconnects by itself; the core hears
    down, then up, and messages flow on the new connection."""
    _, sink = await start_bridge()
    await slack_emulator.send_disconnect()
    await sink.wait_for(lambda: sink.links == [False, True])
    await slack_emulator.wait_connected(opened=2)
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "still there?")
    await sink.wait_inbound("still there?")


async def test_dropped_socket_reconnects_and_reports_it(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R6.3: a socket cut without a close frame is noticed, reconnected with a fresh URL,
    and reported down then up."""
    _, sink = await start_bridge()
    await slack_emulator.drop_connections()
    await sink.wait_for(lambda: sink.links == [False, True])
    await slack_emulator.wait_connected(opened=2)
    assert len(slack_emulator.calls("apps.connections.open")) == 2
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "back again")
    await sink.wait_inbound("back again")


async def test_failing_reconnects_are_retried_until_slack_is_back(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R6.3: while Slack cannot hand out a websocket URL the link stays down (reported once)
    and reconnecting is retried at the ping interval, not given up and not in a hot loop."""
    _, sink = await start_bridge()
    slack_emulator.fail_next("apps.connections.open", times=2, status=200,
                             error="internal_error")
    await slack_emulator.drop_connections()
    await sink.wait_for(lambda: sink.links == [False, True])
    assert len(slack_emulator.calls("apps.connections.open")) == 4  # start, 2 failures, ok
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "made it")
    await sink.wait_inbound("made it")


async def test_r6_3_a_slack_that_answers_no_ping_is_one_outage_until_it_does(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R6.3: sockets that open and say `hello` but answer no ping (a Slack that hangs) die
    one after another; that is one outage, dated from the last pong, not a string of short
    ones that would never be alerted; it ends once a ping is answered again."""
    _, sink = await start_bridge()
    slack_emulator.answer_pings = False
    opened = slack_emulator.connections_opened
    await slack_emulator.wait_until(lambda: slack_emulator.connections_opened >= opened + 3,
                                    timeout=20)
    assert sink.links == [False]
    [down] = [e for e in sink.events if isinstance(e, ConnectionChanged)]
    assert down.down_for_s > 0
    slack_emulator.answer_pings = True
    await sink.wait_for(lambda: sink.links == [False, True], timeout=10)
    await slack_emulator.post_as("U0ALICE", "C0WEBUI", "pong")
    await sink.wait_inbound("pong")


@pytest.mark.parametrize("mode", ["socket", "http"])
async def test_r6_3_a_web_api_call_that_hangs_is_the_link_down_until_one_is_answered(
        slack_emulator: SlackEmulator, mode: str) -> None:
    """R6.3: a `chat.postMessage` Slack takes and never answers fails after the client's
    timeout (the outbox keeps the post) and the link is down as of when it was sent, in
    both modes (in Socket Mode the socket is fine meanwhile); the next call answered
    brings it back."""
    bridge = SlackBridge(slack_config(slack_emulator, mode=mode), MemoryKV(),
                         ping_interval_s=0.5, connect_timeout_s=TIMEOUT, api_timeout_s=1)
    sink = Sink()
    await bridge.start(sink)
    try:
        slack_emulator.hang_next("chat.postMessage")
        with pytest.raises(SendError) as caught:
            await bridge.send("C0WEBUI", Post("into the void"), key="k1")
        assert not isinstance(caught.value, RateLimited) and not caught.value.permanent
        await sink.wait_for(lambda: sink.links == [False])
        [down] = [e for e in sink.events if isinstance(e, ConnectionChanged)]
        assert down.down_for_s >= 1 and "did not answer the post to C0WEBUI" in down.detail
        await bridge.send("C0WEBUI", Post("and back"), key="k2")
        await sink.wait_for(lambda: sink.links == [False, True])
        assert [p.text for p in slack_emulator.posts("C0WEBUI")] == ["and back"]
    finally:
        await bridge.stop()


# --- start-up ---------------------------------------------------------------------------------


def shown(error: BaseException) -> str:
    """What a user would see if the exception were printed with its traceback."""
    return "".join(traceback.format_exception(error))


@pytest.mark.parametrize(("changes", "expected"), [
    ({"bot_token": "xoxb-revoked"}, "Slack rejected the bot token (invalid_auth)"),
    ({"app_token": "xapp-wrong"}, "Slack rejected the app token (invalid_auth)"),
])
async def test_bad_token_is_one_clear_error(slack_emulator: SlackEmulator,
                                            changes: dict[str, str], expected: str) -> None:
    """R9.1, R11.1: a bad token stops start-up with one clear message that names it, with no
    chained library traceback and no secret in it."""
    bridge = SlackBridge(slack_config(slack_emulator, **changes), MemoryKV())
    with pytest.raises(SlackStartError) as caught:
        await bridge.start(Sink())
    assert str(caught.value).startswith(expected)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    assert "SlackApiError" not in shown(caught.value)
    assert "xoxb-revoked" not in str(caught.value) and "xapp-wrong" not in str(caught.value)
    assert slack_emulator.connections == 0
    await bridge.stop()


async def test_unreachable_api_is_one_clear_error(slack_emulator: SlackEmulator) -> None:
    """R9.1: a wrong api_url fails start-up naming the URL."""
    url = slack_emulator.api_url.replace(str(slack_emulator.port), "1")
    bridge = SlackBridge(slack_config(slack_emulator, api_url=url), MemoryKV())
    with pytest.raises(SlackStartError) as caught:
        await bridge.start(Sink())
    assert str(caught.value).startswith(f"cannot reach the Slack API at {url}: ")


async def test_stop_is_idempotent(slack_emulator: SlackEmulator) -> None:
    """R4.9: stopping twice is harmless, and the socket is closed after the first."""
    bridge = SlackBridge(slack_config(slack_emulator), MemoryKV(), ping_interval_s=0.5)
    await bridge.start(Sink())
    assert slack_emulator.connections == 1
    await bridge.stop()
    await slack_emulator.wait_until(lambda: slack_emulator.connections == 0)
    await bridge.stop()


# --- rooms ----------------------------------------------------------------------------------


async def test_resolve_room_by_id_and_by_name(slack_emulator: SlackEmulator,
                                              start_bridge: StartBridge) -> None:
    """R1.2: ids are checked, `#name` is found (across conversations.list pages)."""
    bridge, _ = await start_bridge()
    for i in range(250):
        slack_emulator.add_channel(f"C1{i:04d}", f"team-{i}")
    assert await bridge.resolve_room("C0GENERAL") == "C0GENERAL"
    assert await bridge.resolve_room("D0ALICE") == "D0ALICE"
    assert await bridge.resolve_room("#webui") == "C0WEBUI"
    assert await bridge.resolve_room("#team-249") == "C10249"


@pytest.mark.parametrize(("ref", "says"), [
    ("#no-such-room", "was not found"),
    ("C0MISSING", "cannot be found (channel_not_found)"),
    ("C0OUTSIDE", "the bot is not a member"),
    ("webui", "neither a channel id"),
])
async def test_unresolvable_room_names_it(slack_emulator: SlackEmulator,
                                          start_bridge: StartBridge, ref: str, says: str) -> None:
    """R1.2: an unresolvable room is a clear error naming the reference."""
    bridge, _ = await start_bridge()
    slack_emulator.add_channel("C0OUTSIDE", "outside", bot_is_member=False)
    with pytest.raises(RoomUnresolvable) as caught:
        await bridge.resolve_room(ref)
    assert f"Slack channel {ref} " in str(caught.value) and says in str(caught.value)


async def test_r9_1_start_up_429s_are_waited_out_and_channels_remembered(
        slack_emulator: SlackEmulator) -> None:
    """R9.1: 429s (with `Retry-After`) on `conversations.info` and `conversations.list` while
    resolving rooms are waited out and the rooms resolve (they used to be unresolvable, so
    `crewbridge run` exited 2); a restart with the same store asks Slack nothing again."""
    kv = MemoryKV()
    slack_emulator.fail_next("conversations.info", 2, retry_after=1)
    slack_emulator.fail_next("conversations.list", 1, retry_after=1)
    for _restart in range(2):
        bridge = SlackBridge(slack_config(slack_emulator), kv, ping_interval_s=0.5,
                             connect_timeout_s=TIMEOUT)
        await bridge.start(Sink())
        try:
            assert await bridge.resolve_room("C0GENERAL") == "C0GENERAL"
            assert await bridge.resolve_room("#webui") == "C0WEBUI"
        finally:
            await bridge.stop()
        assert len(slack_emulator.calls("conversations.info")) == 3
        assert len(slack_emulator.calls("conversations.list")) == 2
