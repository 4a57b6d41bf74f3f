"""The emulator's cards, edits and reactions against the real slack_sdk `AsyncWebClient` and a
real slack-bolt `AsyncApp` (Socket Mode and HTTP mode): what issue 11's approval cards
(R13.1), Stop button and 🛑 (R13.6) and live status messages (R13.7) will be tested on, so
the emulator must answer them as Slack does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import WSMessage, web
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse as SlackResponse

from tests.platform.slack.bridge_support import TIMEOUT
from tests.platform.slack.emulator import Delivery, SlackEmulator, Via

CARD = [
    {"type": "section", "text": {"type": "mrkdwn", "text": "🔐 *lead* wants to run `Bash`"}},
    {"type": "actions", "block_id": "approval-1", "elements": [
        {"type": "button", "action_id": "allow", "value": "req-1", "style": "primary",
         "text": {"type": "plain_text", "text": "Allow"}},
        {"type": "button", "action_id": "deny", "value": "req-1", "style": "danger",
         "text": {"type": "plain_text", "text": "Deny"}},
    ]},
]
"""An approval card as issue 11 posts one (R13.1)."""


@pytest.fixture
async def client(slack_emulator: SlackEmulator) -> AsyncIterator[AsyncWebClient]:
    """The real Web API client, with the bot token (which has `reactions:write`)."""
    assert "reactions:write" in slack_emulator.scopes
    web_client = AsyncWebClient(token=slack_emulator.bot_token, base_url=slack_emulator.api_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


async def refused(call: Awaitable[Any]) -> SlackResponse:
    """The answer of a call Slack refused (an HTTP error or `ok: false`)."""
    with pytest.raises(SlackApiError) as failed:
        await call
    return failed.value.response


# --- the Web API -------------------------------------------------------------------------


async def test_r13_7_update_edits_a_post_in_place(slack_emulator: SlackEmulator,
                                                 client: AsyncWebClient) -> None:
    """R13.7, R13.1: `chat.update` edits the bot's post in place: the record and the channel's
    history show the latest text and blocks, the edits are kept in order, blocks left out are
    kept (as on Slack), and the app hears of it as a `message_changed`."""
    posted = await client.chat_postMessage(channel="C0GENERAL", text="🔐 approve?", blocks=CARD)
    ts = posted["ts"]
    await client.chat_update(channel="C0GENERAL", ts=ts, text="⏳ step 1")
    outcome = [{"type": "section", "text": {"type": "mrkdwn", "text": "✅ allowed by alice"}}]
    updated = await client.chat_update(channel="C0GENERAL", ts=ts, text="✅ allowed",
                                       blocks=outcome)

    post = slack_emulator.post("C0GENERAL", ts)
    assert updated["ts"] == ts and updated["message"]["text"] == "✅ allowed"
    assert post.text == "✅ allowed"
    assert [b["text"] for b in post.blocks] == [outcome[0]["text"]]
    assert [e["text"] for e in post.edits] == ["⏳ step 1", "✅ allowed"]
    assert "blocks" not in post.edits[0] and post.edits[1]["blocks"] == outcome
    assert len(slack_emulator.posts("C0GENERAL")) == 1
    history = await client.conversations_history(channel="C0GENERAL")
    (shown,) = history["messages"]
    assert shown["ts"] == ts and shown["text"] == "✅ allowed" and "edited" in shown
    assert shown["blocks"][0]["text"] == outcome[0]["text"]


async def test_r13_7_update_keeps_the_blocks_it_was_not_given(
        slack_emulator: SlackEmulator, client: AsyncWebClient) -> None:
    """R13.1: an edit of the text alone leaves the card's buttons in place, as Slack does;
    every block has a `block_id` (Slack assigns one where the app gave none)."""
    ts = (await client.chat_postMessage(channel="C0GENERAL", text="🔐", blocks=CARD))["ts"]
    await client.chat_update(channel="C0GENERAL", ts=ts, text="🔐 still waiting")
    blocks = slack_emulator.post("C0GENERAL", ts).blocks
    assert [b["type"] for b in blocks] == ["section", "actions"]
    assert blocks[1]["block_id"] == "approval-1" and blocks[0]["block_id"]


@pytest.mark.parametrize(("method", "target", "error"), [
    ("chat_update", "unknown", "message_not_found"),
    ("chat_update", "deleted", "message_not_found"),
    ("chat_update", "person", "cant_update_message"),
    ("chat_delete", "unknown", "message_not_found"),
    ("chat_delete", "deleted", "message_not_found"),
    ("chat_delete", "person", "cant_delete_message"),
])
async def test_r13_7_update_and_delete_refuse_what_is_not_a_live_bot_post(
        slack_emulator: SlackEmulator, client: AsyncWebClient, method: str, target: str,
        error: str) -> None:
    """R13.7: an edit or a deletion of a message that is gone, never was, or is a person's
    gets Slack's error (HTTP 200, `ok: false`), and changes nothing."""
    gone = (await client.chat_postMessage(channel="C0GENERAL", text="⏳"))["ts"]
    await client.chat_delete(channel="C0GENERAL", ts=gone)
    said = slack_emulator.add_message("U0ALICE", "C0GENERAL", "hello")["event"]["ts"]
    ts = {"unknown": "1.000001", "deleted": gone, "person": said}[target]
    answer = await refused(getattr(client, method)(channel="C0GENERAL", ts=ts, text="changed"))
    assert (answer.status_code, answer["error"]) == (200, error)
    assert [p.text for p in slack_emulator.posts("C0GENERAL")] == ["⏳"]
    assert slack_emulator.post("C0GENERAL", gone).deleted


