"""The data directory holds the team's conversations, so only the bot's user may read it (R8.6).

It is created `0700`, and the files crewbridge writes in it are `0600`. New files are made
private when they are created, not tightened afterwards (a window in which another local
user could open them): the store's database file is created `0600` before SQLite opens it,
and SQLite gives its `-wal` and `-shm` files the database's own mode. What an earlier release
left readable is tightened at start-up: group and other lose every bit on the directory and
on what is directly in it (the owner's bits are kept, and nothing deeper is walked, so a data
directory pointed at by mistake at a project is made private, not broken). The process
umask is left alone, because agents inherit it and the files they write in a project's
working tree must stay as the project expects.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600


def prepare(data_dir: Path) -> None:
    """Create `data_dir` (0700), or take group and other access from it and its entries."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    loosened = [p for p in [data_dir, *data_dir.iterdir()] if _tighten(p)]
    if loosened:
        log.warning("made %d path(s) in %s private to this user (they were readable by "
                    "others): %s", len(loosened), data_dir,
                    ", ".join(str(p.relative_to(data_dir)) or "." for p in loosened[:5]))


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user alone from its first byte."""
    create_private(path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def create_private(path: Path) -> None:
    """Make sure `path` exists as a file only its owner can read, without ever being wider."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    _tighten(path)


def _tighten(path: Path) -> bool:
    """Take group and other access from a directory or file; True when it had some."""
    st = path.lstat()
    if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode)):
        return False  # symlinks and the like: not ours to change
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077 == 0:
        return False
    os.chmod(path, mode & ~0o077)
    return True
