"""The real `SlackBridge`'s cards against the local Slack emulator (R13.1, R13.2, R13.3,
R13.6, R13.7): posts with buttons, their edits under Tier 3, deletions, reactions, private
notices, and the clicks that come back, over Socket Mode and HTTP.

As in `test_slack_bridge.py`, "nothing reached the sink" is proven by order: a marker sent
after the event under test is awaited, and the bridge hands events to the sink in order.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest

from crewbridge.bot.clock import FakeClock
from crewbridge.bridges.base import (
    Acted,
    AuthorRole,
    Inbound,
    Post,
    RateLimited,
    SendError,
    ThreadRef,
)
from crewbridge.bridges.render import to_slack_mrkdwn
from crewbridge.bridges.slack import EDIT_BURST, SlackBridge
from crewbridge.bridges.slack_cards import ELLIPSIS, SECTION_TEXT_LIMIT
from tests.platform.slack.bridge_support import Sink, StartBridge
from tests.platform.slack.emulator import SlackEmulator, Via
from tests.support.cards import ALLOW, ALWAYS, DENY

CARD = Post("🔐 **lead** wants to run `Bash`: `npm test`", "lead", AuthorRole.LEAD,
            buttons=(ALLOW, DENY, ALWAYS))


def actions(blocks: list[dict[str, Any]]) -> list[tuple[str, str, str, str | None]]:
    """The buttons of a message's blocks: (action_id, value, label, style)."""
    return [(e["action_id"], e["value"], e["text"]["text"], e.get("style"))
            for b in blocks if b["type"] == "actions" for e in b["elements"]]


def sections(blocks: list[dict[str, Any]]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b["type"] == "section"]


# --- posts with buttons and their edits -------------------------------------------------


