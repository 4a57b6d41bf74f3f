"""End-to-end encryption on a real Synapse (R15): the bridge against people whose own
matrix-nio clients encrypt, as Element does."""

from __future__ import annotations

import asyncio
import logging
import stat
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
from nio import RoomKeyRequest

from crewbridge.bridges.base import Post
from crewbridge.bridges.matrix import MatrixBridge
from tests.platform.matrix.fixtures import matrix_config
from tests.platform.matrix.support import MemoryKV, RecordingSink
from tests.platform.matrix.synapse import Account, Person, SynapseServer, body_of, thread_of
from tests.support.botproc import crewbridge, write_config

MakePerson = Callable[..., Awaitable[Person]]
MakeBridge = Callable[..., Awaitable[MatrixBridge]]


async def test_an_encrypted_room_is_read_and_written_encrypted(
        synapse: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
        bot_account: Account, tmp_path: Path) -> None:
    """R15.1: what a person writes in an encrypted room reaches the core decrypted; what
    the bot posts, edits and reacts there goes out encrypted and the person reads it; the
    crypto store is private to the bot's user (directory 0700, files 0600)."""
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
    store = tmp_path / "data" / "matrix-crypto"
    assert stat.S_IMODE(store.stat().st_mode) == 0o700
    files = list(store.iterdir())
    assert files and all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files), files


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


async def test_encryption_off_in_an_encrypted_bound_room_is_said_once(
        synapse: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
        bot_account: Account, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """R15.4: with `encryption = false`, binding an encrypted room logs a warning naming it
    and posts one notice there saying why the bot cannot read it — one, also after a
    restart; an unencrypted room gets neither."""
    alice = await make_person("alice", encryption=True)
    secret = await alice.create_room(name="secret", invite=(bot_account.user_id,),
                                     encrypted=True)
    plain = await alice.create_room(name="plain", invite=(bot_account.user_id,))
    config = replace(matrix_config(synapse, bot_account), encryption=False)
    kv = MemoryKV()
    for _ in range(2):  # a start, and a restart on the same store
        bridge = await make_bridge(config, kv, data_dir=tmp_path / "data")
        with caplog.at_level(logging.WARNING, logger="crewbridge.bridges.matrix"):
            await bridge.resolve_room(secret)
            await bridge.resolve_room(plain)
        await bridge.stop()
    warnings = [r.getMessage() for r in caplog.records if "end-to-end encrypted" in r.getMessage()]
    assert len(warnings) == 2 and all(secret in w for w in warnings), warnings
    notice = await alice.wait_for_message(secret, lambda e: "encryption = false" in body_of(e),
                                          sender=bot_account.user_id)
    await alice.send_text(plain, "marker")
    await alice.wait_for_message(plain, lambda e: body_of(e) == "marker")
    assert [m["event_id"] for m in alice.messages(secret, sender=bot_account.user_id)] == [
        notice["event_id"]]
    assert alice.messages(plain, sender=bot_account.user_id) == []
    assert not (tmp_path / "data" / "matrix-crypto").exists()


async def check(synapse: SynapseServer, account: Account, rooms: list[str], path: Path,
                **matrix: object) -> subprocess.CompletedProcess[str]:
    config = write_config(path / "c.toml", data_dir=path / "data",
                          channels=[{"name": "webui", "matrix": rooms}],
                          extra={"matrix": {"homeserver": synapse.url,
                                            "user_id": account.user_id,
                                            "access_token": "${MATRIX_ACCESS_TOKEN}",
                                            **matrix}})
    return await asyncio.to_thread(crewbridge, "check", "--config", str(config), "--online",
                                   env={"MATRIX_ACCESS_TOKEN": account.access_token})


async def test_check_online_names_an_encrypted_room_while_encryption_is_off(
        synapse: SynapseServer, make_person: MakePerson, bot_account: Account,
        tmp_path: Path) -> None:
    """R14.1, R15.4: `check --online` with `encryption = false` names each encrypted bound
    room in one line (exit 2); with encryption on it passes, and keeps no crypto store and
    uploads no keys (the bot's real device keeps its own)."""
    alice = await make_person("alice", encryption=True)
    secret = await alice.create_room(name="secret", invite=(bot_account.user_id,),
                                     encrypted=True)
    plain = await alice.create_room(name="plain", invite=(bot_account.user_id,))
    off = await check(synapse, bot_account, [secret, plain], tmp_path, encryption=False)
    assert off.returncode == 2, off.stderr
    lines = off.stderr.strip().splitlines()
    assert len(lines) == 1 and secret in lines[0] and "encryption" in lines[0], lines
    on = await check(synapse, bot_account, [secret, plain], tmp_path)
    assert on.returncode == 0, on.stderr
    assert not (tmp_path / "data" / "matrix-crypto").exists()
    alice.client.olm.users_for_key_query.add(bot_account.user_id)
    await alice.client.keys_query()
    assert list(alice.client.device_store.active_user_devices(bot_account.user_id)) == []


async def test_an_encrypted_reaction_the_store_forgot_is_found_and_taken_back(
        synapse: SynapseServer, make_person: MakePerson, make_bridge: MakeBridge,
        bot_account: Account, tmp_path: Path) -> None:
    """R13.7, R15.1: the bot's reactions in an encrypted room are encrypted, so the server
    lists them as `m.room.encrypted`; a restarted bot that lost its note of one (a fresh
    key-value store, the same crypto store) still finds it, decrypted, and redacts it."""
    alice = await make_person("alice", encryption=True)
    room = await alice.create_room(name="secret", invite=(bot_account.user_id,),
                                   encrypted=True)
    config = matrix_config(synapse, bot_account)
    sink = RecordingSink()
    bridge = await make_bridge(config, MemoryKV(), sink, data_dir=tmp_path / "data")
    await bridge.resolve_room(room)
    await alice.wait_for_membership(room, bot_account.user_id, "join")
    asked = await alice.send_text(room, "please fix it")
    await sink.wait_for_texts(room, ["please fix it"])
    await bridge.react(room, asked, "👀", True)
    [reaction] = await alice.wait_until(
        lambda: alice.reactions(room, asked, sender=bot_account.user_id), what="reaction")
    await bridge.stop()

    restarted = await make_bridge(config, MemoryKV(), data_dir=tmp_path / "data")
    await restarted.react(room, asked, "👀", False)
    await alice.wait_until(lambda: reaction["event_id"] in alice.redacted(room),
                           what="the reaction redacted")
