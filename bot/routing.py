"""Who is nudged by a message (R1.7, R2.1–R2.7). Pure: a message and a directory in, nudges out.

The rules, in the order they apply:

- The admin channel nudges nobody; its messages are commands (R6.4).
- A person's message in `dm-<name>` reaches worker `<name>` and nobody else (R1.7); an
  agent's message there (a lead's `crewbridge post dm-alice …`) reaches the worker too,
  plus whom it mentions (R2.6: like a person's message).
- A top-level message in a topic channel nudges the channel's lead (R2.1); a person's reply
  in a thread nudges the agent the thread belongs to instead (R12.2), and every nudge is
  answered in the message's thread.
- `@<agent>` nudges that agent, `@lead` the channel's lead, `@<channel>` that channel's
  lead; names are case-insensitive, `-` and `_` belong to names, trailing punctuation does
  not (R2.2). Mentions inside code spans and fences are code, not mentions.
- `@all` in a topic channel nudges its lead and every worker with an open task in that
  channel, wherever the worker lives (R2.3); in the general channel, every lead and every
  worker with an open task (R2.4).
- Each agent at most once per message, never the author (R2.5, R2.6).
- An agent's message that would continue a chain of `max_hops` agent-to-agent nudges
  nudges nobody and leaves one notice (R2.6); one that would nudge nobody anyway is no
  chain and leaves no notice.
- Unknown names get the sender one short notice (R2.2) — for people only: agents write
  `@decorators` and `@scope/packages`, and a notice per false mention would be noise.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from crewbridge.bot.model import ChannelKind, Message, Notice, Nudge, worker_of_dm

MENTION = re.compile(r"(?<![\w@./])@([A-Za-z0-9][A-Za-z0-9_-]*)")
CODE = re.compile(r"```.*?(?:```|\Z)|``.*?``|`[^`\n]*`", re.DOTALL)


@dataclass(frozen=True)
class Directory:
    """What routing needs to know about the crew, as plain data kept by `bot.crew.Crew`.

    `topics` are the channels that have a lead (the general channel among them); a lead is
    named after its channel. `workers` maps each known worker to the channels of its open
    tasks — the index `@all` needs, kept by task channel and not by where a worker lives.
    The crew hands routing a read-only view of its live index, so a task opened or finished
    costs one entry and a message costs nothing extra, however many workers there are.
    """

    general: str
    admin: str
    topics: frozenset[str]
    workers: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def kind_of(self, channel: str) -> ChannelKind:
        if channel == self.admin:
            return ChannelKind.ADMIN
        if channel == self.general:
            return ChannelKind.GENERAL
        if worker_of_dm(channel) is not None:
            return ChannelKind.DM
        return ChannelKind.TOPIC

    def is_agent(self, name: str) -> bool:
        return name in self.topics or name in self.workers


@dataclass(frozen=True)
class Routing:
    nudges: tuple[Nudge, ...] = ()
    notices: tuple[Notice, ...] = ()
    unknown: tuple[str, ...] = ()


def mentions(text: str) -> list[str]:
    """The names `@`-mentioned in `text`, lower-cased, in order, outside code."""
    prose = CODE.sub(" ", text)
    return [m.group(1).lower() for m in MENTION.finditer(prose)]


def nudge_text(msg: Message) -> str:
    """What the agent reads: who, on which platform, where — then the text (R2.7)."""
    return f"[{msg.author} via {msg.platform} in #{msg.channel}] {msg.text}"


NUDGE_HEADERS = (
    re.compile(r"\[(?P<author>[^\]]+?) via \S+ in #[^\]]*\] ?"),  # nudge_text's
    re.compile(r"\[task #\d+ from (?P<author>[^\]]+?) in #[^\]]*\] ?"),  # a task's first prompt
)


def split_nudge(text: str) -> tuple[str, str]:
    """(who wrote it, what they wrote) of a nudge's text; ('', text) without a header."""
    for header in NUDGE_HEADERS:
        if m := header.match(text):
            return m.group("author"), text[m.end():]
    return "", text


def route(msg: Message, d: Directory, max_hops: int = 8) -> Routing:
    kind = d.kind_of(msg.channel)
    if kind is ChannelKind.ADMIN:
        return Routing()
    targets: list[str] = []
    unknown: list[str] = []
    dm_worker = worker_of_dm(msg.channel)
    if dm_worker is not None:
        targets.append(dm_worker)
    if dm_worker is None or msg.author_is_agent:
        lead = msg.channel if kind is not ChannelKind.DM else None
        if lead is not None and msg.top_level:
            targets.append(lead)
        if msg.thread_agent is not None and not msg.author_is_agent:
            targets.append(msg.thread_agent)
        for name in mentions(msg.text):
            resolved = _resolve_mention(name, msg.channel, lead, kind, d)
            if resolved is None:
                unknown.append(name)
            targets.extend(resolved or ())

    own = msg.author if msg.author_is_agent else None
    targets = [a for a in dict.fromkeys(targets) if a != own]
    if msg.author_is_agent and msg.hops >= max_hops and targets:
        text = (f"Stopped a chain of {msg.hops} agent-to-agent messages here; "
                "a person needs to step in for it to go on.")
        return Routing(notices=(Notice(msg.channel, text),))
    hops = msg.hops + 1 if msg.author_is_agent else 0
    text = nudge_text(msg)
    nudges = [Nudge(agent, text, hops, msg.channel, msg.thread) for agent in targets]

    notices: tuple[Notice, ...] = ()
    if unknown and not msg.author_is_agent:
        names = ", ".join(f"@{n}" for n in dict.fromkeys(unknown))
        known = ", ".join(f"@{n}" for n in sorted(d.topics | set(d.workers)))
        notices = (Notice(msg.channel, f"No agent or channel named {names}. Known: {known}."),)
    return Routing(tuple(nudges), notices, tuple(dict.fromkeys(unknown)))


def _resolve_mention(name: str, channel: str, lead: str | None, kind: ChannelKind,
                     d: Directory) -> list[str] | None:
    """The agents one mention names; None when it names nobody."""
    if name == "all":
        if kind is ChannelKind.GENERAL:
            return sorted(d.topics) + sorted(w for w, chans in d.workers.items() if chans)
        if lead is None:  # @all in a dm channel: its worker is everyone there
            return [worker_of_dm(channel) or ""]
        return [lead, *sorted(w for w, chans in d.workers.items() if channel in chans)]
    if name == "lead":
        return [lead] if lead is not None else None
    for candidate in (name, name.rstrip("-_")):
        if d.is_agent(candidate):
            return [candidate]
    return None
