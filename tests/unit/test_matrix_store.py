"""The crypto store nio is given (R15.1): nio's real `SqliteStore`, which saves the rooms a
sync showed to be encrypted and, when a sync showed none — nearly every sync — touches its
database not at all (nio would open a transaction for nothing, on the event loop)."""

from __future__ import annotations

from pathlib import Path

from nio.crypto import OlmAccount

from crewbridge.bridges.matrix_store import SyncQuietStore, crypto_store_class


def test_r15_1_a_sync_that_shows_no_encrypted_room_writes_nothing(tmp_path: Path) -> None:
    assert crypto_store_class() is SyncQuietStore
    store = SyncQuietStore("@crew:test", "DEVICE", str(tmp_path))
    store.save_account(OlmAccount())
    statements: list[str] = []
    store.database.connection().set_trace_callback(statements.append)
    store.save_encrypted_rooms(set())
    assert statements == []
    store.save_encrypted_rooms({"!a:test"})
    assert any(s.startswith('INSERT OR IGNORE INTO "encryptedrooms"') for s in statements)
    reopened = SyncQuietStore("@crew:test", "DEVICE", str(tmp_path))
    assert reopened.load_encrypted_rooms() == {"!a:test"}
