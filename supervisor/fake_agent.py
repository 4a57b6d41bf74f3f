"""A stand-in for the `claude` CLI that speaks its stream-json protocol (R10.1, R10.3).

crewbridge starts its agents as ``command -p --input-format stream-json --output-format
stream-json --verbose (--session-id <uuid> | --resume <id> | --resume <id> --fork-session
--session-id <uuid>) [--append-system-prompt <text>]``. This module accepts exactly that
command line (and ignores any other flag, such as the
``--permission-mode`` or ``--model`` the real CLI is given), reads one stream-json user
message per stdin line and writes events on stdout, one JSON object per line, flushed at
once, in the shapes the real CLI 2.1.330 prints (see ``tests/fixtures/claude/``). It exits
0 at end of input.

Its name comes from ``CREWBRIDGE_AGENT`` (default ``agent``). It is fast and can show every
failure mode on demand, so the demo and the tests can drive the supervisor through each
row of the spec from an ordinary chat message.

Directives, found anywhere in a user message (the first one wins):

=============================== ==========================================================
``(none)``                      echo: ``got it — `<text after the [header]>` `` (quoted as
                                code, so an echoed ``@name`` does not route again)
``fake:tool``                   text, Bash ``tool_use``, ``tool_result``, text, success
``fake:error``                  assistant event with ``"error": "server_error"`` (API Error:
                                500), then a result with ``is_error: true``, subtype success
``fake:error-late=<s>``         the same, sleeping ``s`` seconds between text and result
``fake:text-then-error=<s>``    a normal-looking text, sleep ``s``, then an error result
``fake:auth``                   the real not-logged-in turn (``authentication_failed``),
                                then exit 1
``fake:crash``                  one normal text, then exit 3 without a result
``fake:crash-now``              exit 3 at once
``fake:crash-once=<path>``      like ``fake:crash`` if ``path`` does not exist (creating
                                it), else echo: a turn that fails once and then works
``fake:rate-limited-once=<path>,<s>`` if ``path`` does not exist (creating it): a
                                ``rate_limit_event`` ``rejected`` resetting in ``s`` seconds,
                                then a ``rate_limit`` API error and an error result; else echo
``fake:hang``                   print nothing more, answer no control request and sleep
                                forever (SIGTERM still kills)
``fake:slow=<n>,<interval>``    ``n`` texts ``interval`` seconds apart, then success
``fake:stream=<n>,<interval>``  one text streamed in ``n`` chunks ``interval`` s apart and
                                printed whole at the end (as the real CLI prints a streamed
                                reply); interrupted, the part so far with ``"aborted": true``;
                                with ``--include-partial-messages`` a ``stream_event`` per chunk
``fake:ask=<Tool>:<words>``     a ``tool_use`` of ``<Tool>`` with ``{"command": <words,
                                underscores as spaces>}``, then (with ``--permission-prompt-tool
                                stdio``) a ``can_use_tool`` control request, waiting for the
                                answer: allow → ``tool_result`` and text ``ran <Tool>: <input>``;
                                deny → error ``tool_result`` of the message and text
                                ``denied: <message>``; deny with ``interrupt: true`` → the turn
                                ends interrupted. Without the flag: ``system``/
                                ``permission_denied`` and ``denied: <reason>``, as the CLI does
``fake:ask-safety=<Tool>:<words>`` the same, marked ``decision_reason_type: "safetyCheck"``
``fake:ask-no-always=<Tool>:<words>`` the same with ``suppress_always_allow_rule: true`` and
                                no ``addRules`` suggestion
``fake:flood=<n>``              ``n`` texts in separate assistant events, as fast as possible
``fake:big=<chars>``            one text of exactly ``chars`` characters, ~500-char paragraphs
``fake:say=<words_with_underscores>``  reply exactly that text, underscores as spaces
``fake:post=<channel>``         run ``crewbridge post --create <channel> "<name> posted via CLI"``
                                and say its exit status
``fake:task=<assignee>``        run ``crewbridge task create --assignee <assignee> "<rest>"``
``fake:burst=<n>,<channel>``     post ``burst 01`` … ``burst <n>`` to ``<channel>`` as fast as
                                the control socket takes them (as ``crewbridge post`` would)
``fake:post-as=<name>:<channel>`` run ``crewbridge post`` claiming to be ``<name>``
                                (``CREWBRIDGE_AGENT=<name>``): a hostile agent (R10.4)
``fake:garbage``                print a line that is not JSON, then echo as usual
``fake:env``                    reply with its whole environment, ``NAME=value`` a line (what
                                a careless or hostile agent would post, R10.5)
``fake:history``                reply ``history: `1. <text> | 2. <text>` `` (quoted as code):
                                the texts this session received before this turn, its
                                parent's first for a fork (R3.2, R12.3); ``history: (none)``
=============================== ==========================================================

Modes chosen by the environment (``FAKE_AGENT_MODE``), for start-time behaviour:

- ``crash-start``: exit 2 before reading stdin, with a message on stderr;
- ``auth``: every turn is the auth failure above, then exit 1;
- ``forget-sessions``: ``--resume <id>`` prints the real CLI's "No conversation found"
  error result (subtype ``error_during_execution``) at once and exits 1;
- ``exit-after-turn``: exit 0 after each turn's result;
- ``hang-start``: never answer anything (and never read stdin).

Every turn starts with a ``system``/``init`` event, as the real CLI's turns do in
stream-json input mode.

Sessions have a history, as the real CLI's do (R3.2, R12.3): every user message text a
session receives is appended, one JSON line, to ``<dir>/<session id>.jsonl`` (0600, in a
0700 directory) before the turn answers it, where ``<dir>`` is ``FAKE_AGENT_SESSIONS`` if
set, else ``.fake-agent-sessions`` under the working directory (the supervisor starts a
fork in its lead's directory, so the lead's history is found there). ``--resume <id>``
continues ``<id>``'s history; an id with no history there is resumed empty, not refused,
so a session started before histories existed (or elsewhere) resumes as it always did.
``--resume <id> --fork-session`` starts a new session (``--session-id`` if given, else a
fresh uuid) whose history begins as a copy of ``<id>``'s, which is left as it was; when
``<id>`` has no history the fork fails as the real CLI's does: the "No conversation found"
error result (in the new session) and exit 1. ``--resume`` with ``--session-id`` but no
``--fork-session`` is refused on stderr with exit 1, as Claude Code 2.1.332 refuses it.

``FAKE_AGENT_CREWBRIDGE=<path>`` names the ``crewbridge`` CLI that ``fake:post`` and
``fake:task`` run (default: the one beside this interpreter, else the one on PATH).

``FAKE_AGENT_REPLY=<text>`` makes every echo reply exactly ``<text>`` (two agents that
always mention each other make an endless chain, for the hop limit of R2.6).

``FAKE_AGENT_LOG=<path>`` appends one JSON line per received user message
(``agent``, ``session_id``, ``text``), so tests see what an agent received and in what order.

``FAKE_AGENT_STAMP=1`` ends every echo with `` [<pid>.<turn>]``, so a test can tell a message
answered twice (two stamps) from one answer posted twice (one stamp).

``FAKE_AGENT_DELAY=<min>,<max>`` makes every turn take a random ``min``–``max`` seconds before
it answers (real turns take seconds to minutes), so a kill or a stop lands mid-turn.

Like the real CLI, it reads stdin on a thread of its own (``supervisor.fake_control``), so
messages and control requests arrive while a turn runs. It speaks the control protocol as
Claude Code 2.1.332 does (R13.1, R13.6): ``initialize`` is answered; ``interrupt`` gets the
receipt ``{"still_queued": […]}`` at once, and a running turn stops where it stands (a
``fake:slow``, ``fake:stream`` or ``fake:ask`` turn, or one waiting ``FAKE_AGENT_DELAY``):
``[Request interrupted by user]`` (``… for tool use]`` while asking, after withdrawing the
request with ``control_cancel_request``), then a ``result`` with ``subtype:
error_during_execution``, ``is_error: true``, no ``result`` text, ``terminal_reason``
``aborted_streaming`` (``aborted_tools`` while asking) and the turn's ``user_message_uuids``;
the process goes on with the next message. At end of input after an interrupted last turn
it exits 1, as the real CLI does.

Every ``result`` carries ``total_cost_usd``, ``usage`` tokens and
``model_usage_since_last_result`` (this turn's ``costUSD``). As on the real CLI the total is
the *session's*: it goes on across ``--resume``, and a fork starts from its parent's total
(kept in the history file). ``FAKE_AGENT_COST=<usd>`` is what each turn that reached the
model costs (default 0; API errors and refused resumes cost nothing).

Each ``result`` lists the ``uuid`` of every user message the turn answered in
``user_message_uuids`` (R8.5). ``FAKE_AGENT_FOLD=1`` folds, as Claude Code 2.1.332 does, the
messages that arrived during a turn into the next turn (one turn, one answer, several uuids);
without it every message gets a turn of its own.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from crewbridge.supervisor.fake_control import Control, Interrupted

MODEL = "fake-1"
DIRECTIVE_RE = re.compile(r"fake:([a-z][a-z-]*)(?:=(\S*))?")
HEADER_RE = re.compile(r"^\s*\[[^\]]*\]\s*")
REDELIVERY_NOTE_RE = re.compile(r"^\s*\[crewbridge: [^\]]*\]\s*")  # R8.5: not echoed
SESSION_FILE_RE = re.compile(r"[^A-Za-z0-9._-]")
AUTH_TEXT = "Not logged in · Please run /login"
INTERRUPTED_TEXT = "[Request interrupted by user]"
INTERRUPTED_TOOL_TEXT = "[Request interrupted by user for tool use]"
REJECTED_TOOL_TEXT = (  # the tool_result of a tool use stopped by an interrupt, verbatim
    "The user doesn't want to proceed with this tool use. The tool use was rejected (eg. if "
    "it was a file edit, the new_string was NOT written to the file). STOP what you are doing "
    "and wait for the user to tell you how to proceed."
)
SERVER_ERROR_TEXT = "API Error: 500 Internal server error"


@dataclass
class Transcript:
    """A session's history: the user texts it received, in order, and its running cost,
    kept in `path` (one JSON line each) so that a later `--resume` or `--fork-session` finds
    them (the real CLI's total_cost_usd goes on across a resume, and a fork starts from its
    parent's); with no `path` (a bench's stand-in agent) only in memory."""

    path: Path | None = None
    texts: list[str] = field(default_factory=list)
    total_cost: float = 0.0

    @classmethod
    def open(cls, directory: Path, session_id: str) -> Transcript:
        """`session_id`'s transcript in `directory`, with whatever it already holds."""
        path = session_path(directory, session_id)
        return cls(path, *read_transcript(path))

    def exists(self) -> bool:
        return self.path is not None and self.path.exists()

    def fork(self, session_id: str) -> Transcript:
        """A new session's transcript that starts as a copy of this one, which is left as it
        was (a fork onto the parent's own id simply continues it, as the real CLI does)."""
        assert self.path is not None
        path = session_path(self.path.parent, session_id)
        if path == self.path:
            return self
        path.unlink(missing_ok=True)
        child = Transcript(path)
        child.append(self.texts)
        child.record_cost(self.total_cost)
        return child

    def append(self, texts: list[str]) -> None:
        self.texts.extend(texts)
        self._write([{"text": t} for t in texts])

    def record_cost(self, total: float) -> None:
        self.total_cost = total
        self._write([{"total_cost_usd": total}])

    def _write(self, entries: list[dict[str, Any]]) -> None:
        if self.path is None or not entries:
            return
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries)
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
        with os.fdopen(os.open(self.path, flags, stat.S_IRUSR | stat.S_IWUSR), "a",
                       encoding="utf-8") as f:
            f.write(lines)


