"""nio's SQLite crypto store, less a wasted transaction after every sync (R15.1).

nio's `AsyncClient` calls `store.save_encrypted_rooms(rooms)` at the end of every sync,
with the rooms whose `m.room.encryption` state that sync brought — nearly always none.
`SqliteStore` binds its models, opens a transaction and reads the account for it all the
same, synchronously on the event loop: 1.8 ms a sync on the benchmark machine, on the path
of every message the bot reads (docs/benchmarks.md, the Matrix round trip). With no room
to save there is nothing to write, so nothing is done; a sync that does bring one saves it
as nio would.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nio import store as nio_store

_SQLITE_STORE: Any = getattr(nio_store, "SqliteStore", None)  # None: nio without vodozemac


def crypto_store_class() -> type | None:
    """The store class nio is given; None when nio's crypto is not installed (the bot then
    runs unencrypted, `bridges.matrix_crypto.require_crypto` says so)."""
    return SyncQuietStore if _SQLITE_STORE is not None else None


class SyncQuietStore(_SQLITE_STORE or object):  # type: ignore[misc]
    """`SqliteStore` that writes encrypted rooms only when there are some."""

    def save_encrypted_rooms(self, rooms: Iterable[str]) -> None:
        rooms = set(rooms)
        if rooms:
            super().save_encrypted_rooms(rooms)  # type: ignore[misc]
