"""Supervision against real fake-agent processes, with policy time on a fake clock (R3–R6)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from crewbridge.supervisor.breaker import BreakerState, Health
from tests.integration.harness import Bot, start_bot, until
from tests.support.botproc import FAKE_AGENT

pytestmark = pytest.mark.timeout(60)


def flaky_command(flag: Path) -> list[str]:
    """An agent that crashes at start while `flag` exists, and is the fake agent otherwise.
    Every start appends a line to `<flag>.starts`, crash or not (see `starts`)."""
    script = (f'echo start >> "{flag}.starts"; '
              f'test -e "{flag}" && {{ echo "boom: cannot start" >&2; exit 2; }}; exec "$0" "$@"')
    return ["sh", "-c", script, FAKE_AGENT]


def starts(flag: Path) -> int:
    """How many times a `flaky_command(flag)` process was started."""
    marker = flag.with_name(flag.name + ".starts")
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def state(bot: Bot, agent: str) -> str | None:
    view = bot.app.supervisor.run_view(agent)
    return view.state.value if view else None


def alerts(bot: Bot) -> list[str]:
    return bot.rec.in_room("ops")


async def health(bot: Bot, key: str) -> Health:
    return await bot.app.store.health(key)


async def test_r4_3_r4_4_r6_1_crash_loop_opens_breaker_once_then_reset_delivers_queue(
        tmp_path: Path) -> None:
    """R4.2–R4.4, R3.4, R6.1: a lead that cannot start cools down, opens its breaker after 3
    failures with exactly one ops alert, keeps messages queued, and delivers them after reset."""
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        await bot.say("webui", "first message")
        await until(lambda: any("cooling down" in t for t in bot.rec.in_room("webui")),
                    what="cooldown notice")
        h = await health(bot, "lead:webui")
        assert h.failures == 1 and h.cooldown_until > bot.clock.now()  # R4.3
        await bot.say("webui", "second message")  # queued, no second notice (R3.4)
        assert sum("cooling down" in t for t in bot.rec.in_room("webui")) == 1

        for expected in (2, 3):
            await bot.tick(121)  # the cooldown ends: the queue is retried
            await until(lambda n=expected: _read_failures(bot) >= n, what=f"failure {expected}")
        h = await health(bot, "lead:webui")
        assert h.state is BreakerState.OPEN and h.failures == 3  # R4.4
        opened = [t for t in alerts(bot) if "Circuit breaker open" in t]
        assert len(opened) == 1 and "webui" in opened[0] and "reset webui" in opened[0]  # R6.1
        assert "boom: cannot start" in opened[0]

        assert starts(flag) == 3
        await bot.tick(121)  # breaker open: no automatic restart
        await bot.say("webui", "third message")  # ...and no restart by a nudge, resume or not
        await bot.app.supervisor.wait_quiet(5)
        assert starts(flag) == 3 and bot.app.supervisor.run_view("webui").starts == 3
        assert (await health(bot, "lead:webui")).failures == 3
        assert not any("boom" in t for t in bot.rec.in_room("webui"))  # errors stay out (R5.3)

        flag.unlink()
        await bot.say("ops", "reset webui")
        await until(lambda: len(bot.received("webui")) == 3, what="queued messages delivered")
        texts = [r["text"] for r in bot.received("webui")]
        assert ["first" in texts[0], "second" in texts[1], "third" in texts[2]] == [True] * 3
        await until(lambda: any("Recovered" in t for t in alerts(bot)), what="recovered notice")
        assert len([t for t in alerts(bot) if "Circuit breaker open" in t]) == 1
    finally:
        await bot.stop()


def _read_failures(bot: Bot) -> int:
    import sqlite3

    from crewbridge.supervisor.breaker import Health

    db = sqlite3.connect(bot.app.store.path)
    try:
        row = db.execute("SELECT json FROM health WHERE key = 'lead:webui'").fetchone()
    finally:
        db.close()
    return Health.from_json(row[0]).failures if row else 0



async def test_r4_4_half_open_trial_after_reset_time_and_doubling(tmp_path: Path) -> None:
    """R4.4: after breaker_reset_s the next nudge makes one trial; a failed trial reopens
    with the wait doubled, and no second alert is sent."""
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, agent={"max_lead_restarts": 1},
                          channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        await bot.say("webui", "hello")
        await until(lambda: _read_failures(bot) == 1, what="first failure")
        h = await health(bot, "lead:webui")
        assert h.state is BreakerState.OPEN and h.wait_s == 600
        await bot.tick(601)
        await bot.say("webui", "try again")  # the trial start
        await until(lambda: _read_failures(bot) == 2, what="trial failure")
        h = await health(bot, "lead:webui")
        assert h.state is BreakerState.OPEN and h.wait_s == 1200
        assert len([t for t in alerts(bot) if "Circuit breaker open" in t]) == 1

        flag.unlink()
        await bot.tick(1201)
        await bot.say("webui", "and again")  # trial succeeds: closed, one recovered notice
        await until(lambda: len(bot.received("webui")) == 3, what="queue delivered")
        await until(lambda: any("Recovered" in t for t in alerts(bot)), what="recovered")
        assert (await health(bot, "lead:webui")).state is BreakerState.CLOSED
    finally:
        await bot.stop()


async def test_r4_5_long_life_resets_failure_count(tmp_path: Path) -> None:
    """R4.5: a session that lives past healthy_after_s clears the failure count."""
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        await bot.say("webui", "fake:hang")
        await until(lambda: _read_failures(bot) == 1, what="first failure")
        flag.unlink()
        await bot.tick(121)
        await until(lambda: len(bot.received("webui")) == 1, what="hang delivered")
        assert _read_failures(bot) == 1  # no turn has succeeded yet
        await bot.tick(61)
        await until(lambda: _read_failures(bot) == 0, what="failure count reset")
    finally:
        await bot.stop()


async def test_r3_5_nudges_during_start_are_delivered_in_order(tmp_path: Path) -> None:
    """R3.5: messages that arrive while the agent is starting reach the new session in order."""
    bot = await start_bot(tmp_path)
    try:
        for i in range(5):
            await bot.say("general", f"message {i}")
        await until(lambda: len(bot.received("general")) == 5, what="5 deliveries")
        texts = [r["text"] for r in bot.received("general")]
        assert [f"message {i}" in t for i, t in enumerate(texts)] == [True] * 5
        assert len({r["session_id"] for r in bot.received("general")}) == 1
    finally:
        await bot.stop()


async def test_r4_8_idle_stop_then_resume_same_session(tmp_path: Path) -> None:
    """R4.8, R3.2: an idle session is stopped after 30 min; the next nudge resumes it."""
    bot = await start_bot(tmp_path)
    try:
        await bot.say("general", "hello")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        first = bot.received("general")[0]["session_id"]
        await bot.tick(1801)
        await until(lambda: state(bot, "general") == "stopped", what="idle stop")
        await bot.say("general", "are you there?")
        await until(lambda: len(bot.received("general")) == 2, what="resumed delivery")
        assert bot.received("general")[1]["session_id"] == first
    finally:
        await bot.stop()


async def test_r4_8_hung_turn_is_killed_counted_and_reported(tmp_path: Path) -> None:
    """R4.8: a turn with no output for 15 min is killed, counted, and reported in ops."""
    bot = await start_bot(tmp_path)
    try:
        await bot.say("general", "hi")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        await bot.say("general", "fake:hang")
        await until(lambda: len(bot.received("general")) == 2, what="hang delivered")
        await bot.tick(901)
        for _ in range(3):  # the timers keep firing while the kill is in flight
            await bot.app.supervisor.tick()
        await until(lambda: any("hung" in t for t in alerts(bot)), what="hung alert")
        h = await health(bot, "lead:general")
        assert h.failures == 1
        assert sum("hung" in t for t in alerts(bot)) == 1
        await until(lambda: state(bot, "general") == "stopped", what="killed")
    finally:
        await bot.stop()


async def test_r4_7_healthy_crash_restarts_only_when_wanted(tmp_path: Path) -> None:
    """R4.7: after a healthy run exits between turns, an ordinary lead stays stopped; an
    always_on one is resumed. (An exit in the middle of a turn is a failure: R4.11,
    tests/integration/test_durability.py.)"""
    log = tmp_path / "agents.jsonl"
    bot = await start_bot(tmp_path, agent={"env": {"FAKE_AGENT_MODE": "exit-after-turn",
                                                   "FAKE_AGENT_LOG": str(log)}},
                          channels=[{"name": "webui", "always_on": True}])
    try:
        view = bot.app.supervisor.run_view
        for room in ("general", "webui"):
            await bot.say(room, "hi")
        await until(lambda: all(any("got it" in t for t in bot.rec.in_room(r))
                                for r in ("general", "webui")), what="replies")
        await until(lambda: state(bot, "general") == "stopped", what="general exited")
        await until(lambda: state(bot, "webui") == "running" and view("webui").starts >= 2,
                    what="webui resumed")
        assert state(bot, "general") == "stopped" and view("general").starts == 1
        assert (await health(bot, "lead:general")).failures == 0
    finally:
        await bot.stop()


async def test_r4_10_unknown_session_on_resume_spawns_fresh(tmp_path: Path) -> None:
    """R4.10: "No conversation found" on resume clears the id; the message still arrives."""
    bot = await start_bot(tmp_path, agent={"env": {"FAKE_AGENT_MODE": "forget-sessions",
                                                   "FAKE_AGENT_LOG": str(tmp_path / "a.jsonl")}})
    bot.log = tmp_path / "a.jsonl"
    try:
        await bot.say("general", "hello")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        first = bot.received("general")[0]["session_id"]
        await bot.tick(1801)  # idle stop keeps the session id
        await until(lambda: state(bot, "general") == "stopped", what="idle stop")
        await bot.say("general", "still there?")
        await until(lambda: any("still there" in r["text"] for r in bot.received("general")),
                    what="delivered after fresh spawn")
        last = bot.received("general")[-1]
        assert last["session_id"] != first
        assert (await health(bot, "lead:general")).failures == 0
    finally:
        await bot.stop()


async def test_r5_3_error_text_never_posted_even_after_flush_interval(tmp_path: Path) -> None:
    """R5.3: error text, then a wait longer than the flush interval, then the error result:
    nothing reaches the channel; the next good turn posts again (R5.4)."""
    bot = await start_bot(tmp_path, agent={"flush_interval_s": 0.2})
    try:
        await bot.say("general", "hello")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        for directive in ("fake:error-late=1", "fake:text-then-error=1"):
            await bot.say("general", directive)
            await _tick_until_turn_ends(bot, "general")
        await bot.say("general", "all good now")
        await until(lambda: any("all good now" in t for t in bot.rec.in_room("general")),
                    what="next good turn posted")
        posted = "\n".join(bot.rec.in_room("general"))
        assert "API Error" not in posted and "500" not in posted
        assert "the turn will fail" not in posted
    finally:
        await bot.stop()


async def _tick_until_turn_ends(bot: Bot, agent: str) -> None:
    """Fire the flush timer again and again while the agent's turn is open, so that a
    flush falls between the error text and the error result."""
    view = bot.app.supervisor.run_view
    await until(lambda: (v := view(agent)) is not None and v.in_turn, what="turn")
    ticks = 0
    while view(agent).in_turn:
        await bot.clock.advance(0.3)
        await bot.app.supervisor.tick()
        ticks += 1
        assert ticks < 400, "the turn never ended"
        await asyncio.sleep(0.02)
    assert ticks >= 5, "the flush timer did not run inside the error window"


async def test_r6_2_auth_failure_alerts_once_and_does_not_loop(tmp_path: Path) -> None:
    """R6.2: an auth failure gives one "auth expired" alert and no restart loop."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui"}],
                          agent={"env": {"FAKE_AGENT_MODE": "auth",
                                         "FAKE_AGENT_LOG": str(tmp_path / "agents.jsonl")}})
    try:
        await bot.say("general", "hello")
        await bot.say("webui", "hello")
        await until(lambda: sum("Agent auth:" in t for t in alerts(bot)) == 1, what="alert")
        for lead in ("general", "webui"):  # both turns have run before fake time jumps
            await until(lambda lead=lead: _read_health(bot, f"lead:{lead}").get("auth_failed"),
                        what=f"{lead} auth failed")
        for _ in range(5):
            await bot.tick(200)
        assert sum("Agent auth:" in t for t in alerts(bot)) == 1
        assert len(bot.received()) == 2  # one turn each, no restarts
        assert not any("Not logged in" in t for r in ("general", "webui")
                       for t in bot.rec.in_room(r))
    finally:
        await bot.stop()


