"""R9.1: the HTTP Events API endpoint under requests Slack never sends, against the real
bolt stack (`SlackBridge` in HTTP mode, its aiohttp server, bolt's dispatch) and the
emulator for the Web API.

Each malformed request must get a 4xx and one log line, never a 500 or a traceback; the
body of a request that is not correctly signed is never logged (it is whatever a stranger
chose to send); and the endpoint keeps working for the signed events that follow.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from crewbridge.bridges.slack import SlackBridge
from tests.platform.slack.emulator import SlackEmulator, sign
from tests.platform.slack.test_slack_bridge import MemoryKV, Sink, slack_config

SECRET_MARK = "BODY-NOBODY-MAY-LOG"
"""Put in every refused body: no log record may contain it."""


@pytest.fixture
async def http_bridge(slack_emulator: SlackEmulator, caplog: pytest.LogCaptureFixture
                      ) -> AsyncIterator[tuple[SlackBridge, Sink]]:
    """A bridge in HTTP mode, logging everything: bolt copies the root level into its
    loggers when the app is made, so the level is set first."""
    caplog.set_level(logging.DEBUG)
    bridge = SlackBridge(slack_config(slack_emulator, mode="http"), MemoryKV())
    sink = Sink()
    await bridge.start(sink)
    slack_emulator.events_url = bridge.events_url
    yield bridge, sink
    await bridge.stop()


Headers = Callable[[SlackEmulator, bytes], dict[str, str]]


def signed(content_type: str = "application/json", *, stamp: str | None = None) -> Headers:
    """Headers of a correctly signed request (with a timestamp of our choosing)."""
    def make(emulator: SlackEmulator, body: bytes) -> dict[str, str]:
        now = int(time.time())
        mac = hmac.new(emulator.signing_secret.encode(), f"v0:{now}:".encode() + body,
                       hashlib.sha256)  # over the bytes: some bodies here are not UTF-8
        return {"Content-Type": content_type, "X-Slack-Request-Timestamp": stamp or str(now),
                "X-Slack-Signature": "v0=" + mac.hexdigest()}
    return make


def unsigned(**headers: str) -> Headers:
    def make(_emulator: SlackEmulator, _body: bytes) -> dict[str, str]:
        return {"Content-Type": "application/json", **headers}
    return make


def forged(_emulator: SlackEmulator, body: bytes) -> dict[str, str]:
    now = int(time.time())
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(now),
            "X-Slack-Signature": sign("not-the-secret", now, body.decode())}


def stale(emulator: SlackEmulator, body: bytes) -> dict[str, str]:
    then = int(time.time()) - 600
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": str(then),
            "X-Slack-Signature": sign(emulator.signing_secret, then, body.decode())}


EVENT = json.dumps({"type": "event_callback", "event": {"text": SECRET_MARK}}).encode()


@pytest.mark.parametrize(("name", "body", "headers", "status"), [
    ("a timestamp that is not a number", EVENT,
     unsigned(**{"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}), 400),
    ("a timestamp in exponent form", EVENT,
     unsigned(**{"X-Slack-Request-Timestamp": "1e99", "X-Slack-Signature": "v0=00"}), 400),
    ("no timestamp", EVENT, unsigned(**{"X-Slack-Signature": "v0=00"}), 401),
    ("no signature headers at all", EVENT, unsigned(), 401),
    ("a forged signature", EVENT, forged, 401),
    ("a stale signature (10 minutes old)", EVENT, stale, 401),
    ("a signed body that is not JSON", f"not json {SECRET_MARK}".encode(), signed(), 400),
    ("a signed JSON array", f'["{SECRET_MARK}"]'.encode(), signed(), 400),
    ("a signed form whose payload is not JSON", f"payload={SECRET_MARK}".encode(),
     signed("application/x-www-form-urlencoded"), 400),
    ("a body that is not UTF-8", b"\xff\xfe" + SECRET_MARK.encode(), signed(), 400),
    ("an unsigned body that is not JSON", f"{{{SECRET_MARK}".encode(), unsigned(), 401),
    ("an oversized body", b'{"x": "' + b"x" * (2 * 1024 * 1024) + b'"}', unsigned(), 413),
])
async def test_r9_1_a_malformed_request_is_a_4xx_and_one_log_line(
        slack_emulator: SlackEmulator, http_bridge: tuple[SlackBridge, Sink],
        caplog: pytest.LogCaptureFixture, name: str, body: bytes, headers: Headers,
        status: int) -> None:
    """R9.1: a malformed, unsigned or oversized request gets its 4xx (401 for a forged or
    stale signature, as before) and exactly one log line without a traceback or the body;
    a signed event sent afterwards is delivered as usual."""
    bridge, sink = http_bridge
    assert bridge.events_url is not None
    caplog.clear()
    async with aiohttp.ClientSession() as http, \
            http.post(bridge.events_url, data=body,
                      headers=headers(slack_emulator, body)) as resp:
        answered = resp.status
    await slack_emulator.post_as("U0BOB", "C0WEBUI", "still listening", via="http")
    await sink.wait_inbound("still listening")
    # Taken once the signed event is in: an access-log line is written after the answer.
    # The emulator's own access log (its Web API, under /api/) is not the bot's.
    records = [r for r in caplog.records if "/api/" not in r.getMessage()]
    assert answered == status, name
    logged = [r.getMessage() for r in records if r.levelno >= logging.INFO]
    assert len(logged) == 1, logged
    assert not any(r.exc_info for r in records), name
    assert not any(SECRET_MARK in r.getMessage() for r in records), name
