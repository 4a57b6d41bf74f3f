"""A turn's live status through the whole core (R13.7, R13.6): the ⏳ message with its Stop
button, edited, removed or turned into the outcome; 👀 ✅ on the person's message; Matrix
typing; nothing on the console unless asked. The fake agent waits on a decision, so the
turn runs as long as the test wants; the bot's time is a fake clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import Recorder, until
from tests.integration.test_approvals import ASK, approval_bot, asked, click, said
from tests.integration.test_threads import person

pytestmark = pytest.mark.timeout(60)


def status_posts(rec: Recorder, room: str) -> list[tuple[str, str]]:
    """(ref, text) of the ⏳ messages posted to `room`."""
    return [(f"{rec.platform}-{i + 1}", p.text) for i, (r, p) in enumerate(rec.sent)
            if r == room and p.text.startswith("⏳")]


def marks(rec: Recorder, room: str, ref: str) -> list[tuple[str, bool]]:
    return [(emoji, on) for r, target, emoji, on in rec.reactions if r == room and target == ref]


async def test_r13_7_a_quiet_turn_shows_its_status_and_it_goes_when_answered(
        tmp_path: Path) -> None:
    """R13.7: after status_after_s without output a ⏳ message names the agent, its step and
    the time, with a Stop button; it is edited as time goes on, and removed when the turn
    answers; the person's message gets 👀 then ✅; Matrix shows typing meanwhile."""
    bot, slack, matrix = await approval_bot(tmp_path)
    try:
        msg = person("slack", "C1", ASK)
        await bot.app.on_event(msg)
        ref, _ = await asked(slack)
        assert not marks(slack, "C1", msg.ref)  # not yet: seen_after_s (1 s) has not passed
        await bot.tick(1)
        await until(lambda: ("👀", True) in marks(slack, "C1", msg.ref), what="👀")
        assert not status_posts(slack, "C1")
        await bot.tick(5)
        await until(lambda: status_posts(slack, "C1"), what="the status")
        status_ref, text = status_posts(slack, "C1")[0]
        assert "webui" in text and "waiting for approval" in text and "Bash" in text
        post = next(p for r, p in slack.sent if p.text == text)
        assert [b.action for b in post.buttons] == ["stop"]
        assert status_posts(matrix, "!m")  # in every room of the conversation
        await bot.tick(4)
        await until(lambda: any(e == status_ref for _, e, _ in slack.edits), what="an edit")
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: said(slack, "C1", "ran Bash: touch x"), what="the answer")
        await until(lambda: ("C1", status_ref) in slack.deleted, what="the status removed")
        await until(lambda: ("✅", True) in marks(slack, "C1", msg.ref), what="✅")
        assert ("👀", False) in marks(slack, "C1", msg.ref)
        assert not any(t.startswith("⏳") for t in bot.rec.in_room("webui"))  # the console
    finally:
        await bot.stop()


async def test_r13_7_a_quick_answer_gets_its_tick_alone_after_the_answer(
        tmp_path: Path) -> None:
    """R13.7: a turn answered before `seen_after_s` marks the person's message ✅ only — no
    👀, no typing — and the ✅ is put on once the answer is in the room, not before."""
    bot, slack, matrix = await approval_bot(tmp_path)
    shown_at_mark: list[tuple[str, list[str]]] = []
    react = slack.react

    async def noting(room: str, ref: str, emoji: str, on: bool) -> None:
        shown_at_mark.append((emoji, [p.text for r, p in slack.sent if r == room]))
        await react(room, ref, emoji, on)

    slack.react = noting  # type: ignore[method-assign]
    try:
        msg = person("slack", "C1", "is the build green?")
        await bot.app.on_event(msg)
        await until(lambda: ("✅", True) in marks(slack, "C1", msg.ref), what="✅")
        assert marks(slack, "C1", msg.ref) == [("✅", True)]
        [(emoji, shown)] = shown_at_mark
        assert emoji == "✅" and any("is the build green?" in text for text in shown)
        assert not matrix.typed
    finally:
        await bot.stop()


async def test_r13_7_matrix_shows_typing_while_a_turn_for_its_room_runs(tmp_path: Path) -> None:
    bot, slack, matrix = await approval_bot(tmp_path)
    try:
        await bot.app.on_event(person("matrix", "!m", ASK))
        ref, _ = await asked(slack)
        assert not matrix.typed  # a turn shows typing once it has worked seen_after_s
        await bot.tick(1)
        await until(lambda: ("!m", True) in matrix.typed, what="typing")
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: ("!m", False) in matrix.typed, what="typing stopped")
    finally:
        await bot.stop()


async def test_r13_6_r13_7_the_stop_button_stops_the_turn_and_the_status_says_so(
        tmp_path: Path) -> None:
    """R13.6: Stop on the status message interrupts the turn; the status becomes the line
    saying who stopped it; a stranger's Stop (with approvers listed) is refused alone."""
    bot, slack, _ = await approval_bot(tmp_path, channel={"approvers": ["U-bob"]})
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        await asked(slack)
        await bot.tick(6)
        await until(lambda: status_posts(slack, "C1"), what="the status")
        status_ref, _ = status_posts(slack, "C1")[0]
        await bot.app.on_event(click("slack", "C1", status_ref, "stop", name="mallory"))
        await until(lambda: slack.told, what="the refusal")
        assert slack.told[-1][1] == "U-mallory"
        await bot.app.on_event(click("slack", "C1", status_ref, "stop", name="bob"))
        await until(lambda: any(e == status_ref and "stopped by bob" in p.text
                                for _, e, p in slack.edits), what="the status says who")
        audit = await bot.app.store.audit_entries()
        assert [e.outcome for e in audit if e.what == "Stop @webui"] == [
            slack.told[-1][2], "stopped"]
    finally:
        await bot.stop()


async def test_r13_7_the_console_shows_progress_only_when_asked(tmp_path: Path) -> None:
    """R13.7: `[console] show_progress = true` prints the status lines on the console too."""
    bot, slack, _ = await approval_bot(tmp_path, console={"show_progress": True})
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        await asked(slack)
        await bot.tick(6)
        await until(lambda: any(t.startswith("crewbridge: ⏳") for t in bot.rec.in_room("webui")),
                    what="the console's status line")
    finally:
        await bot.stop()
