"""What the bot does with an event a bridge reports. Pure: the event and what the bot knows
in, a `Decision` — the steps to carry out, in order — out; the app carries them out.

The rules, in the order they apply to a message (`Inbound`):

- A console message to a channel that does not exist gets a notice naming the channels
  (or the workers, for `dm-<name>`) that do.
- A message in a room bound to no channel is not acted on; the room gets one notice, ever
  (R1.5).
- A DM (a direct room bound to no channel): `@name text` attaches the room to worker
  `name` and sends it `text`; `@name` alone only attaches, with a notice; later text goes
  to the attached worker; anything else gets the help notice naming the workers (R1.6). The
  text then travels in `dm-<name>` like any message there (R1.7).
- In the admin channel everything is a command, run only for admin users (R6.4); an admin
  command anywhere else is refused with a notice to the sender's room.
- `!task` and `!done` in a channel with a lead create and finish tasks (R7.2).
- `/allow <n>`, `/deny <n> [reason]`, `/always <n>` (or with `!`) decide approval request
  `n` wherever they are typed, the console included (R13.1). A bare `allow`, `deny
  [reason]` or `always` replying to a card, or in a thread, decides the card it answers —
  or, when there is none, is a message like any other.
- Everything else is a person's message, routed (R1.3, R2).

A command is stored and relayed before it runs (`Record`); a re-delivered one stops there.
A room joined (`RoomJoined`) that is bound to no channel gets the DM help or the unbound
notice; a connection change (`ConnectionChanged`) goes to the outage tracker.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from crewbridge.bot.approvals import TypedVerdict, is_numbered_command, parse_decision
from crewbridge.bot.commands import (
    Admin,
    Invalid,
    StopTurn,
    TaskCreate,
    TaskDone,
    is_admin_command,
    parse,
)
from crewbridge.bot.crew import Crew
from crewbridge.bot.model import Platform, RoomRef, dm_channel_of, worker_of_dm
from crewbridge.bot.rooms import Rooms
from crewbridge.bridges.base import Acted, BridgeEvent, ConnectionChanged, Inbound, RoomJoined

DM_ADDRESS = re.compile(r"@([A-Za-z0-9][\w-]*)[,:]?\s*(.*)", re.DOTALL)


@dataclass(frozen=True)
class Notify:
    """A notice from the bot: into room `only` alone when given, else into `channel`."""

    text: str
    only: RoomRef | None = None
    channel: str = ""


@dataclass(frozen=True)
class NotifyOnce:
    """A notice into room `only` the first time `key` is seen, ever (a stored flag)."""

    key: str
    text: str
    only: RoomRef


@dataclass(frozen=True)
class AttachDm:
    room: RoomRef
    worker: str


@dataclass(frozen=True)
class Record:
    """Store a command and relay it to the channel's other rooms; stop on a re-delivery."""

    channel: str
    text: str


@dataclass(frozen=True)
class Route:
    """A person's message in `channel`: stored with its nudges, relayed, delivered."""

    channel: str
    text: str


@dataclass(frozen=True)
class RunAdmin:
    """Run an admin command; its answer is a notice in the admin channel."""

    command: Admin


@dataclass(frozen=True)
class RunTaskCommand:
    """Create or finish a task from `channel`; a refusal is a notice to room `only`."""

    channel: str
    command: TaskCreate | TaskDone
    only: RoomRef


@dataclass(frozen=True)
class RunStop:
    """Stop an agent's running turn from `channel` (R13.6); answers go to room `only`."""

    channel: str
    command: StopTurn
    only: RoomRef


@dataclass(frozen=True)
class RunVerdict:
    """Decide an approval request from a typed word (R13.1). `channel` None: a numbered
    command, valid anywhere; else a bare word in `channel`, which is routed as a message
    when it answers no card."""

    decision: TypedVerdict
    channel: str | None = None


@dataclass(frozen=True)
class TrackConnection:
    event: ConnectionChanged


Action = (Notify | NotifyOnce | AttachDm | Record | Route | RunAdmin | RunTaskCommand
          | RunStop | RunVerdict | TrackConnection)
Decision = tuple[Action, ...]  # empty: nothing to do


def classify(event: BridgeEvent, rooms: Rooms, crew: Crew,
             admin_users: Collection[str] = ()) -> Decision:
    if isinstance(event, ConnectionChanged):
        return (TrackConnection(event),)
    ref = RoomRef(event.platform, event.room)
    if isinstance(event, RoomJoined):
        if rooms.channel_of(ref, crew.channels) is not None:
            return ()
        if event.is_direct:
            return (Notify(dm_help(crew), only=ref),)
        return (unbound(ref),)
    assert isinstance(event, Inbound)
    if is_numbered_command(event.text):
        decision = parse_decision(event.text)
        assert decision is not None
        return (RunVerdict(decision),)
    return _message(event, ref, rooms, crew, admin_users)


