"""The Slack cards, row by row (R13.1, R13.2, R13.3, R13.6, R13.7): buttons as Block Kit, an
edit cut to one message, clicks (`block_actions`) as `Acted`, the reaction names for the
core's emoji, the errors of edits and deletions, and the Tier 3 bucket for edits. No
emulator: the payloads are the dicts bolt hands over."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web import SlackResponse

from crewbridge.bridges.base import Acted, Button, RateLimited
from crewbridge.bridges.slack_cards import (
    BUTTON_LABEL_LIMIT,
    ELLIPSIS,
    SECTION_TEXT_LIMIT,
    Malformed,
    button_element,
    card_blocks,
    clicks,
    one_message,
    reaction_name,
)
from crewbridge.bridges.slack_events import EDIT_PERMANENT_ERRORS, refusal
from crewbridge.bridges.slack_pace import TokenBucket
from tests.support.cards import ALLOW, ALWAYS, DENY

# --- reactions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("emoji", "name"), [
    ("👀", "eyes"),  # R13.7: an agent started on it
    ("✅", "white_check_mark"),  # answered
    ("⏸️", "double_vertical_bar"),  # waits, with U+FE0F as keyboards send it
    ("⏸", "double_vertical_bar"),  # and without
    ("❌", "x"),  # its turn failed
    ("🛑", "octagonal_sign"),  # R13.6
    ("🔐", "closed_lock_with_key"),  # R13.1
    ("♾️", "infinity"),
    ("♾", "infinity"),
    ("eyes", "eyes"),  # a Slack name already
    (":white_check_mark:", "white_check_mark"),
    ("+1", "+1"),
    ("🦜", None),  # no name known: the bridge refuses rather than guesses
    ("", None),
    ("two words", None),
])
def test_r13_7_the_cores_emoji_have_slack_names(emoji: str, name: str | None) -> None:
    assert reaction_name(emoji) == name


# --- outbound: blocks --------------------------------------------------------------------


def test_r13_1_a_button_carries_its_action_as_id_and_value() -> None:
    """R13.1: what comes back in a click is the button's `action`; the style only when set."""
    assert button_element(ALLOW) == {
        "type": "button", "action_id": "allow", "value": "allow", "style": "primary",
        "text": {"type": "plain_text", "text": "Allow", "emoji": True}}
    assert "style" not in button_element(ALWAYS)
    long = button_element(Button("x", "L" * 200, "✅"))
    assert len(long["text"]["text"]) == BUTTON_LABEL_LIMIT


@pytest.mark.parametrize(("text", "buttons", "types"), [
    ("🔐 *lead* wants to run `Bash`", (ALLOW, DENY, ALWAYS), ["section", "actions"]),
    ("✅ allowed by alice", (), ["section"]),  # R13.3: an edit without buttons drops them
    ("", (ALLOW,), ["actions"]),  # Slack refuses an empty section
    ("  \n", (), []),
])
def test_r13_1_r13_3_a_card_is_a_section_and_its_buttons(
        text: str, buttons: tuple[Button, ...], types: list[str]) -> None:
    blocks = card_blocks(text, buttons)
    assert [b["type"] for b in blocks] == types
    if "section" in types:
        assert blocks[0]["text"] == {"type": "mrkdwn", "text": text}
    if "actions" in types:
        assert blocks[-1]["elements"] == [button_element(b) for b in buttons]


@pytest.mark.parametrize(("markdown", "expected"), [
    ("**done** in 3 s", "*done* in 3 s"),
    ("", ""),
])
def test_r13_3_an_edit_that_fits_is_rendered_whole(markdown: str, expected: str) -> None:
    assert one_message(markdown) == expected


def test_r13_3_an_edit_too_long_for_one_message_is_cut_with_an_ellipsis() -> None:
    """R13.3, R13.7: an edit replaces one message, so a long text is cut to a section's
    size, marked as cut, and a code block cut in two is still closed (R5.6)."""
    text = "```\n" + "\n".join(f"line {i}" for i in range(2000)) + "\n```"
    cut = one_message(text)
    assert cut.endswith(ELLIPSIS) and len(cut) <= SECTION_TEXT_LIMIT
    assert cut.removesuffix(ELLIPSIS).rstrip().endswith("```")
    assert cut.startswith("```\nline 0\nline 1\n")


# --- inbound: clicks ---------------------------------------------------------------------


CLICK: dict[str, Any] = {
    "type": "block_actions",
    "user": {"id": "U0ALICE", "username": "alice.smith", "name": "alice.smith",
             "team_id": "T0EMU"},
    "container": {"type": "message", "message_ts": "1700000000.000200",
                  "channel_id": "C0GENERAL", "is_ephemeral": False},
    "channel": {"id": "C0GENERAL", "name": "general"},
    "message": {"ts": "1700000000.000200", "text": "🔐"},
    "actions": [{"action_id": "allow", "block_id": "b1", "value": "allow", "type": "button",
                 "action_ts": "1700000005.123456"}],
}


