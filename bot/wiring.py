"""Which bridges a config asks for, built lazily so a console-only bot imports no SDK."""

from __future__ import annotations

from typing import TextIO

from crewbridge.bot.config import Config
from crewbridge.bridges.base import Bridge, KeyValueStore, RoomUnresolvable


class _NoState:
    """A throwaway key/value store for `check --online`, which must not touch the real one."""

    def __init__(self) -> None:
        self._values: dict[str, str] = {}

    async def get_value(self, key: str) -> str | None:
        return self._values.get(key)

    async def put_value(self, key: str, value: str) -> None:
        self._values[key] = value

    async def delete_value(self, key: str) -> None:
        self._values.pop(key, None)


def build_bridges(config: Config, kv: KeyValueStore, *, stdin: TextIO | None = None,
                  stdout: TextIO | None = None, check: bool = False) -> dict[str, Bridge]:
    """`check`: for `check --online`, which must keep no state (Matrix: no crypto store)."""
    bridges: dict[str, Bridge] = {}
    if config.console.enabled:
        from crewbridge.bridges.console import ConsoleBridge
        bridges["console"] = ConsoleBridge(stdin, stdout)
    if config.slack is not None:
        from crewbridge.bridges.slack import SlackBridge
        bridges["slack"] = SlackBridge(config.slack, kv)
    if config.matrix is not None:
        from crewbridge.bridges.matrix import MatrixBridge
        bridges["matrix"] = MatrixBridge(config.matrix, kv,
                                         data_dir=None if check else config.bot.data_dir)
    return bridges


async def check_online(config: Config) -> list[str]:
    """Log in to each platform and resolve every bound room; the problems found."""
    problems: list[str] = []
    bridges = build_bridges(config, _NoState(), check=True)
    bridges.pop("console", None)

    async def ignore(_event: object) -> None:
        return None

    rooms = {"slack": [r for c in config.channels for r in c.slack] + list(config.admin.slack),
             "matrix": [r for c in config.channels for r in c.matrix] + list(config.admin.matrix)}
    for name, bridge in bridges.items():
        try:
            await bridge.start(ignore)
        except Exception as e:
            problems.append(f"{name}: {e}")
            continue
        try:
            for ref in rooms[name]:
                try:
                    room = await bridge.resolve_room(ref)
                except RoomUnresolvable as e:
                    problems.append(f"{name}: {e}")
                    continue
                encryption_problem = getattr(bridge, "encryption_problem", None)
                if encryption_problem is not None and (why := await encryption_problem(room)):
                    problems.append(why)  # R14.1/R15.4
        finally:
            await bridge.stop()
    return problems
