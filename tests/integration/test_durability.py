"""Nothing in flight is lost (R8.5), with grace at shutdown (R4.9), mid-turn crashes
(R4.11) and "Recovered" only when earned (R4.12) — against real fake-agent processes.

The restart tests run a real `crewbridge run` and kill it (SIGKILL, SIGTERM) while an agent
is in a turn: `FAKE_AGENT_DELAY` makes the turns slow, and the tests wait for the agent to
have received the message (its FAKE_AGENT_LOG) before they kill, so the kill lands mid-turn.
"""

from __future__ import annotations

import json
import random
import re
import sqlite3
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests.integration.harness import start_bot, until
from tests.integration.test_supervision import flaky_command, health, state
from tests.support.botproc import BotProcess, short_data_dir, write_config

pytestmark = pytest.mark.timeout(120)

NOTE = "an earlier attempt to answer this message was cut short"


def received(log: Path) -> list[str]:
    """What the agents read, in order (complete lines of the fake agent's log)."""
    if not log.exists():
        return []
    return [json.loads(line)["text"] for line in log.read_text().splitlines(keepends=True)
            if line.endswith("\n")]


def wait(cond, what: str, timeout: float = 30.0) -> None:
    """`until` for a synchronous test: poll a condition real processes will make true."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def stored(data_dir: Path, text: str) -> bool:
    """Whether the bot has stored a person's message (from outside, as a reader)."""
    db = sqlite3.connect(data_dir / "crewbridge.db", timeout=5)
    try:
        return db.execute("SELECT 1 FROM messages WHERE text = ?", (text,)).fetchone() is not None
    except sqlite3.OperationalError:  # not created yet
        return False
    finally:
        db.close()


def queue_length(data_dir: Path) -> int:
    db = sqlite3.connect(data_dir / "crewbridge.db", timeout=5)
    try:
        return db.execute("SELECT COUNT(*) FROM queue").fetchone()[0]
    finally:
        db.close()


def slow_config(tmp_path: Path, delay: str, **agent: object) -> tuple[Path, Path, Path]:
    """A config whose agents take `delay` ("min,max" seconds) per turn; (config, log, data)."""
    log = tmp_path / "agents.jsonl"
    data_dir = short_data_dir()  # a socket path must be short
    env = {"FAKE_AGENT_LOG": str(log), "FAKE_AGENT_DELAY": delay, "FAKE_AGENT_STAMP": "1"}
    config = write_config(tmp_path / "c.toml", data_dir=data_dir,
                          agent={"env": env, **agent})
    return config, log, data_dir


ANSWER = re.compile(r"^#general/\d+ general: got it — `(msg-\d+)` \[(\S+)\]$")


def answers(output: str) -> dict[str, set[str]]:
    """Message -> the stamps of the turns that answered it (one stamp posted twice is one
    answer sent twice; two stamps are two answers)."""
    found: dict[str, set[str]] = defaultdict(set)
    for line in output.splitlines():
        if m := ANSWER.match(line):
            found[m.group(1)].add(m.group(2))
    return found


# --- R8.5 / R4.9 with a real `crewbridge run` -------------------------------------------------


def test_r8_5_sigkill_mid_turn_the_message_is_answered_after_the_restart(
        tmp_path: Path) -> None:
    """R8.5: the bot is SIGKILLed while the agent is in a turn; after the restart with the
    same data directory the message is delivered again, with the note, and answered once."""
    config, log, data_dir = slow_config(tmp_path, "2,2")
    first = BotProcess(config)
    try:
        first.send("#general msg-1")
        wait(lambda: any("msg-1" in t for t in received(log)), "the turn to begin")
        first.kill()
    finally:
        first.close()
    assert not answers(first.output())
    second = BotProcess(config)
    try:
        second.wait_for(ANSWER.pattern)
        again = [t for t in received(log) if "msg-1" in t]
        assert len(again) == 2 and NOTE in again[1] and NOTE not in again[0]
        assert second.terminate() == 0
    finally:
        second.close()
    assert {m: len(s) for m, s in answers(second.output()).items()} == {"msg-1": 1}
    assert queue_length(data_dir) == 0


def sigterm_mid_turn(config: Path, log: Path) -> BotProcess:
    """A bot that got `msg-1` into a turn and was then stopped with SIGTERM (exit 0)."""
    bot = BotProcess(config)
    try:
        bot.send("#general msg-1")
        wait(lambda: any("msg-1" in t for t in received(log)), "the turn to begin")
        assert bot.terminate() == 0
    finally:
        bot.close()
    return bot