def session_path(directory: Path, session_id: str) -> Path:
    """The file of `session_id` in `directory` (an id is a file name, never a path)."""
    return directory / f"{SESSION_FILE_RE.sub('_', session_id)}.jsonl"


def read_transcript(path: Path) -> tuple[list[str], float]:
    """The texts and the last running cost of a transcript file; a line cut short by a kill
    mid-write is skipped."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return [], 0.0
    texts: list[str] = []
    cost = 0.0
    for line in raw.splitlines():
        try:
            entry = json.loads(line)
            if "total_cost_usd" in entry:
                cost = float(entry["total_cost_usd"])
            else:
                texts.append(str(entry["text"]))
        except (ValueError, KeyError, TypeError):
            continue
    return texts, cost


def sessions_dir() -> Path:
    """Where histories are kept (made 0700 if missing): `FAKE_AGENT_SESSIONS`, else
    `.fake-agent-sessions` in the working directory, as the real CLI keeps them per project."""
    directory = Path(os.environ.get("FAKE_AGENT_SESSIONS") or ".fake-agent-sessions")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


@dataclass
class Agent:
    """One fake session: where it writes, who it is, what it was told and how far it got."""

    name: str
    session_id: str
    out: Any = field(default=sys.stdout)
    transcript: Transcript = field(default_factory=Transcript)
    earlier: list[str] = field(default_factory=list)  # texts received before this turn
    turns: int = 0
    answering: list[str] = field(default_factory=list)  # uuids of the current turn's messages
    started: float = field(default_factory=time.monotonic)
    control: Control | None = None  # stdin; None when a bench drives `handle` itself
    ask_on_stdio: bool = False  # --permission-prompt-tool stdio
    partial: bool = False  # --include-partial-messages: a `stream_event` per streamed chunk
    cost_per_turn: float = 0.0
    interrupted_last: bool = False  # the last turn ended interrupted (see `main`)
    prompt_chars: int = 0  # this turn's, for its usage
    output_chars: int = 0
    _emit_lock: threading.Lock = field(default_factory=threading.Lock)

    # --- waiting -------------------------------------------------------------------------

    def pause(self, seconds: float) -> None:
        """Sleep `seconds`; raise `Interrupted` as soon as the turn is interrupted (also one
        interrupted before it began, with `seconds` 0)."""
        if self.control is None:
            time.sleep(seconds)
        else:
            self.control.pause(seconds)

    # --- writing events ------------------------------------------------------------------

    def emit(self, event: dict[str, Any]) -> None:
        """Write one event as one line and flush it, like the real CLI does (the stdin
        thread writes control responses too, hence the lock)."""
        line = json.dumps(event, ensure_ascii=False, separators=(",", ":")) + "\n"
        with self._emit_lock:
            self.out.write(line)
            self.out.flush()

    def init(self) -> None:
        """`system`/`init` at the start of every turn, as Claude Code 2.1.330 prints it in
        stream-json input mode (not only once per process)."""
        self.emit(
            {
                "type": "system",
                "subtype": "init",
                "cwd": os.getcwd(),
                "session_id": self.session_id,
                "tools": ["Bash", "Read", "Edit", "Write"],
                "mcp_servers": [],
                "model": MODEL,
                "permissionMode": "default",
                "slash_commands": [],
                "apiKeySource": "none",
                "claude_code_version": "fake",
                "output_style": "default",
                "uuid": _uuid(),
            }
        )

    def assistant(
        self, *blocks: dict[str, Any], error: str | None = None, aborted: bool = False
    ) -> None:
        """An `assistant` event; with `error`, the synthetic API-error shape (R10.2); with
        `aborted`, the part of a streamed reply an interrupt cut short (R13.6)."""
        self.output_chars += sum(len(json.dumps(b)) for b in blocks)
        event: dict[str, Any] = {
            "type": "assistant",
            "message": {
                "id": f"msg_{uuid.uuid4().hex[:24]}",
                "type": "message",
                "role": "assistant",
                "model": "<synthetic>" if error else MODEL,
                "content": list(blocks),
                "stop_reason": "stop_sequence" if error else None,
                "stop_sequence": "" if error else None,
                "usage": {"input_tokens": 0 if error else 5, "output_tokens": 0 if error else 1},
                "context_management": None,
            },
            "parent_tool_use_id": None,
            "session_id": self.session_id,
            "uuid": _uuid(),
        }
        if error:
            event["error"] = error
            event["is_api_error_message"] = True
        if aborted:
            event["aborted"] = True
        self.emit(event)

    def user_text(self, text: str) -> None:
        """A `user` event the CLI writes itself, such as ``[Request interrupted by user]``."""
        self.emit(
            {
                "type": "user",
                "message": {"role": "user", "content": [{"type": "text", "text": text}]},
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": _uuid(),
            }
        )

    def text(self, text: str) -> None:
        self.assistant({"type": "text", "text": text})

    def tool_result(self, tool_id: str, content: str, *, is_error: bool = False) -> None:
        self.emit(  # the real CLI's `tool_use_result` is "Error: <content>" for an error
            {
                "type": "user",
                "message": {
                    "role": "user",
                    "content": [
                        {
                            "tool_use_id": tool_id,
                            "type": "tool_result",
                            "content": content,
                            "is_error": is_error,
                        }
                    ],
                },
                "parent_tool_use_id": None,
                "session_id": self.session_id,
                "uuid": _uuid(),
                "tool_use_result": {"stdout": content, "stderr": "", "interrupted": False},
            }
        )

    def result(
        self,
        text: str | None,
        *,
        is_error: bool = False,
        subtype: str = "success",
        errors: list[str] | None = None,
        num_turns: int = 1,
        billed: bool = True,
        terminal_reason: str = "completed",
        denials: list[dict[str, Any]] | None = None,
    ) -> None:
        """The `result` event that ends a turn. Judge it by `is_error`, not `subtype`.
        A `billed` turn (one that reached the model) adds `cost_per_turn` to the process's
        running `total_cost_usd`; its `usage` counts about four characters a token."""
        usage = {"input_tokens": 0, "output_tokens": 0}
        cost = self.cost_per_turn if billed else 0.0
        total = round(self.transcript.total_cost + cost, 10)
        if billed:
            self.transcript.record_cost(total)
            usage = {"input_tokens": max(1, self.prompt_chars // 4),
                     "output_tokens": max(1, self.output_chars // 4)}
        interrupted = self.interrupted_last = terminal_reason != "completed"
        event: dict[str, Any] = {
            "type": "result",
            "subtype": subtype,
            "is_error": is_error,
            "duration_ms": int((time.monotonic() - self.started) * 1000),
            "duration_api_ms": 0,
            "num_turns": num_turns,
            "stop_reason": None if interrupted else "stop_sequence" if is_error else "end_turn",
            "session_id": self.session_id,
            "total_cost_usd": total,
            "usage": usage,
            "modelUsage": {MODEL: {"inputTokens": usage["input_tokens"],
                                   "outputTokens": usage["output_tokens"], "costUSD": total}},
            "model_usage_since_last_result": {MODEL: {"inputTokens": usage["input_tokens"],
                                                      "outputTokens": usage["output_tokens"],
                                                      "costUSD": cost}},
            "permission_denials": list(denials or []),
            "terminal_reason": terminal_reason,
            "user_message_uuids": list(self.answering),
            "uuid": _uuid(),
        }
        if text is not None:
            event["result"] = text
        if errors is not None:
            event["errors"] = errors
        self.emit(event)

    # --- composite turns -----------------------------------------------------------------

    def api_error(self, kind: str, text: str) -> None:
        self.assistant({"type": "text", "text": text}, error=kind)

    def auth_failure(self) -> NoReturn:
        """Exactly the real CLI's not-logged-in turn, then exit 1 (R10.2)."""
        self.api_error("authentication_failed", AUTH_TEXT)
        self.result(AUTH_TEXT, is_error=True, billed=False)
        sys.exit(1)

    def interrupted(self, *, tools: bool = False, denials: list[dict[str, Any]] | None = None
                    ) -> None:
        """The end of a turn stopped by an interrupt (R13.6): Claude Code 2.1.332's line,
        then its error result (no `result` text; the turn's uuids still listed)."""
        self.user_text(INTERRUPTED_TOOL_TEXT if tools else INTERRUPTED_TEXT)
        self.result(
            None,
            is_error=True,
            subtype="error_during_execution",
            errors=["[ede_diagnostic] result_type=user last_content_type=n/a stop_reason="
                    + ("tool_use" if tools else "null")],
            num_turns=2,
            terminal_reason="aborted_tools" if tools else "aborted_streaming",
            denials=denials,
        )


