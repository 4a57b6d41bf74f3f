"""Tool approvals through the whole core (R13.1–R13.4): the fake agent asks `can_use_tool`
over the control protocol (a real subprocess), the bot posts a card into recording bridges
standing in for Slack and Matrix, people click, react, reply or type, and the agent runs
the tool, or is told it may not.
"""

from __future__ import annotations

import time
from itertools import count
from pathlib import Path

import pytest

from crewbridge.bot.app import App
from crewbridge.bot.approvals import ApprovalState
from crewbridge.bot.clock import FakeClock
from crewbridge.bot.config import load_config
from crewbridge.bridges.base import Acted, Inbound
from tests.integration.harness import Bot, Recorder, until
from tests.integration.test_threads import person
from tests.support.botproc import write_config

pytestmark = pytest.mark.timeout(60)

_acts = count(1)
ASK = "please touch it fake:ask=Bash:touch_x"


async def approval_bot(tmp_path: Path, *, channel: dict | None = None,
                       agent: dict | None = None, admin_users: tuple[str, ...] = (),
                       data_dir: Path | None = None,
                       console: dict | None = None) -> tuple[Bot, Recorder, Recorder]:
    """#webui bound to Slack C1 and Matrix !m (recorders), answers at the top level."""
    log = tmp_path / "agents.jsonl"
    config = load_config(write_config(
        tmp_path / "c.toml", data_dir=data_dir,
        agent={"env": {"FAKE_AGENT_LOG": str(log)}, **(agent or {})},
        channels=[{"name": "webui", "slack": ["C1"], "matrix": ["!m"], "replies": "channel",
                   **(channel or {})}],
        extra={"admin": {"users": list(admin_users)},
               "slack": {"bot_token": "xoxb-test", "app_token": "xapp-test"},
               "matrix": {"homeserver": "http://127.0.0.1:1", "user_id": "@crew:test",
                          "access_token": "t"},
               "console": {"enabled": True, **(console or {})}}))
    slack, matrix = Recorder(platform="slack"), Recorder(platform="matrix")
    app = App(config, clock=FakeClock(start=time.time()),
              bridges={"console": Recorder(), "slack": slack, "matrix": matrix})
    await app.start()
    return Bot(app, app.clock, app.bridges["console"], log), slack, matrix  # type: ignore[arg-type]


def click(platform: str, room: str, ref: str, choice: str, name: str = "bob") -> Acted:
    n = next(_acts)
    return Acted(platform, room, f"U-{name}", name, ref, choice, f"act-{n}", time.time())


def card(rec: Recorder, room: str) -> tuple[str, str]:
    """The (ref, text) of the latest approval card posted to `room`."""
    return rec.ref_of(room, "🔐"), next(p.text for r, p in reversed(rec.sent)
                                        if r == room and "🔐" in p.text)


def edited(rec: Recorder, room: str, ref: str) -> list[str]:
    return [p.text for r, e, p in rec.edits if r == room and e == ref]


def said(rec: Recorder, room: str, text: str) -> bool:
    return any(text in t for t in rec.in_room(room))


async def asked(slack: Recorder) -> tuple[str, str]:
    await until(lambda: any("🔐" in p.text for _, p in slack.sent), what="the card")
    return card(slack, "C1")


async def test_r13_1_a_click_on_allow_runs_the_tool(tmp_path: Path) -> None:
    """R13.1: the card names the agent, the tool and the command, offers Allow, Deny and
    Always allow; Allow by the person the turn answers runs the tool, and the card in every
    room is edited into who allowed it, its buttons gone."""
    bot, slack, matrix = await approval_bot(tmp_path)
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, text = await asked(slack)
        assert "**webui** wants to use **Bash**" in text and "touch x" in text
        post = next(p for r, p in slack.sent if r == "C1" and "🔐" in p.text)
        assert [b.action for b in post.buttons] == ["allow", "deny", "always"]
        assert any("🔐" in p.text and p.buttons for r, p in matrix.sent if r == "!m")
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: said(slack, "C1", "ran Bash: touch x"), what="the tool ran")
        await until(lambda: edited(slack, "C1", ref), what="the card edited")
        assert "Allowed by bob" in edited(slack, "C1", ref)[-1]
        assert not next(p for r, e, p in slack.edits if e == ref).buttons
        mref = matrix.ref_of("!m", "🔐")
        await until(lambda: edited(matrix, "!m", mref), what="the Matrix card edited")
        audit = await bot.app.store.audit_entries()
        assert any(e.what.startswith("allow request 1") and e.outcome == "allowed"
                   for e in audit)  # R13.9
    finally:
        await bot.stop()