def _message(msg: Inbound, ref: RoomRef, rooms: Rooms, crew: Crew,
             admin_users: Collection[str]) -> Decision:
    channel = rooms.channel_of(ref, crew.channels)
    if channel is None and msg.platform == Platform.CONSOLE:
        return (Notify(unknown_console_channel(ref.room, crew), only=ref),)
    if channel is None and not msg.is_direct:
        return (unbound(ref),)
    steps: Decision = ()
    text = msg.text
    if channel is None:
        m = DM_ADDRESS.fullmatch(msg.text.strip())
        if m and m.group(1).lower() in crew.workers:
            worker = m.group(1).lower()
            if rooms.dms.get(ref) != worker:
                steps = (AttachDm(ref, worker),)
            if not m.group(2).strip():
                return (*steps, Notify(f"This conversation now goes to @{worker}.", only=ref))
            channel, text = dm_channel_of(worker), m.group(2)
        elif ref in rooms.dms:
            channel = dm_channel_of(rooms.dms[ref])
        else:
            return (Notify(dm_help(crew), only=ref),)
    return (*steps, *_said(msg, ref, channel, text, crew, admin_users))


def _said(msg: Inbound, ref: RoomRef, channel: str, text: str, crew: Crew,
          admin_users: Collection[str]) -> Decision:
    """What `text`, said by a person in `channel`, asks for."""
    cmd = parse(text, in_admin=channel == crew.admin)
    if channel == crew.admin or is_admin_command(cmd):
        said = Record(channel, text)
        if channel != crew.admin:
            return (said, Notify(f"Admin commands only work in #{crew.admin}.", only=ref))
        if cmd is None:
            return (said,)
        if not is_admin(msg, admin_users):
            return (said, Notify(f"{msg.sender_name} is not an admin; nothing was run.",
                                 channel=channel))
        if isinstance(cmd, Invalid):
            return (said, Notify(f"usage: {cmd.usage}", channel=channel))
        assert isinstance(cmd, Admin)
        return (said, RunAdmin(cmd))
    if isinstance(cmd, StopTurn):
        return (Record(channel, text), RunStop(channel, cmd, ref))
    if (msg.reply_to or msg.thread) and (decision := parse_decision(text)) is not None:
        return (RunVerdict(decision, channel),)
    if isinstance(cmd, TaskCreate | TaskDone | Invalid) and worker_of_dm(channel) is None:
        if isinstance(cmd, Invalid):
            return (Record(channel, text), Notify(f"usage: {cmd.usage}", only=ref))
        return (Record(channel, text), RunTaskCommand(channel, cmd, ref))
    return (Route(channel, text),)


def is_admin(msg: Inbound, admin_users: Collection[str]) -> bool:
    """The console is the host's own; with no admin users listed, everyone is one (R6.4)."""
    return msg.platform == Platform.CONSOLE or not admin_users or msg.sender in admin_users


def may_steer(msg: Inbound | Acted, approvers: Collection[str], admin_users: Collection[str],
              askers: Collection[str]) -> bool:
    """Who may stop (and, later, approve for) a turn (R13.2, R13.6): the channel's
    approvers and the admin users; with no approvers listed, also the people the turn
    answers; with neither approvers nor admins configured, anyone; the console always."""
    if msg.platform == Platform.CONSOLE or msg.sender in approvers or msg.sender in admin_users:
        return True
    if approvers:
        return False
    return msg.sender_name in askers or not admin_users


# --- the notices ----------------------------------------------------------------------------


def unbound(ref: RoomRef) -> NotifyOnce:
    """One notice per unbound room, ever; nothing from it is routed (R1.5)."""
    text = (f"This room is not bound to a crewbridge channel, so I will not act on "
            f"messages here. To bind it, add `{ref.room}` to the `{ref.platform}` list "
            f"of a [[channel]] in the crewbridge config and restart the bot.")
    return NotifyOnce(f"unbound:{ref}", text, ref)


def dm_help(crew: Crew) -> str:
    names = ", ".join(f"@{w}" for w in sorted(crew.workers)) or "none yet"
    return (f"Write `@<worker> <text>` to talk to a worker; later messages here go to the "
            f"same worker. Workers: {names}.")


def unknown_console_channel(channel: str, crew: Crew) -> str:
    worker = worker_of_dm(channel)
    if worker is not None:
        known = ", ".join(sorted(crew.workers)) or "none yet (create one with !task)"
        return f"No worker named {worker}. Workers: {known}."
    channels = ", ".join(f"#{c}" for c in sorted(crew.channels))
    return f"No channel #{channel}. Channels: {channels}."
