"""Hiding secrets in text bound for logs, the store and the admin room (R6.1, R11.1).

It lives on the supervisor's floor because agent errors are the text most likely to carry a
token; the core uses the same function for everything else it writes.
"""

from __future__ import annotations

import re


def redact(text: str, secrets: list[str] | None = None) -> str:
    """Hide tokens in text bound for logs or the admin room (R6.1, R11.1)."""
    for s in secrets or []:
        if s and len(s) >= 6:
            text = text.replace(s, "[redacted]")
    patterns = [
        r"xox[abprs]-[A-Za-z0-9-]+",
        r"xapp-[A-Za-z0-9-]+",
        r"sk-ant-[A-Za-z0-9_-]+",
        r"syt_[A-Za-z0-9_]+",
        r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}",
        r"(?i)((?:api[_-]?key|token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',}]{6,}",
    ]
    for p in patterns:
        text = re.sub(p, lambda m: (m.group(1) if m.re.groups else "") + "[redacted]", text)
    return text