def test_r4_9_sigterm_gives_a_running_turn_its_grace_and_posts_the_answer(
        tmp_path: Path) -> None:
    """R4.9, R8.5: SIGTERM mid-turn: the turn may end within shutdown_grace_s, its answer is
    posted and its message dequeued before the bot exits 0; the next run does not answer it
    again."""
    config, log, data_dir = slow_config(tmp_path, "1.5,1.5", shutdown_grace_s=20)
    first = sigterm_mid_turn(config, log)
    assert "msg-1" in answers(first.output()), first.stderr[-3000:]
    assert queue_length(data_dir) == 0
    second = BotProcess(config)
    try:
        second.send("#general msg-2")
        second.wait_for(r"got it — `msg-2`")
        assert second.terminate() == 0
    finally:
        second.close()
    assert [t for t in received(log) if "msg-1" in t] == [received(log)[0]]  # once only


def test_r4_9_r8_5_a_turn_longer_than_the_grace_is_answered_after_the_restart(
        tmp_path: Path) -> None:
    """R4.9, R8.5: a turn that outlasts shutdown_grace_s is cut short — the bot still exits
    0 and leaves no agent behind — and its message is answered after the restart."""
    config, log, data_dir = slow_config(tmp_path, "4,4", shutdown_grace_s=0.5)
    first = sigterm_mid_turn(config, log)
    assert not answers(first.output())
    second = BotProcess(config)
    try:
        second.wait_for(ANSWER.pattern)
        assert second.terminate() == 0
    finally:
        second.close()
    assert "not stopped cleanly" not in second.output()  # no orphan was left to end
    assert {m: len(s) for m, s in answers(second.output()).items()} == {"msg-1": 1}
    assert NOTE in [t for t in received(log) if "msg-1" in t][-1]
    assert queue_length(data_dir) == 0


KILL_POINTS = ("stored", "delivered", "answered")
"""Where in a message's life a kill lands: the bot has stored it; the agent has begun its
turn; its answer has been posted."""


def test_r8_5_crash_consistency_random_sigkills_lose_and_repeat_nothing(
        tmp_path: Path) -> None:
    """R8.5: a person sends 15 numbered messages to a lead whose turns take 0.3–1 s; the
    bot is SIGKILLed at 5 seeded random points of the conversation (after a message is
    stored, while its turn runs, or after its answer is posted) and restarted on the same
    data directory each time. Every message is answered exactly once: by one turn (one
    stamp), whatever the outbox had to send again."""
    rng = random.Random(9)
    kills = dict(zip(sorted(rng.sample(range(1, 15), 5)),
                     (rng.choice(KILL_POINTS) for _ in range(5)), strict=True))
    assert "delivered" in kills.values()  # the seed puts a kill mid-turn
    config, log, data_dir = slow_config(tmp_path, "0.3,1")
    outputs: list[str] = []
    bot = BotProcess(config)
    try:
        for n in range(1, 16):
            text = f"msg-{n}"
            bot.send(f"#general {text}")
            wait(lambda t=text: stored(data_dir, t), f"{text} stored")
            point = kills.get(n)
            if point == "delivered":
                wait(lambda t=text: any(t in r for r in received(log)), f"{text} delivered")
            elif point == "answered":
                bot.wait_for(rf"got it — `{text}`")
            if point is not None:
                bot.kill()
                outputs.append(bot.output())
                bot.close()
                bot = BotProcess(config)
                bot.wait_ready()
        wait(lambda: len(answers("\n".join([*outputs, bot.output()]))) == 15,
             "every message answered", timeout=60)
        assert bot.terminate() == 0
        outputs.append(bot.output())
    finally:
        bot.close()
    found = answers("\n".join(outputs))
    assert sorted(found, key=lambda m: int(m[4:])) == [f"msg-{n}" for n in range(1, 16)]
    twice = {m: s for m, s in found.items() if len(s) != 1}
    assert not twice, f"answered more than once: {twice} (kills: {kills})"
    assert queue_length(data_dir) == 0


# --- R8.5 folding, R4.11, R4.12 in process --------------------------------------------------