# --- directive handlers --------------------------------------------------------------------

Handler = Callable[[Agent, str, str], None]  # (agent, directive argument, message body)


def quoted(text: str) -> str:
    """`text` as markdown code, so an echoed `@name` is not a mention that routes again."""
    if "\n" in text or "`" in text:
        return f"\n```\n{text}\n```"
    return f"`{text}`"


def do_echo(agent: Agent, _arg: str, body: str) -> None:
    reply = os.environ.get("FAKE_AGENT_REPLY") or f"got it — {quoted(body)}"
    if os.environ.get("FAKE_AGENT_STAMP") == "1":
        reply += f" [{os.getpid()}.{agent.turns}]"
    agent.text(reply)
    agent.result(reply)


def do_tool(agent: Agent, _arg: str, _body: str) -> None:
    tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
    agent.text(f"{agent.name}: let me check.")
    agent.assistant(
        {
            "type": "tool_use",
            "id": tool_id,
            "name": "Bash",
            "input": {"command": "echo fake-tool-output", "description": "Say something"},
        }
    )
    agent.tool_result(tool_id, "fake-tool-output")
    reply = f"{agent.name}: the tool said fake-tool-output"
    agent.text(reply)
    agent.result(reply, num_turns=2)


RATE_LIMIT_TEXT = "API Error: Request rejected (429) · usage limit reached"


