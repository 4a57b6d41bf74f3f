"""R9.1, R13.1: what the HTTP Events API endpoint does with each request, before bolt sees
it (`bridges.slack_http.check`, pure): refused, handed to bolt, or a click for the bridge.
The same rows run against the real bolt stack in tests/platform/slack/test_slack_http.py."""

from __future__ import annotations

import hashlib
import hmac
import json
from urllib.parse import quote

import pytest
from slack_sdk.signature import SignatureVerifier

from crewbridge.bridges.slack_http import STATUS, Accepted, Refusal, check

SECRET = "s3cret"
NOW = 1_700_000_000


class Clock:
    def now(self) -> float:
        return float(NOW)


VERIFIER = SignatureVerifier(SECRET, clock=Clock())


def signed(body: bytes, stamp: int = NOW, secret: str = SECRET) -> dict[str, str]:
    mac = hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256)
    return {"X-Slack-Request-Timestamp": str(stamp), "X-Slack-Signature": "v0=" + mac.hexdigest()}


EVENT = json.dumps({"type": "event_callback", "event": {"type": "message"}}).encode()
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
CLICK = b"payload=" + quote(json.dumps({"type": "block_actions"})).encode()


@pytest.mark.parametrize(("name", "body", "headers", "content_type", "outcome"), [
    ("a signed event goes to bolt", EVENT, signed(EVENT), JSON, Accepted(EVENT.decode())),
    ("R13.1: a signed click (form with a block_actions payload) goes to the bridge",
     CLICK, signed(CLICK), FORM, Accepted(CLICK.decode(), click={"type": "block_actions"})),
    ("a signed interaction that is not a click goes to bolt",
     b'payload={"type":"view_submission"}', signed(b'payload={"type":"view_submission"}'),
     FORM, Accepted('payload={"type":"view_submission"}')),
    ("a signed form without a payload (a slash command) goes to bolt",
     b"command=%2Fcrew", signed(b"command=%2Fcrew"), FORM, Accepted("command=%2Fcrew")),
    ("an empty signed body goes to bolt (its ssl_check)", b"", signed(b""), FORM, Accepted("")),
    ("no headers", EVENT, {}, JSON, Refusal.UNSIGNED),
    ("no timestamp", EVENT, {"X-Slack-Signature": "v0=00"}, JSON, Refusal.UNSIGNED),
    ("a timestamp that is not a number", EVENT,
     {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"}, JSON,
     Refusal.BAD_TIMESTAMP),
    ("a negative timestamp", EVENT,
     {"X-Slack-Request-Timestamp": "-5", "X-Slack-Signature": "v0=00"}, JSON,
     Refusal.BAD_TIMESTAMP),
    ("forged", EVENT, signed(EVENT, secret="other"), JSON, Refusal.BAD_SIGNATURE),
    ("stale", EVENT, signed(EVENT, stamp=NOW - 600), JSON, Refusal.BAD_SIGNATURE),
    ("not UTF-8", b"\xff{}", signed(b"\xff{}"), JSON, Refusal.NOT_UTF8),
    ("signed, not JSON", b"{nope", signed(b"{nope"), JSON, Refusal.NOT_A_PAYLOAD),
    ("signed, a JSON array", b"[1]", signed(b"[1]"), JSON, Refusal.NOT_A_PAYLOAD),
    ("signed form, payload not JSON", b"payload=x", signed(b"payload=x"), FORM,
     Refusal.NOT_A_PAYLOAD),
    ("unsigned garbage is refused as unsigned, not parsed", b"{nope", {}, JSON,
     Refusal.UNSIGNED),
    ("R13.1: a forged click is refused as a forged event is", CLICK,
     signed(CLICK, secret="other"), FORM, Refusal.BAD_SIGNATURE),
    ("R13.1: an unsigned click too", CLICK, {}, FORM, Refusal.UNSIGNED),
])
def test_r9_1_each_request_is_accepted_or_refused_with_a_reason(
        name: str, body: bytes, headers: dict[str, str], content_type: str,
        outcome: Accepted | Refusal) -> None:
    assert check(body, headers, content_type, VERIFIER) == outcome, name


def test_r9_1_refusals_are_4xx_and_bad_signatures_keep_401() -> None:
    assert all(400 <= status < 500 for status in STATUS.values())
    assert set(STATUS) == set(Refusal)
    assert STATUS[Refusal.BAD_SIGNATURE] == STATUS[Refusal.UNSIGNED] == 401
