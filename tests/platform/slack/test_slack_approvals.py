"""Tool approvals on Slack (R13.1-R13.3): `crewbridge run` with the real slack-bolt and
slack_sdk against the emulator, the fake agent asking `can_use_tool`. People click the
card's Block Kit buttons; a stranger is told alone; the card is edited into its outcome."""

from __future__ import annotations

from pathlib import Path

from tests.platform.slack.emulator import Posted, SlackEmulator
from tests.platform.slack.test_slack_e2e import running_bot

ASK = "please touch it fake:ask=Bash:touch_x"


def buttons(post: Posted) -> list[str]:
    return [e["action_id"] for b in post.blocks if b.get("type") == "actions"
            for e in b["elements"]]


async def test_r13_1_r13_2_buttons_decide_and_a_stranger_is_told_alone(
        slack_emulator: SlackEmulator, tmp_path: Path) -> None:
    """R13.1: the card, in the thread of alice's message, offers Allow / Deny / Always
    allow; R13.2: bob (not an approver) clicks Allow and is told alone, nothing changes;
    alice (the approver) clicks Allow: the tool runs, and the card is edited to say so,
    its buttons gone (R13.3)."""
    emulator = slack_emulator
    async with running_bot(emulator, tmp_path, channel={"approvers": ["U0ALICE"]}) as bot:
        asked = await emulator.post_as("U0ALICE", "C0WEBUI", ASK)
        card = await bot.post_containing("C0WEBUI", "🔐")
        assert card.thread_ts == asked.payload["event"]["ts"]
        assert "touch x" in card.text and buttons(card) == ["allow", "deny", "always"]
        await emulator.click("C0WEBUI", card.ts, "allow", "U0BOB")
        await emulator.wait_until(lambda: emulator.ephemeral("C0WEBUI", "U0BOB"), 15)
        assert "only the people who may approve" in \
            emulator.ephemeral("C0WEBUI", "U0BOB")[-1].text
        assert not emulator.post("C0WEBUI", card.ts).edits
        await emulator.click("C0WEBUI", card.ts, "allow", "U0ALICE")
        await bot.post_containing("C0WEBUI", "ran Bash: touch x")
        await emulator.wait_until(lambda: emulator.post("C0WEBUI", card.ts).edits, 15)
        edited = emulator.post("C0WEBUI", card.ts)
        assert "Allowed by" in edited.text and buttons(edited) == []


async def test_r13_1_deny_tells_the_model_who_denied(slack_emulator: SlackEmulator,
                                                     tmp_path: Path) -> None:
    emulator = slack_emulator
    async with running_bot(emulator, tmp_path) as bot:
        await emulator.post_as("U0ALICE", "C0WEBUI", ASK)
        card = await bot.post_containing("C0WEBUI", "🔐")
        await emulator.click("C0WEBUI", card.ts, "deny", "U0ALICE")
        told = await bot.post_containing("C0WEBUI", "denied: Denied from chat by")
        assert "alice" in told.text
