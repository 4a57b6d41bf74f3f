"""Answering the control socket: the `crewbridge` CLI of agents and of the host's shell
(R7.2, R10.4, R11.2). Each request becomes what the same act in a chat room would be."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from crewbridge.bot.admin_ops import AUDIT_COUNT, USAGE_DAYS
from crewbridge.bot.control import Caller, ControlError
from crewbridge.bot.model import NAME, RESERVED_NAMES, ChannelKind, Platform, worker_of_dm
from crewbridge.bot.store_usage import MAX_DAYS, Actor, utc_day
from crewbridge.bridges.base import Inbound

CLI_PLATFORM = "cli"  # what the audit says of a request from the host's shell (R13.9)

if TYPE_CHECKING:
    from crewbridge.bot.app import App


async def handle(app: App, req: dict[str, Any], caller: Caller) -> Any:
    """Carry out `req` for `caller`: the agent its token names, never one it claims."""
    await app.ready.wait()
    op = req["op"]
    agent = caller.agent
    if op == "post":
        return await _post(app, req, agent)
    if op == "task_create":
        channel = str(req.get("channel") or await app.tasks.home_channel(agent))
        if req.get("create") and NAME.fullmatch(channel) and channel not in RESERVED_NAMES \
                and worker_of_dm(channel) is None and channel != app.crew.admin:
            await app.ensure_channel(channel, ChannelKind.TOPIC)
        subject, assignee = str(req.get("subject", "")), str(req.get("assignee", ""))
        return await app.tasks.audited(
            _actor(req, agent, channel), f"task create @{assignee} {subject}",
            app.tasks.create(subject, channel, assignee, agent or "cli"))
    if op == "task_done":
        task_id = int(req.get("id", 0))
        return await app.tasks.audited(_actor(req, agent, ""), f"task done #{task_id}",
                                       app.tasks.finish(task_id))
    if op == "task_list":
        return [asdict(t) for t in await app.store.tasks(open_only=not req.get("all"))]
    if op == "status":
        costs = await app.store.cost_by_agent(utc_day(app.clock.now()))  # R13.8
        return [{**asdict(s), "cost_today_usd": costs.get(s.name, 0.0)}
                for s in await app.supervisor.status()]
    if op == "usage":
        days = int(USAGE_DAYS if req.get("days") is None else req["days"])
        if not 1 <= days <= MAX_DAYS:
            raise ControlError(f"--days must be from 1 to {MAX_DAYS}")
        return asdict(await app.admin_ops.usage(days))
    if op == "audit":
        since = req.get("since")
        rows = await app.store.audit_entries(limit=int(req.get("limit") or AUDIT_COUNT),
                                             since=None if since is None else float(since))
        return [asdict(r) for r in rows]
    raise ControlError(f"unknown request {op!r}")


def _actor(req: dict[str, Any], agent: str | None, channel: str) -> Actor:
    """Who asks over the socket (R13.9): the agent its token names, else the host's user."""
    return Actor(agent or f"cli:{req.get('user') or 'operator'}", CLI_PLATFORM, channel)


async def _post(app: App, req: dict[str, Any], agent: str | None) -> str:
    channel = str(req.get("channel", "")).lstrip("#").lower()
    text = str(req.get("text", ""))
    if not NAME.fullmatch(channel) or not text.strip():
        raise ControlError("usage: crewbridge post <channel> <text>")
    if channel in RESERVED_NAMES:
        raise ControlError(f"#{channel} is a reserved name, not a channel")
    if channel not in app.crew.channels:
        special = channel == app.crew.admin or worker_of_dm(channel) is not None
        if special or not req.get("create"):  # R14.2: a typo makes no channel
            known = ", ".join(f"#{c}" for c in sorted(app.crew.channels))
            raise ControlError(f"there is no channel #{channel} (channels: {known})"
                               + ("" if special else "; --create makes it"))
        await app.ensure_channel(channel, ChannelKind.TOPIC)  # R1.1: created at run time
    if agent:
        await app.host.cli_posted(agent, channel, text, app.supervisor.cli_post_hops(agent))
    else:
        # A person posting from the host's shell: stored and routed like a chat message.
        user = str(req.get("user") or "cli")
        msg = Inbound(Platform.CONSOLE, channel, f"cli:{user}", user, text,
                      f"cli-{uuid.uuid4()}", app.clock.now())
        await app.person_said(channel, msg, text, origin=None, platform=CLI_PLATFORM)
    return f"posted to #{channel}"
