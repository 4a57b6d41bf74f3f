"""The cards' side of the real `MatrixBridge` (R13.1, R13.2, R13.3, R13.7) against a real
Synapse, with people played by matrix-nio clients: buttons as the bot's reactions, people's
reactions as `Acted`, edits, redactions, notices to one person, typing, replies.

The sink stands in for the core; everything between the bridge and the people is real.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import replace

from crewbridge.bridges.base import Acted, AuthorRole, Inbound, Post, ThreadRef
from crewbridge.bridges.matrix import MatrixBridge
from crewbridge.bridges.matrix_events import post_contents
from crewbridge.bridges.settings import MatrixConfig
from tests.integration.harness import until
from tests.platform.matrix.fixtures import matrix_config
from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.support import MemoryKV, RecordingSink
from tests.platform.matrix.synapse import (
    Account,
    EventDict,
    Person,
    SynapseServer,
    annotation_of,
    body_of,
    msgtype_of,
    thread_of,
)
from tests.platform.matrix.test_matrix_bridge import bot_in_room
from tests.support.cards import CARD_BUTTONS

MakeBridge = Callable[..., Awaitable[MatrixBridge]]
KEYS = [b.emoji for b in CARD_BUTTONS]


async def bot_joined(synapse: SynapseServer, bot_account: Account, alice: Person, room: str,
                     make_bridge: MakeBridge, kv: MemoryKV | None = None,
                     homeserver: str | None = None,
                     **knobs: object) -> tuple[MatrixBridge, RecordingSink, MatrixConfig]:
    """A bridge whose bot `alice` invited to `room` (reached at `homeserver`, when given),
    and the config it was started with."""
    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    config = replace(config, homeserver=homeserver or config.homeserver)
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink, **knobs)
    await bot_in_room(bridge, sink, alice, room)
    return bridge, sink, config


async def marker(bridge: MatrixBridge, person: Person, room: str, key: str) -> None:
    """The bot posts a marker and `person` sees it: everything the bot did before is seen."""
    await bridge.send(room, Post(f"marker {key}"), key=f"marker-{key}")
    await person.wait_for_message(room, lambda e: body_of(e) == f"marker {key}")


def keys_of(reactions: list[EventDict]) -> list[str | None]:
    return [annotation_of(r)[1] for r in reactions]


def ids_of(events: list[EventDict]) -> list[str]:
    return [e["event_id"] for e in events]


def edits_of(person: Person, room: str, sender: str) -> list[EventDict]:
    return [e for e in person.messages(room, sender=sender)
            if (e["content"].get("m.relates_to") or {}).get("rel_type") == "m.replace"]


async def test_r13_1_a_post_with_buttons_carries_the_bots_reactions(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.1: Matrix has no buttons: the bot adds each button's emoji as its own reaction on
    the card, in order, so a person only taps one; `send` returns the card's id. A retry of
    the post adds none twice; a long post carries them on its last part, whose id `send`
    returns (the core edits that one later)."""
    bridge, _, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge)
    root = await alice.send_text(matrix_room, "deploy it")
    card_post = Post("🔐 webui wants to use Bash: `make deploy`", "webui", AuthorRole.LEAD,
                     ThreadRef(root, 1), CARD_BUTTONS)
    long_text = "\n\n".join(f"part {i}: " + "x" * 9000 for i in range(3))

    card = await bridge.send(matrix_room, card_post, key="card-1")
    again = await bridge.send(matrix_room, card_post, key="card-1")
    last = await bridge.send(matrix_room, Post(long_text, buttons=CARD_BUTTONS[:1]),
                             key="card-2")
    await marker(bridge, alice, matrix_room, "buttons")

    posts = alice.messages(matrix_room, sender=bridge.user_id)
    parts = len(post_contents(Post(long_text)))
    assert parts >= 3 and len(posts) == 1 + parts + 1
    assert card == again == posts[0]["event_id"]
    assert thread_of(posts[0]) == root
    assert last == posts[parts]["event_id"]
    mine = alice.events(matrix_room, "m.reaction", sender=bridge.user_id)
    assert [annotation_of(r) for r in mine] == [(card, k) for k in KEYS] + [(last, "✅")]