async def test_r13_7_delete_takes_a_post_out_of_the_history(
        slack_emulator: SlackEmulator, client: AsyncWebClient) -> None:
    """R13.7: a status message removed at the end of a turn is marked deleted and is gone
    from the channel's history; the other posts stay."""
    status = (await client.chat_postMessage(channel="C0GENERAL", text="⏳ working"))["ts"]
    answer = (await client.chat_postMessage(channel="C0GENERAL", text="done"))["ts"]
    deleted = await client.chat_delete(channel="C0GENERAL", ts=status)
    assert deleted["ts"] == status
    assert [(p.ts, p.deleted) for p in slack_emulator.posts("C0GENERAL")] == [
        (status, True), (answer, False)]
    history = await client.conversations_history(channel="C0GENERAL")
    assert [m["ts"] for m in history["messages"]] == [answer]


async def test_r13_7_tier_3_limits_edits_across_the_workspace(
        slack_emulator: SlackEmulator, client: AsyncWebClient) -> None:
    """R13.7: edits share one Tier 3 allowance for the whole workspace, whatever the channel:
    beyond the burst `chat.update` answers 429 with `Retry-After`, carries nothing out, and
    the 429 is counted apart from the posts' limiter."""
    slack_emulator.updates_per_second, slack_emulator.update_burst = 1 / 60, 2
    first = (await client.chat_postMessage(channel="C0GENERAL", text="⏳ a"))["ts"]
    second = (await client.chat_postMessage(channel="C0WEBUI", text="⏳ b"))["ts"]
    await client.chat_update(channel="C0GENERAL", ts=first, text="⏳ a 1")
    await client.chat_update(channel="C0WEBUI", ts=second, text="⏳ b 1")
    answer = await refused(client.chat_update(channel="C0GENERAL", ts=first, text="⏳ a 2"))
    assert (answer.status_code, answer["error"]) == (429, "ratelimited")
    assert 1 <= int(answer.headers["Retry-After"]) <= 60
    assert slack_emulator.post("C0GENERAL", first).text == "⏳ a 1"
    assert (slack_emulator.updates_rate_limited, slack_emulator.rate_limited) == (1, 0)
    slack_emulator.refill_rate_limits()
    await client.chat_update(channel="C0GENERAL", ts=first, text="⏳ a 2")
    assert slack_emulator.post("C0GENERAL", first).text == "⏳ a 2"


async def test_r13_7_the_bot_reacts_to_a_persons_message(
        slack_emulator: SlackEmulator, client: AsyncWebClient) -> None:
    """R13.7: 👀 then ✅ on the person's message: reactions are kept per message and per
    reactor, in order, and a removed one is gone."""
    ts = slack_emulator.add_message("U0ALICE", "C0GENERAL", "@lead fix it")["event"]["ts"]
    await client.reactions_add(channel="C0GENERAL", timestamp=ts, name="eyes")
    await client.reactions_add(channel="C0GENERAL", timestamp=ts, name="white_check_mark")
    assert slack_emulator.reactions("C0GENERAL", ts) == ["eyes", "white_check_mark"]
    await client.reactions_remove(channel="C0GENERAL", timestamp=ts, name="eyes")
    assert slack_emulator.reactions("C0GENERAL", ts) == ["white_check_mark"]
    assert slack_emulator.reactions("C0GENERAL", ts, "U0ALICE") == []


