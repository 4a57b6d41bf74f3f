"""Tool approvals with the REAL Claude Code CLI through the whole bot (R13.1–R13.4, R13.6).

`tests/integration/test_approvals.py` proves the core with the fake agent; these run the
same paths with the real `claude` as `[agent] command`, against the loopback Messages API
scripting a `Bash` tool use of `touch approved.txt` in the agent's workdir. The first runs
`crewbridge run` with the console, as a person at a terminal does; the others run the bot
in-process (`bot.app.App` with recording bridges standing in for Slack and Matrix and a
FakeClock for the deadline), so a click can come from a named person on "Slack"; the
console's `/allow <n>` is a console line like any other. What happened is read where it
happened: the file in the workdir, the requests the model was sent, the cards the bridges
were given. Every wait has a timeout; nothing sleeps to wait.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from crewbridge.bot.approvals import ApprovalState
from crewbridge.bridges.base import Inbound
from tests.agent.messages_api import MessagesAPI, Text, ToolCall, claude_env
from tests.agent.test_real_cli_bot import RUN_TIMEOUT, interactive_bot, write_config
from tests.integration.harness import Bot, Recorder, until
from tests.integration.test_approvals import approval_bot, asked, click, edited, said
from tests.integration.test_threads import person

pytestmark = pytest.mark.timeout(120)

COMMAND = "touch approved.txt"
RULE = f"Bash({COMMAND})"
AGENT = "webui"  # the lead of #webui, bound to Slack C1 and Matrix !m by `approval_bot`
WAIT = 45.0  # a real CLI start and a model round trip, on a loaded 2-CPU machine


@pytest.fixture(autouse=True)
def no_inherited_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-process bot gives its agents its own environment (less its secrets) plus the
    configured one: keep the test runner's Anthropic and Claude settings out of it."""
    for name in list(os.environ):
        if name.startswith(("ANTHROPIC_", "CLAUDE_")):
            monkeypatch.delenv(name)


def bash_call() -> ToolCall:
    return ToolCall("Bash", {"command": COMMAND, "description": "Create approved.txt"})


def touched(tmp_path: Path) -> Path:
    return tmp_path / "work" / "approved.txt"


@asynccontextmanager
async def real_cli_bot(tmp_path: Path, claude_bin: Path, api: MessagesAPI, *,
                       data_dir: Path | None = None, agent: dict | None = None,
                       channel: dict | None = None) -> AsyncIterator[tuple[Bot, Recorder]]:
    """`approval_bot` (#webui on Slack C1, Matrix !m and the console) whose agent is the
    real CLI, offline, in `tmp_path/work`; stopped on the way out."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    bot, slack, _matrix = await approval_bot(
        tmp_path, data_dir=data_dir or tmp_path / "data", channel=channel,
        agent={"command": [str(claude_bin)], "workdir": str(work),
               "env": api.env(tmp_path / "agent-home"), **(agent or {})})
    try:
        yield bot, slack
    finally:
        await bot.stop()


def cards(rec: Recorder, room: str) -> list[str]:
    return [p.text for r, p in rec.sent if r == room and p.text.startswith("🔐")]


def console(text: str) -> Inbound:
    """A line typed at the console, as the console bridge hands it to the core."""
    return Inbound("console", "", "local", "me", text, f"c-{time.monotonic_ns()}", time.time())


async def wait(cond: Callable[[], object], what: str) -> None:
    await until(cond, timeout=WAIT, what=what)


async def read_until(proc: asyncio.subprocess.Process, wanted: str, seen: list[str]) -> str:
    """Console lines (kept in `seen`) up to the first containing `wanted`."""
    assert proc.stdout is not None
    while True:
        line = (await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)).decode()
        assert line, f"the bot's output ended before {wanted!r}: {seen}"
        seen.append(line.rstrip("\n"))
        if wanted in line:
            return line


async def test_r13_1_real_cli_console_card_and_slash_allow_through_crewbridge_run(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.1 as a person at the console sees it: `crewbridge run`, the real CLI asks, the
    card is printed in the message's thread with its number, the bare line `/allow 1` runs
    the command in the agent's workdir, the answer is printed and the card is printed again
    with its outcome."""
    messages_api.reply(bash_call(), Text("Created approved.txt."))
    config = write_config(tmp_path, claude_bin,
                          claude_env(tmp_path / "agent-home", base_url=messages_api.url))
    seen: list[str] = []
    async with interactive_bot(config, tmp_path / "bot-home") as proc:
        assert proc.stdin is not None
        proc.stdin.write(b"#general please create approved.txt\n")
        await proc.stdin.drain()
        card = await read_until(proc, "🔐", seen)
        assert card.startswith("#general/1 crewbridge: 🔐 **general** wants to use **Bash**")
        await read_until(proc, "/allow 1", seen)
        assert not touched(tmp_path).exists()
        proc.stdin.write(b"/allow 1\n")
        await proc.stdin.drain()
        await read_until(proc, "#general/1 general: Created approved.txt.", seen)
        proc.stdin.close()
        out, err = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT)
    seen += out.decode().splitlines()
    assert touched(tmp_path).exists()
    assert any(line.startswith("#general/1 crewbridge: ✅ **general** wants to use **Bash**")
               for line in seen), seen
    assert any("Allowed by " in line for line in seen), (seen, err.decode())


