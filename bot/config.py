"""The crewbridge configuration file: its sections, their keys and the rules across them (R11.1).

Each section is a frozen dataclass — the one place its defaults are written — and a table
of its keys' kinds and checks, read by `bot.config_reader`. Every error names the file, the
dotted key and what was expected, and all errors are collected so a user fixes a config in
one pass. Secret values are never echoed back in an error.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from crewbridge.bot.config_reader import (
    Field,
    FieldKind,
    Reader,
    Section,
    choice,
    non_empty,
    non_negative,
    port,
    positive,
    url,
)
from crewbridge.bot.model import DM_PREFIX, RESERVED_NAMES
from crewbridge.bridges.settings import MatrixConfig, SlackConfig, SlackMode
from crewbridge.supervisor.ports import AgentConfig, PermissionMode, ToolPolicy


class Threads(StrEnum):
    """What a reply in a thread under a lead's answer reaches (R12.2, R12.3)."""

    FORK = "fork"  # a session of its own, forked from the lead's
    SHARED = "shared"  # the lead's own session


class Replies(StrEnum):
    """Where the agents answer a top-level message (R12.1)."""

    THREAD = "thread"  # in the message's thread
    CHANNEL = "channel"  # at the top level, as the first release did


class ConfigError(Exception):
    """One or more problems in a config file; `str()` is ready to print, one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class BotConfig:
    data_dir: Path = Path("var")
    general_channel: str = "general"
    admin_channel: str = "ops"
    retain_days: float = 90  # R14.6: older messages, finished tasks, usage and audit go


@dataclass(frozen=True)
class ChannelConfig:
    name: str
    prompt: str = ""
    workdir: Path | None = None
    always_on: bool = False
    slack: tuple[str, ...] = ()
    matrix: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None  # overrides [agent].command for this channel's lead
    env: dict[str, str] = field(default_factory=dict)  # added to [agent].env for this lead
    threads: Threads = Threads.FORK
    replies: Replies = Replies.THREAD
    approvers: tuple[str, ...] = ()  # R13.2; empty: the person the turn answers
    daily_budget_usd: float | None = None  # R13.8; None: [agent]'s
    # R13.5: this channel's agents' policy; None: [agent]'s
    permission_mode: PermissionMode | None = None
    allowed_tools: tuple[str, ...] | None = None
    disallowed_tools: tuple[str, ...] | None = None
    model: str | None = None


@dataclass(frozen=True)
class AdminConfig:
    slack: tuple[str, ...] = ()
    matrix: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsoleConfig:
    # What an empty file gives; with [slack] or [matrix] present, `load_config` makes the
    # default False instead (R9.3), the one default that depends on the rest of the file.
    enabled: bool = True
    show_progress: bool = False  # R13.7: the console prints no status lines unless asked


@dataclass(frozen=True)
class HttpConfig:
    listen: str = ""  # R14.3: "host:port" for /healthz and /metrics; "" = off


@dataclass(frozen=True)
class Config:
    path: Path
    bot: BotConfig
    agent: AgentConfig
    channels: tuple[ChannelConfig, ...]
    admin: AdminConfig
    slack: SlackConfig | None
    matrix: MatrixConfig | None
    console: ConsoleConfig
    http: HttpConfig = HttpConfig()
    env_refs: frozenset[str] = field(default=frozenset(), repr=False)
    """The environment variables the file reads through `${NAME}`; withheld from agents."""
    secrets: tuple[str, ...] = field(default=(), repr=False)
    """The secret values the file holds; hidden in everything logged, stored or posted."""

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)

    def policy(self, channel: str) -> ToolPolicy:
        """The tool policy of `channel`'s agents (R13.5): the channel's settings, else
        `[agent]`'s."""
        ch, a = self.channel_or_default(channel), self.agent

        def pick(own, default):  # type: ignore[no-untyped-def]
            return default if own is None else own

        return ToolPolicy(pick(ch.permission_mode, a.permission_mode),
                          tuple(pick(ch.allowed_tools, a.allowed_tools)),
                          tuple(pick(ch.disallowed_tools, a.disallowed_tools)),
                          pick(ch.model, a.model), a.approvals)

    def channel_or_default(self, name: str) -> ChannelConfig:
        """A channel's settings; a channel not in the file (the general channel, one made
        at run time) has the defaults."""
        return self.channel(name) or ChannelConfig(name)


# --- field tables: key, kind and check; the defaults are the dataclasses' own ------------------


def split_listen(text: str) -> tuple[str, int]:
    """`"127.0.0.1:9464"` as (host, port); `"[::1]:9464"` too. ValueError when it is not one."""
    m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})", text)
    if m is None or int(m.group(2)) > 65535:
        raise ValueError(text)
    return m.group(1).strip("[]"), int(m.group(2))


