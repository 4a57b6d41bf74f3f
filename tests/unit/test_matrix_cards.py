"""Matrix cards, row by row (R13.1, R13.2, R13.3, R13.7): what an edit, a button reaction
and a notice to one person look like, which reactions are a person's act, and which
replies name the post they answer. No homeserver: the payloads are the dicts a sync hands
the bridge and the contents it sends."""

from __future__ import annotations

from typing import Any

import pytest

from crewbridge.bridges.base import Acted, AuthorRole, Post, ThreadRef
from crewbridge.bridges.matrix_cards import (
    Reaction,
    edit_contents,
    edit_txn_id,
    notice_to,
    reaction_content,
    read_reaction,
    redaction_txn_id,
)
from crewbridge.bridges.matrix_events import HTML_FORMAT, post_contents, read_message, replied_to
from crewbridge.bridges.render import to_matrix_html
from tests.support.cards import ALLOW, DENY

BOT = "@crewbridge:example.org"
ALICE = "@alice:example.org"
NOW = 1_700_000_000.0
BUTTONS = (ALLOW, DENY)


def test_r13_3_an_edit_replaces_the_original_with_the_post_as_send_renders_it() -> None:
    """R13.3/R13.7: `m.new_content` is exactly what `send` would post (body, HTML with the
    bold author line, m.notice); the fallback body and HTML start with "* "; the relation
    is `m.replace` of `ref`, and no thread relation (the original keeps its thread)."""
    post = Post("🔐 **webui** wants `Bash`: `ls`", "webui", AuthorRole.LEAD,
                ThreadRef("$root", 1, latest="$latest"), BUTTONS)
    [content] = edit_contents("$card", post)
    [sent] = post_contents(post)
    new = {k: v for k, v in sent.items() if k != "m.relates_to"}

    assert content["m.new_content"] == new
    assert new["formatted_body"] == "<p><strong>webui</strong></p>" + to_matrix_html(post.text)
    assert content["msgtype"] == "m.notice"
    assert content["body"] == "* webui:\n" + post.text
    assert content["format"] == HTML_FORMAT
    assert content["formatted_body"] == "* " + new["formatted_body"]
    assert content["m.relates_to"] == {"rel_type": "m.replace", "event_id": "$card"}


def test_r13_3_a_blank_edit_has_no_content_and_a_long_one_has_parts() -> None:
    assert edit_contents("$card", Post("   ")) == []
    long = "\n\n".join(f"step {i}: " + "x" * 9000 for i in range(3))
    assert len(edit_contents("$card", Post(long))) == len(post_contents(Post(long))) > 1


@pytest.mark.parametrize(("name", "a", "b", "same"), [
    ("a retry of the same edit is the same transaction", ("$c", "one"), ("$c", "one"), True),
    ("another text is another edit", ("$c", "one"), ("$c", "two"), False),
    ("the same text on another post is another edit", ("$c", "one"), ("$d", "one"), False),
])
def test_r13_3_an_edit_is_applied_once(name: str, a: tuple[str, str], b: tuple[str, str],
                                       same: bool) -> None:
    """R8.3/R13.3: the transaction id depends on the post edited and the new content only,
    so a retried edit is deduplicated by the homeserver and a new one is not."""
    def txn(ref: str, text: str) -> str:
        return edit_txn_id(ref, edit_contents(ref, Post(text))[0])
    assert (txn(*a) == txn(*b)) is same, name
    assert txn(*a).startswith("edit.")


def test_r13_7_redacting_again_is_the_same_redaction() -> None:
    assert redaction_txn_id("$e1") == redaction_txn_id("$e1") != redaction_txn_id("$e2")