def do_error(agent: Agent, arg: str, _body: str) -> None:
    agent.api_error("server_error", SERVER_ERROR_TEXT)
    if arg:
        time.sleep(_float(arg))
    agent.result(SERVER_ERROR_TEXT, is_error=True, billed=False)


def do_text_then_error(agent: Agent, arg: str, _body: str) -> None:
    agent.text(f"{agent.name}: this looks fine but the turn will fail")
    time.sleep(_float(arg))
    agent.result(
        "fake: turn failed after text",
        is_error=True,
        subtype="error_during_execution",
        errors=["fake: turn failed after text"],
    )


def do_auth(agent: Agent, _arg: str, _body: str) -> None:
    agent.auth_failure()


def do_crash(agent: Agent, _arg: str, _body: str) -> None:
    agent.text(f"{agent.name}: working on it")
    print("fake-agent: crashing mid-turn", file=sys.stderr, flush=True)
    sys.exit(3)


def do_crash_once(agent: Agent, arg: str, body: str) -> None:
    flag = Path(arg)
    if flag.exists():
        do_echo(agent, arg, body)
        return
    flag.touch()
    do_crash(agent, arg, body)


def do_rate_limited_once(agent: Agent, arg: str, body: str) -> None:
    path, _, seconds = arg.partition(",")
    flag = Path(path)
    if flag.exists():
        do_echo(agent, arg, body)
        return
    flag.touch()
    agent.emit({"type": "rate_limit_event", "session_id": agent.session_id,
                "rate_limit_info": {"status": "rejected",
                                    "resetsAt": int(time.time() + _float(seconds or "60"))}})
    agent.api_error("rate_limit", RATE_LIMIT_TEXT)
    agent.result(RATE_LIMIT_TEXT, is_error=True, billed=False)


