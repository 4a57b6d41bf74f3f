"""The fake agent's stdin: user messages and Claude Code's control protocol (R13.1, R13.6).

The real CLI reads stdin on a thread of its own, so messages and control requests arrive
while a turn runs, and it answers control requests at once, turn or no turn. This module is
that reader for `supervisor.fake_agent`, mirroring what Claude Code 2.1.332 was seen to do
(/work/wt/CLI-FACTS.md, "control protocol"):

- ``initialize`` is answered, with or without ``--permission-prompt-tool stdio``;
- ``interrupt`` gets the receipt ``{"still_queued": [<uuids of messages not yet started>]}``
  at once; a running turn then ends interrupted, and a pending ``can_use_tool`` request is
  first withdrawn with ``control_cancel_request`` (which the CLI writes before the receipt);
  with no turn running the receipt is all;
- a ``control_response`` answers the pending ``can_use_tool`` request with its id; any other
  (late, withdrawn, unknown) is ignored;
- any other control request gets the CLI's error response for a subtype it does not know
  (``"error_code": "unsupported_request"``); the real CLI also knows ``get_usage``,
  ``set_permission_mode`` and more, the fake agent does not.

The turn's side asks (`ask`) and waits (`pause`); both raise `Interrupted` when the turn was
interrupted, so a directive handler stops where it stands.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

Emit = Callable[[dict[str, Any]], None]


class Subtype(StrEnum):
    """The control requests the fake agent knows."""

    INITIALIZE = "initialize"
    INTERRUPT = "interrupt"
    CAN_USE_TOOL = "can_use_tool"


class Interrupted(Exception):
    """The running turn was interrupted (the receipt has already been written)."""


@dataclass
class PendingAsk:
    """A `can_use_tool` request written to stdout and not yet answered."""

    request_id: str
    answer: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)


def success(request_id: str, response: dict[str, Any]) -> dict[str, Any]:
    """A `control_response` in the real CLI's shape."""
    return {"type": "control_response",
            "response": {"subtype": "success", "request_id": request_id, "response": response}}


def initialize_response(running: bool) -> dict[str, Any]:
    """The part of 2.1.332's `initialize` answer a host may read (it sends no
    `pending_permission_requests` when none are pending)."""
    return {
        "commands": [],
        "agents": [],
        "output_style": "default",
        "models": [],
        "account": {"tokenSource": "none", "apiKeySource": "none", "apiProvider": "firstParty"},
        "pid": os.getpid(),
        "claude_code_version": "fake",
        "current_permission_mode": "default",
        "session_state": "running" if running else "idle",
    }


class Control:
    """stdin, read by a thread of its own: user messages queue up for the next turn,
    control requests are answered at once."""

    def __init__(self, stream: Any, emit: Emit) -> None:
        self._emit = emit
        self._state = threading.Condition()
        self._messages: deque[dict[str, Any] | None] = deque()
        self._running = False
        self._interrupt = threading.Event()
        self._interrupt_next = False  # an interrupt came before the turn's first message
        self._ask: PendingAsk | None = None
        self.deaf = False  # a hung agent answers nothing, control requests included
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    # --- the reader thread ---------------------------------------------------------------

    def _read(self, stream: Any) -> None:
        try:
            for raw in stream:
                line = raw.strip()
                if not line:
                    continue
                try:
                    message = json.loads(line)
                except json.JSONDecodeError:
                    print(f"fake-agent: ignoring a line that is not JSON: {line[:80]}",
                          file=sys.stderr, flush=True)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        finally:
            with self._state:
                self._messages.append(None)  # end of input
                self._state.notify_all()

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "user":
            with self._state:
                self._messages.append(message)
                self._state.notify_all()
        elif kind == "control_request" and not self.deaf:
            self._request(str(message.get("request_id", "")), message.get("request") or {})
        elif kind == "control_response":
            self._response(message.get("response") or {})

    def _request(self, request_id: str, request: dict[str, Any]) -> None:
        subtype = request.get("subtype")
        if subtype == Subtype.INTERRUPT:
            self._interrupt_turn(request_id)
        elif subtype == Subtype.INITIALIZE:
            with self._state:
                running = self._running
            self._emit(success(request_id, initialize_response(running)))
        else:
            self._emit({"type": "control_response",
                        "response": {"subtype": "error", "request_id": request_id,
                                     "error": f"Unsupported control request subtype: {subtype}",
                                     "error_code": "unsupported_request"}})

    def _interrupt_turn(self, request_id: str) -> None:
        """Withdraw the pending ask, write the receipt, then stop the turn — the real CLI's
        order of events."""
        with self._state:
            waiting = [m for m in self._messages if m is not None]
            running, ask = self._running, self._ask
            if running:
                self._interrupt.set()
            elif waiting:
                # The real CLI starts a message the moment it arrives at an idle process,
                # so a message and an interrupt written back to back interrupt its turn.
                self._interrupt_next = True
                waiting = waiting[1:]
            queued = [str(m.get("uuid")) for m in waiting if m.get("uuid")]
            self._ask = None
        if ask is not None:
            self._emit({"type": "control_cancel_request", "request_id": ask.request_id})
        self._emit(success(request_id, {"still_queued": queued}))
        if ask is not None:
            ask.answer.put(None)

    def _response(self, response: dict[str, Any]) -> None:
        with self._state:
            ask = self._ask
            if ask is None or response.get("request_id") != ask.request_id:
                return  # late, withdrawn or unknown: ignored, as the real CLI does
            self._ask = None
        ask.answer.put(response)

    # --- the turn's side -----------------------------------------------------------------

    def next_turn(self, fold: bool) -> list[dict[str, Any]] | None:
        """The messages of the next turn (waiting for the first), or None at end of input;
        the turn counts as running from here until `end_turn`."""
        with self._state:
            self._state.wait_for(lambda: bool(self._messages))
            if self._messages[0] is None:
                return None
            batch = [self._messages.popleft()]
            while fold and self._messages and self._messages[0] is not None:
                batch.append(self._messages.popleft())
            self._running = True
            if self._interrupt_next:
                self._interrupt.set()
            else:
                self._interrupt.clear()
            self._interrupt_next = False
        return [m for m in batch if m is not None]

    def end_turn(self) -> None:
        with self._state:
            self._running = False
            self._interrupt.clear()

    def pause(self, seconds: float) -> None:
        """Wait `seconds` (0: only look), or raise `Interrupted` as soon as the turn is
        interrupted."""
        if self._interrupt.wait(seconds):
            raise Interrupted

    def ask(self, request: dict[str, Any]) -> dict[str, Any]:
        """Write a `can_use_tool` control request and wait for its answer (the
        `response` object of the `control_response`); raise `Interrupted` when the turn is
        interrupted meanwhile (the request is then withdrawn)."""
        pending = PendingAsk(str(request["request_id"]))
        with self._state:
            if self._interrupt.is_set():
                raise Interrupted
            self._ask = pending
            self._emit(request)  # under the lock: a withdrawal never precedes the request
        answer = pending.answer.get()
        if answer is None:
            raise Interrupted
        return answer
