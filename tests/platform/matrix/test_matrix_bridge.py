"""The real `MatrixBridge` against a real Synapse, with people played by matrix-nio clients.

The sink stands in for the core (it records what the bridge hands over); everything between
the bridge and the people — matrix-nio, HTTP, Synapse — is real. Each test names the
requirement it checks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from nio import RoomSendResponse

from crewbridge.bridges.base import (
    AuthorRole,
    BridgeEvent,
    Inbound,
    Post,
    RateLimited,
    RoomUnresolvable,
    ThreadRef,
)
from crewbridge.bridges.matrix import MatrixBridge
from crewbridge.bridges.matrix_events import MAX_EVENT_BYTES, post_contents
from crewbridge.bridges.matrix_login import KV_DEVICE, KV_NEXT_BATCH, MatrixStartError
from crewbridge.bridges.render import to_matrix_html
from crewbridge.bridges.settings import MatrixConfig
from tests.integration.harness import until
from tests.platform.matrix.fixtures import matrix_config
from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.support import MemoryKV, RecordingSink
from tests.platform.matrix.synapse import (
    Account,
    Person,
    SynapseServer,
    body_of,
    free_port,
    msgtype_of,
    thread_of,
)

MakeBridge = Callable[..., Awaitable[MatrixBridge]]
MakePerson = Callable[..., Awaitable[Person]]


async def bot_in_room(bridge: MatrixBridge, sink: RecordingSink, person: Person,
                      room: str) -> None:
    """`person` invites the bot to `room`; wait until the bridge joined and said so."""
    await person.invite(room, bridge.user_id)
    await sink.wait_for_join(room)
    await person.wait_for_membership(room, bridge.user_id, "join")


async def test_person_message_is_one_inbound(synapse: SynapseServer, bot_account: Account,
                                             alice: Person, matrix_room: str,
                                             make_bridge: MakeBridge) -> None:
    """R1.3/R9.2: a person's message reaches the core once, with sender, name, event id."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)

    event_id = await alice.send_text(matrix_room, "hello lead")
    [got] = await sink.wait_for_texts(matrix_room, ["hello lead"])
    await alice.send_text(matrix_room, "marker")
    await sink.wait_for_texts(matrix_room, ["marker"])

    assert sink.texts(matrix_room) == ["hello lead", "marker"]
    assert got.platform == "matrix"
    assert got.sender == alice.user_id
    assert got.sender_name == "Alice"
    assert got.event_id == event_id
    assert got.is_direct is False
    assert got.ts > 0


