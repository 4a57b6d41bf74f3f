"""Carrying out the admin room's commands (R6.4, R6.5): the supervisor and store do the work.

Who may run a command, and where, is decided before it gets here (`bot.inbound`); each
command's answer is the text the admin room reads, and each command is audited with the
first line of that answer (R13.9) — all but `help`, which does nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from crewbridge.bot import admin as admin_text
from crewbridge.bot.commands import ADMIN_HELP, Admin, AdminVerb
from crewbridge.bot.routing import split_nudge
from crewbridge.bot.store import Store
from crewbridge.bot.store_usage import Actor, UsageReport, days_before, usage_report, utc_day
from crewbridge.supervisor.login import LoginRun
from crewbridge.supervisor.ports import AgentConfig, Conversation
from crewbridge.supervisor.supervisor import Supervisor

NO_LOGIN = "No login is running; `auth login` starts one."
USAGE_DAYS = 7  # admin `usage`: today and the six days before (R13.8)
AUDIT_COUNT = 20  # admin `audit` without a count (R13.9)


class AdminOps:
    def __init__(self, supervisor: Supervisor, store: Store, agent: AgentConfig,
                 notice: Callable[[str], Awaitable[None]],
                 tell: Callable[[Conversation, str], Awaitable[None]],
                 spawn: Callable[[Coroutine[Any, Any, None], str], asyncio.Task],
                 now: Callable[[], float],
                 set_budget: Callable[[str, float], Awaitable[str]]):
        self.supervisor = supervisor
        self.store = store
        self.agent = agent
        self._notice = notice  # into the admin channel
        self._tell = tell  # a notice into any conversation
        self._now = now
        self._spawn = spawn  # a background task the app cancels when it stops
        self._set_budget = set_budget  # `budget <channel> <usd>` (R13.8)
        self._login: LoginRun | None = None  # one at a time (R6.5)

    async def run(self, cmd: Admin, by: Actor) -> str:
        """Carry out `cmd` for admin `by`; the answer for the admin room, audited (R13.9)."""
        answer = await self._run(cmd, by)
        if cmd.verb != AdminVerb.HELP:
            await self.store.audit_act(by, cmd.words(), answer, self._now())
        return answer

    async def _run(self, cmd: Admin, by: Actor) -> str:
        agent = cmd.agent or ""
        match cmd.verb:
            case AdminVerb.STATUS:
                costs = await self.store.cost_by_agent(utc_day(self._now()))  # R13.8
                return admin_text.format_status(await self.supervisor.status(), costs)
            case AdminVerb.USAGE:
                return admin_text.usage_text(await self.usage(USAGE_DAYS))
            case AdminVerb.BUDGET:
                return await self._set_budget(agent, cmd.amount or 0.0)
            case AdminVerb.AUDIT:
                return admin_text.audit_text(
                    await self.store.audit_entries(limit=cmd.count or AUDIT_COUNT))
            case AdminVerb.TASKS:
                return admin_text.format_tasks(await self.store.tasks(open_only=True))
            case AdminVerb.RESTART:
                return await self.supervisor.restart(agent)
            case AdminVerb.STOP:
                return await self.supervisor.stop(agent)
            case AdminVerb.RESET:
                return await self.supervisor.reset(agent)
            case AdminVerb.QUEUE:
                return admin_text.format_queue(agent, await self.store.queued(agent),
                                               self._now())
            case AdminVerb.DROP:
                return await self._drop(agent, cmd.which, by.name)
            case AdminVerb.AUTH_LOGIN:
                return await self._start_login(by)
            case AdminVerb.AUTH_CODE:
                if self._login is None:
                    return NO_LOGIN
                return ("Typed it into the login's prompt." if self._login.type(cmd.code)
                        else "The login has ended; nothing was typed.")
            case AdminVerb.AUTH_CANCEL:
                if self._login is None:
                    return NO_LOGIN
                self._login.cancel()
                return "Cancelling the login…"
        return ADMIN_HELP

    async def usage(self, days: int) -> UsageReport:
        """The usage of the `days` days up to today, UTC (R13.8)."""
        today = utc_day(self._now())
        return usage_report(await self.store.usage_since(days_before(today, days - 1)),
                            today, days)

    async def _drop(self, agent: str, which: int | None, by: str) -> str:
        """`drop <agent> <n>|all` (R6.6): a poison message can go instead of coming back
        after every reset; each sender is told in the channel they wrote in."""
        queued = await self.store.queued(agent)
        if which is not None and not 1 <= which <= len(queued):
            return (f"{agent} has {len(queued)} queued message(s); `queue {agent}` lists them."
                    if queued else f"Nothing is queued for {agent}.")
        chosen = queued if which is None else [queued[which - 1]]
        dropped = await self.store.drop_queued(agent, [q.id for q in chosen])
        for q in dropped:
            sender, body = split_nudge(q.text)
            await self._tell(q.conversation(agent),  # in the sender's thread (R12)
                             admin_text.dropped_notice(sender, agent, body, by))
        return f"Dropped {len(dropped)} queued message(s) for {agent}."

    async def _start_login(self, by: Actor) -> str:
        """R6.5: the login command under a pseudo-terminal, its lines relayed here."""
        if self._login is not None:
            return ("A login is already running: answer its prompt with `auth code <code>`, "
                    "or end it with `auth cancel`.")
        run = LoginRun(self.agent.login_command, cwd=Path(self.agent.workdir),
                       env=self.agent.env, relay=lambda text: self._notice(f"🔑 {text}"))
        if (error := await run.start()) is not None:
            return f"❌ auth login failed: {error}"
        self._login = run
        self._spawn(self._auth_login(run, by), "auth-login")
        command = " ".join(self.agent.login_command)
        return (f"Running `{command}` on the host; what it prints follows here. Open the URL "
                f"it shows, then answer its prompt with `auth code <code>` (`auth cancel` "
                f"ends it; it gives up after {self.agent.login_timeout_s:.0f}s).")

    async def _auth_login(self, run: LoginRun, by: Actor) -> None:
        """Its outcome is audited as an act of its own, once known (R13.9)."""
        try:
            result = await run.finished(self.agent.login_timeout_s)
        finally:
            self._login = None
        if not result.ok:
            outcome = f"❌ auth login failed: {result.detail}"
        else:
            names = await self.supervisor.auth_recovered()
            restarted = f" Restarting: {', '.join(names)}." if names else ""
            outcome = f"✅ auth login succeeded.{restarted}"
        await self.store.audit_act(by, "auth login (outcome)", outcome, self._now())
        await self._notice(outcome)
