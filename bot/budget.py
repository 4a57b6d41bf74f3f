"""Daily budgets per channel (R13.8). Pure: a channel's cap and its cost today in, its level
and what to say out.

A channel with `daily_budget_usd` > 0 gets one warning at 80 % of it and, once today's cost
reaches it, one alert: its agents then take no new turns until the next UTC day or until an
admin raises the day's cap with `budget <channel> <usd>` (messages wait, queued). The money
is already spent when a turn's cost is known, so a cap is reached by the turn that crosses
it, never before; the pause keeps the next turns from adding to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

WARN_AT = 0.8


class Level(Enum):
    UNDER = "under"
    WARNING = "warning"  # 80 % of the cap reached: one warning
    SPENT = "spent"  # the cap reached: one alert, the channel's agents paused


def level(spent_usd: float, cap_usd: float) -> Level:
    if cap_usd <= 0:
        return Level.UNDER
    if spent_usd >= cap_usd:
        return Level.SPENT
    return Level.WARNING if spent_usd >= WARN_AT * cap_usd else Level.UNDER


def usd(amount: float) -> str:
    return f"${amount:.2f}"


def warning_text(channel: str, spent: float, cap: float) -> str:
    return (f"💸 #{channel} has spent {usd(spent)} of its {usd(cap)} daily budget today "
            f"({spent / cap:.0%}). At {usd(cap)} its agents pause until tomorrow (UTC); "
            f"`budget {channel} <usd>` changes today's cap.")


def spent_text(channel: str, spent: float, cap: float) -> str:
    return (f"⏸️ #{channel} reached its daily budget: {usd(spent)} of {usd(cap)}. Its agents "
            f"take no new turns until tomorrow (UTC); messages wait. Remedy: "
            f"`budget {channel} <usd>` raises today's cap.")


def paused_text(channel: str, cap: float) -> str:
    return (f"⏸️ #{channel} has spent its {usd(cap)} budget for today; your message waits "
            f"until tomorrow (UTC), or until an admin raises the cap.")


@dataclass
class Budgets:
    """Each channel's cap and cost today, kept where they change (a turn's cost, an admin's
    `budget`, a new day), so `paused` costs a look-up per message."""

    default_cap: float
    caps: dict[str, float] = field(default_factory=dict)  # configured per channel
    today: dict[str, float] = field(default_factory=dict)  # today's caps set by admins
    spent: dict[str, float] = field(default_factory=dict)  # today's cost per channel

    def cap(self, channel: str) -> float:
        return self.today.get(channel, self.caps.get(channel, self.default_cap))

    def level(self, channel: str) -> Level:
        return level(self.spent.get(channel, 0.0), self.cap(channel))

    def paused(self, channel: str) -> bool:
        return self.level(channel) is Level.SPENT

    def new_day(self) -> None:
        self.today.clear()
        self.spent.clear()
