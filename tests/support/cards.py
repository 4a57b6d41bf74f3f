"""The buttons of an approval card as the core offers them (`bot.approvals`), for the
bridges' card tests, which show them without the core."""

from __future__ import annotations

from crewbridge.bridges.base import Button

ALLOW = Button("allow", "Allow", "✅", "primary")
DENY = Button("deny", "Deny", "❌", "danger")
ALWAYS = Button("always", "Always allow", "♾️")
CARD_BUTTONS = (ALLOW, DENY, ALWAYS)
