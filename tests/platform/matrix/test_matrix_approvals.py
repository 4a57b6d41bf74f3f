"""Tool approvals on a real Synapse (R13.1-R13.3): `crewbridge run` with the fake agent
asking `can_use_tool`; a person's own matrix-nio client sees the card, taps a reaction or
replies to it, and sees the card edited into its outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.platform.matrix.synapse import Person, SynapseServer, body_of
from tests.platform.matrix.test_matrix_e2e import TIMEOUT, MatrixBot, bots, launch

__all__ = ["bots"]  # the fixture, used by name

ASK = "please touch it fake:ask=Bash:touch_x"


def replaced(person: Person, bot: MatrixBot, target: str) -> list[str]:
    """The new texts of the bot's edits (`m.replace`) of `target`, in order."""
    return [e["content"]["m.new_content"]["body"]
            for e in person.messages(bot.rooms["webui"], sender=bot.user_id)
            if e["content"].get("m.relates_to", {}).get("rel_type") == "m.replace"
            and e["content"]["m.relates_to"].get("event_id") == target]


def is_card(event: dict[str, Any]) -> bool:
    relates = event["content"].get("m.relates_to", {})
    return "🔐" in body_of(event) and relates.get("rel_type") != "m.replace"


async def test_r13_1_a_tapped_reaction_allows_and_the_card_says_who(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R13.1, R13.3: the card names the agent, tool and command and carries the bot's own
    ✅ ❌ ♾️; alice taps ✅; the tool runs, and the card is edited to say she allowed it,
    its reactions taken back."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    room = bot.rooms["webui"]
    await alice.send_text(room, ASK)
    card = await alice.wait_for_message(room, is_card, sender=bot.user_id, timeout=TIMEOUT)
    assert "webui" in body_of(card) and "Bash" in body_of(card) and "touch x" in body_of(card)
    await alice.wait_until(lambda: {e["content"]["m.relates_to"]["key"] for e in
                                    alice.reactions(room, card["event_id"], sender=bot.user_id)
                                    if e.get("content")} >= {"✅", "❌", "♾️"},
                           timeout=TIMEOUT, what="the bot's reactions on its card")
    await alice.react(room, card["event_id"], "✅")
    await bot.notice(alice, "webui", "ran Bash: touch x")
    await alice.wait_until(lambda: replaced(alice, bot, card["event_id"]), timeout=TIMEOUT,
                           what="the card edited")
    assert "Allowed by" in replaced(alice, bot, card["event_id"])[-1]


async def test_r13_1_a_reply_to_the_card_denies_with_a_reason(
        synapse: SynapseServer, alice: Person, tmp_path: Path, bots: list[MatrixBot]) -> None:
    """R13.1: `deny <reason>` as a reply to the card (in its thread, as Element sends it);
    the model is told who denied and why."""
    bot = await launch(synapse, alice, tmp_path)
    bots.append(bot)
    room = bot.rooms["webui"]
    asked = await alice.send_text(room, ASK)
    card = await alice.wait_for_message(room, is_card, sender=bot.user_id, timeout=TIMEOUT)
    await alice.reply(room, card["event_id"], "deny not on prod", thread=asked)
    told = await bot.notice(alice, "webui", "denied: Denied from chat by")
    assert "not on prod" in body_of(told)
    assert not any("deny not on prod" in t for t in bot.received("webui"))
