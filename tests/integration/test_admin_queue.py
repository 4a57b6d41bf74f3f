"""Admin `queue` and `drop` for messages that make an agent fail (R6.6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import Bot, start_bot, until
from tests.integration.test_supervision import flaky_command

pytestmark = pytest.mark.timeout(60)


def ops(bot: Bot) -> list[str]:
    return bot.rec.in_room("ops")


async def test_r6_6_a_poison_message_can_be_listed_and_dropped_instead_of_returning(
        tmp_path: Path) -> None:
    """R6.6: while webui cannot start, its messages wait; `queue webui` lists them (sender,
    age, first line); `drop webui 1` removes the first and tells its sender; after `reset`
    only the rest is delivered; `drop webui all` empties the queue."""
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        await bot.say("webui", "this one breaks it", sender="carol")
        await until(lambda: any("cooling down" in t for t in bot.rec.in_room("webui")),
                    what="cooldown notice")
        await bot.say("webui", "an innocent question", sender="dave")
        await bot.clock.advance(30)

        await bot.say("ops", "queue webui", sender="admin")
        await until(lambda: any("queued for webui" in t for t in ops(bot)), what="queue list")
        listing = next(t for t in ops(bot) if "queued for webui" in t)
        assert "2 message(s) queued for webui" in listing
        assert "carol" in listing and "this one breaks it" in listing and "30s" in listing
        assert "dave" in listing and "an innocent question" in listing

        await bot.say("ops", "drop webui 1", sender="admin")
        await until(lambda: any("Dropped 1 queued message(s) for webui" in t for t in ops(bot)),
                    what="drop answer")
        told = [t for t in bot.rec.in_room("webui") if "dropped by an admin" in t]
        assert len(told) == 1 and "carol" in told[0] and "(admin)" in told[0]
        assert [q.text for q in await bot.app.store.queued("webui")] == [
            "[dave via console in #webui] an innocent question"]

        flag.unlink()
        await bot.say("ops", "reset webui", sender="admin")
        await until(lambda: len(bot.received("webui")) == 1, what="the rest delivered")
        assert "an innocent question" in bot.received("webui")[0]["text"]
        await bot.app.supervisor.wait_quiet(10)
        assert not any("breaks it" in r["text"] for r in bot.received("webui"))

        await bot.say("ops", "drop webui 1", sender="admin")
        await until(lambda: any("Nothing is queued for webui" in t for t in ops(bot)),
                    what="nothing left to drop")
    finally:
        await bot.stop()


async def test_r6_6_drop_all_tells_every_sender(tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        for sender in ("carol", "dave", "erin"):
            await bot.say("webui", f"question from {sender}", sender=sender)
        await until(lambda: any("cooling down" in t for t in bot.rec.in_room("webui")),
                    what="cooldown notice")
        await bot.say("ops", "drop webui all", sender="admin")
        await until(lambda: any("Dropped 3 queued message(s)" in t for t in ops(bot)),
                    what="drop answer")
        told = [t for t in bot.rec.in_room("webui") if "dropped by an admin" in t]
        assert sorted(t.split(":")[1].strip() for t in told) == ["carol", "dave", "erin"]
        assert await bot.app.store.queued("webui") == []
    finally:
        await bot.stop()