def _read_health(bot: Bot, key: str) -> dict:
    import json
    import sqlite3

    db = sqlite3.connect(bot.app.store.path)
    try:
        row = db.execute("SELECT json FROM health WHERE key = ?", (key,)).fetchone()
    finally:
        db.close()
    return json.loads(row[0]) if row else {}


async def test_r6_5_auth_login_success_closes_auth_breakers_and_restarts(
        tmp_path: Path) -> None:
    """R6.5: `auth login` runs the login command; on success auth breakers close and the
    waiting agents restart with their queued messages."""
    marker = tmp_path / "logged-in"
    auth_agent = ["sh", "-c", f'test -e "{marker}" || export FAKE_AGENT_MODE=auth; '
                  'exec "$0" "$@"', FAKE_AGENT]
    login = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close(); print('Logged in')"]
    bot = await start_bot(tmp_path, agent={"command": auth_agent, "login_command": login})
    try:
        await bot.say("general", "hello")
        await until(lambda: any("Agent auth:" in t for t in alerts(bot)), what="auth alert")
        await bot.say("general", "queued while logged out")
        await bot.say("ops", "auth login")
        await until(lambda: any("auth login succeeded" in t for t in alerts(bot)), what="login")
        await until(lambda: any("queued while logged out" in t
                                for t in bot.rec.in_room("general")), what="delivered")
    finally:
        await bot.stop()


