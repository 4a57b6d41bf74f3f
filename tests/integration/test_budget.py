"""Daily budgets through the whole core (R13.8): real fake-agent turns that report their cost
(`FAKE_AGENT_COST`, the CLI's `model_usage_since_last_result`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import until
from tests.integration.test_threads import crew_bot, in_thread, person

pytestmark = pytest.mark.timeout(60)


async def test_r13_8_a_channel_warns_at_80_percent_pauses_at_its_cap_and_resumes_when_raised(
        tmp_path: Path) -> None:
    """R13.8: $0.40 turns against a $1.00 cap: the second turn is one warning, the third one
    alert and the pause; the fourth message waits (⏸️, said once) and is answered after the
    admin's `budget webui 5`; every turn's cost is in `usage`."""
    bot, slack, _ = await crew_bot(tmp_path, channel={"daily_budget_usd": 1.0},
                                   env={"FAKE_AGENT_COST": "0.4"})
    try:
        asks = [person("slack", "C1", f"question {i}") for i in range(1, 4)]
        for ask in asks:
            await bot.app.on_event(ask)
            await until(lambda a=ask: in_thread(slack, "C1", a.ref), what=f"{ask.text}")
        ops = lambda: bot.rec.in_room("ops")  # noqa: E731
        await until(lambda: any("reached its daily budget" in t for t in ops()),
                    what="the alert")
        assert sum("💸 #webui has spent $0.80 of its $1.00" in t for t in ops()) == 1
        assert sum("⏸️ #webui reached its daily budget: $1.20 of $1.00" in t
                   for t in ops()) == 1
        waiting = person("slack", "C1", "question 4")
        await bot.app.on_event(waiting)
        await until(lambda: any("has spent its $1.00 budget" in t
                                for t in in_thread(slack, "C1", waiting.ref)),
                    what="the paused notice")
        assert not any("question 4" in r["text"] for r in bot.received("webui"))
        await bot.say("ops", "budget webui 5")
        await until(lambda: any("got it — `question 4`" in t
                                for t in in_thread(slack, "C1", waiting.ref)),
                    what="answered once the cap was raised")
        await bot.say("ops", "usage")
        await until(lambda: any("$1.60" in t for t in ops()), what="the usage report")
        assert any("budget webui 5" in e.what for e in await bot.app.store.audit_entries())
    finally:
        await bot.stop()


async def test_r13_8_a_rejected_rate_limit_pauses_the_agent_until_it_resets(
        tmp_path: Path) -> None:
    """R13.8: the plan refuses a turn (`rate_limit_event` `rejected`, resetting in 10 min):
    one notice; no failure, no cooldown; the message waits and is answered once the clock
    passes the reset."""
    bot, slack, _ = await crew_bot(tmp_path)
    flag = tmp_path / "limited"
    try:
        ask = person("slack", "C1", f"hello fake:rate-limited-once={flag},600")
        await bot.app.on_event(ask)
        await until(lambda: any("usage limit" in t for t in in_thread(slack, "C1", ask.ref)),
                    what="the notice")
        h = await bot.app.store.health("lead:webui")
        assert h.failures == 0 and h.cooldown_until == 0
        await until(lambda: not bot.app.supervisor.run_view("webui").in_turn,  # type: ignore
                    what="the refused turn over")
        assert await bot.app.store.queue_lengths() == {"webui": 1}  # it waits
        await bot.tick(601)
        await until(lambda: any("got it" in t for t in in_thread(slack, "C1", ask.ref)),
                    what="answered after the reset")
        assert sum("usage limit" in t for t in in_thread(slack, "C1", ask.ref)) == 1
    finally:
        await bot.stop()