def test_r13_1_a_button_is_an_annotation_with_the_emoji_as_key() -> None:
    assert reaction_content("$card", "✅") == {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": "$card", "key": "✅"}}


@pytest.mark.parametrize(("name", "thread", "relates"), [
    ("in a thread: the thread relation with its fallback", ThreadRef("$root", 1, "$last"),
     {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
      "m.in_reply_to": {"event_id": "$last"}}),
    ("a thread never shown in this room: top level", ThreadRef(None, 3), None),
    ("no thread: top level", None, None),
])
def test_r13_2_a_notice_to_one_person_names_them_first(
        name: str, thread: ThreadRef | None, relates: dict[str, Any] | None) -> None:
    """R13.2: Matrix has no ephemeral messages: an m.notice that starts by naming the
    person (plain id, a pill in the HTML, `m.mentions`), in the thread when there is one."""
    content = notice_to("@bob:example.org", "only **approvers** may decide", thread)
    assert content["msgtype"] == "m.notice", name
    assert content["body"] == "@bob:example.org: only **approvers** may decide"
    assert content["formatted_body"] == (
        '<p><a href="https://matrix.to/#/@bob:example.org">@bob:example.org</a>: '
        "only <strong>approvers</strong> may decide</p>")
    assert content["m.mentions"] == {"user_ids": ["@bob:example.org"]}
    assert content.get("m.relates_to") == relates, name


def test_r13_2_a_notice_that_starts_with_a_block_names_the_person_on_a_line_of_its_own() -> None:
    content = notice_to("@bob:example.org", "```\nls\n```", None)
    assert content["formatted_body"].startswith(
        '<p><a href="https://matrix.to/#/@bob:example.org">@bob:example.org</a>: </p><pre')


def reaction(key: Any = "✅", *, sender: str = ALICE, kind: str = "m.reaction",
             rel_type: str = "m.annotation", target: Any = "$card",
             ts: int | None = 1_700_000_123_000) -> dict[str, Any]:
    source: dict[str, Any] = {"type": kind, "sender": sender, "event_id": "$r1",
                              "content": {"m.relates_to": {"rel_type": rel_type,
                                                           "event_id": target, "key": key}}}
    if ts is not None:
        source["origin_server_ts"] = ts
    return source


@pytest.mark.parametrize(("name", "source", "choice"), [
    ("a person's reaction is an act with the key as sent (R13.1)", reaction("✅"), "✅"),
    ("♾️ keeps its variation selector", reaction("♾️"), "♾️"),
    ("the bot's own reactions (its buttons) are not (R5.5)", reaction(sender=BOT), None),
    ("a redacted reaction (no content) is nothing",
     {"type": "m.reaction", "sender": ALICE, "event_id": "$r1", "content": {}}, None),
    ("a reaction without a key is nothing", reaction(None), None),
    ("a reaction to nothing is nothing", reaction(target=None), None),
    ("another relation is no reaction", reaction(rel_type="m.reference"), None),
    ("a message is no reaction", reaction(kind="m.room.message"), None),
])
def test_r13_1_which_reactions_are_a_persons_act(name: str, source: dict[str, Any],
                                                 choice: str | None) -> None:
    read = read_reaction(source, BOT, NOW)
    assert (read.key if read else None) == choice, name


def test_r13_1_a_reaction_becomes_acted_on_the_annotated_event() -> None:
    read = read_reaction(reaction("❌"), BOT, NOW)
    assert read == Reaction(sender=ALICE, ref="$card", key="❌", event_id="$r1",
                            ts=1_700_000_123.0)
    assert read.inbound("!room", sender_name="Alice", is_direct=False) == Acted(
        platform="matrix", room="!room", sender=ALICE, sender_name="Alice", ref="$card",
        choice="❌", event_id="$r1", ts=1_700_000_123.0)
    assert read_reaction(reaction(ts=None), BOT, NOW).ts == NOW  # type: ignore[union-attr]


@pytest.mark.parametrize(("name", "relates", "reply_to"), [
    ("a plain reply names the event it answers", {"m.in_reply_to": {"event_id": "$card"}},
     "$card"),
    ("a thread message's fallback is no reply",
     {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": True,
      "m.in_reply_to": {"event_id": "$card"}}, None),
    ("a real reply inside a thread names the event it answers",
     {"rel_type": "m.thread", "event_id": "$root", "is_falling_back": False,
      "m.in_reply_to": {"event_id": "$card"}}, "$card"),
    ("a reply inside a thread without is_falling_back is a real reply",
     {"rel_type": "m.thread", "event_id": "$root", "m.in_reply_to": {"event_id": "$card"}},
     "$card"),
    ("a thread message without a fallback is no reply",
     {"rel_type": "m.thread", "event_id": "$root"}, None),
    ("a malformed reply is no reply", {"m.in_reply_to": "$card"}, None),
    ("no relation is no reply", {}, None),
])
def test_r13_1_which_messages_reply_to_a_post(name: str, relates: dict[str, Any],
                                              reply_to: str | None) -> None:
    """R13.1: a reply `allow` in a card's thread decides it; only a real reply names the
    card, never the fallback every thread message carries."""
    assert replied_to(relates) == reply_to, name
    source = {"type": "m.room.message", "sender": ALICE, "event_id": "$m1",
              "content": {"msgtype": "m.text", "body": "allow", "m.relates_to": relates}}
    read = read_message(source, BOT, NOW)
    assert read is not None
    assert read.inbound("!room", sender_name="Alice", is_direct=False).reply_to == reply_to
