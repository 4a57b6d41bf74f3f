"""Who the crew is and how each member starts: leads, workers and their tasks. Pure.

Rules that live here:
- A lead is named after its channel; topic channels and the general channel have one (R2.1).
- A worker lives in `dm-<name>` and works on its newest open task, else its newest task;
  its working directory is that task's channel's (R3.3, R7.1).
- A worker's name is a name, not `all`, `lead`, the admin channel or a lead's; tasks belong
  to channels with a lead (R7.2).
- An agent's new task belongs to its home: a lead's own channel, a worker's open task's
  channel, else the general channel.
- A thread belongs to its task's worker, else (R12.2, R12.3) with `threads = "fork"` to a
  session forked from the lead's, named `<lead>/<n>` after the thread's number, else to
  the lead; in a `dm-<name>` channel, to the worker.

`Crew` is state kept up to date where the crew changes (a channel created, a task opened or
finished), never rebuilt per message: routing reads `directory` for every message, and a
message must not cost more with 1,000 workers than with none (issue 8, item 6).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from types import MappingProxyType

from crewbridge.bot.config import Config, Threads
from crewbridge.bot.model import NAME, RESERVED_NAMES, ChannelKind, dm_channel_of, worker_of_dm
from crewbridge.bot.routing import Directory
from crewbridge.bot.store import TaskRow
from crewbridge.bot.store_threads import ThreadRow
from crewbridge.supervisor.ports import AgentKind, AgentSpec, ToolPolicy

OPEN = "open"
FORK_NAME = re.compile(r"(?P<lead>[a-z0-9][a-z0-9_-]*)/(?P<number>[1-9][0-9]*)")


def fork_name(lead: str, number: int) -> str:
    """`webui/3`: the lead's session forked for thread 3 of #webui (R12.3). The `/` keeps
    it apart from every channel and worker name, so no mention can reach it directly."""
    return f"{lead}/{number}"


def worker_name(raw: str) -> str:
    """`@Alice` as typed → `alice`, the name a worker is known by."""
    return raw.lower().lstrip("@")


class Crew:
    def __init__(self, config: Config, channels: Mapping[str, ChannelKind],
                 workers: Iterable[str] = (), open_tasks: Iterable[TaskRow] = ()):
        self.config = config
        self.general = config.bot.general_channel
        self.admin = config.bot.admin_channel
        self.channels: dict[str, ChannelKind] = dict(channels)
        self.tool_rules: dict[str, tuple[str, ...]] = {}  # "Always allow"ed, per channel
        self._open: dict[str, Counter[str]] = {}  # worker -> open tasks per channel
        self._workers: dict[str, frozenset[str]] = dict.fromkeys(workers, frozenset())
        for task in open_tasks:
            self.task_opened(task.assignee, task.channel)
        self.directory = self._directory()

    def _directory(self) -> Directory:
        """Routing's view; `workers` is a live read-only view, so tasks need no rebuild."""
        topics = frozenset(c for c, k in self.channels.items() if k.has_lead)
        return Directory(self.general, self.admin, topics, MappingProxyType(self._workers))

    @property
    def workers(self) -> Mapping[str, frozenset[str]]:
        """Each known worker → the channels of its open tasks."""
        return self.directory.workers

    # --- changes -----------------------------------------------------------------------------

    def add_channel(self, name: str, kind: ChannelKind) -> bool:
        """Note a new channel; False when it was known."""
        if name in self.channels:
            return False
        self.channels[name] = kind
        if kind.has_lead:
            self.directory = self._directory()
        return True

    def task_opened(self, assignee: str, channel: str) -> None:
        counts = self._open.setdefault(assignee, Counter())
        counts[channel] += 1
        self._workers[assignee] = frozenset(counts)

    def task_closed(self, assignee: str, channel: str) -> None:
        counts = self._open.get(assignee, Counter())
        counts[channel] -= 1
        if counts[channel] <= 0:
            del counts[channel]
        self._workers[assignee] = frozenset(counts)

    def forget_worker(self, name: str) -> None:
        """A worker retention forgot (R14.6): no longer known, its channel gone. One with an
        open task stays (a task opened meanwhile)."""
        if not self.has_open_task(name):
            self._workers.pop(name, None)
            self._open.pop(name, None)
            self.channels.pop(dm_channel_of(name), None)

    # --- questions ---------------------------------------------------------------------------

    def is_lead(self, name: str) -> bool:
        kind = self.channels.get(name)
        return kind is not None and kind.has_lead

    def is_worker(self, name: str) -> bool:
        return name in self._workers

    def agent_of_channel(self, channel: str) -> str | None:
        """The agent a channel's top level talks to: its lead, or a `dm-<name>`'s worker."""
        return worker_of_dm(channel) or (channel if self.is_lead(channel) else None)

    def fork_of(self, name: str) -> tuple[str, int] | None:
        """(lead, thread number) of a fork's name; None for any other name."""
        m = FORK_NAME.fullmatch(name)
        if m is None or not self.is_lead(m["lead"]):
            return None
        return m["lead"], int(m["number"])

    def thread_agent(self, thread: ThreadRow) -> str | None:
        """Whom a person's reply in `thread` reaches (R12.2); None in the admin channel."""
        if thread.owner is not None:
            return thread.owner
        worker = worker_of_dm(thread.channel)
        if worker is not None:
            return worker
        if not self.is_lead(thread.channel):
            return None
        if self.config.channel_or_default(thread.channel).threads is Threads.SHARED:
            return thread.channel
        return fork_name(thread.channel, thread.number)

    def has_open_task(self, name: str) -> bool:
        return bool(self._workers.get(name))

    def task_problem(self, subject: str, channel: str, assignee: str) -> str | None:
        """Why a task cannot be created as asked (R7.2), or None when it can."""
        if not NAME.fullmatch(assignee) or assignee in (self.admin, *RESERVED_NAMES):
            return f"{assignee!r} cannot be a worker name"
        if self.is_lead(assignee):
            return f"{assignee} is a channel's lead; workers need their own names"
        if not self.is_lead(channel):
            return f"tasks belong to topic channels; #{channel} is not one"
        if not subject.strip():
            return "a task needs a subject"
        return None

    def home_channel(self, agent: str | None, latest_task: TaskRow | None) -> str:
        """Where `agent`'s new task belongs; `latest_task` is its `Store.latest_task_of`."""
        if agent is None:
            return self.general
        if self.is_lead(agent):
            return agent
        if (fork := self.fork_of(agent)) is not None:
            return fork[0]
        if latest_task is not None and latest_task.status == OPEN:
            return latest_task.channel
        return self.general

    def policy(self, channel: str) -> ToolPolicy:
        """The config's policy for `channel`'s agents, with the rules people added from chat
        with "Always allow" (R13.1)."""
        policy = self.config.policy(channel)
        added = tuple(r for r in self.tool_rules.get(channel, ()) if r not in policy.allowed_tools)
        return replace(policy, allowed_tools=policy.allowed_tools + added) if added else policy

    def spec_for(self, name: str, latest_task: TaskRow | None) -> AgentSpec | None:
        """How agent `name` is started (R3.3); `latest_task` as in `home_channel`."""
        agent_cfg = self.config.agent
        if self.is_lead(name):
            ch = self.config.channel(name)
            prompt = lead_prompt(name, name == self.general, ch.prompt if ch else "")
            return AgentSpec(name, AgentKind.LEAD, name, None, prompt,
                             str(ch.workdir if ch and ch.workdir else agent_cfg.workdir),
                             (ch.command if ch and ch.command else agent_cfg.command),
                             dict(ch.env) if ch else {}, policy=self.policy(name))
        if self.is_worker(name):
            topic = self.config.channel(latest_task.channel) if latest_task else None
            workdir = topic.workdir if topic and topic.workdir else agent_cfg.workdir
            return AgentSpec(name, AgentKind.WORKER, dm_channel_of(name),
                             latest_task.id if latest_task else None, worker_prompt(name),
                             str(workdir), agent_cfg.command, {},
                             policy=self.policy(latest_task.channel if latest_task
                                                       else self.general))
        return None

    def fork_spec(self, name: str, thread_id: int, lead_session: str | None) -> AgentSpec | None:
        """How fork `name` is started: as its lead, in the lead's working directory (sessions
        are found per project directory), forked from the lead's session (R12.3)."""
        fork = self.fork_of(name)
        lead = self.spec_for(fork[0], None) if fork else None
        if fork is None or lead is None:
            return None
        prompt = lead.prompt + f"\n\nYou answer thread {fork[1]} of #{fork[0]} only."
        return replace(lead, name=name, kind=AgentKind.FORK, prompt=prompt, thread=thread_id,
                       fork_from=lead_session)


def lead_prompt(name: str, general: bool, extra: str) -> str:
    role = "the project lead" if general else f"the lead of the #{name} channel"
    return (f"You are {name}, {role}, working with a team through a chat bridge (crewbridge). "
            "Each message you receive starts with [who via platform in #channel]. What you "
            "write is posted to your channel. Write @name to address an agent or @all for "
            "everyone on this channel's tasks. Delegate with `crewbridge task create --assignee "
            "<worker> <subject>`, post elsewhere with `crewbridge post <channel> <text>` "
            "(`--create` makes a new channel)."
            + (f"\n\n{extra}" if extra else ""))


def worker_prompt(name: str) -> str:
    return (f"You are {name}, a worker agent reached through a chat bridge (crewbridge). Your "
            "first message is your task. What you write is posted to your DM channel; report "
            "to a lead with `crewbridge post <channel> <text>`, and finish with "
            "`crewbridge task done <id>`.")