def listen_address(v: Any) -> str | None:
    if v:
        try:
            split_listen(v)
        except ValueError:
            return 'a "host:port" such as "127.0.0.1:9464", or "" for off'
    return None


def channel_name(v: Any) -> str | None:
    ok = re.fullmatch(r"[a-z0-9][a-z0-9_-]*", v) is not None
    return None if ok else "a lower-case name of letters, digits, '-' and '_'"


K = FieldKind
BOT = Section(BotConfig, (
    Field("data_dir", K.PATH),
    Field("general_channel", K.STR, channel_name),
    Field("admin_channel", K.STR, channel_name),
    Field("retain_days", K.NUMBER, positive),
))
AGENT = Section(AgentConfig, (
    Field("command", K.STRLIST, non_empty),
    Field("workdir", K.PATH),
    Field("env", K.STRMAP),
    Field("healthy_after_s", K.NUMBER, positive),
    Field("spawn_failure_cooldown_s", K.NUMBER, non_negative),
    Field("max_lead_restarts", K.INT, positive),
    Field("max_worker_restarts", K.INT, positive),
    Field("breaker_reset_s", K.NUMBER, positive),
    Field("breaker_max_s", K.NUMBER, positive),
    Field("flush_interval_s", K.NUMBER, positive),
    Field("idle_stop_s", K.NUMBER, positive),
    Field("turn_timeout_s", K.NUMBER, positive),
    Field("stop_grace_s", K.NUMBER, non_negative),
    Field("max_hops", K.INT, positive),
    Field("login_command", K.STRLIST, non_empty),
    Field("login_timeout_s", K.NUMBER, positive),
    Field("max_live_agents", K.INT, positive),
    Field("shutdown_grace_s", K.NUMBER, non_negative),
    Field("max_turn_output_chars", K.INT, positive),
    Field("daily_budget_usd", K.NUMBER, non_negative),
    choice("permission_mode", PermissionMode),
    Field("allowed_tools", K.STRLIST),
    Field("disallowed_tools", K.STRLIST),
    Field("model", K.STR),
    Field("approvals", K.BOOL),
    Field("approval_timeout_s", K.NUMBER, positive),
    Field("status_after_s", K.NUMBER, positive),
    Field("seen_after_s", K.NUMBER, non_negative),
    Field("status_interval_s", K.NUMBER, positive),
))
CHANNEL = Section(ChannelConfig, (
    Field("name", K.STR, channel_name),
    Field("prompt", K.STR),
    Field("workdir", K.PATH),
    Field("always_on", K.BOOL),
    Field("slack", K.STRLIST),
    Field("matrix", K.STRLIST),
    Field("command", K.STRLIST, non_empty),
    Field("env", K.STRMAP),
    choice("threads", Threads),
    choice("replies", Replies),
    Field("approvers", K.STRLIST),
    Field("daily_budget_usd", K.NUMBER, non_negative),
    choice("permission_mode", PermissionMode),
    Field("allowed_tools", K.STRLIST),
    Field("disallowed_tools", K.STRLIST),
    Field("model", K.STR),
))
ADMIN = Section(AdminConfig, (
    Field("slack", K.STRLIST),
    Field("matrix", K.STRLIST),
    Field("users", K.STRLIST),
))
SLACK = Section(SlackConfig, (
    choice("mode", SlackMode),
    Field("bot_token", K.STR, non_empty, secret=True),
    Field("app_token", K.STR, non_empty, secret=True),
    Field("signing_secret", K.STR, non_empty, secret=True),
    Field("http_host", K.STR),
    Field("http_port", K.INT, port),
    Field("api_url", K.STR, url),
    Field("post_interval_s", K.NUMBER, positive),
))
MATRIX = Section(MatrixConfig, (
    Field("homeserver", K.STR, url),
    Field("user_id", K.STR, non_empty),
    Field("access_token", K.STR, non_empty, secret=True),
    Field("password", K.STR, non_empty, secret=True),
    Field("device_id", K.STR, non_empty),
    Field("allow_invites_from", K.STRLIST),
    Field("encryption", K.BOOL),
))
CONSOLE = Section(ConsoleConfig, (Field("enabled", K.BOOL), Field("show_progress", K.BOOL)))
HTTP = Section(HttpConfig, (Field("listen", K.STR, listen_address),))


TOP_LEVEL = {"bot", "agent", "channel", "admin", "slack", "matrix", "console", "http"}


CONFIG_ENV = "CREWBRIDGE_CONFIG"
CONFIG_PLACES = (Path("crewbridge.toml"), Path("/etc/crewbridge/crewbridge.toml"))


