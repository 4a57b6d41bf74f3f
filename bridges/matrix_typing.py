"""The bot's typing notice in Matrix rooms while an agent works (R13.7).

A typing notice lasts as long as its `timeout` (30 s) says; one background task per room
renews it every `renew_s` (25 s) until `set(room, False)` or `stop()`. Best effort: a
failed notice is logged and the next renewal tries again, and nothing is raised to the
caller — a missing "typing…" must never fail a turn.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from aiohttp import ClientError
from nio import AsyncClient, RoomTypingResponse

from crewbridge.bridges.base import SendError
from crewbridge.bridges.matrix_events import describe

log = logging.getLogger(__name__)

TYPING_TIMEOUT_MS = 30_000
RENEW_S = 25.0  # before the 30 s run out, with room for a slow request
FAILURES = (ClientError, TimeoutError, OSError, SendError)


class TypingNotices:
    """`set(room, on)`; `stop()` ends every room's notice task (not the notices: the
    homeserver lets them run out)."""

    def __init__(self, client: Callable[[], AsyncClient], *, renew_s: float = RENEW_S):
        self._client = client
        self.renew_s = renew_s
        self._tasks: dict[str, asyncio.Task[None]] = {}

    async def set(self, room: str, on: bool) -> None:
        if on:
            if room not in self._tasks:
                self._tasks[room] = asyncio.create_task(self._keep(room),
                                                        name=f"matrix-typing {room}")
            return
        task = self._tasks.pop(room, None)
        if task is not None:
            await self._cancel(task)
            await self._notify(room, False)

    async def stop(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        for task in tasks:
            await self._cancel(task)

    @staticmethod
    async def _cancel(task: asyncio.Task[None]) -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _keep(self, room: str) -> None:
        while True:
            await self._notify(room, True)
            await asyncio.sleep(self.renew_s)

    async def _notify(self, room: str, on: bool) -> None:
        try:
            resp = await self._client().room_typing(room, on, timeout=TYPING_TIMEOUT_MS)
            failure = None if isinstance(resp, RoomTypingResponse) else describe(resp)
        except FAILURES as e:
            failure = describe(e)
        if failure is not None:
            log.info("matrix: typing notice (%s) in %s failed: %s", on, room, failure)
