"""One validation for `check` and `run` (R14.1): what a config must satisfy beyond its own
shape (`bot.config.load_config`) — the host it runs on and the values' meaning.

`crewbridge check` once said "ok" for configs `run` then refused; now both call `validate`
after `load_config`, so a config `check` passes starts (or fails only on what needs the
network: `check --online`). Every problem names the file, the key and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from crewbridge.bot.config import Config, ConfigError
from crewbridge.bot.control import SOCKET_PATH_MAX
from crewbridge.bot.rooms import wanted_rooms
from crewbridge.supervisor.session import find_command

SLACK_USER = re.compile(r"[UW][A-Z0-9]{2,}")
MATRIX_USER = re.compile(r"@[^:\s]+:[^\s]+")
TOKEN_PREFIXES = {"bot_token": ("xoxb-", "a bot token"), "app_token": ("xapp-", "an app token")}


def validate(config: Config, *, which: Callable[[str], str] = find_command) -> None:
    """Raise `ConfigError` with every problem found (none: return)."""
    problems = [f"{config.path}: {key}: {text}" for key, text in _problems(config, which)]
    if problems:
        raise ConfigError(problems)


def _problems(config: Config, which: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    yield from _bindings(config)
    yield from _data_dir(config)
    yield from _agents(config, which)
    yield from _tokens(config)
    yield from _people(config)


def _bindings(config: Config) -> Iterator[tuple[str, str]]:
    sections = {"slack": config.slack is not None, "matrix": config.matrix is not None}
    for i, ch in enumerate(config.channels):
        for platform, rooms in (("slack", ch.slack), ("matrix", ch.matrix)):
            if rooms and not sections[platform]:
                yield (f"channel[{i}].{platform}", f"rooms are bound on {platform}, but there "
                       f"is no [{platform}] section; add one, or remove the rooms")
    for platform, rooms in (("slack", config.admin.slack), ("matrix", config.admin.matrix)):
        if rooms and not sections[platform]:
            yield (f"admin.{platform}", f"an admin room on {platform}, but there is no "
                   f"[{platform}] section; add one, or remove the room")
    seen: dict[tuple[str, str], str] = {}
    for w in wanted_rooms(config):
        other = seen.setdefault((w.platform, w.ref), w.channel)
        if other != w.channel:
            yield (f"channel {w.channel}", f"{w.platform} room {w.ref} is also bound to "
                   f"#{other}; a room belongs to one channel")


def _data_dir(config: Config) -> Iterator[tuple[str, str]]:
    socket = config.bot.data_dir.resolve() / "control.sock"
    if len(os.fsencode(socket)) > SOCKET_PATH_MAX:
        yield ("bot.data_dir", f"too long: the control socket {socket} would have "
               f"{len(os.fsencode(socket))} bytes, a Unix socket path at most "
               f"{SOCKET_PATH_MAX}; choose a shorter directory")
    if config.bot.data_dir.exists() and not config.bot.data_dir.is_dir():
        yield ("bot.data_dir", f"{config.bot.data_dir} is not a directory")


def _agents(config: Config, which: Callable[[str], str]) -> Iterator[tuple[str, str]]:
    places = [("agent", config.agent.workdir, config.agent.command)]
    places += [(f"channel[{i}]", ch.workdir, ch.command)
               for i, ch in enumerate(config.channels)]
    for key, workdir, command in places:
        if workdir is not None and not Path(workdir).is_dir():
            yield (f"{key}.workdir", f"{workdir} does not exist (or is not a directory); "
                   f"create it, or point workdir at the project")
        if command and not _runnable(which(command[0])):
            yield (f"{key}.command", f"{command[0]!r} is not an executable on PATH; install "
                   f"it (for Claude Code: npm install -g @anthropic-ai/claude-code) or give "
                   f"its full path")


def _runnable(path: str) -> bool:
    return os.sep in path and os.path.isfile(path) and os.access(path, os.X_OK)


def _tokens(config: Config) -> Iterator[tuple[str, str]]:
    if config.slack is None:
        return
    given = {key: getattr(config.slack, key) for key in TOKEN_PREFIXES}
    for key, value in given.items():
        prefix, what = TOKEN_PREFIXES[key]
        if not value or value.startswith(prefix):
            continue
        other = next((k for k, (p, _) in TOKEN_PREFIXES.items() if value.startswith(p)), None)
        hint = (f"; it looks like the {other.replace('_', ' ')} — are bot_token and "
                f"app_token swapped?" if other else "")
        yield f"slack.{key}", f"expected {what} (starting {prefix}){hint}"


def _people(config: Config) -> Iterator[tuple[str, str]]:
    lists = [("admin.users", config.admin.users)]
    lists += [(f"channel[{i}].approvers", ch.approvers) for i, ch in enumerate(config.channels)]
    for key, ids in lists:
        for j, who in enumerate(ids):
            if not (SLACK_USER.fullmatch(who) or MATRIX_USER.fullmatch(who)):
                yield (f"{key}[{j}]", f"{who!r} is neither a Slack user id (like U0123ABCD: "
                       f"a member's profile → ⋮ → Copy member ID) nor a full Matrix id (like "
                       f"@alice:example.org)")
