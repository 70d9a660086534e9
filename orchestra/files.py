"""Files that hold secrets, readable by their owner only.

The data folder (development secrets, the SQLite database, Redis's files, the local agent's
secret) is mode 0700; the SQLite database file is mode 0600, and SQLite gives its `-wal`,
`-shm` and `-journal` companions the database file's own mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "make_private_dir",
    "make_private_file",
    "secure_sqlite_file",
    "tighten",
]

log = logging.getLogger(__name__)

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600
_GROUP_OR_OTHER = 0o077
SQLITE_COMPANIONS = ("-wal", "-shm", "-journal")


def make_private_dir(path: Path) -> None:
    """Create the folder ``path`` (and missing parents) with mode 0700; one that exists is
    left as it is (see `tighten`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=PRIVATE_DIR)
    except FileExistsError:
        pass


def make_private_file(path: Path) -> bool:
    """Create the empty file ``path`` with mode 0600, unless it exists; True if it made it.

    An empty file is a valid, empty SQLite database: SQLite then fills it, and creates its
    companions with the same mode.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def tighten(path: Path, mode: int, what: str) -> bool:
    """Give ``path`` the mode ``mode`` if it is open to group or others; True if changed.

    Says so at INFO. Nothing happens when the path does not exist; a path this user may not
    change gets a warning, not an error.
    """
    try:
        current = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return False
    if not current & _GROUP_OR_OTHER:
        return False
    try:
        path.chmod(mode)
    except OSError as exc:
        log.warning("cannot make the %s %s private (mode %03o): %s", what, path, current, exc)
        return False
    log.info("the %s %s was open to others (mode %03o): now mode %03o", what, path, current, mode)
    return True


def secure_sqlite_file(path: Path) -> None:
    """Make the database file ``path`` 0600 before SQLite opens it: created so if new, else
    tightened, with any companions left by an earlier version."""
    if make_private_file(path):
        return
    for file in (path, *(path.with_name(path.name + suffix) for suffix in SQLITE_COMPANIONS)):
        tighten(file, PRIVATE_FILE, "database file")
