"""Reading one TOML table into a dataclass, declaratively (R11.1). Knows no crewbridge keys.

A `Section` pairs a frozen dataclass with a table of `Field`s that says, per key, what kind
of value it takes and how to check it. The dataclass is the one place a default is written:
the reader takes defaults (and which keys are required — those without one) from
`dataclasses.fields`, so a default cannot drift between the code that uses it and the code
that reads it. The `Reader` collects every problem of a file instead of stopping at the
first, names the file, the dotted key and what was expected in each, and never echoes a
secret value.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, StrEnum
from pathlib import Path
from typing import Any

from crewbridge.supervisor.redact import redact

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")

Check = Callable[[Any], str | None]  # returns what is expected when the value is wrong


class FieldKind(Enum):
    """What a key's value must be; the value is how a problem names it."""

    STR = "a string"
    INT = "a whole number"
    NUMBER = "a number"
    BOOL = "true or false"
    STRLIST = "a list of strings"
    STRMAP = "a table of string values"
    PATH = "a path (string)"


# Whether a raw TOML value has the shape of its kind (before `${ENV}` expansion). A bool is
# an int in Python, and never a number in a config.
SHAPE_OK: dict[FieldKind, Callable[[Any], bool]] = {
    FieldKind.STR: lambda v: isinstance(v, str),
    FieldKind.PATH: lambda v: isinstance(v, str),
    FieldKind.BOOL: lambda v: isinstance(v, bool),
    FieldKind.INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
    FieldKind.NUMBER: lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    FieldKind.STRLIST: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    FieldKind.STRMAP: lambda v: isinstance(v, dict) and all(isinstance(x, str)
                                                            for x in v.values()),
}
# Kinds that may also be written as a string from the environment: `http_port = "${PORT}"`.
FROM_ENV = (FieldKind.INT, FieldKind.NUMBER, FieldKind.BOOL)


# --- checks ---------------------------------------------------------------------------------


def positive(v: Any) -> str | None:
    return None if v > 0 else "a number greater than 0"


def non_negative(v: Any) -> str | None:
    return None if v >= 0 else "a number of at least 0"


def non_empty(v: Any) -> str | None:
    return None if len(v) > 0 else "a non-empty value"


def one_of(*options: str) -> Check:
    shown = ", ".join(repr(str(o)) for o in options)
    return lambda v: None if v in options else f"one of {shown}"


def port(v: Any) -> str | None:
    return None if 0 <= v <= 65535 else "a port number from 0 to 65535"


def url(v: Any) -> str | None:
    return None if re.match(r"https?://", v) else "an http:// or https:// URL"


# --- tables ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    key: str
    kind: FieldKind
    check: Check | None = None
    secret: bool = False  # its value is never shown in a problem
    to: Callable[[Any], Any] | None = None  # builds the value once it passed its check


def choice(key: str, options: type[StrEnum]) -> Field:
    """A string that must be one of an enum's values, read as that enum's member."""
    return Field(key, FieldKind.STR, one_of(*options), to=options)


@dataclass(frozen=True)
class Section:
    """One TOML table: the dataclass it builds, and a `Field` for each of its fields."""

    cls: type
    fields: tuple[Field, ...]

    def __post_init__(self) -> None:
        # A key read but not built, or built but not readable, is a bug caught at import.
        names = {f.name for f in dataclasses.fields(self.cls)}
        keys = {f.key for f in self.fields}
        if names != keys:
            raise TypeError(f"{self.cls.__name__}: fields {sorted(names ^ keys)} are in only "
                            "one of the dataclass and its field table")

    def default(self, key: str) -> Any:
        """The dataclass's default for `key`, or `dataclasses.MISSING` if it is required."""
        f = self.cls.__dataclass_fields__[key]
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return f.default

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(f.key for f in self.fields if self.default(f.key) is dataclasses.MISSING)


# --- the reader -----------------------------------------------------------------------------


