"""At most `max_live_agents` agent processes, with real fake-agent processes (R3.7, R3.5).

The number of live agent processes is read from /proc (the children of this process that
have not exited), sampled all through each test by a background task, never from the
supervisor's private fields.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from crewbridge.supervisor.session import OutOfResources, Session
from tests.integration.harness import Bot, start_bot, until

pytestmark = pytest.mark.timeout(60)

LEADS = ["alpha", "beta", "gamma"]


def live_children() -> int:
    """Processes whose parent is this one and that have not exited (zombies aside)."""
    me, count = os.getpid(), 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        state, ppid = stat.rsplit(")", 1)[1].split()[:2]
        count += int(ppid) == me and state != "Z"
    return count


@asynccontextmanager
async def most_alive() -> AsyncIterator[list[int]]:
    """Sample `live_children()` every few ms; yields a one-item list with the maximum."""
    peak = [live_children()]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], live_children())
            await asyncio.sleep(0.005)

    task = asyncio.ensure_future(sample())
    try:
        yield peak
    finally:
        task.cancel()
        peak[0] = max(peak[0], live_children())


async def two_slots(tmp_path: Path, **agent: object) -> Bot:
    return await start_bot(tmp_path, agent={"max_live_agents": 2, **agent},
                           channels=[{"name": name} for name in LEADS])


def answered(bot: Bot, room: str, n: int = 1) -> bool:
    return sum("got it" in t for t in bot.rec.in_room(room)) >= n


def sessions(bot: Bot, agent: str) -> list[str]:
    return [r["session_id"] for r in bot.received(agent)]


async def state_of(bot: Bot, agent: str) -> str | None:
    return next((row.state for row in await bot.app.supervisor.status() if row.name == agent),
                None)


async def test_r3_7_three_leads_two_slots_all_answer_idle_ones_make_room(tmp_path: Path) -> None:
    """R3.7, R4.8: with two slots, three leads talked to in turn all answer; the least
    recently active idle session is stopped to make room and resumed (same session) on its
    next message; never more than two agent processes at once."""
    assert live_children() == 0
    bot = await two_slots(tmp_path)
    try:
        async with most_alive() as peak:
            for i, lead in enumerate([*LEADS, "alpha", "beta"]):
                await bot.say(lead, f"hello {lead} #{i}")
                await until(lambda lead=lead, i=i: answered(bot, lead, 1 + (i >= 3)),
                            what=f"{lead} answers message {i}")
                await bot.tick(1)  # the next one is more recently active
            await bot.app.supervisor.wait_quiet(10)
            running = [r.name for r in await bot.app.supervisor.status() if r.state == "running"]
        assert peak[0] <= 2, f"{peak[0]} agent processes at once"
        assert sorted(running) == ["alpha", "beta"]  # gamma made room for beta last
        for lead in ("alpha", "beta"):  # stopped for room, resumed: one session throughout
            ids = sessions(bot, lead)
            assert len(ids) == 2 and ids[0] == ids[1], ids
            assert bot.app.supervisor.run_view(lead).starts == 2
        assert bot.app.supervisor.run_view("gamma").starts == 1
        for row in await bot.app.supervisor.status():
            assert row.failures == 0, row  # making room is no failure (R4.2)
    finally:
        await bot.stop()
    assert live_children() == 0


async def test_r3_7_r3_5_all_in_a_turn_start_waits_holds_messages_and_goes_at_turn_end(
        tmp_path: Path) -> None:
    """R3.7, R3.5, R6.4: both slots in a turn, a third lead's start waits (status says so)
    rather than fails or cuts a turn short; messages to it are held and delivered in order
    to the session that results, once a turn has ended."""
    bot = await two_slots(tmp_path)
    try:
        async with most_alive() as peak:
            for lead in ("alpha", "beta"):
                await bot.say(lead, f"{lead}: fake:slow=3,1")  # a 3 s turn
                await until(lambda lead=lead: bot.received(lead), what=f"{lead} in a turn")
            await bot.say("gamma", "first for gamma")
            await until(lambda: bot.app.supervisor.run_view("gamma") is not None
                        and bot.app.supervisor.run_view("gamma").waiting_for_slot,
                        what="gamma waits for a slot")
            assert await state_of(bot, "gamma") == "waiting for a slot"
            await bot.say("gamma", "second for gamma")  # held (R3.5)
            await until(lambda: answered(bot, "gamma", 2), timeout=30, what="gamma answers both")
            for lead in ("alpha", "beta"):  # their turns run to the end: never cut for room
                await until(lambda lead=lead: any(f"{lead}: part 3 of 3" in t
                                                  for t in bot.rec.in_room(lead)),
                            timeout=30, what=f"{lead}'s turn ends")
                assert bot.app.supervisor.run_view(lead).starts == 1
        assert peak[0] <= 2, f"{peak[0]} agent processes at once"
        assert [r["text"].rsplit("] ", 1)[-1] for r in bot.received("gamma")] == [
            "first for gamma", "second for gamma"]
        assert len(set(sessions(bot, "gamma"))) == 1
        assert not any("failed" in t for t in bot.rec.in_room("ops"))
    finally:
        await bot.stop()
    assert live_children() == 0


async def test_r3_7_r4_2_out_of_descriptors_is_no_failure_and_is_retried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """R3.7, R4.2: a spawn the OS refuses with EMFILE is not counted as the agent's failure;
    an idle session makes room and the start is retried when its process has exited."""
    refused: list[str] = []
    real_start = Session.start

    async def start(session: Session) -> None:
        if session.name == "beta" and not refused:
            refused.append(session.name)
            raise OutOfResources("cannot start fake-agent now: Too many open files")
        await real_start(session)

    monkeypatch.setattr(Session, "start", start)
    bot = await start_bot(tmp_path, agent={"max_live_agents": 4},
                          channels=[{"name": name} for name in LEADS])
    try:
        await bot.say("alpha", "hello alpha")
        await until(lambda: answered(bot, "alpha"), what="alpha answers")
        await bot.say("beta", "hello beta")
        await until(lambda: answered(bot, "beta"), what="beta answers after the retry")
        assert refused == ["beta"]
        assert bot.app.supervisor.run_view("beta").starts == 1  # one start, tried twice
        assert (await bot.app.store.health("lead:beta")).failures == 0
        assert not any("failed" in t or "cooling down" in t for t in bot.rec.in_room("beta"))
        await until(lambda: bot.app.supervisor.run_view("alpha").state.value == "stopped",
                    what="alpha made room for the descriptors")
    finally:
        await bot.stop()


def test_r3_7_run_raises_the_soft_fd_limit_to_the_hard_limit() -> None:
    """R3.7: `crewbridge run` raises the soft RLIMIT_NOFILE to the hard limit at start-up."""
    code = ("import resource as r; s, h = r.getrlimit(r.RLIMIT_NOFILE); "
            "r.setrlimit(r.RLIMIT_NOFILE, (256, h)); from bot.cli import raise_fd_limit; "
            "raise_fd_limit(); print(r.getrlimit(r.RLIMIT_NOFILE)[0] == h or "
            "r.getrlimit(r.RLIMIT_NOFILE))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "True"
