"""R14.3 on a real homeserver: `/healthz` of the real core (`App`) with the real
`MatrixBridge` goes 503 naming Matrix while the session's Synapse is stopped, and 200 again
once it is back — the outage as the bridge reports it (R6.3), not as a test injects it.

Only the bridge's backoff cap is shortened, so its return is seen within seconds of
Synapse's; the core runs on the real clock (nothing here waits for an alert).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from crewbridge.bot.app import App
from crewbridge.bot.config import load_config
from crewbridge.bridges.matrix import MatrixBridge
from tests.integration.harness import until
from tests.integration.test_health import healthz, sample, scrape
from tests.platform.matrix.support import MemoryKV
from tests.platform.matrix.synapse import Account, Person, SynapseServer
from tests.support.botproc import cleanup_data_dir, write_config

TIMEOUT_S = 30.0


async def test_r14_3_healthz_is_503_while_synapse_is_stopped_and_200_when_it_is_back(
        synapse: SynapseServer, make_account: Callable[..., Account], alice: Person,
        matrix_room: str, tmp_path: Path) -> None:
    """R14.3, R6.3: 200 while Synapse runs; 503 naming matrix (and
    `crewbridge_platform_up{platform="matrix"}` 0) once it is stopped; 200 (and 1) once it
    runs again, with no restart of the bot."""
    account = make_account("health")
    await alice.invite(matrix_room, account.user_id)
    config = load_config(write_config(tmp_path / "c.toml", extra={
        "http": {"listen": "127.0.0.1:0"},
        "admin": {"matrix": [matrix_room]},
        "matrix": {"homeserver": synapse.url, "user_id": account.user_id,
                   "access_token": account.access_token}}))
    assert config.matrix is not None
    bridge = MatrixBridge(config.matrix, MemoryKV(), backoff_cap_s=2.0)
    app = App(config, bridges={"matrix": bridge})
    try:
        await app.start()
        assert (await healthz(app))[0] == 200
        assert sample(await scrape(app), "crewbridge_platform_up", platform="matrix") == 1

        await asyncio.to_thread(synapse.stop)
        await until(lambda: app.outages.is_down("matrix"), timeout=TIMEOUT_S,
                    what="the bridge reporting Synapse down")
        code, body = await healthz(app)
        assert code == 503
        assert (body["status"], body["down"], body["store"]) == ("down", ["matrix"], "ok")
        assert body["platforms"] == {"matrix": "down"}
        assert sample(await scrape(app), "crewbridge_platform_up", platform="matrix") == 0

        await asyncio.to_thread(synapse.start)
        await until(lambda: not app.outages.is_down("matrix"), timeout=TIMEOUT_S,
                    what="the bridge reporting Synapse back")
        code, body = await healthz(app)
        assert code == 200
        assert body == {"status": "ok", "down": [], "store": "ok",
                        "platforms": {"matrix": "up"}}
        assert sample(await scrape(app), "crewbridge_platform_up", platform="matrix") == 1
    finally:
        await app.stop()
        if not synapse.running:
            await asyncio.to_thread(synapse.start)
        cleanup_data_dir(config.bot.data_dir)
