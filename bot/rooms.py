"""Where rooms and channels meet: bindings, DM attachments, the console. Pure.

Channels are names; rooms are (platform, room id) pairs. A channel's rooms are the rooms
bound to it in the config (resolved at start-up, R1.2), the DMs attached to its worker
(R1.6) and the console, which is bound to every channel by name so that it shows the whole
conversation. A room is bound to one channel at most: a second binding is a start-up error,
returned here as text for the app to report with the others (R11.4).
"""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass

from crewbridge.bot.config import Config
from crewbridge.bot.model import Platform, RoomRef, worker_of_dm


@dataclass(frozen=True)
class Wanted:
    """One room the config binds to a channel, as written there (before it is resolved)."""

    channel: str
    platform: str
    ref: str

    def no_bridge(self) -> str:
        return (f"channel {self.channel}: {self.platform} room {self.ref} is bound, but there "
                f"is no [{self.platform}] section in the config")

    def unresolvable(self, reason: object) -> str:
        return f"channel {self.channel}: {reason}"


def wanted_rooms(config: Config) -> list[Wanted]:
    """Every binding of the config: the channels' rooms, then the admin channel's."""
    admin = config.bot.admin_channel
    wanted = [Wanted(c.name, Platform.SLACK, r) for c in config.channels for r in c.slack]
    wanted += [Wanted(c.name, Platform.MATRIX, r) for c in config.channels for r in c.matrix]
    wanted += [Wanted(admin, Platform.SLACK, r) for r in config.admin.slack]
    wanted += [Wanted(admin, Platform.MATRIX, r) for r in config.admin.matrix]
    return wanted


class Rooms:
    def __init__(self, *, console: bool, dms: Mapping[RoomRef, str] | None = None):
        self.console = console
        self.bound: dict[RoomRef, str] = {}  # room -> channel (console excluded)
        self._rooms: dict[str, list[RoomRef]] = {}  # channel -> bound rooms
        self.dms: dict[RoomRef, str] = dict(dms or {})  # DM room -> attached worker

    def bind(self, wanted: Wanted, room: str) -> str | None:
        """Bind the resolved room; the problem when it is bound to another channel already."""
        ref = RoomRef(wanted.platform, room)
        other = self.bound.get(ref)
        if other is not None and other != wanted.channel:
            return (f"{wanted.platform} room {wanted.ref} is bound to both #{other} "
                    f"and #{wanted.channel}")
        self.bound[ref] = wanted.channel
        self._rooms.setdefault(wanted.channel, []).append(ref)
        return None

    def attach(self, ref: RoomRef, worker: str) -> bool:
        """Attach a DM room to a worker (R1.6); False when it already was."""
        if self.dms.get(ref) == worker:
            return False
        self.dms[ref] = worker
        return True

    def detach(self, worker: str) -> None:
        """Forget every DM room attached to `worker` (a worker retention forgot, R14.6)."""
        self.dms = {ref: w for ref, w in self.dms.items() if w != worker}

    def rooms_of(self, channel: str, *, with_dms: bool = True) -> list[RoomRef]:
        """Every room that shows `channel`: bound rooms, DMs attached to its worker, console.

        `with_dms=False` leaves out the attached DMs: one person's words to a worker are
        not copied into another person's private conversation with the bot.
        """
        rooms = list(self._rooms.get(channel, []))
        worker = worker_of_dm(channel)
        if worker is not None and with_dms:
            rooms += [ref for ref, w in self.dms.items() if w == worker and ref not in rooms]
        if self.console:
            rooms.append(RoomRef(Platform.CONSOLE, channel))
        return rooms

    def channel_of(self, ref: RoomRef, channels: Container[str]) -> str | None:
        """The channel a room shows; a console room is a channel's name, if it exists."""
        if ref.platform == Platform.CONSOLE:
            return ref.room if ref.room in channels else None
        return self.bound.get(ref)
