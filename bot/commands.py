"""Commands people type in rooms: tasks (R7.2) and admin commands (R6.4). Pure parsing.

Room commands start with `!` (`!task @alice fix it`, `!done 12`). In the admin channel the
`!` is optional (`status`, `reset webui`), since everything said there is meant for the bot.
An admin command typed anywhere else is recognised so that it can be refused, not
mistaken for a message to a lead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class AdminVerb(StrEnum):
    STATUS = "status"
    TASKS = "tasks"
    RESTART = "restart"
    STOP = "stop"
    RESET = "reset"
    AUTH_LOGIN = "auth-login"
    AUTH_CODE = "auth-code"  # type into the running login's prompt (R6.5)
    AUTH_CANCEL = "auth-cancel"
    QUEUE = "queue"
    DROP = "drop"
    USAGE = "usage"
    AUDIT = "audit"
    BUDGET = "budget"
    HELP = "help"


@dataclass(frozen=True)
class TaskCreate:
    assignee: str
    subject: str


@dataclass(frozen=True)
class TaskDone:
    task_id: int | None  # None: the task whose thread it was written in (R12.4)


@dataclass(frozen=True)
class StopTurn:
    """`!stop` (the agent of the thread or room it is written in) or `!stop @agent` (R13.6)."""

    agent: str | None


@dataclass(frozen=True)
class Admin:
    verb: AdminVerb
    agent: str | None = None
    which: int | None = None  # `drop`: the message's place in `queue`; None: all of them
    count: int | None = None  # `audit`: how many entries; None: the default
    amount: float | None = None  # `budget`: today's cap in USD
    code: str = ""  # `auth code`: what to type into the login's prompt

    def words(self) -> str:
        """The command as it is written: what the audit records (R13.9) — but never the
        code a login was given."""
        if self.verb == AdminVerb.AUTH_CODE:
            return "auth code [hidden]"
        args = (self.agent, "all" if self.verb == AdminVerb.DROP and self.which is None
                else self.which, self.count, self.amount)
        return " ".join([self.verb.replace("-", " "), *(str(a) for a in args if a is not None)])


@dataclass(frozen=True)
class Invalid:
    """Looked like a command but was not well formed; `usage` says how to write it."""

    usage: str


Command = TaskCreate | TaskDone | StopTurn | Admin | Invalid

AGENT_VERBS = ("restart", "stop", "reset", "queue")
PLAIN_VERBS = ("status", "tasks", "usage", "help")
USAGE = {
    "task": "!task @<worker> <subject>",
    "done": "!done [<task id>]",
    "stop-turn": "!stop [@<agent>]",
    "restart": "restart <agent>",
    "stop": "stop <agent>",
    "reset": "reset <agent>",
    "auth": "auth login | auth code <code> | auth cancel",
    "queue": "queue <agent>",
    "drop": "drop <agent> <n>|all",
    "audit": "audit [<n>]",
    "budget": "budget <channel> <usd>",
}
ADMIN_HELP = ("Admin commands: status · tasks · restart <agent> · stop <agent> · "
              "reset <agent> · queue <agent> · drop <agent> <n>|all · auth login · "
              "auth code <code> · auth cancel · usage · "
              "audit [<n>] · budget <channel> <usd> · help")


def parse(text: str, *, in_admin: bool) -> Command | None:
    """The command in `text`, or None when it is an ordinary message."""
    stripped = text.strip()
    bang = stripped.startswith("!")
    if not bang and not in_admin:
        return None
    words = stripped.lstrip("!").split()
    if not words:
        return None
    verb, args = words[0].lower(), words[1:]
    if verb == "task":
        m = re.fullmatch(r"!?task\s+@([A-Za-z0-9][\w-]*)[,:]?\s+(.+)", stripped,
                         re.DOTALL | re.IGNORECASE)
        return TaskCreate(m.group(1).lower(), m.group(2).strip()) if m else Invalid(USAGE["task"])
    if verb == "done":
        if not args:
            return TaskDone(None)
        ok = len(args) == 1 and re.fullmatch(r"#?[0-9]+", args[0]) is not None
        return TaskDone(int(args[0].lstrip("#"))) if ok else Invalid(USAGE["done"])
    if verb == "stop" and bang and not in_admin:
        if len(args) > 1:
            return Invalid(USAGE["stop-turn"])
        return StopTurn(args[0].lstrip("@").lower() if args else None)
    if verb in PLAIN_VERBS:
        return Admin(AdminVerb(verb))
    if verb in AGENT_VERBS:
        if len(args) != 1:
            return Invalid(USAGE[verb])
        return Admin(AdminVerb(verb), args[0].lstrip("@").lower())
    if verb == "drop":
        which = args[1].lower() if len(args) == 2 else ""
        if which != "all" and not re.fullmatch(r"#?[1-9][0-9]*", which):
            return Invalid(USAGE["drop"])
        return Admin(AdminVerb.DROP, args[0].lstrip("@").lower(),
                     None if which == "all" else int(which.lstrip("#")))
    if verb == "audit":
        if not args:
            return Admin(AdminVerb.AUDIT)
        ok = len(args) == 1 and re.fullmatch(r"[1-9][0-9]{0,3}", args[0]) is not None
        return Admin(AdminVerb.AUDIT, count=int(args[0])) if ok else Invalid(USAGE["audit"])
    if verb == "budget":
        ok = (len(args) == 2 and re.fullmatch(r"#?[a-z0-9][a-z0-9_-]*", args[0].lower())
              is not None and re.fullmatch(r"\$?[0-9]+(\.[0-9]+)?", args[1]) is not None)
        return (Admin(AdminVerb.BUDGET, args[0].lstrip("#").lower(),
                      amount=float(args[1].lstrip("$"))) if ok else Invalid(USAGE["budget"]))
    if verb == "auth":
        sub = [a.lower() for a in args[:1]]
        if sub == ["login"] and len(args) == 1:
            return Admin(AdminVerb.AUTH_LOGIN)
        if sub == ["cancel"] and len(args) == 1:
            return Admin(AdminVerb.AUTH_CANCEL)
        if sub == ["code"] and len(args) == 2:
            return Admin(AdminVerb.AUTH_CODE, code=args[1])
        return Invalid(USAGE["auth"])
    return Admin(AdminVerb.HELP) if in_admin else None


def is_admin_command(cmd: Command | None) -> bool:
    return isinstance(cmd, Admin) or (isinstance(cmd, Invalid) and cmd.usage in {
        USAGE[v] for v in (*AGENT_VERBS, "auth", "drop", "audit", "budget")})
