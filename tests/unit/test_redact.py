"""Secrets are hidden in what the bot logs, stores and posts (R6.1, R10.5, R11.1)."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from crewbridge.supervisor.redact import SECRETS, ScrubbingFilter, redact, scrub

PASSWORD = "correct-horse-battery"


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    SECRETS.add([PASSWORD, "short", "correct-horse"])
    yield
    SECRETS.clear()


@pytest.mark.parametrize(("text", "expected"), [
    (f"login with {PASSWORD} failed", "login with [redacted] failed"),
    # longest first: a secret that contains another is hidden whole
    (f"{PASSWORD}!", "[redacted]!"),
    ("correct-horse alone", "[redacted] alone"),
    # values under 6 characters are not registered: they would hide ordinary words
    ("a short note", "a short note"),
    # scrub is exact, so ordinary code is untouched
    ('password = os.environ["DB"]', 'password = os.environ["DB"]'),
])
def test_r10_5_scrub_hides_exactly_the_registered_secrets(text: str, expected: str) -> None:
    assert scrub(text) == expected


def test_r6_1_redact_also_hides_token_shapes_in_error_text() -> None:
    assert redact("401 for xoxb-123-abc with correct-horse-battery") == (
        "401 for [redacted] with [redacted]")


def test_r10_5_log_records_are_scrubbed_message_args_and_traceback() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(ScrubbingFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("matrix login as %s failed", PASSWORD)
        try:
            raise RuntimeError(f"bad password {PASSWORD}")
        except RuntimeError:
            logger.exception("it broke")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert PASSWORD not in text
    assert text.count("[redacted]") == 2 and "Traceback" in text


def test_r10_4_control_tokens_are_hidden_wherever_they_appear() -> None:
    """R10.4/R10.5: an agent that posts its environment does not hand its control-socket
    token (or the operator's) to the agents that read the room."""
    from crewbridge.supervisor.environment import new_token

    token = new_token()
    assert scrub(f"CREWBRIDGE_TOKEN={token}\nPATH=/usr/bin") == (
        "CREWBRIDGE_TOKEN=[redacted]\nPATH=/usr/bin")