async def test_r6_5_auth_login_failure_and_timeout_are_reported(tmp_path: Path) -> None:
    """R6.5: a failing or slow login command is reported in ops; nothing restarts."""
    bot = await start_bot(tmp_path, agent={"login_command": ["sh", "-c", "echo denied; exit 3"],
                                           "login_timeout_s": 0.5})
    try:
        await bot.say("ops", "auth login")
        await until(lambda: any("auth login failed" in t and "denied" in t
                                for t in alerts(bot)), what="failure")
    finally:
        await bot.stop()
    (tmp_path / "b").mkdir()
    bot = await start_bot(tmp_path / "b", agent={"login_command": ["sleep", "30"],
                                                 "login_timeout_s": 0.5})
    try:
        await bot.say("ops", "auth login")
        await until(lambda: any("no login within" in t for t in alerts(bot)), what="timeout")
    finally:
        await bot.stop()


async def test_r6_4_admin_commands_only_in_admin_channel(tmp_path: Path) -> None:
    """R6.4: admin commands run in #ops and are refused elsewhere with a notice."""
    bot = await start_bot(tmp_path)
    try:
        await bot.say("general", "!status")
        await until(lambda: any("only work in #ops" in t for t in bot.rec.in_room("general")),
                    what="refusal")
        assert bot.received() == []  # the lead was not nudged either
        await bot.say("general", "hello")
        await until(lambda: len(bot.received("general")) == 1, what="lead answered")
        await bot.say("ops", "status")
        await until(lambda: any("general" in t and "running" in t for t in alerts(bot)),
                    what="status table")
        await bot.say("ops", "stop general")
        await until(lambda: any("Stopped general" in t for t in alerts(bot)), what="stopped")
        await bot.say("ops", "restart general")
        await until(lambda: any("Restarted general" in t for t in alerts(bot)), what="restart")
        await bot.say("ops", "tasks")
        await until(lambda: any("No open tasks" in t for t in alerts(bot)), what="tasks")
        await bot.say("ops", "frobnicate")
        await until(lambda: any("Admin commands:" in t for t in alerts(bot)), what="help")
    finally:
        await bot.stop()


