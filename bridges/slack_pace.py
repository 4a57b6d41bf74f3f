"""A token bucket: how the Slack bridge keeps its edits under Tier 3 (R13.7).

Slack allows `chat.update` about 50 times a minute for the whole workspace, with short
bursts; beyond that it answers 429, and every 429 is a round trip that carries nothing.
The core spreads its status edits under `edits_per_minute`, but several turns, approval
cards and outcomes share one allowance, so the bridge keeps its own count too and refuses
an edit it knows Slack would refuse, without asking. A separate unit, with the clock passed
in, so the arithmetic is a table test rather than a wait.
"""

from __future__ import annotations

from collections.abc import Callable

EPSILON = 1e-9
"""Rounding slack: a clock moved on by exactly the wait `take` named finds its token."""


class TokenBucket:
    """`burst` tokens at most, refilled at `rate_per_s`; one is spent per call allowed.

    It starts full: a bridge just started has made no calls. `clock` is a monotonic clock
    in seconds (`time.monotonic`; a fake one in tests).
    """

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float]) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError("a token bucket needs a positive rate and room for one token")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = self._burst
        self._at = clock()

    def take(self) -> float:
        """Spend a token: 0.0 when one was there, else the seconds until the next one will
        be (and nothing is spent)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now
        if self._tokens >= 1.0 - EPSILON:
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self._rate