async def test_r8_5_messages_folded_into_one_turn_are_all_answered_by_it(
        tmp_path: Path) -> None:
    """R8.5, R3.6: messages of one conversation written during a turn are folded by the CLI
    into the next one (as Claude Code 2.1.332 does); its result lists them all, so all
    leave the queue and the agent is not left "in a turn" waiting for answers that will
    never come. (`replies = "channel"`: the channel's top level is one conversation.)"""
    log = tmp_path / "agents.jsonl"
    bot = await start_bot(tmp_path, channels=[{"name": "webui", "replies": "channel"}],
                          agent={"env": {"FAKE_AGENT_LOG": str(log), "FAKE_AGENT_FOLD": "1",
                                         "FAKE_AGENT_DELAY": "0.5,0.5"}})
    try:
        await bot.say("webui", "fold-1")
        await until(lambda: any("fold-1" in t for t in received(log)), what="first turn")
        for i in (2, 3, 4):
            await bot.say("webui", f"fold-{i}")
        await until(lambda: any("fold-4" in t for t in bot.rec.in_room("webui")),
                    what="the folded answer")
        folded = next(t for t in bot.rec.in_room("webui") if "fold-4" in t)
        assert "fold-2" in folded and "fold-3" in folded  # one turn answered the three
        await until(lambda: not bot.app.supervisor.run_view("webui").in_turn,
                    what="the turn over")
        assert await bot.app.store.queue_lengths() == {}
        assert await bot.app.supervisor.wait_quiet(5)
    finally:
        await bot.stop()


async def test_r4_11_a_healthy_agent_dying_mid_turn_fails_tells_once_and_answers_later(
        tmp_path: Path) -> None:
    """R4.11: a session that has answered before and then exits in the middle of a turn is
    a failure; the person waiting hears once that it stopped while answering and will try
    again; after the cooldown the message is delivered again and answered."""
    bot = await start_bot(tmp_path)
    flag = tmp_path / "crashed-once"
    try:
        await bot.say("general", "hi")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("general")), what="reply")
        await bot.say("general", f"fake:crash-once={flag}")
        await until(lambda: state(bot, "general") == "stopped", what="the crash")
        await until(lambda: any("stopped while answering" in t  # after the health is saved
                                for t in bot.rec.in_room("general")), what="the notice")
        h = await health(bot, "lead:general")
        assert h.failures == 1 and h.cooldown_until > bot.clock.now()
        notices = [t for t in bot.rec.in_room("general") if "stopped while answering" in t]
        assert len(notices) == 1 and "it will try again at" in notices[0]
        assert not any("failed to start" in t for t in bot.rec.in_room("general"))
        await bot.tick(121)
        await until(lambda: any("got it — `fake:crash-once" in t
                                for t in bot.rec.in_room("general")), what="answered later")
        texts = [r["text"] for r in bot.received("general") if "crash-once" in r["text"]]
        assert len(texts) == 2 and NOTE in texts[1]
        assert sum("stopped while answering" in t for t in bot.rec.in_room("general")) == 1
    finally:
        await bot.stop()


async def test_r4_12_a_reset_alone_is_not_recovered(tmp_path: Path) -> None:
    """R4.12: an admin's reset of a still-broken agent closes its breaker but posts no
    "Recovered"; the first good turn after the fix does, once."""
    flag = tmp_path / "broken"
    flag.touch()
    bot = await start_bot(tmp_path, agent={"max_lead_restarts": 1},
                          channels=[{"name": "webui", "command": flaky_command(flag)}])
    try:
        await bot.say("webui", "hello")
        await until(lambda: any("Circuit breaker open" in t for t in bot.rec.in_room("ops")),
                    what="breaker open")
        await bot.say("ops", "reset webui")
        await until(lambda: any("Reset webui" in t for t in bot.rec.in_room("ops")),
                    what="reset done")
        await until(lambda: state(bot, "webui") == "stopped"
                    and bot.app.supervisor.run_view("webui").starts == 2,
                    what="the start after the reset failed")
        assert not any("Recovered" in t for t in bot.rec.in_room("ops"))
        flag.unlink()
        await bot.tick(601)
        await bot.say("webui", "again")
        await until(lambda: any("Recovered" in t for t in bot.rec.in_room("ops")),
                    what="recovered after a good turn")
        await until(lambda: any("got it" in t for t in bot.rec.in_room("webui")), what="reply")
        assert sum("Recovered" in t for t in bot.rec.in_room("ops")) == 1
    finally:
        await bot.stop()