async def test_own_posts_and_notices_never_become_input(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_person: MakePerson, make_bridge: MakeBridge) -> None:
    """R5.5: the bot's own posts (m.notice or m.text) and other bots' m.notice never reach
    the core; only the person's m.text and m.emote do."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    other_bot = await make_person("otherbot")
    await alice.invite(matrix_room, other_bot.user_id)
    await other_bot.wait_until(lambda: matrix_room in other_bot.client.invited_rooms,
                               what="the invite")
    await other_bot.client.join(matrix_room)

    # The bridge posts only m.notice; an m.text from the bot's account (another client of
    # it, or an older version) must not loop either: its sender id is enough.
    bot_as_person = await make_person(account=bot_account)
    await bridge.send(matrix_room, Post("bot output as notice"), key="own-1")
    await bot_as_person.send_text(matrix_room, "bot output as text")
    await other_bot.send_text(matrix_room, "another bot's notice", msgtype="m.notice")
    await alice.send_text(matrix_room, "waves", msgtype="m.emote")
    await alice.send_text(matrix_room, "marker")
    await alice.wait_for_message(matrix_room, lambda e: body_of(e) == "bot output as text")
    await sink.wait_for_texts(matrix_room, ["marker"])

    assert sink.texts(matrix_room) == ["waves", "marker"]


async def test_invites_joined_only_from_allowed_users(
        synapse: SynapseServer, bot_account: Account, alice: Person, make_person: MakePerson,
        make_bridge: MakeBridge) -> None:
    """R1.5: an invite from an allowed user is joined and reported as RoomJoined; one from
    anyone else is left alone."""
    eve = await make_person("eve")
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    eves_room = await eve.create_room(invite=(bridge.user_id,))
    alices_room = await alice.create_room(invite=(bridge.user_id,))

    joined = await sink.wait_for_join(alices_room)
    await alice.wait_for_membership(alices_room, bridge.user_id, "join")
    # Eve invited first, so her invite was in the same or an earlier sync batch: decided.
    assert joined.inviter == alice.user_id
    assert joined.is_direct is False
    assert [j.room for j in sink.joined()] == [alices_room]
    await eve.wait_for_membership(eves_room, bridge.user_id, "invite")  # and still only that


async def test_server_suffix_allows_local_users(synapse: SynapseServer, bot_account: Account,
                                                alice: Person, make_bridge: MakeBridge) -> None:
    """R1.5: `:server` in `allow_invites_from` admits everyone on that homeserver."""
    sink = RecordingSink()
    await make_bridge(matrix_config(synapse, bot_account,
                                    allow_invites_from=(f":{synapse.server_name}",)), sink=sink)
    room = await alice.create_room(invite=(bot_account.user_id,))
    assert (await sink.wait_for_join(room)).inviter == alice.user_id


async def test_invites_pending_at_first_start_are_joined_once_running(
        synapse: SynapseServer, bot_account: Account, alice: Person,
        make_bridge: MakeBridge) -> None:
    """R1.5/R11.4: invites waiting before the bot's very first start are accepted — after
    `start` returned, because the core takes no event before every bridge has started."""
    room = await alice.create_room(invite=(bot_account.user_id,))
    ready = asyncio.Event()
    inner = RecordingSink()

    async def core(event: BridgeEvent) -> None:
        await ready.wait()  # like bot.app: nothing is taken before start-up is complete
        await inner(event)

    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    await asyncio.wait_for(make_bridge(config, sink=core), 15)
    ready.set()
    assert (await inner.wait_for_join(room)).inviter == alice.user_id


async def test_direct_room_messages_are_direct(synapse: SynapseServer, bot_account: Account,
                                               alice: Person, make_bridge: MakeBridge) -> None:
    """R1.6: a room the bot was invited to with `is_direct` is a DM: RoomJoined and every
    Inbound say so, also after a restart (remembered in the store); the first line, written
    before the bot had joined, is not lost."""
    kv = MemoryKV()
    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink)
    dm = await alice.create_room(invite=(bridge.user_id,), is_direct=True)
    await alice.send_text(dm, "@bob first line")

    assert (await sink.wait_for_join(dm)).is_direct is True
    [first] = await sink.wait_for_texts(dm, ["@bob first line"])
    assert first.is_direct is True

    await bridge.stop()
    await alice.send_text(dm, "while you were away")
    sink2 = RecordingSink()
    await make_bridge(config, kv, sink2)
    [later] = await sink2.wait_for_texts(dm, ["while you were away"])
    assert later.is_direct is True
    assert sink.texts(dm) == ["@bob first line"]


async def test_send_is_a_notice_with_html_and_plain_body(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R5.5/R5.6: bot output is an m.notice with `formatted_body` HTML and a plain `body`."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    text = "Done: **all tests pass** in `make test`.\n\n- one\n- two"

    await bridge.send(matrix_room, Post(text), key="post-1")
    event = await alice.wait_for_message(matrix_room, sender=bridge.user_id)

    content = event["content"]
    assert content["msgtype"] == "m.notice"
    assert content["format"] == "org.matrix.custom.html"
    assert content["formatted_body"] == to_matrix_html(text)
    assert "<strong>all tests pass</strong>" in content["formatted_body"]
    assert "<code>make test</code>" in content["formatted_body"]
    assert content["body"] == text


async def test_r5_7_the_author_is_a_bold_line_and_a_fence_after_it_stays_code(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R5.7: the author's name is a bold paragraph of its own (`name:` on a line of its own
    in the plain body), so a post that starts with a code fence renders as a code block
    right after the name, not as text glued to it; the name is escaped."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    text = "```python\nprint('ok')\n```\nran it"

    await bridge.send(matrix_room, Post(text, "webui", AuthorRole.LEAD), key="named-1")
    await bridge.send(matrix_room, Post("hi", "<i>al</i> (slack)", AuthorRole.PERSON),
                      key="named-2")
    code, relayed = await alice.wait_for_messages(matrix_room, 2, sender=bridge.user_id)

    assert code["content"]["msgtype"] == "m.notice"
    assert code["content"]["body"] == f"webui:\n{text}"
    name = "<p><strong>webui</strong></p>"
    assert code["content"]["formatted_body"] == name + to_matrix_html(text)
    assert code["content"]["formatted_body"].startswith(name + "<pre")
    assert relayed["content"]["formatted_body"].startswith(
        "<p><strong>&lt;i&gt;al&lt;/i&gt; (slack)</strong></p>")


async def test_r12_1_a_post_in_a_thread_is_in_the_thread_and_returns_its_first_event(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R12.1: a post in a thread carries `m.thread` to the root with the reply fallback
    (`is_falling_back`, `m.in_reply_to` the latest post, else the root) on every part; the
    homeserver files every part under the root's thread, in order, so a person's client
    shows them in the thread; `send` returns the first part's event id (R12.5)."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    root = await alice.send_text(matrix_room, "please look at the login bug")
    long_answer = "\n\n".join(f"step {i}: " + "x" * 9000 for i in range(3))

    first = await bridge.send(matrix_room, Post("on it", "webui", AuthorRole.LEAD,
                                                ThreadRef(root, 1)), key="thread-1")
    second = await bridge.send(matrix_room, Post(long_answer, "webui", AuthorRole.LEAD,
                                                 ThreadRef(root, 1, latest=first)),
                               key="thread-2")
    parts = len(post_contents(Post(long_answer, "webui")))
    assert parts >= 3
    posts = await alice.wait_for_messages(matrix_room, 1 + parts, sender=bridge.user_id)

    assert [p["event_id"] for p in posts[:2]] == [first, second]
    fallback = {"rel_type": "m.thread", "event_id": root, "is_falling_back": True}
    assert posts[0]["content"]["m.relates_to"] == {**fallback,
                                                  "m.in_reply_to": {"event_id": root}}
    for part in posts[1:]:
        assert part["content"]["m.relates_to"] == {**fallback,
                                                  "m.in_reply_to": {"event_id": first}}
        assert body_of(part).startswith("webui:\n")
    assert all(thread_of(p) == root for p in posts)
    assert await alice.thread_events(matrix_room, root) == [p["event_id"] for p in posts]


async def test_r5_1_a_thread_the_homeserver_refuses_is_posted_at_the_top_once(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R5.1/R8.3: Synapse refuses a thread whose root is itself a relation (here a message
    already in a thread); the post is not lost but shown at the top level, and sending
    the same post again (a retry) does not post it twice."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    root = await alice.send_text(matrix_room, "a question")
    in_thread = await alice.send_text(matrix_room, "a reply in its thread", thread=root)
    post = Post("the answer", "webui", AuthorRole.LEAD, ThreadRef(in_thread, 1))

    sent = await bridge.send(matrix_room, post, key="refused-1")
    again = await bridge.send(matrix_room, post, key="refused-1")
    await bridge.send(matrix_room, Post("marker"), key="refused-2")
    await alice.wait_for_message(matrix_room, lambda e: body_of(e) == "marker")

    assert sent is not None and again == sent
    [shown, _] = alice.messages(matrix_room, sender=bridge.user_id)
    assert shown["event_id"] == sent
    assert body_of(shown) == "webui:\nthe answer"
    assert "m.relates_to" not in shown["content"]


async def test_r12_2_a_reply_in_a_thread_names_its_root_and_edits_are_not_messages(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R12.2: a person's reply in the thread of a bot's post (sent as Element does) reaches
    the core with `thread` = the root's event id (the id `send` returned) and its own event
    id; a plain reply (`m.in_reply_to` without `m.thread`) is a top-level message without
    its quoted fallback; R8.1: an edit of a person's message is not a new message."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    root = await bridge.send(matrix_room, Post("Task #1 for @carol", "crewbridge"),
                             key="root-1")
    assert root is not None
    await alice.wait_for_message(matrix_room, lambda e: e["event_id"] == root)

    in_thread = await alice.send_text(matrix_room, "any news?", thread=root)
    quoted = await alice.send_text(matrix_room, "a top-level question")
    resp = await alice.client.room_send(matrix_room, "m.room.message", {
        "msgtype": "m.text", "body": "> <@x:y> a top-level question\n\nthe answer",
        "m.relates_to": {"m.in_reply_to": {"event_id": quoted}}})
    assert isinstance(resp, RoomSendResponse)
    await alice.edit(matrix_room, in_thread, "any news, carol?")
    await alice.send_text(matrix_room, "marker", thread=root)
    await sink.wait_for_texts(matrix_room, ["marker"])

    got = {e.text: e for e in sink.inbound(matrix_room)}
    assert list(got) == ["any news?", "a top-level question", "the answer", "marker"]
    assert (got["any news?"].thread, got["any news?"].event_id) == (root, in_thread)
    assert got["any news?"].ref == ""  # a reply names it by its event id
    assert got["marker"].thread == root
    assert got["a top-level question"].thread is None
    assert got["the answer"].thread is None


async def test_long_text_is_split_in_order(synapse: SynapseServer, bot_account: Account,
                                           alice: Person, matrix_room: str,
                                           make_bridge: MakeBridge) -> None:
    """R5.2: a post over the Matrix limit arrives as several notices, in order, each event
    well under 65,536 bytes, nothing lost."""
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)), sink=sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    paragraphs = [f"Paragraph {i:02d}: " + ("lorem ipsum & dolor " * 250).strip()
                  for i in range(12)]  # about 60 KB of text

    await bridge.send(matrix_room, Post("\n\n".join(paragraphs)), key="long-1")
    parts = await alice.wait_for_messages(matrix_room, 4, sender=bridge.user_id)
    # wait for the rest: the last paragraph's header marks the end of the post
    await alice.wait_for_message(matrix_room, lambda e: "Paragraph 11" in body_of(e),
                                 sender=bridge.user_id)
    parts = alice.messages(matrix_room, sender=bridge.user_id)

    assert len(parts) >= 4
    assert all(msgtype_of(p) == "m.notice" for p in parts)
    assert all(len(json.dumps(p).encode()) < MAX_EVENT_BYTES // 2 for p in parts)
    joined = "\n\n".join(body_of(p) for p in parts)
    assert [p.split(":")[0] for p in joined.split("\n\n") if p.strip()] == \
        [f"Paragraph {i:02d}" for i in range(12)]


async def test_resending_a_key_posts_once(synapse: SynapseServer, bot_account: Account,
                                          alice: Person, matrix_room: str,
                                          make_bridge: MakeBridge) -> None:
    """R8.3: the post key is the transaction id, so a retry — also from a restarted bot with
    password login, which keeps its device — is not a second message."""
    kv = MemoryKV()
    config = matrix_config(synapse, bot_account, password=True,
                           allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    device = kv.data[KV_DEVICE]

    long_post = "\n\n".join(f"part {i}: " + "x" * 9000 for i in range(3))  # several events

    await bridge.send(matrix_room, Post("once only"), key="outbox-7")
    await bridge.send(matrix_room, Post("once only"), key="outbox-7")
    await bridge.send(matrix_room, Post(long_post), key="outbox-8")
    await bridge.send(matrix_room, Post(long_post), key="outbox-8")
    await bridge.stop()
    again = await make_bridge(config, kv, RecordingSink())
    assert again.device_id == device
    await again.send(matrix_room, Post("once only"), key="outbox-7")
    await again.send(matrix_room, Post(long_post), key="outbox-8")
    await again.send(matrix_room, Post("the next post"), key="outbox-9")
    await alice.wait_for_message(matrix_room, lambda e: body_of(e) == "the next post")

    parts = [content["body"] for content in post_contents(Post(long_post))]
    assert len(parts) >= 3
    assert [body_of(e) for e in alice.messages(matrix_room, sender=bridge.user_id)] == \
        ["once only", *parts, "the next post"]


async def test_first_start_does_not_replay_history(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R8.2: a bot starting for the first time begins at "now": what was said before in
    rooms it is already in never reaches the agents."""
    bot_as_person = await Person.connect(synapse, bot_account)
    try:
        await alice.invite(matrix_room, bot_account.user_id)
        await bot_as_person.wait_until(lambda: matrix_room in bot_as_person.client.invited_rooms,
                                       what="the invite")
        await bot_as_person.client.join(matrix_room)
        await alice.wait_for_membership(matrix_room, bot_account.user_id, "join")
    finally:
        await bot_as_person.close()
    await alice.send_text(matrix_room, "old news")

    sink = RecordingSink()
    await make_bridge(matrix_config(synapse, bot_account), sink=sink)
    await alice.send_text(matrix_room, "new news")
    await sink.wait_for_texts(matrix_room, ["new news"])

    assert sink.texts(matrix_room) == ["new news"]


