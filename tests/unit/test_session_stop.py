"""`Session.stop` with a real child process (R4.9, R13.4): the agent is terminated before
its input ends, so an agent that still waits for an answer never reads the end of its
input as "finish the turn without me" while its SIGTERM handler runs."""

from __future__ import annotations

import sys
from pathlib import Path

from crewbridge.supervisor.session import Session
from tests.integration.harness import until

# An agent whose SIGTERM handler takes its time (the real CLI saves its session first) and
# which, like the CLI with a `can_use_tool` waiting, acts on the end of its input at once.
AGENT = """
import os, pathlib, signal, sys, threading, time
here = pathlib.Path(sys.argv[1])
def on_term(*_):
    time.sleep(0.5)
    os._exit(143)
signal.signal(signal.SIGTERM, on_term)
def read():
    sys.stdin.buffer.read()
    (here / "read-eof").touch()
threading.Thread(target=read, daemon=True).start()
(here / "ready").touch()
while True:
    signal.pause()
"""


async def test_r13_4_stop_terminates_before_the_agent_sees_the_end_of_its_input(
        tmp_path: Path) -> None:
    """R13.4/R4.9: stop() signals first and closes stdin only once the agent has exited:
    an agent that acts on EOF (the real CLI fails the request it waits on and goes on to
    the model) gets no chance to; it still exits within the grace (SIGTERM)."""
    codes: list[int] = []

    async def on_event(_event: object) -> None:
        return None

    async def on_exit(code: int) -> None:
        codes.append(code)

    session = Session("agent", [sys.executable, "-c", AGENT, str(tmp_path)], cwd=tmp_path,
                      env={}, on_event=on_event, on_exit=on_exit)
    await session.start()
    await until(lambda: (tmp_path / "ready").exists(), what="the agent's handler")
    await session.stop(grace_s=10)
    assert codes == [143]
    assert not (tmp_path / "read-eof").exists()