def do_crash_now(_agent: Agent, _arg: str, _body: str) -> None:
    print("fake-agent: crashing", file=sys.stderr, flush=True)
    sys.exit(3)


def do_hang(_agent: Agent, _arg: str, _body: str) -> None:
    hang()  # deaf to control requests too: see `handle`


def do_slow(agent: Agent, arg: str, _body: str) -> None:
    count_s, _, interval_s = arg.partition(",")
    count = int(count_s or "3")
    interval = _float(interval_s or "0.5")
    for i in range(1, count + 1):
        if i > 1:
            agent.pause(interval)
        agent.text(f"{agent.name}: part {i} of {count}")
    agent.result(f"{agent.name}: done after {count} parts", num_turns=count)


def do_stream(agent: Agent, arg: str, _body: str) -> None:
    count_s, _, interval_s = arg.partition(",")
    count = int(count_s or "10")
    interval = _float(interval_s or "0.5")
    chunks: list[str] = []
    try:
        for i in range(1, count + 1):
            if i > 1:
                agent.pause(interval)
            chunks.append(f"chunk {i} of {count}. ")
            if agent.partial:
                agent.emit({"type": "stream_event", "session_id": agent.session_id,
                            "event": {"type": "content_block_delta", "index": 0,
                                      "delta": {"type": "text_delta", "text": chunks[-1]}}})
    except Interrupted:
        agent.assistant({"type": "text", "text": "".join(chunks)}, aborted=True)
        raise
    text = f"{agent.name}: " + "".join(chunks).strip()
    agent.text(text)
    agent.result(text)