async def test_r13_1_a_reaction_and_a_typed_deny_with_reason(tmp_path: Path) -> None:
    """R13.1: on Matrix ❌ (a reaction) denies; typed, `/deny <n> <reason>` reaches the
    model as the tool's error naming who denied and why."""
    bot, slack, matrix = await approval_bot(tmp_path)
    try:
        await bot.app.on_event(person("matrix", "!m", ASK))
        await asked(slack)
        mref = matrix.ref_of("!m", "🔐")
        await bot.app.on_event(click("matrix", "!m", mref, "❌\ufe0f"))
        await until(lambda: said(slack, "C1", "denied: Denied from chat by bob."),
                    what="the model told")
        await bot.app.on_event(person("slack", "C1", ASK))
        await until(lambda: sum("🔐" in p.text for r, p in slack.sent if r == "C1") == 2,
                    what="a second card")
        await bot.app.on_event(person("slack", "C1", "/deny 2 not on prod"))
        await until(lambda: said(slack, "C1", "Denied from chat by bob: not on prod."),
                    what="the reason reached the model")
        a = await bot.app.store.approval(2)
        assert a is not None and a.state is ApprovalState.DENIED and a.reason == "not on prod"
    finally:
        await bot.stop()


async def test_r13_1_a_bare_reply_in_the_cards_thread_decides_it(tmp_path: Path) -> None:
    """R13.1: a reply `allow` in the thread a card was posted into decides that card (the
    newest waiting there); the word is not given to an agent."""
    bot, slack, _ = await approval_bot(tmp_path, channel={"replies": "thread"})
    try:
        top = person("slack", "C1", ASK)
        await bot.app.on_event(top)
        await asked(slack)
        await bot.app.on_event(person("slack", "C1", "allow", thread=top.ref))
        await until(lambda: any("ran Bash: touch x" in p.text for _, p in slack.sent),
                    what="the tool ran")
        assert not any(r["text"].rsplit("] ", 1)[-1] == "allow" for r in bot.received())
    finally:
        await bot.stop()


async def test_r13_2_a_strangers_click_changes_nothing(tmp_path: Path) -> None:
    """R13.2: with approvers listed, anyone else is refused privately and nothing
    changes; an approver's click then decides."""
    bot, slack, _ = await approval_bot(tmp_path, channel={"approvers": ["U-carol"]})
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, _ = await asked(slack)
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="mallory"))
        await until(lambda: slack.told, what="the refusal")
        assert slack.told[-1][1] == "U-mallory" and "only the people who may approve" in \
            slack.told[-1][2]
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.PENDING and not slack.edits
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="bob"))  # the asker
        await until(lambda: len(slack.told) == 2, what="the asker refused too")
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="carol"))
        await until(lambda: said(slack, "C1", "ran Bash: touch x"), what="the tool ran")
    finally:
        await bot.stop()


async def test_r13_2_a_safety_check_is_for_admins_and_no_always_where_forbidden(
        tmp_path: Path) -> None:
    """R13.2: a safety-check request can only be decided by an admin user; a request that
    suppresses the Always-allow rule offers no Always button, and `always` allows once."""
    bot, slack, _ = await approval_bot(tmp_path, admin_users=("U-admin",))
    try:
        await bot.app.on_event(person("slack", "C1", "fake:ask-safety=Bash:rm_-rf_build"))
        ref, text = await asked(slack)
        assert "safety check" in text
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="bob"))
        await until(lambda: slack.told, what="the asker refused")
        assert "only an admin" in slack.told[-1][2]
        await bot.app.on_event(click("slack", "C1", ref, "allow", name="admin"))
        await until(lambda: said(slack, "C1", "ran Bash: rm -rf build"), what="admin allowed")
        await bot.app.on_event(person("slack", "C1", "fake:ask-no-always=Bash:ls"))
        await until(lambda: sum("🔐" in p.text for r, p in slack.sent) == 2, what="card 2")
        post = next(p for r, p in reversed(slack.sent) if "🔐" in p.text)
        assert [b.action for b in post.buttons] == ["allow", "deny"]
        await bot.app.on_event(person("slack", "C1", "/always 2"))
        await until(lambda: said(slack, "C1", "ran Bash: ls"), what="allowed once")
        assert bot.app.crew.tool_rules == {}
    finally:
        await bot.stop()


async def test_r13_1_always_allow_is_kept_for_the_channels_later_sessions(
        tmp_path: Path) -> None:
    """R13.1: Always allow runs the tool, stores the rule for the channel, and the agent's
    later sessions get it with `--allowedTools` (also after a restart of the bot)."""
    data = tmp_path / "data"
    bot, slack, _ = await approval_bot(tmp_path, data_dir=data)
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, _ = await asked(slack)
        await bot.app.on_event(click("slack", "C1", ref, "always"))
        await until(lambda: said(slack, "C1", "ran Bash: touch x"), what="the tool ran")
        await until(lambda: edited(slack, "C1", ref), what="the card edited")
        assert "`Bash(touch x)` is allowed in #webui" in edited(slack, "C1", ref)[-1]
        spec = await bot.app.host.spec_for("webui")
        assert spec is not None and spec.policy.allowed_tools == ("Bash(touch x)",)
    finally:
        await bot.stop()
    bot, _, _ = await approval_bot(tmp_path, data_dir=data)
    try:
        spec = await bot.app.host.spec_for("webui")
        assert spec is not None and "Bash(touch x)" in spec.policy.flags()
    finally:
        await bot.stop()


