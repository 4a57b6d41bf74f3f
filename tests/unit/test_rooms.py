"""Channels and rooms: `bot.rooms` (R1.2, R1.4, R1.6, R11.4). Pure."""

from __future__ import annotations

from pathlib import Path

from crewbridge.bot.config import AdminConfig, BotConfig, ChannelConfig, Config, ConsoleConfig
from crewbridge.bot.model import RoomRef
from crewbridge.bot.rooms import Rooms, Wanted, wanted_rooms
from crewbridge.supervisor.ports import AgentConfig

C1, C2, M1 = RoomRef("slack", "C1"), RoomRef("slack", "C2"), RoomRef("matrix", "!m")
D1, D2 = RoomRef("slack", "D1"), RoomRef("matrix", "!d")


def test_r1_2_wanted_rooms_list_every_binding() -> None:
    config = Config(Path("c.toml"), BotConfig(), AgentConfig(),
                    (ChannelConfig("webui", slack=("C1", "#web"), matrix=("!m",)),),
                    AdminConfig(slack=("C0",), matrix=("#ops:hs",)), None, None, ConsoleConfig())
    assert wanted_rooms(config) == [
        Wanted("webui", "slack", "C1"), Wanted("webui", "slack", "#web"),
        Wanted("webui", "matrix", "!m"), Wanted("ops", "slack", "C0"),
        Wanted("ops", "matrix", "#ops:hs")]
    assert Wanted("webui", "matrix", "!m").no_bridge() == (
        "channel webui: matrix room !m is bound, but there is no [matrix] section in the config")


def test_r11_4_a_room_bound_to_two_channels_is_a_problem() -> None:
    rooms = Rooms(console=False)
    assert rooms.bind(Wanted("webui", "slack", "#web"), "C1") is None
    assert rooms.bind(Wanted("webui", "slack", "C1"), "C1") is None  # same channel twice: fine
    assert rooms.bind(Wanted("backend", "slack", "#web"), "C1") == (
        "slack room #web is bound to both #webui and #backend")
    assert rooms.channel_of(C1, ()) == "webui"


def test_r1_4_rooms_of_a_channel_and_the_console() -> None:
    rooms = Rooms(console=True)
    rooms.bind(Wanted("webui", "slack", "C1"), "C1")
    rooms.bind(Wanted("webui", "matrix", "!m"), "!m")
    assert rooms.rooms_of("webui") == [C1, M1, RoomRef("console", "webui")]
    assert Rooms(console=False).rooms_of("webui") == []
    assert rooms.channel_of(RoomRef("console", "webui"), {"webui"}) == "webui"
    assert rooms.channel_of(RoomRef("console", "nope"), {"webui"}) is None
    assert rooms.channel_of(C2, {"webui"}) is None


def test_r1_6_attached_dms_show_their_worker_unless_a_relay() -> None:
    rooms = Rooms(console=False, dms={D1: "alice"})
    assert rooms.attach(D2, "alice") and not rooms.attach(D2, "alice")
    assert rooms.rooms_of("dm-alice") == [D1, D2]
    assert rooms.rooms_of("dm-alice", with_dms=False) == []
    assert rooms.attach(D2, "bob")
    assert rooms.rooms_of("dm-alice") == [D1] and rooms.rooms_of("dm-bob") == [D2]
    assert rooms.rooms_of("webui") == []