@pytest.mark.parametrize(("method", "name", "target", "error"), [
    ("reactions_add", "eyes", "reacted", "already_reacted"),
    ("reactions_remove", "hourglass", "reacted", "no_reaction"),
    ("reactions_add", "eyes", "unknown", "message_not_found"),
    ("reactions_remove", "eyes", "unknown", "message_not_found"),
    ("reactions_add", "", "reacted", "invalid_name"),
])
async def test_r13_7_reactions_errors_are_slacks(
        slack_emulator: SlackEmulator, client: AsyncWebClient, method: str, name: str,
        target: str, error: str) -> None:
    """R13.7: a reaction the bot already has, one it does not have, or a message that does
    not exist: Slack's error, and the reactions stay as they were."""
    ts = (await client.chat_postMessage(channel="C0GENERAL", text="⏳"))["ts"]
    await client.reactions_add(channel="C0GENERAL", timestamp=ts, name="eyes")
    target_ts = {"reacted": ts, "unknown": "1.000001"}[target]
    answer = await refused(getattr(client, method)(channel="C0GENERAL", timestamp=target_ts,
                                                   name=name))
    assert (answer.status_code, answer["error"]) == (200, error)
    assert slack_emulator.reactions("C0GENERAL", ts) == ["eyes"]


async def test_r13_7_reactions_need_their_scope(slack_emulator: SlackEmulator,
                                               client: AsyncWebClient) -> None:
    """R13.7: without `reactions:write` (an app installed from an older manifest) Slack
    answers `missing_scope` and names the scope needed."""
    slack_emulator.scopes.remove("reactions:write")
    ts = (await client.chat_postMessage(channel="C0GENERAL", text="⏳"))["ts"]
    answer = await refused(client.reactions_add(channel="C0GENERAL", timestamp=ts, name="eyes"))
    assert (answer["error"], answer["needed"]) == ("missing_scope", "reactions:write")
    assert slack_emulator.reactions("C0GENERAL", ts) == []


async def test_r13_1_ephemeral_is_for_one_person_alone(slack_emulator: SlackEmulator,
                                                      client: AsyncWebClient) -> None:
    """R13.1 (R13.2's private refusal): `chat.postEphemeral` is kept per (channel, person),
    not among the bot's posts nor in the channel's history; an IM takes only its person."""
    answer = await client.chat_postEphemeral(channel="C0GENERAL", user="U0BOB",
                                             text="only alice may decide this", blocks=CARD[:1])
    (shown,) = slack_emulator.ephemeral("C0GENERAL", "U0BOB")
    assert shown.ts == answer["message_ts"] and shown.text == "only alice may decide this"
    assert shown.blocks[0]["text"] == CARD[0]["text"]
    assert slack_emulator.ephemeral("C0GENERAL", "U0ALICE") == []
    assert slack_emulator.posts("C0GENERAL") == []
    assert (await client.conversations_history(channel="C0GENERAL"))["messages"] == []
    wrong = await refused(client.chat_postEphemeral(channel="D0ALICE", user="U0BOB", text="x"))
    assert wrong["error"] == "user_not_in_channel"


# --- a real bolt app hearing clicks and reactions -----------------------------------------


class Heard:
    """What the bolt app's listeners received, to wait on."""

    def __init__(self) -> None:
        self.clicks: asyncio.Queue[tuple[dict[str, Any], AsyncBoltRequest]] = asyncio.Queue()
        self.reactions: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.envelopes: dict[str, dict[str, Any]] = {}
        """Socket Mode: every envelope as the app's websocket received it, by id."""

    async def on_socket_message(self, message: WSMessage) -> None:
        envelope = json.loads(message.data)
        self.envelopes[envelope.get("envelope_id", "")] = envelope


@pytest.fixture(params=["socket", "http"])
async def bolt(request: pytest.FixtureRequest, slack_emulator: SlackEmulator,
               client: AsyncWebClient) -> AsyncIterator[tuple[Via, Heard]]:
    """A real slack-bolt `AsyncApp` listening for `allow` clicks and `reaction_added`, over
    Socket Mode or its own aiohttp server (signatures checked by bolt) as the emulator's
    `events_url`."""
    via: Via = request.param
    app = AsyncApp(client=AsyncWebClient(token=slack_emulator.bot_token,
                                         base_url=slack_emulator.api_url),
                   signing_secret=slack_emulator.signing_secret)
    heard = Heard()

    @app.action("allow")
    async def on_allow(ack: Callable[[], Awaitable[None]], body: dict[str, Any],
                       request: AsyncBoltRequest, respond: AsyncRespond) -> None:
        await ack()
        heard.clicks.put_nowait((body, request))
        await respond(text="noted", replace_original=False)

    @app.event("reaction_added")
    async def on_reaction(event: dict[str, Any]) -> None:
        heard.reactions.put_nowait(event)

    if via == "socket":
        handler = AsyncSocketModeHandler(app, slack_emulator.app_token)
        handler.client.on_message_listeners.append(heard.on_socket_message)
        await handler.connect_async()
        await slack_emulator.wait_connected()
        yield via, heard
        await handler.close_async()
    else:
        runner = web.AppRunner(app.web_app(path="/slack/events"))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        slack_emulator.events_url = f"http://127.0.0.1:{runner.addresses[0][1]}/slack/events"
        yield via, heard
        await runner.cleanup()
    if app.client.session is not None:
        await app.client.session.close()