async def test_r13_1_a_persons_reaction_is_an_act_and_the_bots_own_are_not(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.1/R13.6: a person's reaction on a card reaches the core as `Acted` with the
    annotated event and the key as sent, in order with the messages around it; the bot's
    own reactions (its buttons) never do (R5.5). After a restart, one made while the bot
    was down arrives too, also when the gap is fetched with `/messages` (R8.2)."""
    kv = MemoryKV()
    bridge, sink, config = await bot_joined(synapse, bot_account, alice, matrix_room,
                                            make_bridge, kv, timeline_limit=3)
    card = await bridge.send(matrix_room, Post("🔐 card", buttons=CARD_BUTTONS), key="card")
    await alice.wait_until(lambda: len(alice.reactions(matrix_room, card)) == 3,
                           what="the bot's three reactions")

    await alice.send_text(matrix_room, "before")
    allowed = await alice.react(matrix_room, card, "✅")
    await alice.send_text(matrix_room, "after")
    await sink.wait_for_texts(matrix_room, ["after"])
    await bridge.stop()
    denied = await alice.react(matrix_room, card, "❌")
    for i in range(4):  # more than the timeline limit: the reaction is in the gap
        await alice.send_text(matrix_room, f"missed {i}")
    sink2 = RecordingSink()
    await make_bridge(config, kv, sink2, timeline_limit=3)
    await sink2.wait_for_texts(matrix_room, [f"missed {i}" for i in range(4)])

    def seen(events: list[object]) -> list[str]:
        return [e.text if isinstance(e, Inbound) else f"acted {e.choice}" for e in events
                if isinstance(e, Inbound | Acted)]
    assert seen(sink.events) == ["before", "acted ✅", "after"]
    assert seen(sink2.events) == ["acted ❌", *(f"missed {i}" for i in range(4))]
    [act] = [e for e in sink.events if isinstance(e, Acted)]
    assert act == Acted(platform="matrix", room=matrix_room, sender=alice.user_id,
                        sender_name="Alice", ref=card, choice="✅", event_id=allowed,
                        ts=act.ts)
    assert act.ts > 0
    assert [(e.ref, e.event_id) for e in sink2.events if isinstance(e, Acted)] == \
        [(card, denied)]


async def test_r13_3_an_edit_replaces_the_original_in_its_thread_once(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.3/R13.7: an edit is an `m.replace` of the original (the second one too: never
    an edit of an edit) with the new text rendered as `send` renders it and a "* "
    fallback; the homeserver applies it to the original, which stays in its thread. A
    retried edit (same content) is applied once."""
    bridge, _, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge)
    root = await alice.send_text(matrix_room, "may I deploy?")
    thread = ThreadRef(root, 1)
    card = await bridge.send(matrix_room, Post("🔐 pending", "webui", AuthorRole.LEAD,
                                               thread, CARD_BUTTONS), key="card")
    assert card is not None
    decided = Post("🔐 **allowed** by Alice", "webui", AuthorRole.LEAD,
                   replace(thread, latest=card))

    await bridge.edit(matrix_room, card, decided)
    await bridge.edit(matrix_room, card, decided)  # a retry
    await bridge.edit(matrix_room, card, replace(decided, text="🔐 allowed by Alice; ran"))
    await marker(bridge, alice, matrix_room, "edits")

    edits = edits_of(alice, matrix_room, bridge.user_id)
    assert [e["content"]["m.new_content"]["body"] for e in edits] == \
        ["webui:\n🔐 **allowed** by Alice", "webui:\n🔐 allowed by Alice; ran"]
    assert all(e["content"]["m.relates_to"] == {"rel_type": "m.replace", "event_id": card}
               for e in edits)
    first = edits[0]["content"]
    assert first["body"] == "* webui:\n🔐 **allowed** by Alice"
    assert first["m.new_content"]["msgtype"] == "m.notice"
    assert first["m.new_content"]["formatted_body"] == \
        "<p><strong>webui</strong></p><p>🔐 <strong>allowed</strong> by Alice</p>"
    assert "m.relates_to" not in first["m.new_content"]
    original = await alice.client.room_get_event(matrix_room, card)
    applied = original.event.source["unsigned"]["m.relations"]["m.replace"]
    assert applied["event_id"] == edits[-1]["event_id"]
    assert thread_of(original.event.source) == root
    assert await alice.thread_events(matrix_room, root) == [card]