@dataclass(frozen=True)
class AskKind:
    """What a `fake:ask*` directive marks its `can_use_tool` request with."""

    safety_check: bool = False
    no_always: bool = False


ASK_KINDS = {"ask": AskKind(), "ask-safety": AskKind(safety_check=True),
             "ask-no-always": AskKind(no_always=True)}


def can_use_tool(agent: Agent, tool: str, tool_input: dict[str, Any], tool_id: str,
                 kind: AskKind) -> dict[str, Any]:
    """The control request Claude Code 2.1.332 writes to ask for `tool` (R13.1)."""
    command = str(tool_input.get("command", ""))
    suggestions: list[dict[str, Any]] = [
        {"type": "addDirectories", "directories": [os.getcwd()], "destination": "session"},
        {"type": "setMode", "mode": "acceptEdits", "destination": "session"},
    ]
    if not kind.no_always:
        suggestions.insert(0, {"type": "addRules",
                               "rules": [{"toolName": tool, "ruleContent": command}],
                               "behavior": "allow", "destination": "localSettings"})
    request: dict[str, Any] = {
        "subtype": "can_use_tool",
        "tool_name": tool,
        "display_name": tool,
        "input": tool_input,
        "description": tool_input.get("description", ""),
        "permission_suggestions": suggestions,
        "tool_use_id": tool_id,
    }
    if kind.safety_check:
        request["decision_reason_type"] = "safetyCheck"
        request["decision_reason"] = f"{tool} touches a path that needs a safety check"
    if kind.no_always:
        request["suppress_always_allow_rule"] = True
    return {"type": "control_request", "request_id": _uuid(), "request": request}


def do_ask(agent: Agent, arg: str, _body: str, kind: AskKind = AskKind()) -> None:
    tool, _, words = arg.partition(":")
    tool = tool or "Bash"
    tool_input = {"command": words.replace("_", " "), "description": f"{agent.name} asks"}
    tool_id = f"toolu_{uuid.uuid4().hex[:24]}"
    agent.assistant({"type": "tool_use", "id": tool_id, "name": tool, "input": tool_input})
    denial = {"tool_name": tool, "tool_use_id": tool_id, "tool_input": tool_input}
    if not agent.ask_on_stdio or agent.control is None:
        reason = f"{tool} needs approval, and no one can be asked in this mode."
        agent.emit({"type": "system", "subtype": "permission_denied", "tool_name": tool,
                    "tool_use_id": tool_id, "message": reason, "uuid": _uuid(),
                    "session_id": agent.session_id})
        finish_denied(agent, tool_id, reason, denial)
        return
    try:
        answer = agent.control.ask(can_use_tool(agent, tool, tool_input, tool_id, kind))
    except Interrupted:
        agent.tool_result(tool_id, REJECTED_TOOL_TEXT, is_error=True)
        agent.interrupted(tools=True, denials=[denial])
        return
    decision = answer.get("response") or {}
    if answer.get("subtype") == "success" and decision.get("behavior") == "allow":
        ran = decision.get("updatedInput") or tool_input
        output = f"ran {tool}: {ran.get('command', json.dumps(ran))}"
        agent.tool_result(tool_id, output)
        agent.text(output)
        agent.result(output, num_turns=2)
    elif decision.get("interrupt"):
        agent.tool_result(tool_id, REJECTED_TOOL_TEXT, is_error=True)
        agent.interrupted(tools=True, denials=[denial])
    else:
        finish_denied(agent, tool_id, str(decision.get("message") or answer.get("error")
                                          or "denied"), denial)


def finish_denied(agent: Agent, tool_id: str, message: str, denial: dict[str, Any]) -> None:
    """A refused tool use: the model is told (an error tool_result) and the turn goes on."""
    agent.tool_result(tool_id, message, is_error=True)
    text = f"denied: {message}"
    agent.text(text)
    agent.result(text, num_turns=2, denials=[denial])


def do_flood(agent: Agent, arg: str, _body: str) -> None:
    count = int(arg or "100")
    for i in range(1, count + 1):
        agent.text(f"{agent.name}: flood {i} of {count}")
    agent.result(f"{agent.name}: flooded {count}")


def do_big(agent: Agent, arg: str, _body: str) -> None:
    text = big_text(int(arg or "10000"))
    agent.text(text)
    agent.result(text)


def do_say(agent: Agent, arg: str, _body: str) -> None:
    text = arg.replace("_", " ")
    agent.text(text)
    agent.result(text)


def do_post(agent: Agent, arg: str, _body: str) -> None:
    status = run_crewbridge(["post", "--create", arg, f"{agent.name} posted via CLI"])
    reply = f"{agent.name}: crewbridge post {arg} exited {status}"
    agent.text(reply)
    agent.result(reply)


def do_burst(agent: Agent, arg: str, _body: str) -> None:
    count_s, _, channel = arg.partition(",")
    count = int(count_s or "10")
    width = max(2, len(str(count)))
    failed = 0
    for i in range(1, count + 1):
        reply = control_request({"op": "post", "channel": channel,
                                 "text": f"burst {i:0{width}d}"})
        failed += not reply.get("ok")
    text = f"{agent.name}: {count - failed} of {count} posts sent"
    agent.text(text)
    agent.result(text)