async def acked(emulator: SlackEmulator, delivery: Delivery) -> bool:
    """Whether the app acknowledged the delivery: its envelope ack, or a 200 over HTTP."""
    if delivery.via == "socket":
        await emulator.wait_ack(delivery.envelope_id or "")
        return True
    return delivery.status == 200


async def test_r13_1_bolt_hears_a_click_on_a_card(slack_emulator: SlackEmulator,
                                                 client: AsyncWebClient,
                                                 bolt: tuple[Via, Heard]) -> None:
    """R13.1: Alice clicks Allow on the bot's card: bolt's `app.action("allow")` gets the
    `block_actions` payload (an `interactive` envelope, or a signed form post) with the
    card's ts and the button's value, and acks it; what it sends to the `response_url` is
    recorded."""
    via, heard = bolt
    ts = (await client.chat_postMessage(channel="C0GENERAL", text="🔐", blocks=CARD))["ts"]
    delivery = await slack_emulator.click("C0GENERAL", ts, "allow", "U0ALICE")
    body, request = await asyncio.wait_for(heard.clicks.get(), TIMEOUT)
    assert delivery.via == via and await acked(slack_emulator, delivery)
    if via == "socket":  # bolt routes on the payload alone: the wire format is pinned here
        assert heard.envelopes[delivery.envelope_id or ""]["type"] == "interactive"
    else:
        assert request.headers["content-type"] == ["application/x-www-form-urlencoded"]
        assert request.raw_body.startswith("payload=")
    assert body["type"] == "block_actions" and body["user"]["id"] == "U0ALICE"
    assert body["container"] == {"type": "message", "message_ts": ts,
                                 "channel_id": "C0GENERAL", "is_ephemeral": False}
    assert body["message"]["ts"] == ts and body["channel"]["id"] == "C0GENERAL"
    await slack_emulator.wait_until(lambda: bool(slack_emulator.responses))
    assert slack_emulator.responses == [{"text": "noted", "replace_original": False}]
    (action,) = body["actions"]
    assert (action["action_id"], action["block_id"], action["value"], action["type"]) == (
        "allow", "approval-1", "req-1", "button")


async def test_r13_6_bolt_hears_a_persons_reaction(slack_emulator: SlackEmulator,
                                                  client: AsyncWebClient,
                                                  bolt: tuple[Via, Heard]) -> None:
    """R13.6: Bob puts 🛑 on the bot's status message: bolt's `app.event("reaction_added")`
    gets it, naming the message, its author and the reactor; the bot's own reaction comes
    back too (as on Slack), acked before Bob's was sent, and bolt drops it as the app's
    own: the first event the listener hears is Bob's."""
    _, heard = bolt
    ts = (await client.chat_postMessage(channel="C0GENERAL", text="⏳ working"))["ts"]
    await client.reactions_add(channel="C0GENERAL", timestamp=ts, name="eyes")
    await slack_emulator.wait_until(lambda: bool(slack_emulator.delivered("reaction_added")))
    (echo,) = slack_emulator.delivered("reaction_added")
    assert echo.payload["event"]["user"] == "UBOT0001" and await acked(slack_emulator, echo)
    delivery = await slack_emulator.react_as("U0BOB", "C0GENERAL", ts, "octagonal_sign")
    event = await asyncio.wait_for(heard.reactions.get(), TIMEOUT)  # the first one heard
    assert await acked(slack_emulator, delivery)
    assert (event["user"], event["reaction"], event["item_user"]) == (
        "U0BOB", "octagonal_sign", "UBOT0001")
    assert event["item"] == {"type": "message", "channel": "C0GENERAL", "ts": ts}
    assert slack_emulator.reactions("C0GENERAL", ts, "U0BOB") == ["octagonal_sign"]
    await slack_emulator.unreact_as("U0BOB", "C0GENERAL", ts, "octagonal_sign")
    assert slack_emulator.reactions("C0GENERAL", ts, "U0BOB") == []