async def test_r13_3_an_edit_that_drops_the_buttons_takes_back_the_reactions(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.3: a decided card loses its buttons: the bot redacts its own reactions on it —
    also after a restart of the bridge on the same store, which remembers them; an edit
    that keeps the buttons leaves them alone, and the person's own reaction stays."""
    kv = MemoryKV()
    bridge, _, config = await bot_joined(synapse, bot_account, alice, matrix_room,
                                         make_bridge, kv)
    first = await bridge.send(matrix_room, Post("🔐 one", buttons=CARD_BUTTONS), key="one")
    second = await bridge.send(matrix_room, Post("🔐 two", buttons=CARD_BUTTONS), key="two")
    assert first is not None and second is not None
    await alice.react(matrix_room, second, "❌")

    await bridge.edit(matrix_room, second, Post("🔐 two, still pending", buttons=CARD_BUTTONS))
    await bridge.edit(matrix_room, first, Post("🔐 one: allowed by Alice"))
    await bridge.stop()
    again = await make_bridge(config, kv, RecordingSink())
    await again.edit(matrix_room, second, Post("🔐 two: denied by Alice"))
    await marker(again, alice, matrix_room, "dropped")

    on_first = alice.reactions(matrix_room, first, sender=bot_account.user_id)
    on_second = alice.reactions(matrix_room, second, sender=bot_account.user_id)
    assert keys_of(on_first) == keys_of(on_second) == KEYS  # none added by the edits
    assert alice.redacted(matrix_room) == ids_of(on_first) + ids_of(on_second)
    assert len(edits_of(alice, matrix_room, bot_account.user_id)) == 3


async def test_r13_7_delete_redacts_and_a_post_gone_already_is_no_error(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.7: a status post removed when the turn ends is redacted; deleting it again, or
    an event the homeserver never knew, is no error."""
    bridge, _, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge)
    status = await bridge.send(matrix_room, Post("⏳ webui: thinking (5 s)"), key="status")
    assert status is not None

    await bridge.delete(matrix_room, status)
    await bridge.delete(matrix_room, status)
    await bridge.delete(matrix_room, "$no-such-event")
    await marker(bridge, alice, matrix_room, "deleted")

    assert status in alice.redacted(matrix_room)
    gone = await alice.client.room_get_event(matrix_room, status)
    assert "body" not in gone.event.source.get("content", {})


async def test_r13_7_reactions_on_and_off_are_idempotent(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.7: 👀 on a person's message twice is one reaction, off twice one redaction, on
    again a new one; a bridge that forgot its reactions (a fresh store: it stopped between
    sending one and remembering it) finds them on the homeserver, both ways."""
    bridge, _, config = await bot_joined(synapse, bot_account, alice, matrix_room,
                                         make_bridge)
    asked = await alice.send_text(matrix_room, "please fix the login bug")

    for on in (True, True, False, False):
        await bridge.react(matrix_room, asked, "👀", on)
    await bridge.react(matrix_room, asked, "✅", True)
    await bridge.react(matrix_room, asked, "👀", True)
    forgetful = await make_bridge(config, MemoryKV())
    await forgetful.react(matrix_room, asked, "✅", True)  # there already: not twice
    await forgetful.react(matrix_room, asked, "✅", False)
    await forgetful.react(matrix_room, asked, "👀", False)
    await forgetful.react(matrix_room, asked, "❌", False)  # never there
    await marker(bridge, alice, matrix_room, "reactions")

    mine = alice.reactions(matrix_room, asked, sender=bridge.user_id)
    assert keys_of(mine) == ["👀", "✅", "👀"]
    assert alice.redacted(matrix_room) == ids_of(mine)


async def test_r13_2_tell_is_a_notice_naming_the_person_in_the_thread(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.2: Matrix has no ephemeral messages: a refused decision is told in the thread as
    an m.notice that starts by naming the person (and mentions them); best effort, so a
    notice that cannot be posted raises nothing."""
    bridge, _, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge)
    root = await alice.send_text(matrix_room, "deploy?")

    await bridge.tell(matrix_room, alice.user_id, "only approvers may decide",
                      ThreadRef(root, 1))
    await bridge.tell(f"!nowhere:{synapse.server_name}", alice.user_id, "lost", None)
    told = await alice.wait_for_message(matrix_room, sender=bridge.user_id)

    assert msgtype_of(told) == "m.notice"
    assert body_of(told) == f"{alice.user_id}: only approvers may decide"
    assert told["content"]["formatted_body"].startswith(
        f'<p><a href="https://matrix.to/#/{alice.user_id}">{alice.user_id}</a>: ')
    assert told["content"]["m.mentions"] == {"user_ids": [alice.user_id]}
    assert thread_of(told) == root


def typing_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("matrix-typing")]


async def test_r13_7_typing_shows_while_on_is_renewed_and_stops(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.7: the bot shows typing while a turn runs: the person's sync gets an `m.typing`
    naming the bot, the notice is renewed (one task per room, however often it is turned
    on), and turning it off clears it; `stop()` ends the renewal."""
    proxy = CountingProxy(synapse.url)
    await proxy.start()
    try:
        bridge, _, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge,
                                        homeserver=proxy.url, typing_renew_s=0.1)
        await bridge.typing(matrix_room, True)
        await bridge.typing(matrix_room, True)
        assert len(typing_tasks()) == 1
        await alice.wait_until(lambda: any(bridge.user_id in users
                                           for users in alice.typing(matrix_room)),
                               what="the bot typing")
        await until(lambda: proxy.count_paths("/typing/") >= 3, what="two renewals")

        await bridge.typing(matrix_room, False)
        assert typing_tasks() == []
        await alice.wait_until(lambda: bridge.user_id not in alice.typing(matrix_room)[-1],
                               what="the bot to stop typing")
        await bridge.typing(matrix_room, False)  # off again: nothing to do

        await bridge.typing(matrix_room, True)
        await bridge.stop()
        assert typing_tasks() == []
    finally:
        await proxy.stop()


async def test_r13_1_a_reply_to_a_post_names_it_and_a_thread_message_does_not(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R13.1: a reply `allow` to a card decides it: a real reply (in the card's thread as
    Element sends it, `is_falling_back: false`, or a plain one) sets `reply_to` to the
    card; a plain message in the thread, whose fallback `m.in_reply_to` names the card as
    the thread's latest post, does not."""
    bridge, sink, _ = await bot_joined(synapse, bot_account, alice, matrix_room, make_bridge)
    root = await alice.send_text(matrix_room, "deploy?")
    card = await bridge.send(matrix_room, Post("🔐 card", thread=ThreadRef(root, 1),
                                               buttons=CARD_BUTTONS), key="card")
    assert card is not None
    await alice.wait_for_message(matrix_room, lambda e: e["event_id"] == card)

    chatting = await alice.send_text(matrix_room, "just chatting", thread=root)
    await alice.reply(matrix_room, card, "allow", thread=root)
    await alice.reply(matrix_room, card, "deny not now")
    got = {e.text: e for e in await sink.wait_for_texts(
        matrix_room, ["just chatting", "allow", "deny not now"])}

    fallback = await alice.wait_for_message(matrix_room, lambda e: e["event_id"] == chatting)
    assert fallback["content"]["m.relates_to"]["m.in_reply_to"] == {"event_id": card}
    assert got["just chatting"].reply_to is None
    assert (got["allow"].reply_to, got["allow"].thread) == (card, root)
    assert (got["deny not now"].reply_to, got["deny not now"].thread) == (card, None)
