"""Matrix translation, row by row (R1.5, R1.6, R5.5, R8.2, R8.3, R9.2): sync events → the
core's records, nio error responses → `SendError`. No homeserver: the payloads are the dicts
and nio values a sync hands the bridge."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from nio import ErrorResponse, InviteMemberEvent, RoomSendError

from crewbridge.bridges.base import AuthorRole, Inbound, Post, RateLimited, SendError, ThreadRef
from crewbridge.bridges.matrix_events import (
    DEFAULT_RETRY_AFTER_S,
    HTML_FORMAT,
    Invite,
    Message,
    ThreadRefused,
    allowed_inviter,
    describe,
    localpart,
    post_contents,
    read_invite,
    read_message,
    send_failure,
    start_of_news,
    strip_reply_fallback,
)
from crewbridge.bridges.render import MATRIX_LIMIT_BYTES, to_matrix_html

BOT = "@crewbridge:example.org"
ALICE = "@alice:example.org"
NOW = 1_700_000_000.0


def message(body: Any = "hello", *, sender: str = ALICE, msgtype: str = "m.text",
            kind: str = "m.room.message", relates: dict | None = None,
            ts: int | None = 1_700_000_123_000) -> dict[str, Any]:
    content: dict[str, Any] = {"msgtype": msgtype, "body": body}
    if relates is not None:
        content["m.relates_to"] = relates
    source: dict[str, Any] = {"type": kind, "sender": sender, "event_id": "$e1",
                              "content": content}
    if ts is not None:
        source["origin_server_ts"] = ts
    return source


@pytest.mark.parametrize(("name", "source", "text"), [
    ("a person's m.text is input (R9.2)", message("hello"), "hello"),
    ("m.emote is input", message("waves", msgtype="m.emote"), "waves"),
    ("the bot's own message is not (R5.5)", message(sender=BOT), None),
    ("m.notice is never a prompt, whoever sent it (R5.5)", message(msgtype="m.notice"), None),
    ("media is not input", message("cat.png", msgtype="m.image"), None),
    ("a blank body is not input", message("  \n"), None),
    ("a redacted event (no body) is not input", message(None), None),
    ("state and other event types are not input", message(kind="m.room.topic"), None),
    ("an encrypted event cannot be read", message(kind="m.room.encrypted"), None),
    ("an edit is not input again", message("fixed", relates={"rel_type": "m.replace",
                                                             "event_id": "$e0"}), None),
    ("a reply loses its quoted fallback",
     message("> <@bob:example.org> the question\n\nthe answer",
             relates={"m.in_reply_to": {"event_id": "$e0"}}), "the answer"),
])
def test_r5_5_which_events_are_a_persons_message(name: str, source: dict[str, Any],
                                                 text: str | None) -> None:
    read = read_message(source, BOT, NOW)
    assert (read.text if read else None) == text, name


@pytest.mark.parametrize(("body", "text"), [
    (json.loads('"half a pair \\ud800 here"'), "half a pair \ufffd here"),
    (json.loads('"nul\\u0000byte"'), "nulbyte"),
    (json.loads('"a whole pair \\ud83d\\ude00 stays"'), "a whole pair \U0001f600 stays"),
    ("\x00\x00", None),
])
def test_r5_8_text_that_is_not_unicode_is_cleaned_not_lost(body: str, text: str | None) -> None:
    """R5.8: a lone surrogate or a NUL from a JSON escape is cleaned where the message
    enters, so it can be stored (encoded as UTF-8); only a body of NULs alone is nothing."""
    read = read_message(message(body), BOT, NOW)
    assert (read.text if read else None) == text
    if read is not None:
        inbound = read.inbound("!r", sender_name=json.loads('"Al\\udc00ice"'), is_direct=False)
        assert inbound.sender_name == "Al\ufffdice"
        inbound.text.encode("utf-8")


def test_r9_2_a_message_carries_sender_id_time_and_thread() -> None:
    source = message("in a thread", relates={"rel_type": "m.thread", "event_id": "$root"})
    read = read_message(source, BOT, NOW)
    assert read == Message(sender=ALICE, text="in a thread", event_id="$e1",
                           ts=1_700_000_123.0, thread="$root")
    assert read.inbound("!room", sender_name="Alice", is_direct=True) == Inbound(
        platform="matrix", room="!room", sender=ALICE, sender_name="Alice",
        text="in a thread", event_id="$e1", ts=1_700_000_123.0, is_direct=True,
        thread="$root")


@pytest.mark.parametrize(("name", "relates", "thread"), [
    ("a thread message as Element sends it (R12.2)",
     {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
      "m.in_reply_to": {"event_id": "$latest"}}, "$root"),
    ("a reply to one message inside a thread is in the thread",
     {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": False,
      "m.in_reply_to": {"event_id": "$latest"}}, "$root"),
    ("a plain reply is top level", {"m.in_reply_to": {"event_id": "$e0"}}, None),
    ("no relation is top level", None, None),
])
def test_r12_2_which_thread_a_message_is_in(name: str, relates: dict[str, Any] | None,
                                            thread: str | None) -> None:
    read = read_message(message("hi", relates=relates), BOT, NOW)
    assert read is not None and read.text == "hi", name
    assert read.thread == thread, name


def test_r9_2_a_message_without_a_server_time_takes_now() -> None:
    read = read_message(message(ts=None), BOT, NOW)
    assert read is not None and read.ts == NOW


@pytest.mark.parametrize(("body", "stripped"), [
    ("> <@bob:x> q\n> more\n\nanswer\nline 2", "answer\nline 2"),
    ("> a quote the person wrote", "> a quote the person wrote"),  # no blank line: kept
    ("> a quote the person wrote\n\nand an answer", "> a quote the person wrote\n\nand an answer"),
    ("no fallback", "no fallback"),
])
def test_r9_2_reply_fallback_is_stripped_only_when_there_is_one(body: str,
                                                                stripped: str) -> None:
    assert strip_reply_fallback(body) == stripped


def member(user: str, membership: str) -> dict[str, Any]:
    return {"type": "m.room.member", "state_key": user, "content": {"membership": membership}}


@pytest.mark.parametrize(("name", "events", "start"), [
    ("already in the room: everything is news", [message(), message()], None),
    ("joined in this batch: news after the join", [message(), member(BOT, "join"), message()],
     2),
    ("invited then joined: what was said in between is news (a new DM's first line)",
     [message(), member(BOT, "invite"), message(), member(BOT, "join")], 2),
    ("someone else joining is not the bot joining", [member(ALICE, "join"), message()], None),
    ("the last join counts", [member(BOT, "join"), message(), member(BOT, "leave"),
                              member(BOT, "join"), message()], 4),
])
def test_r8_2_old_history_never_reaches_the_agents(name: str, events: list[dict[str, Any]],
                                                   start: int | None) -> None:
    assert start_of_news(events, BOT) == start, name


@pytest.mark.parametrize(("user", "allow", "allowed"), [
    (ALICE, (ALICE,), True),
    ("@bob:corp.example", (ALICE, ":corp.example"), True),
    ("@bob:example.org", (ALICE, ":corp.example"), False),
    ("@eve:evilcorp.example", (":corp.example",), False),
    (ALICE, (), False),  # an empty list allows nobody
    (ALICE, (" ", f" {ALICE} "), True),  # blank entries are skipped, entries are trimmed
])
def test_r1_5_allow_invites_from_takes_ids_and_server_suffixes(user: str, allow: tuple[str, ...],
                                                              allowed: bool) -> None:
    assert allowed_inviter(user, allow) is allowed


def invite_event(*, to: str = BOT, sender: str = ALICE, membership: str = "invite",
                 direct: bool | None = None) -> InviteMemberEvent:
    content: dict[str, Any] = {"membership": membership}
    if direct is not None:
        content["is_direct"] = direct
    return InviteMemberEvent({}, sender, to, membership, None, content)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "state", "invite", "accepted"), [
    ("an invite to a room", [invite_event()], Invite(ALICE, is_direct=False), True),
    ("an invite to a direct room (R1.6)", [invite_event(direct=True)],
     Invite(ALICE, is_direct=True), True),
    ("an invite from someone not allowed (R1.5)", [invite_event(sender="@eve:evil.example")],
     Invite("@eve:evil.example", is_direct=False), False),
    ("someone else's invite is not the bot's", [invite_event(to=ALICE, direct=True)],
     Invite(None, is_direct=False), False),
    ("no invite event at all", [], Invite(None, is_direct=False), False),
])
def test_r1_5_r1_6_invites(name: str, state: list[Any], invite: Invite, accepted: bool) -> None:
    read = read_invite(state, BOT)
    assert read == invite, name
    assert read.accepted((ALICE,)) is accepted, name


@dataclass
class Transport:
    """What nio keeps of the HTTP response: its status and headers."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)


