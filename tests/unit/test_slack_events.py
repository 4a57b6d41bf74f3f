"""Slack translation, row by row (R1.2, R1.5, R1.6, R2.2, R5.5, R5.7, R6.3, R8.1, R8.3, R9.1,
R12): event payloads → the core's records, Web API errors → `SendError`, post parts, who
a post speaks for and where, and the metadata that recognises them. No emulator: the
payloads are the dicts bolt hands over."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from crewbridge.bridges.base import (
    AuthorRole,
    Inbound,
    Post,
    RateLimited,
    RoomJoined,
    RoomUnresolvable,
    SendError,
    ThreadRef,
)
from crewbridge.bridges.slack_events import (
    DEFAULT_RETRY_AFTER_S,
    ROLE_ICONS,
    SLACK_TEXT_LIMIT,
    USERNAME_LIMIT,
    WANTED_SCOPES,
    SocketSignal,
    answered_since,
    channel_id,
    display_name,
    is_person_message,
    missing_scopes,
    names_wanted,
    parse_progress,
    part_metadata,
    part_name,
    post_fields,
    post_texts,
    posted_parts,
    progress_value,
    rate_limit,
    refusal,
    room_joined,
    silent_s,
    slack_to_plain,
    socket_signal,
    to_inbound,
)
from tests.platform.slack.emulator import BOT_SCOPES

BOT = "UBOT0001"


def event(text: str = "hello", **fields: Any) -> dict[str, Any]:
    return {"type": "message", "channel": "C0WEBUI", "user": "U0ALICE", "text": text,
            "ts": "1700000000.000100", **fields}


@pytest.mark.parametrize(("name", "payload", "person"), [
    ("a person writing", event(), True),
    ("a file shared with a comment", event(subtype="file_share"), True),
    ("a thread reply sent to the channel too", event(subtype="thread_broadcast"), True),
    ("a /me message", event(subtype="me_message"), True),
    ("the bot itself (R5.5)", event(user=BOT), False),
    ("another bot (R5.5)", event(bot_id="B0OTHER"), False),
    ("a bot or integration post", event(subtype="bot_message"), False),
    ("an edit", event(subtype="message_changed"), False),
    ("a deletion", event(subtype="message_deleted"), False),
    ("a join notice", event(subtype="channel_join"), False),
    ("no user at all", event(user=None), False),
])
def test_r5_5_only_a_person_writing_is_input(name: str, payload: dict[str, Any],
                                             person: bool) -> None:
    assert is_person_message(payload, BOT) is person, name


@pytest.mark.parametrize(("raw", "plain"), [
    ("<@UBOT0001> hello", "hello"),
    ("<@UBOT0001|crewbridge>: @alice, look", "@alice, look"),
    ("ask <@U0BOB> and <@U0ZED|zed>", "ask @bob and @zed"),
    ("see <#C0WEBUI|webui> and <#C0GENERAL>", "see #webui and #C0GENERAL"),
    ("<!here> deploy <https://x.org/a|the page> <https://x.org/b>",
     "@here deploy the page (https://x.org/a) https://x.org/b"),
    ("a &lt; b &amp;&amp; c &gt; d", "a < b && c > d"),
])
def test_r2_2_slack_markup_becomes_plain_text(raw: str, plain: str) -> None:
    """R2.2: routing sees names, not Slack ids or markup."""
    assert slack_to_plain(raw, {"U0BOB": "bob"}, BOT) == plain


def test_r2_2_the_names_looked_up_are_the_sender_and_those_mentioned_but_not_the_bot() -> None:
    payload = event("<@UBOT0001> ask <@U0BOB>, <@U0ALICE> and <@U0BOB|bob>")
    assert names_wanted(payload, BOT) == ["U0ALICE", "U0BOB"]


NAMES = {"U0ALICE": "Alice", "U0BOB": "bob"}


TS = "1700000000.000100"


@pytest.mark.parametrize(("name", "body", "payload", "expected"), [
    ("a channel message (R9.1); its ts names it as a thread root (R12)", {"event_id": "Ev1"},
     event("hi <@U0BOB>"),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hi @bob", "Ev1", 1700000000.0001,
             ref=TS)),
    ("without an envelope id the ts identifies it (R8.1), and is no other ref", {}, event(),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hello", TS, 1700000000.0001)),
    ("an IM is a direct room (R1.6)", {"event_id": "Ev2"}, event(channel_type="im"),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hello", "Ev2", 1700000000.0001,
             is_direct=True, ref=TS)),
    ("a reply in a thread names the thread (R12.2)", {"event_id": "Ev3"},
     event(thread_ts="1699999999.000001"),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hello", "Ev3", 1700000000.0001,
             thread="1699999999.000001", ref=TS)),
    ("a reply also sent to the channel is a reply in the thread (R12.2)", {"event_id": "Ev6"},
     event(thread_ts="1699999999.000001", subtype="thread_broadcast"),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hello", "Ev6", 1700000000.0001,
             thread="1699999999.000001", ref=TS)),
    ("a thread's first message is not in a thread", {"event_id": "Ev4"},
     event(thread_ts=TS),
     Inbound("slack", "C0WEBUI", "U0ALICE", "Alice", "hello", "Ev4", 1700000000.0001,
             ref=TS)),
    ("only the bot's mention: nothing to say", {"event_id": "Ev5"}, event("<@UBOT0001>"),
     None),
])
def test_r9_1_a_persons_message_becomes_one_inbound(name: str, body: dict[str, Any],
                                                    payload: dict[str, Any],
                                                    expected: Inbound | None) -> None:
    assert to_inbound(body, payload, NAMES, BOT) == expected, name


@pytest.mark.parametrize(("raw", "text"), [
    ('"half a pair \\ud800 here"', "half a pair \ufffd here"),
    ('"nul\\u0000byte"', "nulbyte"),
    ('"\\udfff<@U0BOB>"', "\ufffd@bob"),
    ('"\\u0000 \\u0000"', None),
])
def test_r5_8_text_that_is_not_unicode_is_cleaned_not_lost(raw: str, text: str | None) -> None:
    """R5.8: Slack's JSON may carry a lone surrogate or a NUL; the Inbound's text is valid
    Unicode (it can be stored), and only a message of NULs alone is nothing."""
    inbound = to_inbound({"event_id": "Ev9"}, event(json.loads(raw)), NAMES, BOT)
    assert (inbound.text if inbound else None) == text
    if inbound is not None:
        inbound.text.encode("utf-8")


def test_r9_1_a_sender_whose_name_is_unknown_is_named_by_id() -> None:
    inbound = to_inbound({}, event(), {}, BOT)
    assert inbound is not None and inbound.sender_name == "U0ALICE"


@pytest.mark.parametrize(("payload", "joined"), [
    ({"user": BOT, "channel": "C0NEW", "inviter": "U0ALICE"},
     RoomJoined("slack", "C0NEW", inviter="U0ALICE")),
    ({"user": BOT, "channel": "C0NEW"}, RoomJoined("slack", "C0NEW")),
    ({"user": "U0BOB", "channel": "C0NEW", "inviter": "U0ALICE"}, None),
])
def test_r1_5_the_bot_added_to_a_channel_is_room_joined(payload: dict[str, Any],
                                                       joined: RoomJoined | None) -> None:
    assert room_joined(payload, BOT) == joined


@pytest.mark.parametrize(("data", "signal"), [
    ('{"type": "hello", "num_connections": 1}', SocketSignal.HELLO),
    ('{"type": "disconnect", "reason": "refresh_requested"}', SocketSignal.DISCONNECT),
    ('{"type": "events_api", "envelope_id": "1"}', None),
    ("[1, 2]", None),
    ("not json", None),
    (None, None),
])
def test_r6_3_socket_messages_that_speak_of_the_link(data: Any,
                                                    signal: SocketSignal | None) -> None:
    assert socket_signal(data) is signal


@pytest.mark.parametrize(("name", "baseline", "last_pong", "answered"), [
    ("a later ping was answered", 100.0, 110.0, True),
    ("nothing answered since hello", 100.0, 100.0, False),
    ("no baseline yet: the SDK may have set the value itself", None, 110.0, False),
    ("the SDK forgot its pongs (a stale socket)", 100.0, None, False),
])
def test_r6_3_a_socket_is_up_once_a_ping_on_it_was_answered(
        name: str, baseline: float | None, last_pong: float | None, answered: bool) -> None:
    assert answered_since(baseline, last_pong) is answered, name


@pytest.mark.parametrize(("last_pong", "now", "silent"), [
    (100.0, 130.0, 30.0), (None, 130.0, 0.0), (131.0, 130.0, 0.0)])
def test_r6_3_a_lost_socket_was_silent_since_its_last_pong(
        last_pong: float | None, now: float, silent: float) -> None:
    assert silent_s(last_pong, now) == silent


def api_error(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="chat.postMessage",
                             req_args={}, data={"ok": False, "error": error},
                             headers=headers or {}, status_code=status)
    return SlackApiError(error, response)


@pytest.mark.parametrize(("name", "error", "retry_after", "permanent"), [
    ("a 429 waits Retry-After (R8.3)", api_error(429, "ratelimited", {"Retry-After": "3"}),
     3.0, False),
    ("a 429 without Retry-After waits a second", api_error(429, "ratelimited"),
     DEFAULT_RETRY_AFTER_S, False),
    ("a 429 with an unreadable Retry-After too",
     api_error(429, "ratelimited", {"Retry-After": "later"}), DEFAULT_RETRY_AFTER_S, False),
    ("a channel that is gone is given up", api_error(200, "channel_not_found"), None, True),
    ("a revoked token is given up", api_error(200, "token_revoked"), None, True),
    ("a text too long is given up", api_error(200, "msg_too_long"), None, True),
    ("a Slack fault is retried", api_error(500, "internal_error"), None, False),
    ("an unknown error is retried", api_error(200, "fatal_error"), None, False),
])
def test_r8_3_a_refused_post_is_a_value_the_outbox_acts_on(
        name: str, error: SlackApiError, retry_after: float | None, permanent: bool) -> None:
    failure = refusal("the post to C0WEBUI", error)
    assert isinstance(failure, SendError)
    assert isinstance(failure, RateLimited) is (retry_after is not None), name
    assert failure.retry_after_s == retry_after, name
    assert failure.permanent is permanent, name
    assert "C0WEBUI" in str(failure)


def test_r8_3_only_a_429_is_a_rate_limit_when_reading_history() -> None:
    assert rate_limit(api_error(200, "missing_scope"), "reading C0WEBUI") is None
    limited = rate_limit(api_error(429, "ratelimited", {"Retry-After": "2"}), "reading C0WEBUI")
    assert isinstance(limited, RateLimited) and limited.retry_after_s == 2.0


def test_r8_3_parts_posted_are_recognised_by_their_metadata() -> None:
    """R8.3: each with its ts, which `send` returns for a part found already posted (R12)."""
    messages = [
        {"text": "part one", "ts": "1.1", "metadata": part_metadata(part_name("post-1", 0))},
        {"text": "someone else", "ts": "1.2",
         "metadata": {"event_type": "other_app", "event_payload": {"part": "post-1.1"}}},
        {"text": "a person", "ts": "1.3"},
        {"text": "part three", "ts": "1.4", "metadata": part_metadata(part_name("post-1", 2))},
    ]
    assert posted_parts(messages) == {"post-1.0": "1.1", "post-1.2": "1.4"}


@pytest.mark.parametrize(("name", "post", "fields"), [
    ("a lead's answer in a thread (R5.7, R12.1)",
     Post("## Plan", "webui", AuthorRole.LEAD, ThreadRef("1700000000.000100", 3)),
     {"username": "webui", "icon_emoji": ":compass:", "thread_ts": "1700000000.000100"}),
    ("a worker at the top level", Post("done", "carol", AuthorRole.WORKER),
     {"username": "carol", "icon_emoji": ":hammer_and_wrench:"}),
    ("a fork", Post("x", "webui/2", AuthorRole.FORK),
     {"username": "webui/2", "icon_emoji": ":thread:"}),
    ("a person relayed from Matrix", Post("hi", "alice (matrix)", AuthorRole.PERSON),
     {"username": "alice (matrix)", "icon_emoji": ":bust_in_silhouette:"}),
    ("the bot's notice", Post("hello", "crewbridge"),
     {"username": "crewbridge", "icon_emoji": ":robot_face:"}),
    ("no author: the app itself", Post("hello"), {}),
    ("a thread never shown in this room: the top level", Post("x", thread=ThreadRef(None, 4)),
     {}),
    ("a name longer than Slack shows is cut", Post("x", "n" * 100),
     {"username": "n" * USERNAME_LIMIT, "icon_emoji": ":robot_face:"}),
])
def test_r5_7_r12_1_a_post_says_who_speaks_and_where(name: str, post: Post,
                                                     fields: dict[str, str]) -> None:
    assert post_fields(post) == fields, name


def test_r5_7_every_role_has_an_icon() -> None:
    assert set(ROLE_ICONS) == set(AuthorRole)
    assert all(re.fullmatch(r":[a-z_]+:", icon) for icon in ROLE_ICONS.values())


@pytest.mark.parametrize(("parts_done", "first_ts"), [(1, "1700000000.000100"), (3, None)])
def test_r8_3_r12_a_split_posts_progress_keeps_its_first_ts(parts_done: int,
                                                            first_ts: str | None) -> None:
    assert parse_progress(progress_value(parts_done, first_ts)) == (parts_done, first_ts)


def test_r8_3_no_progress_kept_is_nothing_done() -> None:
    assert parse_progress(None) == (0, None)
    assert parse_progress("2") == (2, None)


@pytest.mark.parametrize(("text", "parts"), [
    ("**hi** <there>", ["*hi* &lt;there&gt;"]),
    ("", []),
])
def test_r5_6_post_texts_are_mrkdwn(text: str, parts: list[str]) -> None:
    assert post_texts(text) == parts


def test_r5_2_a_long_post_is_split_below_the_limit() -> None:
    texts = post_texts("\n\n".join("word " * 500 for _ in range(5)))
    assert len(texts) > 1
    assert all(len(text) <= SLACK_TEXT_LIMIT for text in texts)


@pytest.mark.parametrize(("channel", "outcome"), [
    ({"id": "C0WEBUI", "is_member": True}, "C0WEBUI"),
    ({"id": "D0ALICE", "is_im": True}, "D0ALICE"),  # an IM has no membership to check
    ({"id": "C0OUTSIDE", "is_member": False}, "the bot is not a member"),
    (None, "was not found"),
])
def test_r1_2_a_channel_is_usable_only_as_a_member(channel: dict[str, Any] | None,
                                                   outcome: str) -> None:
    if outcome.startswith(("C0", "D0")):
        assert channel_id("#ref", channel) == outcome
    else:
        with pytest.raises(RoomUnresolvable, match=outcome):
            channel_id("#ref", channel)


@pytest.mark.parametrize(("user", "name"), [
    ({"profile": {"display_name": "ally", "real_name": "Alice A"}, "name": "alice"}, "ally"),
    ({"profile": {"display_name": "", "real_name": "Alice A"}, "name": "alice"}, "Alice A"),
    ({"real_name": "Alice B", "name": "alice"}, "Alice B"),
    ({"name": "alice"}, "alice"),
    ({}, "U0ALICE"),
])
def test_r9_1_a_persons_name_is_the_most_specific_slack_has(user: dict[str, Any],
                                                            name: str) -> None:
    assert display_name(user, "U0ALICE") == name


@pytest.mark.parametrize(("granted", "missing"), [
    ("chat:write,chat:write.customize,reactions:write,users:read", []),
    ("chat:write, reactions:write, users:read", ["chat:write.customize"]),
    ("chat:write,chat:write.customize", ["reactions:write"]),
    ("chat:write", ["chat:write.customize", "reactions:write"]),
    (None, []),  # Slack did not say
])
def test_r5_7_r13_7_a_token_without_a_wanted_scope_is_noticed(granted: str | None,
                                                             missing: list[str]) -> None:
    """R5.7: without `chat:write.customize` Slack ignores `username`; R13.7: without
    `reactions:write` the bot cannot react to people's messages; start-up says so."""
    assert missing_scopes(granted) == missing


def test_r5_7_r13_1_the_manifest_asks_for_every_scope_the_emulated_token_has() -> None:
    """R5.7, R13.1, R13.7, R9.1: `config/slack-manifest.yaml` asks for every scope start-up
    checks for (`chat:write.customize`, `reactions:write`) and turns interactivity on (the
    cards' buttons), and the emulator's bot token has exactly the manifest's scopes, so the
    tests run as installed."""
    manifest = (Path(__file__).resolve().parents[2] / "config" / "slack-manifest.yaml")
    text = manifest.read_text(encoding="utf-8")
    bot = text.split("    bot:\n", 1)[1].split("settings:", 1)[0]
    scopes = re.findall(r"^ {6}- ([a-z_.:]+)", bot, flags=re.MULTILINE)
    assert set(WANTED_SCOPES) <= set(scopes)
    assert sorted(scopes) == sorted(BOT_SCOPES)
    assert re.search(r"^  interactivity:\n    is_enabled: true\b", text, flags=re.MULTILINE)