async def test_r4_6_r6_1_breaker_and_alert_survive_restart(tmp_path: Path) -> None:
    """R4.6, R6.1: an open breaker stays open across a restart, and is not re-announced."""
    flag = tmp_path / "broken"
    flag.touch()
    data_dir = tmp_path / "data"
    channels = [{"name": "webui", "command": flaky_command(flag)}]
    bot = await start_bot(tmp_path, agent={"max_lead_restarts": 1}, channels=channels,
                          data_dir=data_dir)
    try:
        await bot.say("webui", "hello")
        await until(lambda: any("Circuit breaker open" in t for t in alerts(bot)), what="open")
    finally:
        await bot.stop()
    bot = await start_bot(tmp_path, agent={"max_lead_restarts": 1}, channels=channels,
                          data_dir=data_dir)
    try:
        h = await health(bot, "lead:webui")
        assert h.state is BreakerState.OPEN and h.failures == 1
        started_before = starts(flag)
        await bot.say("webui", "after restart")
        await bot.tick(5)
        await bot.app.supervisor.wait_quiet(5)
        assert not any("Circuit breaker open" in t for t in alerts(bot))
        assert starts(flag) == started_before  # neither resumed nor spawned
        assert len(await bot.app.store.queued("webui")) == 2  # both messages kept
    finally:
        await bot.stop()


