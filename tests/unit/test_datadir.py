"""The data directory is private to the bot's user (R8.6)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

from crewbridge.bot.datadir import create_private, prepare


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_r8_6_a_new_data_directory_is_0700(tmp_path: Path) -> None:
    data = tmp_path / "var" / "crewbridge"
    prepare(data)
    assert mode(data) == 0o700


def test_r8_6_what_an_earlier_release_left_readable_is_tightened(tmp_path: Path) -> None:
    data = tmp_path / "var"
    (data / "crypto").mkdir(parents=True)
    (data / "crewbridge.db").write_text("")
    (data / "crypto" / "deep").write_text("")
    os.chmod(data, 0o755)
    os.chmod(data / "crypto", 0o775)
    os.chmod(data / "crewbridge.db", 0o644)
    os.chmod(data / "crypto" / "deep", 0o644)
    prepare(data)
    assert [mode(data), mode(data / "crypto")] == [0o700, 0o700]
    assert mode(data / "crewbridge.db") == 0o600
    assert mode(data / "crypto" / "deep") == 0o644  # not walked: the crypto dir guards it


def test_r8_6_a_data_dir_pointed_at_a_project_is_made_private_not_broken(
        tmp_path: Path) -> None:
    """Owner bits are kept: a script stays executable, nothing deeper is touched."""
    data = tmp_path / "project"
    (data / "src").mkdir(parents=True)
    (data / "run.sh").write_text("")
    (data / "src" / "main.py").write_text("")
    os.chmod(data / "run.sh", 0o755)
    os.chmod(data / "src" / "main.py", 0o644)
    prepare(data)
    assert mode(data / "run.sh") == 0o700
    assert mode(data / "src" / "main.py") == 0o644


def test_r8_6_modes_are_never_widened(tmp_path: Path) -> None:
    data = tmp_path / "var"
    data.mkdir()
    (data / "readonly").write_text("")
    os.chmod(data / "readonly", 0o400)
    prepare(data)
    assert mode(data / "readonly") == 0o400


def test_r8_6_the_database_and_its_wal_are_0600_whatever_the_umask(tmp_path: Path) -> None:
    """SQLite gives -wal and -shm the mode of the database file it opens."""
    data = tmp_path / "var"
    prepare(data)
    db = data / "crewbridge.db"
    old = os.umask(0o022)
    try:
        create_private(db)
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        files = sorted(p.name for p in data.iterdir())
        modes = {p.name: mode(p) for p in data.iterdir()}
        conn.close()
    finally:
        os.umask(old)
    assert files == ["crewbridge.db", "crewbridge.db-shm", "crewbridge.db-wal"]
    assert set(modes.values()) == {0o600}, modes
