"""What an inbound event asks of the bot: `bot.inbound.classify` (R1.5, R1.6, R1.7, R6.4, R7.2).

Each row is one event against one crew and one set of rooms, and the exact steps the app is
to carry out. Pure: no processes, no store, no time.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from crewbridge.bot.commands import Admin, AdminVerb, StopTurn, TaskCreate, TaskDone
from crewbridge.bot.config import AdminConfig, BotConfig, ChannelConfig, Config, ConsoleConfig
from crewbridge.bot.crew import Crew
from crewbridge.bot.inbound import (
    AttachDm,
    Decision,
    Notify,
    NotifyOnce,
    Record,
    Route,
    RunAdmin,
    RunStop,
    RunTaskCommand,
    TrackConnection,
    classify,
    dm_help,
    may_steer,
    unbound,
)
from crewbridge.bot.model import ChannelKind, RoomRef
from crewbridge.bot.rooms import Rooms, Wanted
from crewbridge.bridges.base import BridgeEvent, ConnectionChanged, Inbound, RoomJoined
from crewbridge.supervisor.ports import AgentConfig

CONFIG = Config(Path("c.toml"), BotConfig(), AgentConfig(),
                (ChannelConfig("webui", slack=("C1",)),), AdminConfig(slack=("C0",)),
                None, None, ConsoleConfig())
CHANNELS = {"general": ChannelKind.GENERAL, "ops": ChannelKind.ADMIN,
            "webui": ChannelKind.TOPIC, "dm-alice": ChannelKind.DM}
ADMINS = ("U-admin",)

C1, C0 = RoomRef("slack", "C1"), RoomRef("slack", "C0")
STRANGER = RoomRef("slack", "C9")  # bound to no channel
DM_NEW, DM_ALICE = RoomRef("slack", "D1"), RoomRef("slack", "D2")  # D2 attached to alice


def crew() -> Crew:
    return Crew(CONFIG, CHANNELS, workers=["alice", "bob"])


def rooms() -> Rooms:
    r = Rooms(console=True, dms={DM_ALICE: "alice"})
    r.bind(Wanted("webui", "slack", "C1"), "C1")
    r.bind(Wanted("ops", "slack", "C0"), "C0")
    return r


def said(room: RoomRef, text: str, *, sender: str = "U1", direct: bool = False) -> Inbound:
    return Inbound(room.platform, room.room, sender, "bob", text, "Ev1", 1.0, is_direct=direct)


HELP = dm_help(crew())
DOWN = ConnectionChanged("slack", False, 1.0, "socket closed")

ROWS: list[tuple[str, BridgeEvent, Decision]] = [
    # R1.5: an unbound room is not acted on; one notice, ever (the key makes it once)
    ("r1_5_unbound_message", said(STRANGER, "hello"), (unbound(STRANGER),)),
    ("r1_5_unbound_command", said(STRANGER, "!task @alice x"), (unbound(STRANGER),)),
    ("r1_5_unbound_join", RoomJoined("slack", "C9", False), (unbound(STRANGER),)),
    ("r1_5_bound_join", RoomJoined("slack", "C1", False), ()),
    ("console_unknown_channel", said(RoomRef("console", "nope"), "hi"),
     (Notify("No channel #nope. Channels: #dm-alice, #general, #ops, #webui.",
             only=RoomRef("console", "nope")),)),
    ("console_unknown_worker", said(RoomRef("console", "dm-zed"), "hi"),
     (Notify("No worker named zed. Workers: alice, bob.", only=RoomRef("console", "dm-zed")),)),
    # R1.6: DMs address a worker, attach, follow the attachment, or get help
    ("r1_6_dm_join_help", RoomJoined("slack", "D1", True), (Notify(HELP, only=DM_NEW),)),
    ("r1_6_dm_unaddressed_help", said(DM_NEW, "hello", direct=True),
     (Notify(HELP, only=DM_NEW),)),
    ("r1_6_dm_unknown_worker_help", said(DM_NEW, "@zed hi", direct=True),
     (Notify(HELP, only=DM_NEW),)),
    ("r1_6_dm_address_attaches", said(DM_NEW, "@Bob: fix it", direct=True),
     (AttachDm(DM_NEW, "bob"), Route("dm-bob", "fix it"))),
    ("r1_6_dm_address_alone", said(DM_NEW, "@bob", direct=True),
     (AttachDm(DM_NEW, "bob"), Notify("This conversation now goes to @bob.", only=DM_NEW))),
    ("r1_6_dm_readdress_same_worker", said(DM_ALICE, "@alice again", direct=True),
     (Route("dm-alice", "again"),)),
    ("r1_6_dm_readdress_other_worker", said(DM_ALICE, "@bob hi", direct=True),
     (AttachDm(DM_ALICE, "bob"), Route("dm-bob", "hi"))),
    # R1.7: text in an attached DM (or dm-<name> on the console) is the worker's channel's
    ("r1_7_attached_dm_follows", said(DM_ALICE, "and then?", direct=True),
     (Route("dm-alice", "and then?"),)),
    ("r1_7_console_dm_channel", said(RoomRef("console", "dm-alice"), "hi"),
     (Route("dm-alice", "hi"),)),
    ("r1_7_task_command_in_dm_is_text", said(DM_ALICE, "!done 3", direct=True),
     (Route("dm-alice", "!done 3"),)),
    # R6.4: admin commands only in the admin room, and only from admin users
    ("r6_4_admin_status", said(C0, "status", sender="U-admin"),
     (Record("ops", "status"), RunAdmin(Admin(AdminVerb.STATUS)))),
    ("r6_4_admin_restart_bang", said(C0, "!restart @WebUI", sender="U-admin"),
     (Record("ops", "!restart @WebUI"), RunAdmin(Admin(AdminVerb.RESTART, "webui")))),
    ("r6_4_admin_unknown_is_help", said(C0, "what now", sender="U-admin"),
     (Record("ops", "what now"), RunAdmin(Admin(AdminVerb.HELP)))),
    ("r6_4_admin_invalid_usage", said(C0, "reset", sender="U-admin"),
     (Record("ops", "reset"), Notify("usage: reset <agent>", channel="ops"))),
    ("r6_4_not_an_admin", said(C0, "stop webui", sender="U2"),
     (Record("ops", "stop webui"), Notify("bob is not an admin; nothing was run.",
                                          channel="ops"))),
    ("r6_4_console_is_admin", said(RoomRef("console", "ops"), "tasks", sender="cli"),
     (Record("ops", "tasks"), RunAdmin(Admin(AdminVerb.TASKS)))),
    ("r6_4_empty_in_admin_room", said(C0, "   ", sender="U-admin"), (Record("ops", "   "),)),
    ("r6_4_admin_command_elsewhere", said(C1, "!restart webui", sender="U-admin"),
     (Record("webui", "!restart webui"), Notify("Admin commands only work in #ops.", only=C1))),
    ("r6_4_admin_command_in_dm", said(DM_ALICE, "!reset alice", direct=True),
     (Record("dm-alice", "!reset alice"), Notify("Admin commands only work in #ops.",
                                                 only=DM_ALICE))),
    ("r13_6_stop_in_a_dm_stops_its_worker", said(DM_ALICE, "!stop", direct=True),
     (Record("dm-alice", "!stop"), RunStop("dm-alice", StopTurn(None), DM_ALICE))),
    ("r13_6_stop_an_agent_from_a_room", said(C1, "!stop @alice"),
     (Record("webui", "!stop @alice"), RunStop("webui", StopTurn("alice"), C1))),
    ("r6_4_status_elsewhere_refused", said(C1, "!status"),
     (Record("webui", "!status"), Notify("Admin commands only work in #ops.", only=C1))),
    ("r6_4_verb_without_bang_elsewhere_is_text", said(C1, "status please"),
     (Route("webui", "status please"),)),
    # R7.2: task commands in channels with a lead
    ("r7_2_task_create", said(C1, "!task @Carol write the docs"),
     (Record("webui", "!task @Carol write the docs"),
      RunTaskCommand("webui", TaskCreate("carol", "write the docs"), C1))),
    ("r7_2_task_done", said(C1, "!done #4"),
     (Record("webui", "!done #4"), RunTaskCommand("webui", TaskDone(4), C1))),
    ("r7_2_task_invalid", said(C1, "!task nobody"),
     (Record("webui", "!task nobody"), Notify("usage: !task @<worker> <subject>", only=C1))),
    ("r7_2_done_invalid", said(C1, "!done soon"),
     (Record("webui", "!done soon"), Notify("usage: !done [<task id>]", only=C1))),
    ("r7_2_task_in_general_console", said(RoomRef("console", "general"), "!task @x y"),
     (Record("general", "!task @x y"),
      RunTaskCommand("general", TaskCreate("x", "y"), RoomRef("console", "general")))),
    # everything else is a person's message, routed
    ("r1_3_message_routed", said(C1, "hello @alice"), (Route("webui", "hello @alice"),)),
    ("r6_3_connection_tracked", DOWN, (TrackConnection(DOWN),)),
]


@pytest.mark.parametrize(("event", "expected"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_classify(event: BridgeEvent, expected: Decision) -> None:
    assert classify(event, rooms(), crew(), ADMINS) == expected


def test_r6_4_no_admin_users_means_everyone_is_one() -> None:
    """R6.4: with no `admin.users` listed, anyone in the admin room may run commands."""
    assert classify(said(C0, "status", sender="U2"), rooms(), crew(), ()) == (
        Record("ops", "status"), RunAdmin(Admin(AdminVerb.STATUS)))


def test_r1_6_help_names_the_workers_or_none() -> None:
    assert "Workers: @alice, @bob." in HELP
    assert dm_help(Crew(CONFIG, CHANNELS)).endswith("Workers: none yet.")


def test_r1_5_unbound_notice_is_once_per_room() -> None:
    """R1.5: the notice is keyed by the room, so the store shows it once per room, ever."""
    first = unbound(STRANGER)
    assert isinstance(first, NotifyOnce) and first.only == STRANGER
    assert first.key != unbound(RoomRef("matrix", "C9")).key
    assert "add `C9` to the `slack` list" in first.text


@pytest.mark.parametrize(("sender", "platform", "approvers", "admins", "askers", "ok"), [
    ("U-bob", "slack", (), (), (), True),  # nobody configured: a small team, anyone
    ("U-bob", "slack", (), ("U-admin",), ("bob",), True),  # the person the turn answers
    ("U-bob", "slack", (), ("U-admin",), ("carol",), False),  # someone else's turn
    ("U-admin", "slack", ("U-ann",), ("U-admin",), (), True),  # an admin
    ("U-ann", "slack", ("U-ann",), ("U-admin",), (), True),  # an approver
    ("U-bob", "slack", ("U-ann",), (), ("bob",), False),  # approvers listed: only them
    ("local", "console", ("U-ann",), ("U-admin",), (), True),  # the host's own console
], ids=["r13_2-no-one-set", "r13_2-asker", "r13_2-stranger", "r13_2-admin", "r13_2-approver",
        "r13_2-approvers-only", "r13_2-console"])
def test_r13_2_r13_6_who_may_stop_a_turn(sender: str, platform: str, approvers: tuple,
                                        admins: tuple, askers: tuple, ok: bool) -> None:
    msg = Inbound(platform, "C1", sender, sender.removeprefix("U-"), "!stop", "E1", 1.0)
    assert may_steer(msg, approvers, admins, askers) is ok
