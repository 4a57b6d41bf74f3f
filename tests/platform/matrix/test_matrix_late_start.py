"""A homeserver that cannot be reached when the bot starts (R14.2): the bot runs — the
console works, the outage is logged — and connects when the homeserver is back, binding
its rooms then; a person's message there is answered. Never an exit 2 for a network."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.platform.matrix.proxy import CountingProxy
from tests.platform.matrix.synapse import Person, SynapseServer, body_of, free_port
from tests.platform.matrix.test_matrix_e2e import TIMEOUT
from tests.support.botproc import BotProcess, cleanup_data_dir, short_data_dir, write_config


async def test_r14_2_an_unreachable_homeserver_at_start_up_is_waited_for(
        synapse: SynapseServer, alice: Person, tmp_path: Path) -> None:
    account = synapse.register(synapse.new_localpart("crew"))
    room = await alice.create_room(name="webui", invite=(account.user_id,))
    proxy = CountingProxy(f"http://127.0.0.1:{free_port()}")  # nothing there: 502s
    await proxy.start()
    data_dir = short_data_dir()
    config = write_config(
        tmp_path / "crewbridge.toml", data_dir=data_dir,
        channels=[{"name": "webui", "matrix": [room]}],
        extra={"matrix": {"homeserver": proxy.url, "user_id": account.user_id,
                          "access_token": "${MATRIX_ACCESS_TOKEN}"},
               "console": {"enabled": True}})
    bot = BotProcess(config, env={"MATRIX_ACCESS_TOKEN": account.access_token})
    try:
        await asyncio.to_thread(bot.wait_ready)
        assert bot.proc.poll() is None, bot.stderr  # running, not exit 2
        bot.send("#general hello while matrix is away")
        await asyncio.to_thread(bot.wait_for, r"^#general(/\d+)? general: got it", TIMEOUT)
        assert "cannot be reached" in bot.stderr
        proxy.upstream = synapse.url  # the homeserver is back
        await alice.wait_for_membership(room, account.user_id, "join", timeout=90)
        await alice.send_text(room, "are you there now?")
        reply = await alice.wait_for_message(room, lambda e: "got it" in body_of(e),
                                             sender=account.user_id, timeout=TIMEOUT)
        assert "are you there now?" in body_of(reply)
    finally:
        await asyncio.to_thread(bot.close)
        await proxy.stop()
        cleanup_data_dir(data_dir)