async def test_r13_3_no_decision_in_time_is_a_deny_saying_so(tmp_path: Path) -> None:
    """R13.3: the bot's own deadline (the CLI has none) denies, the model is told no one
    decided in time, and the card says so."""
    bot, slack, _ = await approval_bot(tmp_path, agent={"approval_timeout_s": 120})
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, _ = await asked(slack)
        await bot.tick(60)
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.PENDING
        await bot.tick(61)
        await until(lambda: said(slack, "C1", "No one decided within 2 min"),
                    what="the model told")
        await until(lambda: edited(slack, "C1", ref), what="the card edited")
        assert "No one decided in time" in edited(slack, "C1", ref)[-1]
    finally:
        await bot.stop()


async def test_r13_3_r13_6_a_stopped_turn_withdraws_its_card(tmp_path: Path) -> None:
    """R13.3, R13.6: `!stop` while the agent waits for a decision withdraws the card (it
    says who stopped the turn), and a later click on it is refused privately."""
    bot, slack, _ = await approval_bot(tmp_path)
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, _ = await asked(slack)
        await bot.app.on_event(person("slack", "C1", "!stop"))
        await until(lambda: edited(slack, "C1", ref), what="the card edited")
        assert "the turn was stopped by bob" in edited(slack, "C1", ref)[-1]
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: slack.told, what="the refusal")
        assert "already withdrawn" in slack.told[-1][2]
    finally:
        await bot.stop()


async def test_r13_1_the_console_decides_with_slash_allow(tmp_path: Path) -> None:
    """R13.1: on the console the card shows its number and `/allow <n>` decides it."""
    bot, slack, _ = await approval_bot(tmp_path)
    try:
        await bot.app.on_event(Inbound("console", "webui", "local", "me", ASK, "c-1",
                                       time.time()))
        await asked(slack)
        assert any("/allow 1" in t for t in bot.rec.in_room("webui"))
        await bot.app.on_event(Inbound("console", "", "local", "me", "/allow 1", "c-2",
                                       time.time()))
        await until(lambda: said(bot.rec, "webui", "ran Bash: touch x"), what="the tool ran")
    finally:
        await bot.stop()


async def card_then_stop(tmp_path: Path, data: Path) -> str:
    """A bot whose agent asks, stopped while the card waits; the card's ref on Slack."""
    bot, slack, _ = await approval_bot(tmp_path, data_dir=data)
    try:
        await bot.app.on_event(person("slack", "C1", ASK))
        ref, _ = await asked(slack)
    finally:
        await bot.stop()
    return ref


async def test_r13_4_a_pending_card_survives_a_restart_of_the_bot(tmp_path: Path) -> None:
    """R13.4: the bot stops while the agent waits; after the restart the agent is given
    the message again and asks again, and the card already shown (not a new one) is the
    one that decides, keeping its number."""
    data = tmp_path / "data"
    ref = await card_then_stop(tmp_path, data)
    bot, slack2, _ = await approval_bot(tmp_path, data_dir=data)
    try:
        await until(lambda: bot.app.supervisor.asking("webui"), what="asked again")
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.PENDING
        assert a.request_id in bot.app.supervisor.asking("webui")
        assert not any("🔐" in p.text for _, p in slack2.sent)  # no second card
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: said(slack2, "C1", "ran Bash: touch x"), what="the tool ran")
    finally:
        await bot.stop()


async def test_r13_4_a_decision_for_a_session_that_is_gone_is_refused(tmp_path: Path) -> None:
    """R13.4: after a restart, until the agent asks again, a decision on the old card is
    refused with a notice, and the card stays open."""
    data = tmp_path / "data"
    ref = await card_then_stop(tmp_path, data)
    bot, slack2, _ = await approval_bot(
        tmp_path, data_dir=data, agent={"env": {"FAKE_AGENT_MODE": "crash-start"}})
    try:
        await bot.app.on_event(click("slack", "C1", ref, "allow"))
        await until(lambda: slack2.told, what="the refusal")
        assert "has ended, so nothing was decided" in slack2.told[-1][2]
        a = await bot.app.store.approval(1)
        assert a is not None and a.state is ApprovalState.PENDING
    finally:
        await bot.stop()