def refused(status: int, errcode: str | None = None, *, retry_after_ms: int | None = None,
            headers: dict[str, str] | None = None) -> ErrorResponse:
    body: dict[str, Any] = {"error": "refused"}
    if errcode:
        body["errcode"] = errcode
    if retry_after_ms is not None:
        body["retry_after_ms"] = retry_after_ms
    resp = RoomSendError.from_dict(body, "!room")
    resp.transport_response = Transport(status, headers or {})  # type: ignore[assignment]
    return resp


@pytest.mark.parametrize(("name", "failure", "retry_after", "permanent"), [
    ("M_LIMIT_EXCEEDED waits retry_after_ms (R8.3)",
     refused(429, "M_LIMIT_EXCEEDED", retry_after_ms=2500), 2.5, False),
    ("a 429 without a body wait reads Retry-After",
     refused(429, headers={"Retry-After": "7"}), 7.0, False),
    ("M_LIMIT_EXCEEDED on another status is still a rate limit",
     refused(400, "M_LIMIT_EXCEEDED", headers={"Retry-After": "3"}), 3.0, False),
    ("a 429 naming no wait falls back to nio's", refused(429), DEFAULT_RETRY_AFTER_S, False),
    ("an unreadable Retry-After falls back too",
     refused(429, headers={"Retry-After": "soon"}), DEFAULT_RETRY_AFTER_S, False),
    ("a forbidden room is given up", refused(403, "M_FORBIDDEN"), None, True),
    ("an event too large is given up", refused(413, "M_TOO_LARGE"), None, True),
    ("an unknown room is given up", refused(404, "M_NOT_FOUND"), None, True),
    ("a server error is retried", refused(502), None, False),
    ("a network error is retried", ConnectionResetError("reset by peer"), None, False),
])
def test_r8_3_a_failed_send_is_a_value_the_outbox_acts_on(
        name: str, failure: Any, retry_after: float | None, permanent: bool) -> None:
    error = send_failure("!room", failure)
    assert isinstance(error, SendError)
    assert isinstance(error, RateLimited) is (retry_after is not None), name
    assert error.retry_after_s == retry_after, name
    assert error.permanent is permanent, name
    assert "!room" in str(error)


