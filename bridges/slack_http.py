"""Slack's HTTP Events API endpoint: every request is checked before bolt sees it (R9.1).

Bolt's aiohttp server parses the body before it checks the signature, and its parser and
verifier raise on input Slack never sends: a timestamp that is not an integer, a body that
is not JSON or form data, a JSON array, bytes that are not UTF-8. Each of those became a
500 with a traceback, from anyone who can reach the port; and an unsigned request's body
was written to the log by bolt's verifier. So the endpoint is ours: `check` decides (pure,
table-tested) and answers every bad request with a 4xx and one log line that never holds
the body; only a signed, well-formed request reaches bolt's dispatch. The signature is
checked here, once, with slack_sdk's own verifier, so bolt's check (and its logging of
bodies) is turned off.

A click (a form post whose `payload` is `block_actions`, R13.1) is signed like an event
and refused like one, but once accepted it goes to the bridge's `on_click`, not to bolt,
and is answered 200 at once: bolt's dispatch raises on some malformed clicks before any
listener runs (`bridges.slack_socket` says which), and Slack wants a click acked within
3 s and never sends it again, so there is no reason to wait for the store.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from crewbridge.bridges.slack_socket import OnClick, is_click

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Slack's event payloads are a few KiB; anything near this is not from Slack."""

TIMESTAMP = "X-Slack-Request-Timestamp"
SIGNATURE = "X-Slack-Signature"


class Refusal(StrEnum):
    """Why a request was not handed to bolt; each is one log line and a 4xx."""

    UNSIGNED = "no signature"
    BAD_TIMESTAMP = "a timestamp that is not a number of seconds"
    BAD_SIGNATURE = "a forged or stale signature"
    NOT_UTF8 = "a body that is not UTF-8"
    NOT_A_PAYLOAD = "a body that is neither a JSON object nor form data"
    TOO_LARGE = "a body larger than 1 MiB"


STATUS = {Refusal.UNSIGNED: 401, Refusal.BAD_SIGNATURE: 401, Refusal.BAD_TIMESTAMP: 400,
          Refusal.NOT_UTF8: 400, Refusal.NOT_A_PAYLOAD: 400, Refusal.TOO_LARGE: 413}


@dataclass(frozen=True)
class Accepted:
    """A signed, well-formed request: its body as text, for bolt; or a click's payload,
    for the bridge."""

    body: str
    click: dict[str, Any] | None = None


def _parsed(body: str, content_type: str) -> dict[str, Any] | Refusal | None:
    """What bolt's body parser reads `body` into: a JSON object, or the JSON object in form
    data's `payload` (interactions); None for form data without one, `NOT_A_PAYLOAD` for
    what bolt could not read into an object. Mirrors
    `slack_bolt.request.internals.parse_body`, which decides JSON by content type or a
    leading `{`."""
    try:
        if content_type == "application/json" or body.startswith("{"):
            parsed = json.loads(body)
        else:
            form = dict(parse_qsl(body, keep_blank_values=True))
            if "payload" not in form:
                return None
            parsed = json.loads(form["payload"])
    except ValueError:
        return Refusal.NOT_A_PAYLOAD
    return parsed if isinstance(parsed, dict) else Refusal.NOT_A_PAYLOAD


def check(raw: bytes, headers: Mapping[str, str], content_type: str,
          verifier: SignatureVerifier) -> Accepted | Refusal:
    """What to do with one POST: hand it to bolt (or, a click, to the bridge), or refuse
    it and why. The signature is checked before the body is parsed, so nothing unsigned
    is parsed."""
    timestamp, signature = headers.get(TIMESTAMP), headers.get(SIGNATURE)
    if not timestamp or not signature:
        return Refusal.UNSIGNED
    if not timestamp.strip().isdigit():
        return Refusal.BAD_TIMESTAMP
    try:
        body = raw.decode("utf-8")  # the verifier decodes too, and raises
    except UnicodeDecodeError:
        return Refusal.NOT_UTF8
    if not verifier.is_valid(body, timestamp.strip(), signature):
        return Refusal.BAD_SIGNATURE
    parsed = _parsed(body, content_type) if body else None
    if isinstance(parsed, Refusal):
        return parsed
    return Accepted(body, click=parsed if is_click(parsed) else None)


def events_app(app: AsyncApp, signing_secret: str, path: str,
               on_click: OnClick) -> web.Application:
    """The aiohttp application serving `path` for `app` (built with request verification
    off: it is done here), its clicks for `on_click`. No access log: each refusal is
    logged once, by us."""
    verifier = SignatureVerifier(signing_secret)

    async def handle(request: web.Request) -> web.Response:
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _refuse(request, Refusal.TOO_LARGE)
        decision = check(raw, request.headers, request.content_type, verifier)
        if isinstance(decision, Refusal):
            return _refuse(request, decision)
        if decision.click is not None:
            on_click(decision.click)
            return web.Response(status=200)
        bolt_request = AsyncBoltRequest(body=decision.body, query=request.query_string,
                                        headers=request.headers)  # type: ignore[arg-type]
        return await to_aiohttp_response(await app.async_dispatch(bolt_request))

    web_app = web.Application(client_max_size=MAX_BODY_BYTES)
    web_app.router.add_post(path, handle)
    return web_app


def _refuse(request: web.Request, why: Refusal) -> web.Response:
    status = STATUS[why]
    log.warning("slack: refused an HTTP request from %s: %s (HTTP %d)", request.remote,
                why, status)
    return web.json_response({"error": "invalid request"}, status=status)