def test_r13_1_a_click_is_acted_on_the_message_it_was_on() -> None:
    """R13.1: the channel, the card's ts, who clicked and which button; an event id that is
    the same for a redelivery of the same click (R8.1)."""
    assert clicks(CLICK) == [Acted(
        platform="slack", room="C0GENERAL", sender="U0ALICE", sender_name="alice.smith",
        ref="1700000000.000200", choice="allow",
        event_id="1700000000.000200:1700000005.123456:U0ALICE", ts=1700000005.123456)]
    assert clicks(copy.deepcopy(CLICK)) == clicks(CLICK)


def changed(path: str, value: Any) -> dict[str, Any]:
    """`CLICK` with the field at `path` ("a.b", "actions.0.x") set, or removed (`...`)."""
    body = copy.deepcopy(CLICK)
    *parents, last = path.split(".")
    target: Any = body
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is ...:
        del target[last]
    else:
        target[last] = value
    return body


def test_r13_1_the_container_names_the_message_where_the_payload_has_both() -> None:
    body = changed("message.ts", "1.000001")
    assert clicks(body)[0].ref == "1700000000.000200"
    assert clicks(changed("container.channel_id", ...))[0].room == "C0GENERAL"  # fallback
    assert clicks(changed("user.name", ...))[0].sender_name == "U0ALICE"


@pytest.mark.parametrize("body", [
    changed("type", "view_submission"),
    changed("container", {"type": "view", "view_id": "V1"}),  # a click in a modal
    changed("container", "message"),
    changed("user", ...),
    changed("user", "U0ALICE"),
    changed("actions", []),
    changed("actions", ...),
    changed("actions", "allow"),
    changed("actions", [None]),
    changed("actions.0.action_id", ...),
    changed("actions.0.action_ts", "soon"),
    changed("actions.0.action_ts", ...),
    {**changed("container.channel_id", ...), "channel": None},
    {**changed("container.message_ts", ...), "message": {}},
])
def test_r13_1_a_payload_that_is_not_a_click_on_a_message_is_malformed(
        body: dict[str, Any]) -> None:
    """R13.1: every shape Slack does not send for a button click is `Malformed` (the
    bridge logs it and drops it), never an exception of another kind."""
    with pytest.raises(Malformed):
        clicks(body)


# --- errors of edits and deletions -------------------------------------------------------


def api_error(status: int, error: str, headers: dict[str, str] | None = None) -> SlackApiError:
    response = SlackResponse(client=None, http_verb="POST", api_url="chat.update",
                             req_args={}, data={"ok": False, "error": error},
                             headers=headers or {}, status_code=status)
    return SlackApiError(error, response)


@pytest.mark.parametrize(("error", "retry_after", "permanent"), [
    (api_error(429, "ratelimited", {"Retry-After": "7"}), 7.0, False),
    (api_error(200, "message_not_found"), None, True),  # the card is gone
    (api_error(200, "cant_update_message"), None, True),  # not the bot's
    (api_error(200, "cant_delete_message"), None, True),
    (api_error(200, "channel_not_found"), None, True),
    (api_error(500, "internal_error"), None, False),
])
def test_r13_3_a_refused_edit_is_a_value_the_core_acts_on(
        error: SlackApiError, retry_after: float | None, permanent: bool) -> None:
    failure = refusal("the edit of 1.2 in C0GENERAL", error, EDIT_PERMANENT_ERRORS)
    assert isinstance(failure, RateLimited) is (retry_after is not None)
    assert failure.retry_after_s == retry_after and failure.permanent is permanent
    assert "the edit of 1.2 in C0GENERAL" in str(failure)


# --- the Tier 3 bucket -------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_r13_7_the_bucket_gives_its_burst_then_names_the_wait_for_the_next_token() -> None:
    clock = Clock()
    bucket = TokenBucket(50 / 60, 3, clock)
    assert [bucket.take() for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take() == pytest.approx(1.2)
    assert bucket.take() == pytest.approx(1.2)  # a refusal spends nothing
    clock.now += 0.6
    assert bucket.take() == pytest.approx(0.6)
    clock.now += 0.6  # exactly the wait named
    assert bucket.take() == 0.0
    clock.now += 3600  # refills to the burst, no further
    assert [bucket.take() for _ in range(4)][-2:] == [0.0, pytest.approx(1.2)]


def test_r13_7_after_its_burst_the_bucket_lets_50_edits_a_minute_and_refuses_the_51st() -> None:
    """R13.7: drained at t=0, then asked ten times a second for a minute: 50 edits, each
    refusal naming a wait no longer than Tier 3's 1.2 s between edits."""
    clock = Clock()
    start = clock.now
    bucket = TokenBucket(50 / 60, 5, clock)
    while bucket.take() == 0.0:
        pass
    allowed, waits = 0, []
    for tick in range(1, 601):
        clock.now = start + tick / 10
        wait = bucket.take()
        allowed += wait == 0.0
        waits += [wait] if wait else []
    assert allowed == 50
    assert all(0 < w <= 1.2 + 1e-9 for w in waits)


@pytest.mark.parametrize(("rate", "burst"), [(0.0, 5), (-1.0, 5), (1.0, 0)])
def test_r13_7_a_bucket_that_could_never_give_is_refused(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst, Clock())
