"""The whole bot (`crewbridge run`) in encrypted rooms on a real Synapse (R15), with people
whose own matrix-nio clients encrypt as Element does: every room below is encrypted, and
every post of the bot a person reads must have come encrypted."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.platform.matrix import test_matrix_e2e
from tests.platform.matrix.synapse import Person, SynapseServer, body_of
from tests.platform.matrix.test_matrix_e2e import MatrixBot, launch, wait_ready

MakePerson = Callable[..., Awaitable[Person]]
bots = test_matrix_e2e.bots  # the fixture: every bot launched is shut down and checked


async def said(bot: MatrixBot, person: Person, room: str, text: str) -> dict:
    """The bot's post containing `text`, which `person` read decrypted."""
    post = await bot.notice(person, room, text)
    assert person.was_encrypted(post["event_id"]), post
    return post


def devices(server: SynapseServer, token: str) -> list[str]:
    """The device ids of the account `token` signs in (the homeserver's list)."""
    req = urllib.request.Request(server.url + "/_matrix/client/v3/devices",
                                 headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return sorted(d["device_id"] for d in json.loads(r.read())["devices"])


async def test_encrypted_topic_room_dm_and_admin_room(
        synapse: SynapseServer, make_person: MakePerson, tmp_path: Path,
        bots: list[MatrixBot]) -> None:
    """R15.1, R1.3, R1.6, R6.1: in an encrypted topic room a message reaches the lead and
    its answer comes back encrypted; an encrypted DM reaches worker carol and her answer
    comes back encrypted; `status` in the encrypted admin room is answered encrypted."""
    alice = await make_person("alice", encryption=True)
    bot = await launch(synapse, alice, tmp_path, encrypted=True)
    bots.append(bot)
    await alice.send_text(bot.rooms["webui"], "hello team, is the build green?")
    reply = await said(bot, alice, "webui", "is the build green?")
    assert "got it" in body_of(reply)
    assert any("is the build green?" in t for t in bot.received("webui"))

    await alice.send_text(bot.rooms["ops"], "status")
    assert "webui" in body_of(await said(bot, alice, "ops", "agent"))

    await alice.send_text(bot.rooms["webui"], "!task @carol fix the login bug")
    await said(bot, alice, "webui", "Task #1 for @carol")
    dm = await alice.create_room(invite=(bot.user_id,), is_direct=True, encrypted=True)
    await said(bot, alice, dm, "@carol")  # the DM help
    await alice.send_text(dm, "@carol how is it going?")
    answer = await said(bot, alice, dm, "how is it going?")
    assert body_of(answer).startswith("carol:\n")
    assert any("how is it going?" in t for t in bot.received("carol"))


async def test_a_restart_keeps_one_device_and_both_ways_decrypt(
        synapse: SynapseServer, make_person: MakePerson, tmp_path: Path,
        bots: list[MatrixBot]) -> None:
    """R15.1: restarted on the same data directory, the bot is the same device — one in
    its account's list, one in the person's view of it, with the same keys — and what
    either side writes is still read: a message said while it was down too."""
    alice = await make_person("alice", encryption=True)
    bot = await launch(synapse, alice, tmp_path, encrypted=True)
    bots.append(bot)
    await alice.send_text(bot.rooms["webui"], "before the restart")
    await said(bot, alice, "webui", "before the restart")
    keys_before = {d.id: d.ed25519
                   for d in alice.client.device_store.active_user_devices(bot.user_id)}
    assert len(keys_before) == 1, keys_before

    assert bot.process is not None
    await bot.process.stop_cleanly()
    await asyncio.to_thread(bot.process.close)
    bot.process = None
    await alice.send_text(bot.rooms["webui"], "while it was down")
    bot.start()
    await wait_ready(bot, alice)
    await said(bot, alice, "webui", "while it was down")
    await alice.send_text(bot.rooms["webui"], "after the restart")
    await said(bot, alice, "webui", "after the restart")

    assert devices(synapse, bot.account.access_token) == [bot.account.device_id]
    keys_after = {d.id: d.ed25519
                  for d in alice.client.device_store.active_user_devices(bot.user_id)}
    assert keys_after == keys_before


async def test_a_second_device_of_the_person_reads_the_bot_and_the_admins_hear_of_it(
        synapse: SynapseServer, make_person: MakePerson, tmp_path: Path,
        bots: list[MatrixBot]) -> None:
    """R15.1, R15.2: a person signs in on a second device; the bot's next posts are read
    on both, and one alert in the admin room names the new device (the first device was
    trusted on first use, without one)."""
    alice = await make_person("alice", encryption=True)
    bot = await launch(synapse, alice, tmp_path, encrypted=True)
    bots.append(bot)
    await alice.send_text(bot.rooms["webui"], "from the first device")
    await said(bot, alice, "webui", "from the first device")

    phone = await make_person(account=alice.account, encryption=True, login=True)
    assert phone.client.device_id != alice.client.device_id
    alert = await said(bot, alice, "ops", "encryption devices of")
    assert alice.user_id in body_of(alert) and str(phone.client.device_id) in body_of(alert)
    await phone.send_text(bot.rooms["webui"], "from the phone")
    reply = await said(bot, alice, "webui", "from the phone")
    await phone.wait_until(lambda: phone.was_encrypted(reply["event_id"]),
                           what="the bot's answer read on the phone")
    assert len(bot.posts(alice, "ops", "encryption devices of")) == 1