async def test_r5_2_long_turn_is_posted_in_batches_and_nothing_is_lost(tmp_path: Path) -> None:
    """R5.2: during a long turn, output is posted every flush interval, not only at the end;
    every part arrives once, in order."""
    bot = await start_bot(tmp_path, agent={"flush_interval_s": 0.2})
    try:
        await bot.say("general", "fake:slow=6,0.3")
        await _tick_until_turn_ends(bot, "general")
        await until(lambda: any("part 6 of 6" in t for t in bot.rec.in_room("general")),
                    what="last part")
        posts = bot.rec.in_room("general")
        assert len(posts) >= 3, posts  # batched during the turn, not one post at the end
        text = "\n".join(posts)
        positions = [text.index(f"part {i} of 6") for i in range(1, 7)]
        assert positions == sorted(positions)
        assert all(text.count(f"part {i} of 6") == 1 for i in range(1, 7))
    finally:
        await bot.stop()


async def test_r3_4_a_late_failure_requeues_only_the_unanswered_message(tmp_path: Path) -> None:
    """R3.4, R4.8: when a healthy session later fails (a hung turn), only the message it
    had not answered may go back to the queue — never the ones it answered long ago."""
    bot = await start_bot(tmp_path)
    try:
        for i in range(3):  # one at a time: each is answered by an already healthy session
            await bot.say("general", f"answered {i}")
            await until(lambda n=i: sum("answered" in t for t in bot.rec.in_room("general"))
                        == n + 1, what=f"answer {i}")
        await bot.say("general", "fake:hang")
        await until(lambda: len(bot.received("general")) == 4, what="hang delivered")
        await bot.tick(901)
        await until(lambda: any("hung" in t for t in alerts(bot)), what="hung alert")
        queued = await bot.app.store.queued("general")
        assert not any("answered" in q.text for q in queued), queued
    finally:
        await bot.stop()


async def test_r4_1_always_on_lead_starts_at_start_up_others_wait_for_a_message(
        tmp_path: Path) -> None:
    """R4.1: an `always_on` lead is started with the bot; any other lead only on its first
    message."""
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "always_on": True},
                                              {"name": "infra"}])
    try:
        await until(lambda: state(bot, "webui") == "running", what="always_on lead running")
        await bot.app.supervisor.wait_quiet(5)
        assert state(bot, "infra") is None and state(bot, "general") is None
        assert bot.received() == []
    finally:
        await bot.stop()


async def test_idle_timer_sleeps_until_its_next_deadline(tmp_path: Path) -> None:
    """Issue 8 item 6, R4.8: with no agent running the supervisor's timer never fires; with
    one idle lead it fires once, at the idle stop, however much time passes before it."""
    bot = await start_bot(tmp_path)
    supervisor = bot.app.supervisor
    ticks = 0
    tick = supervisor.tick

    async def counted() -> None:
        nonlocal ticks
        ticks += 1
        await tick()

    supervisor.tick = counted  # type: ignore[method-assign]
    try:
        await bot.clock.advance(3600)
        assert ticks == 0
        await bot.say("general", "hello")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        await bot.clock.advance(1700)  # the turn proved it healthy; idle stop is at 1800 s
        assert ticks == 0 and state(bot, "general") == "running"
        await bot.clock.advance(200)
        await until(lambda: state(bot, "general") == "stopped", what="idle stop")
        await bot.clock.advance(3600)
        assert ticks == 1
    finally:
        await bot.stop()
