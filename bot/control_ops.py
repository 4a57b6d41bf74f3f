"""Answering the control socket: the `crewbridge` CLI of agents and of the host's shell
(R7.2, R10.4, R11.2). Each request becomes what the same act in a chat room would be."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from bot.control import Caller, ControlError
from bot.model import NAME, RESERVED_NAMES, ChannelKind, Platform, worker_of_dm
from bridges.base import Inbound

if TYPE_CHECKING:
    from bot.app import App


async def handle(app: App, req: dict[str, Any], caller: Caller) -> Any:
    """Carry out `req` for `caller`: the agent its token names, never one it claims."""
    await app.ready.wait()
    op = req["op"]
    agent = caller.agent
    if op == "post":
        return await _post(app, req, agent)
    if op == "task_create":
        channel = req.get("channel") or await app.tasks.home_channel(agent)
        return await app.tasks.create(str(req.get("subject", "")), str(channel),
                                     str(req.get("assignee", "")), agent or "cli")
    if op == "task_done":
        return await app.tasks.finish(int(req.get("id", 0)))
    if op == "task_list":
        return [asdict(t) for t in await app.store.tasks(open_only=not req.get("all"))]
    if op == "status":
        return [asdict(s) for s in await app.supervisor.status()]
    raise ControlError(f"unknown request {op!r}")


async def _post(app: App, req: dict[str, Any], agent: str | None) -> str:
    channel = str(req.get("channel", "")).lstrip("#").lower()
    text = str(req.get("text", ""))
    if not NAME.fullmatch(channel) or not text.strip():
        raise ControlError("usage: crewbridge post <channel> <text>")
    if channel in RESERVED_NAMES:
        raise ControlError(f"#{channel} is a reserved name, not a channel")
    special = channel == app.crew.admin or worker_of_dm(channel) is not None
    if special and channel not in app.crew.channels:
        raise ControlError(f"there is no channel #{channel}")
    await app.ensure_channel(channel, ChannelKind.TOPIC)  # R1.1: created on first post
    if agent:
        await app.cli_posted(agent, channel, text, app.supervisor.cli_post_hops(agent))
    else:
        # A person posting from the host's shell: stored and routed like a chat message.
        user = str(req.get("user") or "cli")
        msg = Inbound(Platform.CONSOLE, channel, f"cli:{user}", user, text,
                      f"cli-{uuid.uuid4()}", app.clock.now())
        await app.person_said(channel, msg, text, origin=None, platform="cli")
    return f"posted to #{channel}"
