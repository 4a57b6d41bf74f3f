"""The TOML configuration: parsing, `${ENV}` substitution and validation (R11.1).

Validation is declarative: each section is a table of `Field`s (key, expected type,
default, check), read by one function. Every error names the file, the dotted key and what
was expected, and all errors are collected so a user fixes a config in one pass. Secret
values are never echoed back in an error.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridges.settings import MatrixConfig, SlackConfig
from supervisor.ports import AgentConfig
from supervisor.redact import redact

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
SECRET_KEYS = {"bot_token", "app_token", "signing_secret", "access_token", "password"}


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


@dataclass(frozen=True)
class AdminConfig:
    slack: tuple[str, ...] = ()
    matrix: tuple[str, ...] = ()
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = True


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

    def channel(self, name: str) -> ChannelConfig | None:
        return next((c for c in self.channels if c.name == name), None)


# --- field tables ---------------------------------------------------------------------------

Check = Callable[[Any], str | None]  # returns what is expected when the value is wrong


def positive(v: Any) -> str | None:
    return None if v > 0 else "a number greater than 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "a number of at least 0"


def non_empty(v: Any) -> str | None:
    return None if len(v) > 0 else "a non-empty value"


def channel_name(v: Any) -> str | None:
    ok = re.fullmatch(r"[a-z0-9][a-z0-9_-]*", v) is not None
    return None if ok else "a lower-case name of letters, digits, '-' and '_'"


def one_of(*options: str) -> Check:
    return lambda v: None if v in options else "one of " + ", ".join(repr(o) for o in options)


def port(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else "a port number from 0 to 65535"


def url(v: Any) -> str | None:
    return None if re.match(r"https?://", v) else "an http:// or https:// URL"


REQUIRED = object()


@dataclass(frozen=True)
class Field:
    key: str
    kind: str  # str | int | number | bool | strlist | strmap | path
    default: Any = REQUIRED
    check: Check | None = None


BOT_FIELDS = (
    Field("data_dir", "path", Path("var")),
    Field("general_channel", "str", "general", channel_name),
    Field("admin_channel", "str", "ops", channel_name),
)
AGENT_FIELDS = (
    Field("command", "strlist", ("claude",), non_empty),
    Field("workdir", "path", Path(".")),
    Field("env", "strmap", {}),
    Field("healthy_after_s", "number", 60, positive),
    Field("spawn_failure_cooldown_s", "number", 120, non_negative),
    Field("max_lead_restarts", "int", 3, positive),
    Field("max_worker_restarts", "int", 3, positive),
    Field("breaker_reset_s", "number", 600, positive),
    Field("breaker_max_s", "number", 6 * 3600, positive),
    Field("flush_interval_s", "number", 2, positive),
    Field("idle_stop_s", "number", 1800, positive),
    Field("turn_timeout_s", "number", 900, positive),
    Field("stop_grace_s", "number", 5, non_negative),
    Field("max_hops", "int", 8, positive),
    Field("login_command", "strlist", ("claude", "auth", "login"), non_empty),
    Field("login_timeout_s", "number", 300, positive),
)
CHANNEL_FIELDS = (
    Field("name", "str", REQUIRED, channel_name),
    Field("prompt", "str", ""),
    Field("workdir", "path", None),
    Field("always_on", "bool", False),
    Field("slack", "strlist", ()),
    Field("matrix", "strlist", ()),
    Field("command", "strlist", None, non_empty),
    Field("env", "strmap", {}),
)
ADMIN_FIELDS = (
    Field("slack", "strlist", ()),
    Field("matrix", "strlist", ()),
    Field("users", "strlist", ()),
)
SLACK_FIELDS = (
    Field("mode", "str", "socket", one_of("socket", "http")),
    Field("bot_token", "str", REQUIRED, non_empty),
    Field("app_token", "str", None, non_empty),
    Field("signing_secret", "str", None, non_empty),
    Field("http_host", "str", "127.0.0.1"),
    Field("http_port", "int", 3000, port),
    Field("api_url", "str", "https://slack.com/api/", url),
    Field("post_interval_s", "number", 1.0, positive),
)
MATRIX_FIELDS = (
    Field("homeserver", "str", REQUIRED, url),
    Field("user_id", "str", REQUIRED, non_empty),
    Field("access_token", "str", None, non_empty),
    Field("password", "str", None, non_empty),
    Field("device_id", "str", None, non_empty),
    Field("allow_invites_from", "strlist", ()),
)
RESERVED_NAMES = ("all", "lead")  # mention words with a fixed meaning (R2.2, R2.3)

TYPE_NAMES = {
    "str": "a string",
    "int": "a whole number",
    "number": "a number",
    "bool": "true or false",
    "strlist": "a list of strings",
    "strmap": "a table of string values",
    "path": "a path (string)",
}


class _Reader:
    """Collects problems while reading one file, so all are reported at once."""

    def __init__(self, path: Path, env: dict[str, str], base: Path):
        self.path = path
        self.env = env
        self.base = base
        self.problems: list[str] = []

    def problem(self, key: str, expected: str) -> None:
        self.problems.append(f"{self.path}: {key}: {expected}")

    def expand(self, key: str, value: str) -> str | None:
        missing = [n for n in ENV_REF.findall(value) if n not in self.env]
        if missing:
            self.problem(key, f"environment variable {missing[0]} is not set")
            return None
        return ENV_REF.sub(lambda m: self.env[m.group(1)], value)

    def section(self, data: Any, prefix: str, fields: tuple[Field, ...]) -> dict[str, Any]:
        if not isinstance(data, dict):
            self.problem(prefix, "a table")
            return {}
        known = {f.key for f in fields}
        for key in data:
            if key not in known:
                self.problem(f"{prefix}.{key}", "unknown key (expected one of: "
                             + ", ".join(sorted(known)) + ")")
        out: dict[str, Any] = {}
        for f in fields:
            dotted = f"{prefix}.{f.key}"
            if f.key not in data:
                if f.default is REQUIRED:
                    self.problem(dotted, f"missing; expected {TYPE_NAMES[f.kind]}")
                elif f.kind == "path" and f.default is not None:
                    out[f.key] = self.resolve(str(f.default))  # like the same value written
                else:
                    out[f.key] = f.default
                continue
            value = self.convert(dotted, f, data[f.key])
            if value is None:
                continue
            if f.check is not None and (expected := f.check(value)) is not None:
                shown = "(hidden)" if f.key in SECRET_KEYS else redact(repr(data[f.key]))
                self.problem(dotted, f"expected {expected}, got {shown}")
                continue
            out[f.key] = value
        return out

    def convert(self, key: str, f: Field, raw: Any) -> Any:
        wrong = f"expected {TYPE_NAMES[f.kind]}, got {type(raw).__name__}"
        if f.kind in ("int", "number", "bool") and isinstance(raw, str) and ENV_REF.search(raw):
            return self.scalar_from_env(key, f, raw)
        if f.kind in ("str", "path"):
            if not isinstance(raw, str):
                self.problem(key, wrong)
                return None
            text = self.expand(key, raw)
            if text is None:
                return None
            return self.resolve(text) if f.kind == "path" else text
        if f.kind == "bool":
            if not isinstance(raw, bool):
                self.problem(key, wrong)
                return None
            return raw
        if f.kind == "int":
            if isinstance(raw, bool) or not isinstance(raw, int):
                self.problem(key, wrong)
                return None
            return raw
        if f.kind == "number":
            if isinstance(raw, bool) or not isinstance(raw, int | float):
                self.problem(key, wrong)
                return None
            return float(raw)
        if f.kind == "strlist":
            if not isinstance(raw, list) or not all(isinstance(x, str) for x in raw):
                self.problem(key, wrong)
                return None
            items = [self.expand(key, x) for x in raw]
            return None if None in items else tuple(items)
        if f.kind == "strmap":
            if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
                self.problem(key, wrong)
                return None
            pairs = {k: self.expand(f"{key}.{k}", v) for k, v in raw.items()}
            return None if None in pairs.values() else pairs
        raise AssertionError(f"unknown field kind {f.kind}")

    def scalar_from_env(self, key: str, f: Field, raw: str) -> Any:
        """`http_port = "${PORT}"`: a number or flag may come from the environment too."""
        text = self.expand(key, raw)
        if text is None:
            return None
        try:
            if f.kind == "bool":
                if text.lower() not in ("true", "false"):
                    raise ValueError
                return text.lower() == "true"
            return int(text) if f.kind == "int" else float(text)
        except ValueError:
            self.problem(key, f"expected {TYPE_NAMES[f.kind]} from {raw}, got {text!r}")
            return None

    def resolve(self, text: str) -> Path:
        """Relative paths are relative to the config file, so a config works from any cwd."""
        p = Path(text).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.base / p))


TOP_LEVEL = {"bot", "agent", "channel", "admin", "slack", "matrix", "console"}


def load_config(path: str | Path, env: dict[str, str] | None = None) -> Config:
    """Read and validate `path`; raise `ConfigError` listing every problem found."""
    path = Path(path)
    env = dict(os.environ) if env is None else env
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: no such file"]) from None
    except OSError as e:
        raise ConfigError([f"{path}: cannot read: {e.strerror}"]) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from None
    r = _Reader(path, env, path.resolve().parent)
    for key in data:
        if key not in TOP_LEVEL:
            expected = ", ".join(sorted(TOP_LEVEL))
            r.problem(key, f"unknown section (expected one of: {expected})")

    bot = BotConfig(**r.section(data.get("bot", {}), "bot", BOT_FIELDS))
    agent = AgentConfig(**r.section(data.get("agent", {}), "agent", AGENT_FIELDS))
    channels = _channels(r, data.get("channel", []), bot)
    admin = AdminConfig(**r.section(data.get("admin", {}), "admin", ADMIN_FIELDS))
    slack = _optional(r, data, "slack", SLACK_FIELDS, SlackConfig)
    matrix = _optional(r, data, "matrix", MATRIX_FIELDS, MatrixConfig)
    console_fields = (Field("enabled", "bool", "slack" not in data and "matrix" not in data),)
    console = ConsoleConfig(**r.section(data.get("console", {}), "console", console_fields))

    if slack is not None:
        if slack.mode == "socket" and not slack.app_token:
            r.problem("slack.app_token", "required when slack.mode is \"socket\"")
        if slack.mode == "http" and not slack.signing_secret:
            r.problem("slack.signing_secret", "required when slack.mode is \"http\"")
    if matrix is not None and not (matrix.access_token or matrix.password):
        r.problem("matrix.access_token", "set access_token or password")
    if bot.general_channel == bot.admin_channel:
        r.problem("bot.admin_channel", "a name different from bot.general_channel")
    if agent.breaker_reset_s > agent.breaker_max_s:
        r.problem("agent.breaker_reset_s", f"at most agent.breaker_max_s "
                  f"({agent.breaker_max_s:g}), got {agent.breaker_reset_s:g}")
    if r.problems:
        raise ConfigError(r.problems)
    return Config(path=path, bot=bot, agent=agent, channels=channels, admin=admin,
                  slack=slack, matrix=matrix, console=console)


def _optional(r: _Reader, data: dict, name: str, fields: tuple[Field, ...], cls: type) -> Any:
    if name not in data:
        return None
    values = r.section(data[name], name, fields)
    required = [f.key for f in fields if f.default is REQUIRED]
    return cls(**values) if all(k in values for k in required) else None


def _channels(r: _Reader, raw: Any, bot: BotConfig) -> tuple[ChannelConfig, ...]:
    if not isinstance(raw, list):
        r.problem("channel", "an array of tables ([[channel]])")
        return ()
    out: list[ChannelConfig] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        values = r.section(item, f"channel[{i}]", CHANNEL_FIELDS)
        if "name" not in values:
            continue
        name = values["name"]
        if name in seen:
            r.problem(f"channel[{i}].name", f"a unique name; {name!r} is used twice")
        if name.startswith("dm-") or name == bot.admin_channel or name in RESERVED_NAMES:
            r.problem(f"channel[{i}].name", f"a topic channel name; {name!r} is reserved")
        seen.add(name)
        out.append(ChannelConfig(**values))
    return tuple(out)