def do_post_as(agent: Agent, arg: str, _body: str) -> None:
    name, _, channel = arg.partition(":")
    status = run_crewbridge(["post", channel, f"{name} says hello (really {agent.name})"],
                            env={"CREWBRIDGE_AGENT": name})
    reply = f"{agent.name}: crewbridge post as {name} exited {status}"
    agent.text(reply)
    agent.result(reply)


def do_task(agent: Agent, arg: str, body: str) -> None:
    match = re.search(r"fake:task=\S*\s*(.*)", body, re.DOTALL)
    subject = (match.group(1) if match else "").strip() or "a task"
    status = run_crewbridge(["task", "create", "--assignee", arg, subject])
    reply = f"{agent.name}: crewbridge task create for {arg} exited {status}"
    agent.text(reply)
    agent.result(reply)


def do_garbage(agent: Agent, arg: str, body: str) -> None:
    agent.out.write("this line is not JSON {\n")
    agent.out.flush()
    do_echo(agent, arg, body)


def do_env(agent: Agent, _arg: str, _body: str) -> None:
    text = "\n".join(f"{name}={value}" for name, value in sorted(os.environ.items()))
    agent.text(text)
    agent.result(text)


def do_history(agent: Agent, _arg: str, _body: str) -> None:
    entries = [f"{i}. {' '.join(t.split())}" for i, t in enumerate(agent.earlier, 1)]
    text = f"history: {quoted(' | '.join(entries))}" if entries else "history: (none)"
    agent.text(text)
    agent.result(text)


DIRECTIVES: dict[str, Handler] = {
    "tool": do_tool,
    "error": do_error,
    "error-late": do_error,
    "text-then-error": do_text_then_error,
    "auth": do_auth,
    "crash": do_crash,
    "crash-now": do_crash_now,
    "crash-once": do_crash_once,
    "rate-limited-once": do_rate_limited_once,
    "hang": do_hang,
    "slow": do_slow,
    "stream": do_stream,
    **{name: (lambda a, arg, body, k=kind: do_ask(a, arg, body, k))
       for name, kind in ASK_KINDS.items()},
    "flood": do_flood,
    "big": do_big,
    "say": do_say,
    "post": do_post,
    "post-as": do_post_as,
    "burst": do_burst,
    "task": do_task,
    "garbage": do_garbage,
    "env": do_env,
    "history": do_history,
}


# --- helpers -------------------------------------------------------------------------------


def _uuid() -> str:
    return str(uuid.uuid4())


def _float(value: str) -> float:
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0


def think(agent: Agent) -> None:
    """Take as long as FAKE_AGENT_DELAY says before answering (no delay without it); an
    interrupt cuts it short."""
    low, _, high = os.environ.get("FAKE_AGENT_DELAY", "").partition(",")
    agent.pause(random.uniform(_float(low), _float(high or low)) if low else 0)


def hang() -> NoReturn:
    """Sleep forever; SIGTERM keeps its default action, so the process still dies on it."""
    while True:
        time.sleep(3600)


def big_text(chars: int) -> str:
    """Exactly `chars` characters of prose in paragraphs of about 500 characters."""
    words = ["the", "quick", "brown", "fox", "jumps", "over", "the", "lazy", "dog", "and", "ships"]
    paragraphs: list[str] = []
    total = 0
    n = 0
    while total < chars:
        n += 1
        para = f"Paragraph {n}:"
        i = 0
        while len(para) < 495:
            para += " " + words[i % len(words)]
            i += 1
        para += "."
        paragraphs.append(para)
        total += len(para) + 2
    return "\n\n".join(paragraphs)[:chars]


def message_text(message: dict[str, Any]) -> str:
    """The text of a stream-json user message: a string or a list of text blocks."""
    content = message.get("message", {}).get("content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(b.get("text", ""))
            for b in content
            if isinstance(b, dict) and b.get("type") == "text"
        )
    return str(content)


def crewbridge_command() -> list[str]:
    """The `crewbridge` CLI: `FAKE_AGENT_CREWBRIDGE` if set (tests), else the one beside this
    interpreter (the project's venv), else the one on PATH."""
    override = os.environ.get("FAKE_AGENT_CREWBRIDGE")
    if override:
        return [override]
    beside = Path(sys.executable).parent / "crewbridge"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("crewbridge")
    return [found] if found else ["crewbridge"]