def find_config(given: Path | None, env: dict[str, str] | None = None) -> Path:
    """The config file (R14.2): `--config`, else `$CREWBRIDGE_CONFIG`, else
    `./crewbridge.toml`, else `/etc/crewbridge/crewbridge.toml`."""
    env = dict(os.environ) if env is None else env
    if given is not None:
        return given
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    found = next((p for p in CONFIG_PLACES if p.is_file()), None)
    if found is None:
        raise ConfigError([f"no config file: pass --config FILE, set ${CONFIG_ENV}, or put "
                           f"one at {' or '.join(map(str, CONFIG_PLACES))} "
                           f"(`crewbridge init` writes a starter one)"])
    return found


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None


def _bot_section(r: Reader, data: dict[str, Any], env: dict[str, str]) -> BotConfig:
    """`[bot]`; with no `data_dir` written, systemd's `$STATE_DIRECTORY` when set (R14.5)."""
    values = r.section(data.get("bot", {}), "bot", BOT)
    raw = data.get("bot", {})
    if isinstance(raw, dict) and "data_dir" not in raw and env.get("STATE_DIRECTORY"):
        values["data_dir"] = Path(env["STATE_DIRECTORY"].split(":")[0])
    return BotConfig(**values)


def load_host_config(path: str | Path, env: dict[str, str] | None = None) -> BotConfig:
    """Only `[bot]` of the file: what the host commands need to find the running bot
    (R14.2). Nothing else is read, so no `${NAME}` of a secret must be in the shell."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    r = Reader(path, env, path.resolve().parent)
    bot = _bot_section(r, _read_toml(path), env)
    if r.problems:
        raise ConfigError(r.problems)
    return bot


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate `path`; raise `ConfigError` listing every problem found."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    data = _read_toml(path)
    r = Reader(path, env, path.resolve().parent)
    for key in data:
        if key not in TOP_LEVEL:
            expected = ", ".join(sorted(TOP_LEVEL))
            r.problem(key, f"unknown section (expected one of: {expected})")

    bot = _bot_section(r, data, env)
    agent = AgentConfig(**r.section(data.get("agent", {}), "agent", AGENT))
    channels = _channels(r, data.get("channel", []), bot)
    admin = AdminConfig(**r.section(data.get("admin", {}), "admin", ADMIN))
    slack = _optional(r, data, "slack", SLACK)
    matrix = _optional(r, data, "matrix", MATRIX)
    no_platform = "slack" not in data and "matrix" not in data
    console = ConsoleConfig(**{"enabled": no_platform}
                            | r.section(data.get("console", {}), "console", CONSOLE))
    http = HttpConfig(**r.section(data.get("http", {}), "http", HTTP))

    if slack is not None:
        if slack.mode is SlackMode.SOCKET and not slack.app_token:
            r.problem("slack.app_token", f"required when slack.mode is \"{SlackMode.SOCKET}\"")
        if slack.mode is SlackMode.HTTP and not slack.signing_secret:
            r.problem("slack.signing_secret", f"required when slack.mode is \"{SlackMode.HTTP}\"")
    written = data.get("matrix", {}) if isinstance(data.get("matrix"), dict) else {}
    if matrix is not None and not (matrix.access_token or matrix.password) and not (
            {"access_token", "password"} & written.keys()):  # else its own line said why
        r.problem("matrix.access_token", "set access_token or password")
    if bot.general_channel == bot.admin_channel:
        r.problem("bot.admin_channel", "a name different from bot.general_channel")
    if agent.breaker_reset_s > agent.breaker_max_s:
        r.problem("agent.breaker_reset_s", f"at most agent.breaker_max_s "
                  f"({agent.breaker_max_s:g}), got {agent.breaker_reset_s:g}")
    if r.problems:
        raise ConfigError(r.problems)
    return Config(path=path, bot=bot, agent=agent, channels=channels, admin=admin,
                  slack=slack, matrix=matrix, console=console, http=http,
                  env_refs=frozenset(r.env_refs), secrets=tuple(sorted(r.secrets)))


def _optional(r: Reader, data: dict, name: str, section: Section) -> Any:
    """An optional platform section: absent, or built once its required keys are valid."""
    if name not in data:
        return None
    values = r.section(data[name], name, section)
    return section.cls(**values) if all(k in values for k in section.required) else None


def _channels(r: Reader, raw: Any, bot: BotConfig) -> tuple[ChannelConfig, ...]:
    if not isinstance(raw, list):
        r.problem("channel", "an array of tables ([[channel]])")
        return ()
    out: list[ChannelConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        values = r.section(item, f"channel[{i}]", CHANNEL)
        if "name" not in values:
            continue
        name = values["name"]
        if name in seen:
            r.problem(f"channel[{i}].name", f"a unique name; {name!r} is used twice")
        if name.startswith(DM_PREFIX) or name == bot.admin_channel or name in RESERVED_NAMES:
            r.problem(f"channel[{i}].name", f"a topic channel name; {name!r} is reserved")
        seen.add(name)
        out.append(ChannelConfig(**values))
    return tuple(out)
