"""Slack, pure, for the cards (R13.1, R13.3, R13.6, R13.7): a post's buttons as Block Kit, a
click's `block_actions` payload as `Acted`, and the unicode emoji the core names as the
reaction names Slack takes.

* **A card is a `section` and one `actions` block.** The section holds the rendered mrkdwn
  (the same text as the message's `text`, which stays as the notification's fallback); each
  `Button` is a `button` whose `action_id` and `value` are its `action`, which comes back in
  the click. Block Kit caps a section's text at 3,000 characters, below a message's 4,000,
  so a post with buttons is split (and an edit cut) to `SECTION_TEXT_LIMIT`.
* **A click is untrusted input.** Its signature was checked (HTTP) or it came over our own
  socket, but its shape is Slack's to change: anything that is not a click on a message
  is `Malformed`, which the bridge logs and drops, never a crash and never half an event.
* **Reactions have names on Slack**, not characters; the core speaks unicode (R13.7). A
  name is matched without U+FE0F, the variation selector that some keyboards add
  (⏸️ vs ⏸) and others do not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from crewbridge.bridges.base import Acted, Button
from crewbridge.bridges.slack_events import PLATFORM, post_texts

SECTION_TEXT_LIMIT = 3000 - 100
"""Rendered characters in one card's section: Block Kit's 3,000, with the same headroom
as a post's parts."""

BUTTON_LABEL_LIMIT = 75  # Block Kit's longest button text
ELLIPSIS = "\n…"  # the end of an edit cut to one message
VARIATION_SELECTOR = "\ufe0f"

REACTION_NAMES = {
    "👀": "eyes",  # an agent started on the message (R13.7)
    "✅": "white_check_mark",  # answered
    "⏸": "double_vertical_bar",  # waiting (cooldown, breaker, budget, slot)
    "❌": "x",  # the turn failed
    "🛑": "octagonal_sign",  # stop (R13.6)
    "🔐": "closed_lock_with_key",  # an approval card (R13.1)
    "♾": "infinity",  # always allow
    "⏳": "hourglass_flowing_sand",  # a status message
    "👍": "+1",
    "👎": "-1",
    "⚠": "warning",
}
"""Slack's names for the emoji the core uses, keyed without U+FE0F."""

_SLACK_NAME = re.compile(r":?([a-z0-9_+'-]+):?")


class Malformed(ValueError):
    """A `block_actions` payload that is not a click on a message; the reason is the text."""


def reaction_name(emoji: str) -> str | None:
    """The name Slack knows `emoji` by: the unicode the core uses, or a name already
    (`eyes`, `:eyes:`); None for an emoji this bridge has no name for."""
    key = emoji.replace(VARIATION_SELECTOR, "").strip()
    if key in REACTION_NAMES:
        return REACTION_NAMES[key]
    named = _SLACK_NAME.fullmatch(key)
    return named[1] if named else None


# --- outbound ----------------------------------------------------------------------------


def button_element(button: Button) -> dict[str, Any]:
    """One Block Kit `button`: what comes back in a click is the button's `action`."""
    element: dict[str, Any] = {
        "type": "button", "action_id": button.action, "value": button.action,
        "text": {"type": "plain_text", "text": button.label[:BUTTON_LABEL_LIMIT],
                 "emoji": True}}
    if button.style:
        element["style"] = button.style
    return element


def card_blocks(mrkdwn: str, buttons: Sequence[Button]) -> list[dict[str, Any]]:
    """A message's blocks: its text as a section, then its buttons, if any. An empty text
    has no section (Slack refuses an empty one); no buttons, no `actions` block, which is
    how an edit takes a card's buttons away (R13.3)."""
    blocks: list[dict[str, Any]] = []
    if mrkdwn.strip():
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn}})
    if buttons:
        blocks.append({"type": "actions",
                       "elements": [button_element(button) for button in buttons]})
    return blocks


def one_message(markdown: str) -> str:
    """The mrkdwn of `markdown` in one card's section: cut, with an ellipsis, when longer.

    An edit replaces one message, so a text that no longer fits cannot be split; cards and
    status messages are short, so this is a guard, not a layout. The cut is the splitter's
    first part, so a code block cut in two is still closed (R5.6)."""
    parts = post_texts(markdown, SECTION_TEXT_LIMIT - len(ELLIPSIS))
    if not parts:
        return ""
    return parts[0] + ELLIPSIS if len(parts) > 1 else parts[0]


# --- inbound -----------------------------------------------------------------------------


def _text(mapping: Mapping[str, Any] | None, key: str) -> str:
    value = mapping.get(key) if isinstance(mapping, Mapping) else None
    return value if isinstance(value, str) else ""


def clicks(body: Mapping[str, Any]) -> list[Acted]:
    """The `Acted` of each action in a `block_actions` payload (a button click carries one):
    the channel and the message's `ts` from its `container` (the message clicked on),
    `choice` the `action_id`, and an `event_id` made of the message, the action's time and
    who acted, stable across a redelivery. `sender_name` is the payload's user name; the
    bridge puts the person's display name in its place. Raises `Malformed`."""
    if body.get("type") != "block_actions":
        raise Malformed(f"not a block_actions payload ({str(body.get('type'))[:40]!r})")
    container = body.get("container")
    if _text(container, "type") != "message":
        raise Malformed("not a click on a message")
    room = _text(container, "channel_id") or _text(body.get("channel"), "id")
    ref = _text(container, "message_ts") or _text(body.get("message"), "ts")
    user = body.get("user")
    sender = _text(user, "id")
    if not (room and ref and sender):
        raise Malformed("no channel, message or user")
    actions = body.get("actions")
    if not isinstance(actions, list) or not actions:
        raise Malformed("no actions")
    acted = []
    for action in actions:
        choice, at = _text(action, "action_id"), _text(action, "action_ts")
        try:
            ts = float(at)
        except ValueError:
            raise Malformed("an action without an action_id or a time") from None
        if not choice:
            raise Malformed("an action without an action_id or a time")
        acted.append(Acted(platform=PLATFORM, room=room, sender=sender,
                           sender_name=_text(user, "name") or sender, ref=ref, choice=choice,
                           event_id=f"{ref}:{at}:{sender}", ts=ts))
    return acted
