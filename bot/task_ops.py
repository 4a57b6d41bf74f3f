"""Tasks and their threads (R7, R12.4): opening and finishing them, from a room or the CLI.

A task's thread hangs under the person's `!task` message, else under its own "Task #N"
post; the post, the task and the worker's first nudge are stored in one transaction, so a
crash cannot leave a task nobody was told about, or a worker never given it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from crewbridge.bot.commands import TaskCreate, TaskDone
from crewbridge.bot.control import ControlError
from crewbridge.bot.conversations import Conversations
from crewbridge.bot.crew import Crew, worker_name
from crewbridge.bot.model import BOT_NAME, ChannelKind, Nudge, PostKind, RoomRef, dm_channel_of
from crewbridge.bot.outbox import Outbox
from crewbridge.bot.store import Store, TaskRow
from crewbridge.bot.store_outbox import Said
from crewbridge.bot.store_usage import Actor
from crewbridge.bridges.base import Inbound
from crewbridge.supervisor.ports import Conversation
from crewbridge.supervisor.supervisor import Supervisor


class TaskOps:
    def __init__(self, store: Store, crew: Crew, conversations: Conversations, outbox: Outbox,
                 supervisor: Supervisor, now: Callable[[], float],
                 ensure_channel: Callable[[str, ChannelKind], Awaitable[None]],
                 bot_says: Callable[..., Awaitable[None]]):
        self.store = store
        self.crew = crew
        self.conversations = conversations
        self.outbox = outbox
        self.supervisor = supervisor
        self.now = now
        self.ensure_channel = ensure_channel
        self.bot_says = bot_says  # (conversation, text, *, only=room)

    async def home_channel(self, agent: str | None) -> str:
        """Where an agent's new task belongs: a lead's channel, a worker's task's channel."""
        task = await self.store.latest_task_of(agent) if agent is not None else None
        return self.crew.home_channel(agent, task)

    async def create(self, subject: str, channel: str, assignee: str, by: str, *,
                          root: int | None = None) -> str:
        """Open a task; its thread hangs under the person's `!task` message `root`, else
        under its own "Task #N" post (R12.4). The post, the task and the worker's first
        nudge are stored together."""
        assignee = worker_name(assignee)
        if (problem := self.crew.task_problem(subject, channel, assignee)) is not None:
            raise ControlError(problem)
        await self.ensure_channel(dm_channel_of(assignee), ChannelKind.DM)
        shown: list[Said] = []

        def first(task: TaskRow) -> tuple[Nudge, Said]:
            nudge = Nudge(assignee, f"[task #{task.id} from {by} in #{channel}] {task.subject}",
                          0, channel)
            shown.append(self.conversations.said(Conversation(channel), BOT_NAME,
                                                 task_line(task), kind=PostKind.NOTICE))
            return nudge, shown[-1]

        task = await self.store.create_task(subject.strip(), channel, assignee, by,
                                            self.now(), root=root, first=first)
        self.outbox.stored(shown)
        self.crew.task_opened(assignee, channel)
        spec = self.crew.spec_for(assignee, task)  # its newest open task is this one
        if spec is not None:
            await self.store.upsert_agent(spec.name, spec.kind, spec.channel, spec.task_id)
            self.supervisor.refresh_spec(spec)
        self.supervisor.schedule_kick([assignee], start=True)  # R4.1, R7.1
        return task_line(task)

    async def finish(self, task_id: int) -> str:
        task = await self.store.finish_task(task_id, self.now())
        if task is None:
            raise ControlError(f"there is no open task #{task_id}")
        self.crew.task_closed(task.assignee, task.channel)
        if not self.crew.has_open_task(task.assignee):
            await self.supervisor.stop_worker(task.assignee)
        line = f"Task #{task.id} done: {task.subject} (@{task.assignee})"
        await self.bot_says(Conversation(task.channel), line)  # R7.3
        return line

    async def command(self, channel: str, msg: Inbound,
                            recorded: tuple[int, int | None] | None,
                            cmd: TaskCreate | TaskDone, only: RoomRef) -> None:
        """`!task` / `!done` typed in a room (R7.2): a task's thread hangs under the `!task`
        message; `!done` without an id in a task's thread finishes that task (R12.4). A
        refusal goes to that room only, in the command's thread."""
        message, thread_id = recorded or (None, None)
        actor = Actor.of(msg, channel)
        try:
            if isinstance(cmd, TaskCreate):
                await self.audited(actor, f"!task @{cmd.assignee} {cmd.subject}", self.create(
                    cmd.subject, channel, cmd.assignee, msg.sender_name,
                    root=message if thread_id is None else None))
            else:
                task_id = cmd.task_id or await self._task_of_thread(thread_id)
                await self.audited(actor, f"!done {task_id}", self.finish(task_id))
        except ControlError as e:
            await self.bot_says(Conversation(channel, thread_id), str(e), only=only)

    async def audited(self, actor: Actor, what: str,
                      work: Coroutine[Any, Any, str]) -> str:
        """Do `work` (a task opened or finished) and audit it with its outcome, a refusal
        included (R13.9)."""
        try:
            line = await work
        except ControlError as e:
            await self.store.audit_act(actor, what, f"refused: {e}", self.now())
            raise
        await self.store.audit_act(actor, what, line, self.now())
        return line

    async def _task_of_thread(self, thread_id: int | None) -> int:
        thread = await self.store.thread(thread_id) if thread_id else None
        if thread is None or thread.task_id is None:
            raise ControlError("`!done` without a task id works in a task's thread; "
                               "elsewhere write `!done <task id>`")
        return thread.task_id


def task_line(task: TaskRow) -> str:
    return f"Task #{task.id} for @{task.assignee}: {task.subject}"
