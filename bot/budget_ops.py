"""Keeping the daily budgets (R13.8): what each channel spent today, its warning and its
alert (each once a day, across restarts: they are escalations), the pause, the admin's
`budget`, and the new day that lifts every pause. The rules are `bot.budget`'s."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

from crewbridge.bot import budget
from crewbridge.bot.config import Config
from crewbridge.bot.crew import Crew
from crewbridge.bot.model import dm_channel_of
from crewbridge.bot.store import Store
from crewbridge.bot.store_usage import utc_day
from crewbridge.supervisor.ports import Clock
from crewbridge.supervisor.supervisor import Supervisor

DAY_S = 86_400


class BudgetOps:
    def __init__(self, store: Store, crew: Crew, config: Config, supervisor: Supervisor,
                 clock: Clock, alert: Callable[[str], Awaitable[None]]):
        self.store = store
        self.crew = crew
        self.supervisor = supervisor
        self.clock = clock
        self.alert = alert
        self.budgets = budget.Budgets(
            config.agent.daily_budget_usd,
            {c.name: c.daily_budget_usd for c in config.channels
             if c.daily_budget_usd is not None})
        self.day = ""

    async def load(self) -> None:
        """Today's costs and caps, as a restart finds them."""
        self.day = utc_day(self.clock.now())
        self.budgets.new_day()
        self.budgets.spent.update(await self.store.cost_by_channel(self.day))
        raw = await self.store.get_value(self._caps_key())
        self.budgets.today.update(json.loads(raw) if raw else {})

    def paused(self, agent: str) -> str | None:
        """Why `agent` may take no new turn: a channel it works for has spent its day."""
        for channel in self._channels_of(agent):
            if self.budgets.paused(channel):
                return budget.paused_text(channel, self.budgets.cap(channel))
        return None

    def _channels_of(self, agent: str) -> list[str]:
        if self.crew.is_lead(agent):
            return [agent]
        if (fork := self.crew.fork_of(agent)) is not None:
            return [fork[0]]
        return [*sorted(self.crew.workers.get(agent, ())), dm_channel_of(agent)]

    async def spent(self, channel: str) -> None:
        """A turn was counted for `channel`: warn at 80 %, alert and pause at the cap."""
        await self._roll_over()
        before = self.budgets.level(channel)
        self.budgets.spent[channel] = (await self.store.cost_by_channel(self.day)).get(
            channel, 0.0)
        after = self.budgets.level(channel)
        if after is before or after is budget.Level.UNDER:
            return
        spent, cap = self.budgets.spent[channel], self.budgets.cap(channel)
        if after is budget.Level.WARNING:
            await self._once(f"budget-warning:{self.day}:{channel}",
                             budget.warning_text(channel, spent, cap))
        else:
            await self._once(f"budget-spent:{self.day}:{channel}",
                             budget.spent_text(channel, spent, cap))

    async def set_cap(self, channel: str, usd: float) -> str:
        """Admin `budget <channel> <usd>`: today's cap; the channel's waiting messages go
        on when it is no longer spent."""
        await self._roll_over()
        self.budgets.today[channel] = usd
        await self.store.put_value(self._caps_key(), json.dumps(self.budgets.today))
        spent = self.budgets.spent.get(channel, 0.0)
        if not self.budgets.paused(channel):
            self.supervisor.schedule_kick(await self.store.agents_with_queue())
        state = "paused" if self.budgets.paused(channel) else "running"
        cap = "no cap" if usd <= 0 else f"a cap of {budget.usd(usd)}"
        return (f"#{channel} has {cap} for today; {budget.usd(spent)} spent so far; its "
                f"agents are {state}.")

    async def run_days(self) -> None:
        """At each UTC midnight, a new day: every pause lifts, waiting messages go on."""
        while True:
            now = self.clock.now()
            await self.clock.sleep(DAY_S - now % DAY_S + 1)
            await self._roll_over()

    async def _roll_over(self) -> None:
        if utc_day(self.clock.now()) != self.day:
            await self.load()
            self.supervisor.schedule_kick(await self.store.agents_with_queue())

    async def _once(self, key: str, text: str) -> None:
        if await self.store.open_escalation(key, text, self.clock.now()):
            await self.alert(text)

    def _caps_key(self) -> str:
        return f"budget.caps.{self.day}"