def run_crewbridge(args: list[str], env: dict[str, str] | None = None) -> int | str:
    """Run the crewbridge CLI as this agent would (with `env` on top of its own); return its
    exit status (or why it failed)."""
    try:
        done = subprocess.run(
            [*crewbridge_command(), *args],
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"error ({type(exc).__name__})"
    if done.stderr:
        sys.stderr.write(done.stderr)
        sys.stderr.flush()
    return done.returncode


def control_request(payload: dict[str, Any]) -> dict[str, Any]:
    """One request on the bot's control socket, with this agent's token (R10.4)."""
    request = {**payload, "token": os.environ.get("CREWBRIDGE_TOKEN", "")}
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(30)
            s.connect(os.environ.get("CREWBRIDGE_SOCKET", ""))
            s.sendall(json.dumps(request).encode() + b"\n")
            return json.loads(s.makefile("rb").readline() or b"{}")
    except (OSError, ValueError) as exc:
        return {"ok": False, "error": str(exc)}


def log_received(agent: Agent, text: str) -> None:
    path = os.environ.get("FAKE_AGENT_LOG")
    if not path:
        return
    line = json.dumps({"agent": agent.name, "session_id": agent.session_id, "text": text})
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def handle(agent: Agent, messages: list[dict[str, Any]], mode: str) -> None:
    """Run one turn for the messages it answers; the first one's directive decides it."""
    agent.turns += 1
    agent.answering = [str(m["uuid"]) for m in messages if m.get("uuid")]
    texts = [message_text(m) for m in messages]
    agent.prompt_chars = sum(len(t) for t in texts)
    agent.output_chars = 0
    for text in texts:
        log_received(agent, text)
    agent.earlier = list(agent.transcript.texts)
    agent.transcript.append(texts)  # kept before answering, as the real CLI does
    text = "\n\n".join(texts)
    body = HEADER_RE.sub("", REDELIVERY_NOTE_RE.sub("", text, count=1), count=1)
    handler: Handler = do_echo
    arg = ""
    for match in DIRECTIVE_RE.finditer(text):
        if match.group(1) in DIRECTIVES:
            handler, arg = DIRECTIVES[match.group(1)], match.group(2) or ""
            break
    if handler is do_hang and agent.control is not None:
        agent.control.deaf = True  # before init: no interrupt after it is answered
    agent.init()
    try:
        think(agent)
        if mode == "auth":
            agent.auth_failure()
        handler(agent, arg, body)
    except Interrupted:
        agent.interrupted()


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags crewbridge gives the real CLI; anything else is ignored."""
    parser = argparse.ArgumentParser(prog="crewbridge-fake-agent", allow_abbrev=False)
    parser.add_argument("-p", "--print", action="store_true")
    parser.add_argument("--input-format", default="text")
    parser.add_argument("--output-format", default="text")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--session-id")
    parser.add_argument("--resume", "-r")
    parser.add_argument("--fork-session", action="store_true")
    parser.add_argument("--append-system-prompt", default="")
    parser.add_argument("--permission-prompt-tool")
    parser.add_argument("--include-partial-messages", action="store_true")
    args, _unknown = parser.parse_known_args(argv)
    return args


def no_conversation(agent: Agent, resume: str) -> NoReturn:
    """The real CLI's answer to a resume (or fork) of a session it does not have (R4.10)."""
    message = f"No conversation found with session ID: {resume}"
    agent.result(
        None, is_error=True, subtype="error_during_execution", errors=[message], num_turns=0,
        billed=False,
    )
    print(message, file=sys.stderr, flush=True)
    sys.exit(1)


def open_session(agent: Agent, args: argparse.Namespace) -> None:
    """Give `agent` its history: its own (fresh or resumed) or, for a fork, a copy of the
    parent's; a fork of a session with no history fails as the real CLI's does."""
    directory = sessions_dir()
    if args.resume and args.fork_session:
        parent = Transcript.open(directory, args.resume)
        if not parent.exists():
            no_conversation(agent, args.resume)
        agent.transcript = parent.fork(agent.session_id)
    else:
        agent.transcript = Transcript.open(directory, agent.session_id)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    mode = os.environ.get("FAKE_AGENT_MODE", "")
    name = os.environ.get("CREWBRIDGE_AGENT") or "agent"
    if args.resume and args.session_id and not args.fork_session:
        print("Error: --session-id with --continue or --resume also needs --fork-session.",
              file=sys.stderr, flush=True)
        sys.exit(1)
    forking = bool(args.resume and args.fork_session)
    session_id = (args.session_id or _uuid()) if forking else (
        args.resume or args.session_id or _uuid())
    agent = Agent(name=name, session_id=session_id,
                  ask_on_stdio=args.permission_prompt_tool == "stdio",
                  partial=args.include_partial_messages,
                  cost_per_turn=_float(os.environ.get("FAKE_AGENT_COST", "0")))

    if mode == "crash-start":
        print(f"fake-agent {name}: crash at start (FAKE_AGENT_MODE=crash-start)", file=sys.stderr)
        sys.exit(2)
    if mode == "hang-start":
        hang()
    if mode == "forget-sessions" and args.resume:
        no_conversation(agent, args.resume)
    open_session(agent, args)

    agent.control = control = Control(sys.stdin, agent.emit)
    fold = os.environ.get("FAKE_AGENT_FOLD") == "1"
    try:
        while (messages := control.next_turn(fold)) is not None:
            handle(agent, messages, mode)
            control.end_turn()
            if mode == "exit-after-turn":
                sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        # The reader went away: nothing more can be said.
        os._exit(0)
    sys.exit(1 if agent.interrupted_last else 0)  # 2.1.332 exits 1 after an interrupted turn


if __name__ == "__main__":
    main()
