"""The data directory holds the team's conversations, so only the bot's user may read it (R8.6).

It is created `0700`, and every file in it is `0600` — also those an earlier release left
readable. New files are made private when they are created, not tightened afterwards (a
window in which another local user could open them): the store's database file is created
`0600` before SQLite opens it, and SQLite gives its `-wal` and `-shm` files the database's
own mode. The process umask is left alone, because agents inherit it and the files they
write in a project's working tree must stay as the project expects.
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
    """Create `data_dir` (0700) or tighten it and everything in it to the modes above."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    loosened = [p for p in _tree(data_dir) if _tighten(p)]
    if loosened:
        log.warning("made %d path(s) in %s private to this user (they were readable by "
                    "others): %s", len(loosened), data_dir,
                    ", ".join(str(p.relative_to(data_dir)) or "." for p in loosened[:5]))


def create_private(path: Path) -> None:
    """Make sure `path` exists as a file only its owner can read, without ever being wider."""
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, FILE_MODE))
    _tighten(path)


def _tree(top: Path) -> list[Path]:
    found = [top]
    for root, dirs, files in os.walk(top):
        found += [Path(root, d) for d in dirs] + [Path(root, f) for f in files]
    return found


def _tighten(path: Path) -> bool:
    """Set the private mode on a directory or regular file; True when it was wider."""
    st = path.lstat()
    if stat.S_ISDIR(st.st_mode):
        wanted = DIR_MODE
    elif stat.S_ISREG(st.st_mode) or stat.S_ISSOCK(st.st_mode):
        wanted = FILE_MODE
    else:
        return False  # symlinks and the like: not ours to change
    if stat.S_IMODE(st.st_mode) & ~wanted == 0:
        return False
    os.chmod(path, stat.S_IMODE(st.st_mode) & wanted)
    return True