async def test_r13_1_a_post_with_buttons_is_a_card_the_core_can_edit(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.1, R13.3: a card is the rendered text as a section with one button per choice
    (its action as `action_id` and `value`, its label, its style), the same text as the
    fallback, under the author's name; `send` returns the ts an edit then changes."""
    bridge, _ = await start_bridge()
    ts = await bridge.send("C0GENERAL", CARD, key="card-1")
    assert ts is not None
    post = slack_emulator.post("C0GENERAL", ts)
    rendered = to_slack_mrkdwn(CARD.text)
    assert post.text == rendered and sections(post.blocks) == [rendered]
    assert actions(post.blocks) == [("allow", "allow", "Allow", "primary"),
                                    ("deny", "deny", "Deny", "danger"),
                                    ("always", "always", "Always allow", None)]
    assert (post.username, post.icon_emoji) == ("lead", ":compass:")
    await bridge.edit("C0GENERAL", ts, Post("✅ allowed by **alice**", "lead", AuthorRole.LEAD))
    assert post.text == "✅ allowed by *alice*" and slack_emulator.posts("C0GENERAL") == [post]


async def test_r13_1_a_long_card_carries_its_buttons_on_its_last_part(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.1, R5.2: a card longer than one section is split (each part within Block Kit's
    3,000 characters); only the last part has the buttons, and `send` returns its ts, the
    message the core edits; the parts before it are plain messages."""
    slack_emulator.post_burst = 100  # the parts go out back to back; the outbox paces posts
    bridge, _ = await start_bridge()
    text = "\n\n".join(f"paragraph {i} " + "word " * 60 for i in range(30))
    ts = await bridge.send("C0GENERAL", Post(text, buttons=(ALLOW, DENY)), key="card-2")
    posts = slack_emulator.posts("C0GENERAL")
    assert len(posts) >= 3 and ts == posts[-1].ts
    assert [bool(p.blocks) for p in posts] == [False] * (len(posts) - 1) + [True]
    assert actions(posts[-1].blocks)[0][0] == "allow"
    assert all(len(p.text) <= SECTION_TEXT_LIMIT for p in posts)
    assert sections(posts[-1].blocks) == [posts[-1].text]


async def test_r13_3_an_edit_changes_the_text_and_can_take_the_buttons_away(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.3: an edit with buttons keeps a card a card (new buttons, new text); one without
    leaves only the outcome's text; each is a `chat.update` of the same message."""
    bridge, _ = await start_bridge()
    ts = await bridge.send("C0GENERAL", CARD, key="card-3")
    assert ts is not None
    await bridge.edit("C0GENERAL", ts, Post("🔐 still waiting", buttons=(ALLOW, DENY)))
    post = slack_emulator.post("C0GENERAL", ts)
    assert post.text == "🔐 still waiting" and [a[0] for a in actions(post.blocks)] == [
        "allow", "deny"]
    await bridge.edit("C0GENERAL", ts, Post("❌ denied by bob: _not now_"))
    assert post.text == "❌ denied by bob: _not now_"
    assert [b["type"] for b in post.blocks] == ["section"] and actions(post.blocks) == []
    assert [c.params["ts"] for c in slack_emulator.calls("chat.update")] == [ts, ts]


async def test_r13_7_an_edit_too_long_for_one_message_is_cut(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.7: an edit is one message: a long text is cut, with an ellipsis, never split."""
    bridge, _ = await start_bridge()
    ts = await bridge.send("C0GENERAL", Post("⏳ working"), key="status-1")
    assert ts is not None
    await bridge.edit("C0GENERAL", ts, Post("⏳ " + "tool output " * 1000))
    post = slack_emulator.post("C0GENERAL", ts)
    assert post.text.endswith(ELLIPSIS) and len(post.text) <= SECTION_TEXT_LIMIT
    assert sections(post.blocks) == [post.text] and len(slack_emulator.posts("C0GENERAL")) == 1


@pytest.mark.parametrize(("target", "fault", "rate_limited", "permanent"), [
    ("gone", None, False, True),  # message_not_found
    ("person", None, False, True),  # cant_update_message
    ("card", 429, True, False),  # Slack's own Tier 3 said no: Retry-After
    ("card", 500, False, False),  # a Slack fault: retried
])
async def test_r13_3_a_refused_edit_raises_like_a_refused_post(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, target: str,
        fault: int | None, rate_limited: bool, permanent: bool) -> None:
    bridge, _ = await start_bridge()
    card = await bridge.send("C0GENERAL", CARD, key="card-4")
    gone = await bridge.send("C0GENERAL", Post("⏳"), key="status-2")
    assert card is not None and gone is not None
    await bridge.delete("C0GENERAL", gone)
    said = slack_emulator.add_message("U0ALICE", "C0GENERAL", "hello")["event"]["ts"]
    if fault is not None:
        slack_emulator.fail_next("chat.update", status=fault, error="internal_error"
                                 if fault == 500 else "ratelimited")
    ts = {"gone": gone, "person": said, "card": card}[target]
    with pytest.raises(SendError) as refused:
        await bridge.edit("C0GENERAL", ts, Post("✅ allowed"))
    assert isinstance(refused.value, RateLimited) is rate_limited
    assert refused.value.permanent is permanent
    if rate_limited:
        assert refused.value.retry_after_s == 3
    assert sections(slack_emulator.post("C0GENERAL", card).blocks)[0].startswith("🔐")


async def test_r13_7_edits_beyond_tier_3_are_refused_without_calling_slack(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.7: the bridge keeps Slack's Tier 3 allowance for `chat.update` itself, across
    rooms: after a burst of `EDIT_BURST`, 50 edits a minute; the 51st of the minute (and
    every edit between two tokens) is `RateLimited` with the wait for the next token, and
    never reaches Slack — the emulator counts exactly the edits allowed."""
    clock = FakeClock()
    slack_emulator.update_burst = 1000  # the emulator's own bucket runs on real time
    bridge, _ = await start_bridge(clock=clock.now)
    assert SlackBridge.edits_per_minute == bridge.edits_per_minute == 50
    rooms = ["C0GENERAL", "C0WEBUI"]
    refs = [await bridge.send(room, Post("⏳"), key=f"s-{room}") for room in rooms]

    async def edit(i: int) -> float:
        try:
            await bridge.edit(rooms[i % 2], refs[i % 2] or "", Post(f"⏳ step {i}"))
        except RateLimited as e:
            return e.retry_after_s or 0.0
        return 0.0

    burst = [await edit(i) for i in range(EDIT_BURST + 1)]
    assert burst[:-1] == [0.0] * EDIT_BURST and burst[-1] == pytest.approx(1.2)
    assert len(slack_emulator.calls("chat.update")) == EDIT_BURST
    allowed = 0
    for tick in range(1, 601):  # a minute, asked ten times a second
        await clock.advance(0.1)
        wait = await edit(tick)
        allowed += wait == 0.0
        assert wait <= 1.2 + 1e-6
    assert allowed == 50
    assert len(slack_emulator.calls("chat.update")) == EDIT_BURST + 50
    assert slack_emulator.updates_rate_limited == 0


# --- deletions, reactions, private notices ----------------------------------------------


async def test_r13_7_delete_takes_a_status_away_and_a_post_gone_already_is_no_error(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    bridge, _ = await start_bridge()
    ts = await bridge.send("C0GENERAL", Post("⏳ working"), key="status-3")
    assert ts is not None
    await bridge.delete("C0GENERAL", ts)
    assert slack_emulator.post("C0GENERAL", ts).deleted
    await bridge.delete("C0GENERAL", ts)  # message_not_found: what was wanted is so
    await bridge.delete("C0GENERAL", "1.000001")
    said = slack_emulator.add_message("U0ALICE", "C0GENERAL", "mine")["event"]["ts"]
    with pytest.raises(SendError) as refused:
        await bridge.delete("C0GENERAL", said)
    assert refused.value.permanent and "cant_delete_message" in str(refused.value)
    assert len(slack_emulator.calls("chat.delete")) == 4


async def test_r13_7_reactions_on_a_persons_message_on_and_off_idempotently(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.7: 👀 when an agent starts, ⏸️ while it waits, ✅ when answered, by their Slack
    names; adding one that is there or taking back one that is not is no error."""
    bridge, sink = await start_bridge()
    ts = slack_emulator.add_message("U0ALICE", "C0GENERAL", "@lead fix it")["event"]["ts"]
    await bridge.react("C0GENERAL", ts, "👀", True)
    await bridge.react("C0GENERAL", ts, "👀", True)  # already_reacted
    await bridge.react("C0GENERAL", ts, "⏸️", True)
    assert slack_emulator.reactions("C0GENERAL", ts) == ["eyes", "double_vertical_bar"]
    await bridge.react("C0GENERAL", ts, "⏸", False)  # without U+FE0F: the same one
    await bridge.react("C0GENERAL", ts, "👀", False)
    await bridge.react("C0GENERAL", ts, "👀", False)  # no_reaction
    await bridge.react("C0GENERAL", ts, "✅", True)
    assert slack_emulator.reactions("C0GENERAL", ts) == ["white_check_mark"]
    assert [c.params["name"] for c in slack_emulator.calls("reactions.add")] == [
        "eyes", "eyes", "double_vertical_bar", "white_check_mark"]
    await slack_emulator.post_as("U0ALICE", "C0GENERAL", "marker")  # the echoes were dropped
    await sink.wait_inbound("marker")
    assert [type(e) for e in sink.events] == [Inbound]


async def test_r13_7_a_reaction_slack_cannot_make_is_a_permanent_error(
        slack_emulator: SlackEmulator, start_bridge: StartBridge) -> None:
    """R13.7: an emoji with no Slack name is refused without a call; a token without
    `reactions:write` (an older manifest) is a permanent error naming the scope."""
    bridge, _ = await start_bridge()
    ts = slack_emulator.add_message("U0ALICE", "C0GENERAL", "hi")["event"]["ts"]
    with pytest.raises(SendError) as unnamed:
        await bridge.react("C0GENERAL", ts, "🦜", True)
    assert unnamed.value.permanent and slack_emulator.calls("reactions.add") == []
    slack_emulator.scopes.remove("reactions:write")
    with pytest.raises(SendError) as unscoped:
        await bridge.react("C0GENERAL", ts, "👀", True)
    assert unscoped.value.permanent and "missing_scope" in str(unscoped.value)


async def test_r13_2_tell_reaches_only_that_person_in_the_thread(
        slack_emulator: SlackEmulator, start_bridge: StartBridge,
        caplog: pytest.LogCaptureFixture) -> None:
    """R13.2: a refusal is shown to the person alone (`chat.postEphemeral`), in the card's
    thread; it is no post of the bot's. Best effort: a notice Slack refuses is logged and
    nothing is raised."""
    bridge, _ = await start_bridge()
    root = await bridge.send("C0GENERAL", Post("the question"), key="root-1")
    await bridge.tell("C0GENERAL", "U0BOB", "only **alice** may decide this",
                      ThreadRef(root, 1))
    (shown,) = slack_emulator.ephemeral("C0GENERAL", "U0BOB")
    assert shown.text == "only *alice* may decide this" and shown.thread_ts == root
    assert slack_emulator.ephemeral("C0GENERAL", "U0ALICE") == []
    assert [p.ts for p in slack_emulator.posts("C0GENERAL")] == [root]
    await bridge.tell("D0ALICE", "U0ALICE", "at the top", ThreadRef(None, 2))
    assert "thread_ts" not in slack_emulator.ephemeral("D0ALICE", "U0ALICE")[0].params
    with caplog.at_level(logging.WARNING, logger="crewbridge.bridges.slack_posts"):
        await bridge.tell("D0ALICE", "U0BOB", "not your IM", None)
    assert any("user_not_in_channel" in r.getMessage() for r in caplog.records)


async def test_r13_7_typing_is_nothing_on_slack(slack_emulator: SlackEmulator,
                                                start_bridge: StartBridge) -> None:
    """R13.7: Slack has no typing indicator for a bot; `typing` calls nothing."""
    bridge, _ = await start_bridge()
    before = len(slack_emulator.state.calls)
    await bridge.typing("C0GENERAL", True)
    await bridge.typing("C0GENERAL", False)
    assert len(slack_emulator.state.calls) == before


# --- clicks ------------------------------------------------------------------------------


@pytest.fixture(params=["socket", "http"])
async def clicked(request: pytest.FixtureRequest, slack_emulator: SlackEmulator,
                  start_bridge: StartBridge) -> tuple[Via, SlackBridge, Sink]:
    """A bridge in Socket Mode or HTTP mode (the emulator then posts to its endpoint)."""
    via: Via = request.param
    bridge, sink = await start_bridge(mode="http" if via == "http" else "socket")
    return via, bridge, sink


async def test_r13_1_a_click_reaches_the_sink_as_acted_in_order(
        slack_emulator: SlackEmulator, clicked: tuple[Via, SlackBridge, Sink]) -> None:
    """R13.1: Alice clicks Allow on a card: an `interactive` envelope over Socket Mode, or a
    signed form post over HTTP, acked at once, becomes `Acted` with the channel, the card's
    ts, her id and display name and the button's action, between the messages said before
    and after it."""
    via, bridge, sink = clicked
    ts = await bridge.send("C0GENERAL", CARD, key="card-5")
    assert ts is not None
    await slack_emulator.post_as("U0BOB", "C0GENERAL", "before")
    delivery = await slack_emulator.click("C0GENERAL", ts, "allow", "U0ALICE")
    await slack_emulator.post_as("U0BOB", "C0GENERAL", "after")
    await sink.wait_inbound("after")
    assert delivery.via == via
    if via == "socket":
        await slack_emulator.wait_ack(delivery.envelope_id or "")
    else:
        assert delivery.status == 200
    action_ts = delivery.payload["actions"][0]["action_ts"]
    assert [type(e) for e in sink.events] == [Inbound, Acted, Inbound]
    assert sink.events[1] == Acted(
        platform="slack", room="C0GENERAL", sender="U0ALICE", sender_name="alice", ref=ts,
        choice="allow", event_id=f"{ts}:{action_ts}:U0ALICE", ts=float(action_ts))


@pytest.mark.parametrize("signature", ["forged", "stale", "missing"])
async def test_r13_1_a_forged_click_over_http_is_refused(
        slack_emulator: SlackEmulator, start_bridge: StartBridge, signature: Any) -> None:
    """R13.1, R9.1: a click whose signature is forged, stale or missing is refused (401) as
    a forged event is, and nothing reaches the core."""
    bridge, sink = await start_bridge(mode="http")
    ts = await bridge.send("C0GENERAL", CARD, key="card-6")
    assert ts is not None
    delivery = await slack_emulator.click("C0GENERAL", ts, "allow", "U0BOB",
                                          signature=signature)
    assert delivery.status == 401
    await slack_emulator.post_as("U0ALICE", "C0GENERAL", "marker")
    await sink.wait_inbound("marker")
    assert [type(e) for e in sink.events] == [Inbound]


@pytest.mark.parametrize("via", ["socket", "http"])
async def test_r13_1_a_malformed_click_is_dropped_and_loses_nothing_else(
        slack_emulator: SlackEmulator, start_bridge: StartBridge,
        caplog: pytest.LogCaptureFixture, via: Via) -> None:
    """R13.1: a `block_actions` payload without actions, with a user that is a number (on
    which bolt's own dispatch raises), not on a message, or with an action without an id
    is acked (200), logged in one line and dropped; the click and the message after it
    still arrive, in order."""
    bridge, sink = await start_bridge(mode=via)
    ts = await bridge.send("C0GENERAL", CARD, key="card-7")
    assert ts is not None
    post = slack_emulator.post("C0GENERAL", ts)
    good = slack_emulator.block_actions(post, post.blocks[1]["block_id"],
                                        post.blocks[1]["elements"][1], "U0ALICE")
    bad = [{**good, "actions": []}, {**good, "actions": None}, {**good, "user": 5},
           {**good, "container": {"type": "view"}},
           {**good, "actions": [{"type": "button", "value": "deny"}]}]
    with caplog.at_level(logging.WARNING):
        for payload in bad:
            delivery = await slack_emulator.deliver(payload, kind="interactive")
            if via == "socket":
                await slack_emulator.wait_ack(delivery.envelope_id or "")
            else:
                assert delivery.status == 200
        await slack_emulator.deliver(good, kind="interactive")
        await slack_emulator.post_as("U0ALICE", "C0GENERAL", "marker")
        await sink.wait_inbound("marker")
    assert [(type(e), getattr(e, "choice", None)) for e in sink.events] == [
        (Acted, "deny"), (Inbound, None)]
    dropped = [r for r in caplog.records if "dropped an interactive payload" in r.getMessage()]
    assert len(dropped) == len(bad)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
