"""Hiding secrets in what the bot logs, stores and posts (R6.1, R10.5, R11.1).

Two kinds of hiding, for two kinds of text:

- `scrub(text)` replaces every secret value the config holds (registered once at start-up in
  `SECRETS`) by `[redacted]`. It is exact, so it is safe on any text — a person's message,
  an agent's code — and it runs at the chokepoints: every string the store writes, every log
  record, and therefore every post (posts are stored before they are sent).
- `redact(text)` does that and also hides what *looks* like a token (Slack, Anthropic and
  Matrix token shapes, `Bearer …`, `password=…`). Patterns can hit ordinary code, so this is
  for error text only: alerts, agent errors, the last error in `status`.

It lives on the supervisor's floor because agent errors are the text most likely to carry a
token; the core uses the same functions for everything else it writes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from crewbridge.supervisor.environment import TOKEN_PREFIX

REDACTED = "[redacted]"
MIN_SECRET_CHARS = 6
"""Shorter values (a port, `true`) are not secrets worth hiding, and would hide ordinary text."""

_PATTERNS = [re.compile(p) for p in (
    r"xox[abprs]-[A-Za-z0-9-]+",
    r"xapp-[A-Za-z0-9-]+",
    r"sk-ant-[A-Za-z0-9_-]+",
    r"syt_[A-Za-z0-9_]+",
    r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}",
    r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}",
)]


_CONTROL_TOKEN = re.compile(re.escape(TOKEN_PREFIX) + r"[A-Za-z0-9_-]{20,}")


class Secrets:
    """The secret values this process holds; longest first, so no secret is half-hidden by
    a shorter one it contains."""

    def __init__(self) -> None:
        self._values: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        known = {*self._values, *(v for v in values if len(v) >= MIN_SECRET_CHARS)}
        self._values = tuple(sorted(known, key=len, reverse=True))

    def clear(self) -> None:
        self._values = ()

    def scrub(self, text: str) -> str:
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        if TOKEN_PREFIX in text:  # control-socket tokens (R10.4): a shape only we make
            text = _CONTROL_TOKEN.sub(REDACTED, text)
        return text


SECRETS = Secrets()
"""The process's registry, filled from the config when the bot starts."""


def scrub(text: str) -> str:
    """`text` with every registered secret value hidden (exact; safe on any text)."""
    return SECRETS.scrub(text)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """Hide registered secrets, `secrets`, and anything shaped like a token (error text)."""
    for s in secrets:
        if s and len(s) >= MIN_SECRET_CHARS:
            text = text.replace(s, REDACTED)
    text = scrub(text)
    for p in _PATTERNS:
        text = p.sub(lambda m: (m.group(1) if m.re.groups else "") + REDACTED, text)
    return text


class ScrubbingFilter(logging.Filter):
    """A handler filter that hides registered secrets in every record it passes (R10.5)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = scrub(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text)
        if clean != message:
            record.msg, record.args = clean, None
        return True
