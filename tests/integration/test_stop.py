"""Stopping a turn from chat (R13.6, R13.2), through the whole core with real fake-agent
processes that speak Claude Code's control protocol (`interrupt`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.harness import until
from tests.integration.test_threads import crew_bot, in_thread, person

pytestmark = pytest.mark.timeout(60)


async def test_r13_6_stop_in_a_thread_ends_the_turn_and_the_same_process_answers_next(
        tmp_path: Path) -> None:
    """R13.6: `!stop` in the thread interrupts the lead's streaming turn; one line says who
    stopped it; it is no failure (no cooldown, the process lives on) and the stopped message
    is not delivered again; the next message is answered by the same process."""
    bot, slack, _ = await crew_bot(tmp_path, env={"FAKE_AGENT_STAMP": "1"})
    try:
        root = person("slack", "C1", "write a long essay fake:stream=40,0.25")
        await bot.app.on_event(root)
        views = bot.app.supervisor.run_view
        await until(lambda: (v := views("webui")) is not None and v.in_turn, what="the turn")
        pid = views("webui").pid  # type: ignore[union-attr]
        await bot.app.on_event(person("slack", "C1", "!stop", thread=root.ref))
        await until(lambda: "crewbridge: ⏹ webui stopped by bob." in in_thread(
            slack, "C1", root.ref), what="the stopped line")
        assert not any("essay" in t and t.startswith("webui:")
                       for t in in_thread(slack, "C1", root.ref))  # quarantined, not posted
        assert await bot.app.store.queue_lengths() == {}  # answered: not delivered again
        h = await bot.app.store.health("lead:webui")
        assert h.failures == 0 and h.cooldown_until == 0
        nxt = person("slack", "C1", "a short one")
        await bot.app.on_event(nxt)
        await until(lambda: in_thread(slack, "C1", nxt.ref), what="the next answer")
        assert views("webui").pid == pid  # type: ignore[union-attr]
        assert [r["text"] for r in bot.received("webui")].count(
            "[bob via slack in #webui] write a long essay fake:stream=40,0.25") == 1
    finally:
        await bot.stop()


async def test_r13_2_r13_6_only_people_who_may_steer_can_stop_and_nothing_else_stops(
        tmp_path: Path) -> None:
    """R13.2, R13.6: with admins configured, someone whose message the turn does not
    answer is refused in that room and the turn goes on; `!stop @agent` with no turn running
    says so."""
    bot, slack, _ = await crew_bot(tmp_path, admin_users=("U-admin",))
    try:
        root = person("slack", "C1", "think slowly fake:stream=8,0.25")
        await bot.app.on_event(root)
        views = bot.app.supervisor.run_view
        await until(lambda: (v := views("webui")) is not None and v.in_turn, what="the turn")
        await bot.app.on_event(person("slack", "C1", "!stop", thread=root.ref, name="eve"))
        await until(lambda: any("eve, only the people who may approve" in t
                                for t in in_thread(slack, "C1", root.ref)), what="the refusal")
        await until(lambda: any(t.startswith("webui: ") for t in in_thread(slack, "C1", root.ref)),
                    what="the turn's own answer")
        assert not any("stopped by" in t for t in in_thread(slack, "C1", root.ref))
        await bot.app.on_event(person("slack", "C1", "!stop @webui"))
        await until(lambda: any("nothing to stop" in p.text for r, p in slack.sent
                                if r == "C1"), what="nothing to stop")
    finally:
        await bot.stop()
