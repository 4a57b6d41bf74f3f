"""End-to-end encryption on a real Synapse (R15): the bridge against people whose own
matrix-nio clients encrypt, as Element does."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from nio import RoomKeyRequest

from bridges.base import Post
from bridges.matrix import MatrixBridge
from tests.platform.matrix.fixtures import matrix_config
from tests.platform.matrix.support import MemoryKV, RecordingSink
from tests.platform.matrix.synapse import Account, Person, SynapseServer, body_of, thread_of

MakePerson = Callable[..., Awaitable[Person]]
MakeBridge = Callable[..., Awaitable[MatrixBridge]]


async def test_an_encrypted_room_is_read_and_written_encrypted(
        synapse: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
        bot_account: Account, tmp_path: Path) -> None:
    """R15.1: what a person writes in an encrypted room reaches the core decrypted; what
    the bot posts, edits and reacts there goes out encrypted and the person reads it."""
    alice = await make_person("alice", encryption=True)
    room = await alice.create_room(name="secret", invite=(bot_account.user_id,),
                                   encrypted=True)
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account), MemoryKV(), sink,
                               data_dir=tmp_path / "data")
    await bridge.resolve_room(room)
    await alice.wait_for_membership(room, bot_account.user_id, "join")
    asked = await alice.send_text(room, "is the build green?")
    [got] = await sink.wait_for_texts(room, ["is the build green?"])
    assert got.event_id == asked
    ref = await bridge.send(room, Post("it is **green**", author="webui"), key="p1")
    assert ref is not None
    seen = await alice.wait_for_message(room, lambda e: "green" in body_of(e),
                                        sender=bot_account.user_id)
    assert alice.was_encrypted(seen["event_id"])
    await bridge.react(room, asked, "👀", True)
    [reaction] = await alice.wait_until(
        lambda: alice.reactions(room, asked, sender=bot_account.user_id), what="reaction")
    assert alice.was_encrypted(reaction["event_id"])
    await bridge.edit(room, ref, Post("it is red", author="webui"))
    edit = await alice.wait_for_message(room, lambda e: "red" in body_of(e),
                                        sender=bot_account.user_id)
    assert alice.was_encrypted(edit["event_id"])


async def test_an_undecryptable_message_asks_the_sender_and_then_the_room(
        synapse: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
        bot_account: Account, tmp_path: Path) -> None:
    """R15.3: a message whose key the bot never got: the bot asks the sender's devices for
    it (an `m.room_key_request` reaches the person's device), routes nothing from it, and
    once the wait is over (shortened here) posts one notice in the thread naming the sender
    and asking them to write it again; a later message still reads."""
    alice = await make_person("alice", encryption=True)
    room = await alice.create_room(name="secret", invite=(bot_account.user_id,),
                                   encrypted=True)
    sink = RecordingSink()
    bridge = await make_bridge(matrix_config(synapse, bot_account), MemoryKV(), sink,
                               data_dir=tmp_path / "data", undecryptable_wait_s=0.5)
    await bridge.resolve_room(room)
    await alice.wait_for_membership(room, bot_account.user_id, "join")
    root = await alice.send_text(room, "a thread")
    await sink.wait_for_texts(room, ["a thread"])
    lost = await alice.send_unreadable(room, "the lost one", thread=root)

    await alice.wait_until(lambda: any(
        isinstance(e, RoomKeyRequest) and e.sender == bot_account.user_id
        for e in alice.to_device), what="the bot's key request")
    notice = await alice.wait_for_message(room, lambda e: "write it again" in body_of(e),
                                          sender=bot_account.user_id)
    assert alice.was_encrypted(notice["event_id"])
    assert alice.user_id in body_of(notice)
    assert thread_of(notice) == root
    await alice.send_text(room, "marker")
    await sink.wait_for_texts(room, ["marker"])
    assert sink.texts(room) == ["a thread", "marker"]  # nothing routed from the lost one
    assert lost not in [e.event_id for e in sink.inbound(room)]
    assert len([m for m in alice.messages(room, sender=bot_account.user_id)
                if "write it again" in body_of(m)]) == 1
