"""The console bridge: standard input and output, for trying the bot with no platform (R9.3).

Input lines (R11.3, R12.6):
  `#<channel> <text>`     post <text> in that channel as the local user
  `#<channel>/<n> <text>` reply in the channel's thread number <n>
  `/dm <worker> <text>`   write to a worker directly (its `dm-<worker>` channel)
  `/allow <n>`, `/deny <n> [reason]`, `/always <n>`  decide approval request <n> (R13.1)
Output: every post of every channel as `#<channel> <author>: <text>` (a post in a thread
as `#<channel>/<n> <author>: <text>`), further lines of a post indented by two spaces.
At end of input `eof` is set; the app then lets the turns in
progress finish and stops, which makes `printf '#general hi\\n' | crewbridge run` a
complete, scriptable run.

The console is bound to every channel, so its room id is simply the channel name, and a
thread's id on the console is its number.
Standard input is read by a daemon thread: that works for a terminal, a pipe and a
redirected file alike, and never keeps the process alive at exit.
"""

from __future__ import annotations

import asyncio
import getpass
import itertools
import re
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TextIO

from crewbridge.bridges.base import EventSink, Inbound, Post, ThreadRef

LINE = re.compile(r"#(?P<channel>[^\s/]+)(?:/(?P<thread>\d+))?\s*(?P<text>.*)"
                  r"|/dm\s+@?(?P<worker>\S+)\s*(?P<dm>.*)"
                  r"|(?P<decision>/(?:allow|deny|always)\s+\d+.*)", re.DOTALL)
USAGE = ("type `#<channel> <text>`, `#<channel>/<n> <text>`, `/dm <worker> <text>` or "
         "`/allow <n>` · `/deny <n> [reason]` · `/always <n>`")


def format_post(room: str, post: Post) -> str:
    """`#room author: first line` (`#room/n …` in thread n), further lines indented by two
    spaces."""
    where = f"#{room}/{post.thread.number}" if post.thread else f"#{room}"
    first, *rest = post.line.split("\n")
    return "\n".join([f"{where} {first}", *(f"  {line}" for line in rest)])


class ConsoleBridge:
    platform = "console"
    post_interval_s = 0.0
    edits_per_minute = None

    def __init__(self, stdin: TextIO | None = None, stdout: TextIO | None = None,
                 user: str | None = None):
        self._stdin = stdin or sys.stdin
        self._stdout = stdout or sys.stdout
        self.user = user or _login_name()
        self.interactive = self._stdin.isatty()
        self.eof = asyncio.Event()
        self._ids = itertools.count(1)
        self._run = uuid.uuid4().hex[:12]  # event ids unique across runs: the inbox dedups

    async def start(self, sink: EventSink) -> None:
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[str | None] = asyncio.Queue()

        def read() -> None:
            for raw in self._lines():
                loop.call_soon_threadsafe(lines.put_nowait, raw)
            loop.call_soon_threadsafe(lines.put_nowait, None)

        threading.Thread(target=read, name="console-stdin", daemon=True).start()
        self._consumer = asyncio.create_task(self._consume(lines, sink), name="console-in")

    def _lines(self) -> Iterator[str]:
        """Input lines; on a terminal through readline, so a line can be edited and earlier
        ones recalled with the arrow keys (R14.4)."""
        if not (self.interactive and self._stdin is sys.stdin):
            yield from self._stdin
            return
        import readline  # noqa: F401 (importing it gives input() editing and history)

        while True:
            try:
                yield input() + "\n"
            except EOFError:
                return

    async def _consume(self, lines: asyncio.Queue[str | None], sink: EventSink) -> None:
        while (raw := await lines.get()) is not None:
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            m = LINE.fullmatch(line.strip())
            if m is None:
                self._write(f"(console) {USAGE}")
                continue
            if m["decision"]:  # valid wherever it is typed: the request has a number
                room, text = "", m["decision"]
            else:
                room = m["channel"] or f"dm-{m['worker'].lower()}"
                text = m["text"] if m["channel"] else m["dm"]
            if not text.strip():
                self._write(f"(console) nothing to send to #{room}; {USAGE}")
                continue
            await sink(Inbound(platform=self.platform, room=room.lower(), sender="local",
                               sender_name=self.user, text=text,
                               event_id=f"console-{self._run}-{next(self._ids)}",
                               ts=time.time(), thread=m["thread"]))
        self.eof.set()

    async def resolve_room(self, ref: str) -> str:
        return ref.lstrip("#")

    async def send(self, room: str, post: Post, *, key: str,
                   maybe_sent: bool = False) -> str | None:
        self._write(format_post(room, post))
        return f"console-{self._run}-{next(self._ids)}"  # what an edit names (R13.3)

    async def edit(self, room: str, ref: str, post: Post) -> None:
        """A terminal cannot change what it printed: the new text is printed again."""
        self._write(format_post(room, post))

    async def delete(self, room: str, ref: str) -> None:
        return None

    async def react(self, room: str, ref: str, emoji: str, on: bool) -> None:
        return None

    async def tell(self, room: str, user: str, text: str, thread: ThreadRef | None) -> None:
        self._write(f"(console) {text}")

    async def typing(self, room: str, on: bool) -> None:
        return None

    def _write(self, text: str) -> None:
        self._stdout.write(text + "\n")
        self._stdout.flush()

    async def stop(self) -> None:
        task = getattr(self, "_consumer", None)
        if task is not None:
            task.cancel()


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "you"