@pytest.mark.parametrize(("name", "failure", "thread_refused", "permanent"), [
    ("a 400 for a post in a thread: the thread is refused (R5.1: post it at the top)",
     refused(400, "M_UNKNOWN"), True, True),
    ("not in the room is not the thread's fault", refused(403, "M_FORBIDDEN"), False, True),
    ("a rate limit is a rate limit in a thread too",
     refused(429, "M_LIMIT_EXCEEDED", retry_after_ms=100), False, False),
    ("a network error is retried", ConnectionResetError("reset"), False, False),
])
def test_r5_1_r12_1_a_refused_thread_is_told_apart(name: str, failure: Any,
                                                   thread_refused: bool,
                                                   permanent: bool) -> None:
    error = send_failure("!room", failure, in_thread=True)
    assert isinstance(error, ThreadRefused) is thread_refused, name
    assert error.permanent is permanent, name
    assert not isinstance(send_failure("!room", failure), ThreadRefused), name


@pytest.mark.parametrize(("failure", "text"), [
    (refused(403, "M_FORBIDDEN"), "M_FORBIDDEN: refused"),
    (ErrorResponse("unknown error"), "error"),
    (TimeoutError(), "TimeoutError"),
    (OSError("no route"), "OSError: no route"),
])
def test_r9_2_failures_are_described_in_one_line(failure: Any, text: str) -> None:
    assert describe(failure) == text