async def test_restart_delivers_what_was_missed_exactly_once(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R8.2: stop the bot, a person posts 3 messages, start a new bot on the same store:
    exactly those 3 arrive, once each, in order."""
    kv = MemoryKV()
    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    await alice.send_text(matrix_room, "before")
    await sink.wait_for_texts(matrix_room, ["before"])
    await bridge.stop()

    for text in ("one", "two", "three"):
        await alice.send_text(matrix_room, text)
    sink2 = RecordingSink()
    await make_bridge(config, kv, sink2)
    await sink2.wait_for_texts(matrix_room, ["one", "two", "three"])
    await alice.send_text(matrix_room, "after")
    await sink2.wait_for_texts(matrix_room, ["after"])

    assert sink2.texts(matrix_room) == ["one", "two", "three", "after"]


async def test_long_downtime_fills_the_gap(synapse: SynapseServer, bot_account: Account,
                                           alice: Person, matrix_room: str,
                                           make_bridge: MakeBridge) -> None:
    """R8.2: when more was said during a downtime than a sync returns (a `limited`
    timeline), the bridge fetches the gap: nothing is lost, nothing doubled, order kept."""
    kv = MemoryKV()
    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink, timeline_limit=3)
    await bot_in_room(bridge, sink, alice, matrix_room)
    await bridge.stop()

    texts = [f"missed {i}" for i in range(11)]
    for text in texts:
        await alice.send_text(matrix_room, text)
    sink2 = RecordingSink()
    await make_bridge(config, kv, sink2, timeline_limit=3)
    await sink2.wait_for_texts(matrix_room, texts)

    assert sink2.texts(matrix_room) == texts


async def test_failed_batch_is_not_acknowledged(synapse: SynapseServer, bot_account: Account,
                                                alice: Person, matrix_room: str,
                                                make_bridge: MakeBridge) -> None:
    """R8.2: when the core fails on an event mid-batch, the sync position is not saved, so
    a restarted bot gets the whole batch again (the core drops what it already stored)."""
    kv = MemoryKV()
    config = matrix_config(synapse, bot_account, allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, kv, sink)
    await bot_in_room(bridge, sink, alice, matrix_room)
    await bridge.stop()
    saved = kv.data[KV_NEXT_BATCH]

    for text in ("one", "two", "three"):
        await alice.send_text(matrix_room, text)
    failing = RecordingSink(fail_when=lambda e: isinstance(e, Inbound) and e.text == "two")
    # A different filter than the stopped bridge's: Synapse answers an identical sync request
    # from its response cache (about 2 min), i.e. with the batch the stopped bridge's cut
    # long-poll got ("one" alone). Here all three must come in one batch.
    broken = await make_bridge(config, kv, failing, backoff_cap_s=60, timeline_limit=20)
    await failing.wait_until(lambda: failing.failures, what="the sink to fail")
    await broken.stop()

    assert failing.texts(matrix_room) == ["one"]
    assert kv.data[KV_NEXT_BATCH] == saved
    sink3 = RecordingSink()
    await make_bridge(config, kv, sink3)
    await sink3.wait_for_texts(matrix_room, ["one", "two", "three"])
    assert sink3.texts(matrix_room) == ["one", "two", "three"]


async def test_failed_batch_is_retried_by_the_running_bridge(
        synapse: SynapseServer, bot_account: Account, alice: Person, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R8.2: a sink failure is retried (with backoff) without a restart; nothing is lost."""
    failed_once: list[bool] = []

    def fail_once(e: object) -> bool:
        if isinstance(e, Inbound) and e.text == "flaky" and not failed_once:
            failed_once.append(True)
            return True
        return False

    sink = RecordingSink(fail_when=fail_once)
    bridge = await make_bridge(matrix_config(synapse, bot_account,
                                             allow_invites_from=(alice.user_id,)),
                               sink=sink, backoff_base_s=0.2)
    await bot_in_room(bridge, sink, alice, matrix_room)
    await alice.send_text(matrix_room, "flaky")
    await sink.wait_for_texts(matrix_room, ["flaky"])
    assert sink.texts(matrix_room) == ["flaky"]
    assert len(sink.failures) == 1


async def test_resolve_room_by_alias_and_id(synapse: SynapseServer, bot_account: Account,
                                            alice: Person, make_bridge: MakeBridge) -> None:
    """R1.2/R11.4: aliases resolve to room ids; a bound room the bot is invited to is joined
    at start-up whoever invited it; a room it is already in resolves as is."""
    alias_local = synapse.new_localpart("webui")
    by_alias = await alice.create_room(alias=alias_local, invite=(bot_account.user_id,))
    by_id = await alice.create_room(invite=(bot_account.user_id,))
    bridge = await make_bridge(matrix_config(synapse, bot_account))  # nobody allowed to invite

    assert await bridge.resolve_room(f"#{alias_local}:{synapse.server_name}") == by_alias
    assert await bridge.resolve_room(by_id) == by_id
    await alice.wait_for_membership(by_alias, bot_account.user_id, "join")
    await alice.wait_for_membership(by_id, bot_account.user_id, "join")
    assert await bridge.resolve_room(by_id) == by_id  # already joined


@pytest.mark.parametrize("ref", ["#no-such-room:crewbridge.test", "general", "!nosuchroom"])
async def test_unresolvable_room_names_the_reference(synapse: SynapseServer,
                                                     bot_account: Account, ref: str,
                                                     make_bridge: MakeBridge) -> None:
    """R1.2/R11.4: an unknown alias, a malformed reference or a room the bot cannot join is
    a clear error naming the configured reference."""
    bridge = await make_bridge(matrix_config(synapse, bot_account))
    with pytest.raises(RoomUnresolvable) as info:
        await bridge.resolve_room(ref)
    assert ref in str(info.value)


async def test_private_room_without_invite_is_unresolvable(
        synapse: SynapseServer, bot_account: Account, matrix_room: str,
        make_bridge: MakeBridge) -> None:
    """R11.4: a bound room the bot is not invited to: one clear error saying what to do."""
    bridge = await make_bridge(matrix_config(synapse, bot_account))
    with pytest.raises(RoomUnresolvable) as info:
        await bridge.resolve_room(matrix_room)
    assert matrix_room in str(info.value)
    assert f"invite {bot_account.user_id}" in str(info.value)


async def test_bad_token_fails_start_clearly(synapse: SynapseServer, bot_account: Account,
                                             make_bridge: MakeBridge) -> None:
    """R9.2/R11.1: a refused access token stops start-up with a clear error (no secret)."""
    bad = MatrixConfig(homeserver=synapse.url, user_id=bot_account.user_id,
                       access_token="syt_not_a_real_token_123456")
    with pytest.raises(MatrixStartError) as info:
        await make_bridge(bad)
    assert "refused the access token" in str(info.value)
    assert "syt_not_a_real_token" not in str(info.value)


async def test_unreachable_homeserver_fails_start_clearly(bot_account: Account,
                                                          make_bridge: MakeBridge) -> None:
    """R9.2: a homeserver that cannot be reached at start-up is a clear start-up error."""
    bad = MatrixConfig(homeserver=f"http://127.0.0.1:{free_port()}", user_id=bot_account.user_id,
                       access_token=bot_account.access_token)
    with pytest.raises(MatrixStartError) as info:
        await make_bridge(bad)
    assert "cannot check the access token" in str(info.value)


async def burst_until_limited(bridge: MatrixBridge, room: str) -> tuple[int, RateLimited]:
    """Post until the homeserver says 429; (posts that went through, the error)."""
    for i in range(30):
        try:
            await bridge.send(room, Post(f"burst {i}"), key=f"burst-{i}")
        except RateLimited as e:
            return i, e
    raise AssertionError("Synapse at default limits never answered 429")


async def limited_bot(server: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
                      homeserver: str | None = None) -> tuple[MatrixBridge, str]:
    """A bot in a fresh room on `server` (optionally reached through another URL)."""
    alice = await make_person("alice", server=server)
    bot = server.register(server.new_localpart("crew"), displayname="crew")
    config = MatrixConfig(homeserver=homeserver or server.url, user_id=bot.user_id,
                          access_token=bot.access_token, allow_invites_from=(alice.user_id,))
    sink = RecordingSink()
    bridge = await make_bridge(config, sink=sink)
    room = await alice.create_room(invite=(bot.user_id,))
    await sink.wait_for_join(room)
    return bridge, room


async def test_rate_limit_surfaces_as_rate_limited(
        synapse_default_limits: SynapseServer, make_person: MakePerson,
        make_bridge: MakeBridge) -> None:
    """R8.3: at Synapse's default limits a burst of posts meets `M_LIMIT_EXCEEDED`; the
    bridge raises `RateLimited` at once (nio's retry-forever is off) with the wait Synapse
    asked for (`retry_after_ms`), leaving the retry to the outbox."""
    bridge, room = await limited_bot(synapse_default_limits, make_person, make_bridge)
    sent, limited = await burst_until_limited(bridge, room)
    assert 0 < sent < 30
    assert limited.retry_after_s is not None and 0 < limited.retry_after_s <= 60


async def test_rate_limit_read_from_retry_after_header(
        synapse_default_limits: SynapseServer, make_person: MakePerson,
        make_bridge: MakeBridge) -> None:
    """R8.3: a 429 that gives the wait only in the `Retry-After` header (no
    `retry_after_ms`) still yields that wait."""
    proxy = CountingProxy(synapse_default_limits.url, strip_retry_after_ms=True)
    await proxy.start()
    try:
        bridge, room = await limited_bot(synapse_default_limits, make_person, make_bridge,
                                         homeserver=proxy.url)
        _, limited = await burst_until_limited(bridge, room)
        assert limited.retry_after_s is not None
        assert limited.retry_after_s == float(int(limited.retry_after_s)) > 0  # whole seconds
        await bridge.stop()
    finally:
        await proxy.stop()


async def test_an_idle_long_poll_writes_nothing(synapse: SynapseServer, bot_account: Account,
                                                make_bridge: MakeBridge) -> None:
    """R8.2, issue 8 item 6: a long poll that returns with nothing new brings back the
    position it was given; the bridge does not write it to the store again, so an idle
    bot's only work is its long poll."""
    proxy = CountingProxy(synapse.url)
    await proxy.start()
    try:
        kv = MemoryKV()
        config = replace(matrix_config(synapse, bot_account), homeserver=proxy.url)
        bridge = await make_bridge(config, kv, sync_timeout_ms=100)
        # A request starts only after the one before it was handled (the loop is serial).
        settled = len(proxy.requests) + 2
        await until(lambda: len(proxy.requests) >= settled, what="two long polls")
        written = len(kv.writes)
        await until(lambda: len(proxy.requests) >= settled + 4, what="four more long polls")
        assert kv.data[KV_NEXT_BATCH]
        assert kv.writes[written:] == []
        await bridge.stop()
    finally:
        await proxy.stop()