async def test_r13_1_real_cli_allow_from_the_console_runs_the_command(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.1: the real CLI's `can_use_tool` for `touch approved.txt` becomes a 🔐 card in
    the turn's conversation; `/allow 1` at the console runs it in the agent's workdir, the
    model's answer is posted, and the card is edited into "Allowed by …"."""
    messages_api.reply(bash_call(), Text("Created approved.txt."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, text = await asked(slack)
        assert "**webui** wants to use **Bash**" in text and COMMAND in text
        assert "/allow 1" in text and f"`{RULE}`" in text
        assert not touched(tmp_path).exists()
        await bot.app.on_event(console("/allow 1"))
        await wait(lambda: said(slack, "C1", "Created approved.txt."), "the answer")
        assert touched(tmp_path).exists()
        await wait(lambda: edited(slack, "C1", ref), "the card edited")
        assert "Allowed by me." in edited(slack, "C1", ref)[-1]
        [_, after] = messages_api.message_requests
        [ran] = after.tool_results()
        assert ran["is_error"] is False
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.ALLOWED


def tool_result_texts(api: MessagesAPI) -> list[str]:
    """The content of every error tool_result the model was sent, in order."""
    return [str(block["content"]) for r in api.message_requests for block in r.tool_results()
            if block.get("is_error")]


async def test_r13_1_real_cli_deny_with_a_reason_does_not_run_and_tells_the_model(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.1: `/deny 1 not now` does not run the command; the model's next request carries
    an error tool_result naming who denied and why; the turn goes on to its answer."""
    messages_api.reply(bash_call(), Text("Understood, I will not."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, _ = await asked(slack)
        await bot.app.on_event(console("/deny 1 not now"))
        await wait(lambda: said(slack, "C1", "Understood, I will not."), "the answer")
        assert not touched(tmp_path).exists()
        [told] = messages_api.message_requests[1].tool_results()
        assert told["is_error"] is True
        assert told["content"] == "Denied from chat by me: not now."
        await wait(lambda: edited(slack, "C1", ref), "the card edited")
        assert "Denied by me: not now." in edited(slack, "C1", ref)[-1]


async def test_r13_2_real_cli_a_strangers_click_changes_nothing(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.2: with `approvers = ["U-carol"]` on #webui, Mallory's Allow on Slack is refused
    to her privately and the real CLI still waits (the request open, nothing run, no
    further model request); Carol's Allow then runs the command."""
    messages_api.reply(bash_call(), Text("Created approved.txt."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api,
                            channel={"approvers": ["U-carol"]}) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, _ = await asked(slack)
        [request_id] = bot.app.supervisor.asking(AGENT)
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="mallory"))
        await wait(lambda: slack.told, "the refusal")
        room, user, text = slack.told[-1]
        assert (room, user) == ("C1", "U-mallory") and "nothing changed" in text
        assert list(bot.app.supervisor.asking(AGENT)) == [request_id]  # it still waits
        assert not touched(tmp_path).exists() and not edited(slack, "C1", ref)
        assert len(messages_api.message_requests) == 1
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="carol"))
        await wait(lambda: said(slack, "C1", "Created approved.txt."), "the answer")
        assert touched(tmp_path).exists()
        assert "Allowed by carol." in edited(slack, "C1", ref)[-1]


async def test_r13_3_real_cli_no_decision_in_time_is_a_deny_the_model_is_told(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.3: the real CLI has no deadline of its own; past `approval_timeout_s` (fake
    time) the bot denies, the model reads that no one decided, and the card says so."""
    messages_api.reply(bash_call(), Text("Nobody answered, so I stopped."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api,
                            agent={"approval_timeout_s": 120}) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, _ = await asked(slack)
        await bot.tick(121)
        await wait(lambda: said(slack, "C1", "Nobody answered, so I stopped."), "the answer")
        assert not touched(tmp_path).exists()
        [told] = tool_result_texts(messages_api)
        assert told.startswith("No one decided within 2 min")
        await wait(lambda: edited(slack, "C1", ref), "the card edited")
        assert "No one decided in time" in edited(slack, "C1", ref)[-1]


def argv_of(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def agent_pid(bot: Bot) -> int:
    view = bot.app.supervisor.run_view(AGENT)
    assert view is not None and view.pid is not None
    return view.pid


async def test_r13_1_real_cli_always_allow_is_not_asked_again(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.1: `/always 1` runs the command and adds the rule to the session (the allow's
    `updatedPermissions`), so the same CLI process runs the same command in a later turn
    without asking; after a restart of the bot the agent's new session is started with
    `--allowedTools Bash(touch approved.txt)`."""
    messages_api.reply(bash_call(), Text("Created it."), bash_call(), Text("Created it again."))
    data = tmp_path / "data"
    async with real_cli_bot(tmp_path, claude_bin, messages_api, data_dir=data) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, _ = await asked(slack)
        await bot.app.on_event(console("/always 1"))
        await wait(lambda: said(slack, "C1", "Created it."), "the first answer")
        assert touched(tmp_path).exists()
        assert f"`{RULE}` is allowed in #webui" in edited(slack, "C1", ref)[-1]
        # the rule went to the session, not into the project's settings (encode_allow)
        assert not (tmp_path / "work" / ".claude" / "settings.local.json").exists()
        pid = agent_pid(bot)
        touched(tmp_path).unlink()
        await bot.app.on_event(person("slack", "C1", "once more please"))
        await wait(lambda: said(slack, "C1", "Created it again."), "the second answer")
        assert touched(tmp_path).exists()  # it ran again ...
        assert len(cards(slack, "C1")) == 1  # ... without a second card
        assert not bot.app.supervisor.asking(AGENT)
        assert agent_pid(bot) == pid
        assert not tool_result_texts(messages_api)
    messages_api.reply(Text("Hello again."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api, data_dir=data) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "are you there?"))
        await wait(lambda: said(slack, "C1", "Hello again."), "the answer after the restart")
        argv = argv_of(agent_pid(bot))
        assert "--resume" in argv
        assert argv[argv.index("--allowedTools") + 1] == RULE


async def test_r13_6_real_cli_stop_ends_a_streaming_turn_and_the_same_process_goes_on(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.6: `!stop` while the real CLI streams a long reply interrupts the turn: who
    stopped it is said, none of the cut-off text is posted, and the next message is
    answered by the same process (same pid)."""
    messages_api.reply(Text("a very long essay " * 30, chunks=60, delay=0.25),
                       Text("Short answer."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "write me an essay"))
        await messages_api.wait_for_requests(1, timeout=WAIT)
        pid = agent_pid(bot)
        await bot.app.on_event(person("slack", "C1", "!stop"))
        await wait(lambda: said(slack, "C1", "stopped by bob"), "the stop's outcome")
        await bot.app.on_event(person("slack", "C1", "and now a short one"))
        await wait(lambda: said(slack, "C1", "Short answer."), "the next answer")
        assert agent_pid(bot) == pid
        assert not said(slack, "C1", "very long essay")


async def test_r13_4_real_cli_a_pending_card_survives_a_restart_of_the_bot(
        claude_bin: Path, messages_api: MessagesAPI, tmp_path: Path) -> None:
    """R13.4: the bot stops while the real CLI waits for a decision; restarted on the same
    data, it resumes the session and gives the message again, the model asks again, and
    the card already shown (no second one) decides: `/allow 1` runs the command.

    The real CLI does not re-ask on its own: the resumed session's history ends in
    "[Tool call interrupted …]"; the redelivered message makes the (scripted) model ask
    again. The stopped process makes no further model request: had its stdin been closed
    first, it would fail the waiting request ("Tool permission stream closed") and go on
    to the model while exiting, and a turn ending in that race would count as answered
    (`tests/unit/test_session_stop.py`)."""
    messages_api.reply(bash_call())
    messages_api.default = Text("(the stopping process's last word)")
    data = tmp_path / "data"
    async with real_cli_bot(tmp_path, claude_bin, messages_api, data_dir=data) as (bot, slack):
        await bot.app.on_event(person("slack", "C1", "please create approved.txt"))
        ref, _ = await asked(slack)
        first_pid = agent_pid(bot)
    before = len(messages_api.message_requests)
    assert before == 1  # the stopped process asked the model nothing more
    messages_api.reply(bash_call(), Text("Created approved.txt."))
    async with real_cli_bot(tmp_path, claude_bin, messages_api, data_dir=data) as (bot, slack):
        await wait(lambda: bot.app.supervisor.asking(AGENT), "the model asked again")
        assert agent_pid(bot) != first_pid and "--resume" in argv_of(agent_pid(bot))
        resumed = messages_api.message_requests[before]
        assert resumed.user_texts()[-1].endswith("[bob via slack in #webui] please create "
                                                 "approved.txt")  # the message, again
        assert any("Tool call interrupted" in str(b["content"]) for b in resumed.tool_results())
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.PENDING
        assert a.request_id in bot.app.supervisor.asking(AGENT)
        assert not cards(slack, "C1")  # no second card
        assert not touched(tmp_path).exists()
        await bot.app.on_event(console("/allow 1"))
        await wait(lambda: said(slack, "C1", "Created approved.txt."), "the answer")
        assert touched(tmp_path).exists()
        assert "Allowed by me." in edited(slack, "C1", ref)[-1]