THREAD_ROOT = "$root"
IN_THREAD = {"rel_type": "m.thread", "event_id": THREAD_ROOT, "is_falling_back": True,
             "m.in_reply_to": {"event_id": THREAD_ROOT}}


@pytest.mark.parametrize(("name", "post", "content"), [
    ("no author: the text alone, an m.notice (R5.5)", Post("**hi**"),
     {"body": "**hi**", "formatted_body": to_matrix_html("**hi**")}),
    ("the author is a bold line of its own (R5.7)", Post("**hi**", "webui"),
     {"body": "webui:\n**hi**",
      "formatted_body": "<p><strong>webui</strong></p>" + to_matrix_html("**hi**")}),
    ("a relayed person's name is escaped, never markup (R5.6)",
     Post("hi", "<b>al</b> & co (slack)", AuthorRole.PERSON),
     {"body": "<b>al</b> & co (slack):\nhi",
      "formatted_body": "<p><strong>&lt;b&gt;al&lt;/b&gt; &amp; co (slack)</strong></p>"
                        + to_matrix_html("hi")}),
    ("in a thread: m.thread with the reply fallback to the root (R12.1)",
     Post("hi", thread=ThreadRef(THREAD_ROOT, 1)),
     {"body": "hi", "formatted_body": to_matrix_html("hi"), "m.relates_to": IN_THREAD}),
    ("the reply fallback names the thread's latest post when known (R12.1)",
     Post("hi", thread=ThreadRef(THREAD_ROOT, 1, latest="$latest")),
     {"body": "hi", "formatted_body": to_matrix_html("hi"),
      "m.relates_to": {**IN_THREAD, "m.in_reply_to": {"event_id": "$latest"}}}),
    ("a thread with no root in this room posts at the top level (R12.1)",
     Post("hi", thread=ThreadRef(None, 1)),
     {"body": "hi", "formatted_body": to_matrix_html("hi")}),
])
def test_r5_5_r5_7_r12_1_what_a_post_looks_like(name: str, post: Post,
                                                content: dict[str, Any]) -> None:
    (got,) = post_contents(post)
    assert got == {"msgtype": "m.notice", "format": HTML_FORMAT, **content}, name


def test_r5_7_a_post_starting_with_a_block_renders_as_that_block_after_the_name() -> None:
    (got,) = post_contents(Post("```python\nprint(1)\n```\nran it", "webui"))
    assert got["body"] == "webui:\n```python\nprint(1)\n```\nran it"
    name = "<p><strong>webui</strong></p>"
    assert got["formatted_body"].startswith(name + "<pre")
    assert got["formatted_body"] == name + to_matrix_html("```python\nprint(1)\n```\nran it")


def test_r5_2_r5_7_r12_1_every_part_of_a_long_post_has_the_name_and_the_thread() -> None:
    """R5.2: a long post is several events, each under the budget with its name line
    counted; R5.7: every part shows the author; R12.1: every part is in the thread."""
    text = "\n\n".join(f"paragraph {i} " + "x" * 4000 for i in range(12))
    contents = post_contents(Post(text, "webui", thread=ThreadRef(THREAD_ROOT, 1)))
    assert len(contents) >= 3
    for c in contents:
        assert c["msgtype"] == "m.notice"
        assert c["body"].startswith("webui:\n")
        assert c["formatted_body"].startswith("<p><strong>webui</strong></p>")
        assert c["m.relates_to"] == IN_THREAD
        assert len(c["body"].encode()) + len(c["formatted_body"].encode()) <= MATRIX_LIMIT_BYTES
    texts = [c["body"].removeprefix("webui:\n") for c in contents]
    assert "\n\n".join(texts) == text


def test_r5_2_a_blank_post_is_no_event() -> None:
    assert post_contents(Post("  \n", "webui")) == []


def test_r9_2_a_name_of_last_resort_is_the_localpart() -> None:
    assert localpart(ALICE) == "alice"