class Reader:
    """Collects problems while reading one file, so all are reported at once."""

    def __init__(self, path: Path, env: dict[str, str], base: Path):
        self.path = path
        self.env = env
        self.base = base
        self.problems: list[str] = []
        self.env_refs: set[str] = set()
        """Every `${NAME}` the file reads: agents never inherit these (R10.5)."""
        self.secrets: set[str] = set()
        """Secret values: those of secret keys and of every `${NAME}` read (R10.5)."""

    def problem(self, key: str, expected: str) -> None:
        self.problems.append(f"{self.path}: {key}: {expected}")

    def expand(self, key: str, value: str) -> str | None:
        missing = [n for n in ENV_REF.findall(value) if n not in self.env]
        if missing:
            self.problem(key, f"environment variable {missing[0]} is not set")
            return None
        for name in ENV_REF.findall(value):
            self.env_refs.add(name)
            self.secrets.add(self.env[name])
        return ENV_REF.sub(lambda m: self.env[m.group(1)], value)

    def section(self, data: Any, prefix: str, section: Section) -> dict[str, Any]:
        """The valid values given in `data`, by key, ready for `section.cls(**values)`.

        A key not given is left out, so the dataclass supplies its default — except a path,
        whose default is resolved against the config file like the same value written. A
        missing required key or a wrong value is a problem, and left out too.
        """
        if not isinstance(data, dict):
            self.problem(prefix, "a table")
            return {}
        known = {f.key for f in section.fields}
        for key in data:
            if key not in known:
                self.problem(f"{prefix}.{key}", "unknown key (expected one of: "
                             + ", ".join(sorted(known)) + ")")
        out: dict[str, Any] = {}
        for f in section.fields:
            dotted = f"{prefix}.{f.key}"
            if f.key not in data:
                default = section.default(f.key)
                if default is dataclasses.MISSING:
                    self.problem(dotted, f"missing; expected {f.kind.value}")
                elif f.kind is FieldKind.PATH and default is not None:
                    out[f.key] = self.resolve(str(default))
                continue
            value = self.convert(dotted, f, data[f.key])
            if value is None:
                continue
            if f.check is not None and (expected := f.check(value)) is not None:
                shown = "(hidden)" if f.secret else redact(repr(data[f.key]))
                self.problem(dotted, f"expected {expected}, got {shown}")
                continue
            out[f.key] = value if f.to is None else f.to(value)
            if f.secret:
                self.secrets.add(value)
        return out

    def convert(self, key: str, f: Field, raw: Any) -> Any:
        """`raw` as its field's kind with `${ENV}` expanded, or None after a problem."""
        if f.kind in FROM_ENV and isinstance(raw, str) and ENV_REF.search(raw):
            return self.scalar_from_env(key, f.kind, raw)
        if not SHAPE_OK[f.kind](raw):
            self.problem(key, f"expected {f.kind.value}, got {type(raw).__name__}")
            return None
        match f.kind:
            case FieldKind.STR:
                return self.expand(key, raw)
            case FieldKind.PATH:
                text = self.expand(key, raw)
                return None if text is None else self.resolve(text)
            case FieldKind.BOOL | FieldKind.INT:
                return raw
            case FieldKind.NUMBER:
                return float(raw)
            case FieldKind.STRLIST:
                items = [self.expand(key, x) for x in raw]
                return None if None in items else tuple(items)
            case FieldKind.STRMAP:
                pairs = {k: self.expand(f"{key}.{k}", v) for k, v in raw.items()}
                return None if None in pairs.values() else pairs

    def scalar_from_env(self, key: str, kind: FieldKind, raw: str) -> Any:
        """`http_port = "${PORT}"`: a number or flag may come from the environment too."""
        text = self.expand(key, raw)
        if text is None:
            return None
        try:
            if kind is FieldKind.BOOL:
                if text.lower() not in ("true", "false"):
                    raise ValueError
                return text.lower() == "true"
            return int(text) if kind is FieldKind.INT else float(text)
        except ValueError:
            self.problem(key, f"expected {kind.value} from {raw}, got {text!r}")
            return None

    def resolve(self, text: str) -> Path:
        """Relative paths are relative to the config file, so a config works from any cwd."""
        p = Path(text).expanduser()
        return Path(os.path.normpath(p if p.is_absolute() else self.base / p))
