"""Proof that a file is the SDK's own before SQLite opens it.

The app's files are the app's: a path it names is used only once its first bytes prove
it an outbox (a SQLite header carrying the outbox's application id, written with the
schema in a new outbox's first transaction), or it holds nothing yet. Anything else is
named in words and left exactly as it is. The emulator's store proves its file the same
way, with an application id of its own.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import sys
from pathlib import Path
from typing import Final

__all__ = [
    "APPLICATION_ID",
    "NotAnOutbox",
    "check_intact",
    "create_private",
    "foreign_content",
    "table_names",
]

APPLICATION_ID: Final = 0x54424B31  # "TBK1": tells our file from any other SQLite file


class NotAnOutbox(Exception):
    """The file holds something else than an outbox (the message says what)."""


SQLITE_MAGIC: Final = b"SQLite format 3\x00"


def create_private(path: Path) -> None:
    """Create the file private to the user before SQLite does, if there is none: SQLite
    gives its journals the same mode. An existing file is not touched."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))


def foreign_content(
    path: str | os.PathLike[str], application_id: int = APPLICATION_ID
) -> str | None:
    """What ``path`` holds, in words, if it is not (and cannot become) a timeback-client
    outbox; None if it is missing, is an outbox, or is an empty file private to the user.

    Proof comes from the file's first bytes: a SQLite header carrying the outbox's
    application id, which every outbox has had from its first transaction (or the
    ``application_id`` of another file the SDK makes, such as the emulator's store). It reads at
    most the header and never writes; for another SQLite database it names the tables,
    read without locks or journal recovery (``immutable``), so the database stays as it is.

    Raises:
        OSError: the file cannot be looked at or read (a permission, a failing disk).
    """
    path = Path(path)
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None  # nothing there to leave alone (creating it will say what is wrong)
    if stat.S_ISDIR(info.st_mode):
        return "is a directory"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_size == 0:
        if sys.platform != "win32" and info.st_mode & 0o077:
            return (
                f"is an empty file that other users may read (mode "
                f"{stat.S_IMODE(info.st_mode):04o}), and the SDK never changes a file's mode"
            )
        return None
    with path.open("rb") as file:
        head = file.read(100)
    if not head.startswith(SQLITE_MAGIC):
        kind = "text" if _looks_like_text(head) else "data"
        return f"holds {info.st_size:,} bytes of {kind}"
    if len(head) < 100:
        return "is a truncated SQLite file"
    if int.from_bytes(head[68:72], "big") == application_id:
        return None
    return f"is another application's SQLite database{_tables_of(path)}"


def _looks_like_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return b"\x00" not in head


def table_names(path: str | os.PathLike[str], limit: int = 6) -> list[str] | None:
    """The first ``limit`` tables of a SQLite file by name, read without writing or
    locking it (no journal recovery); None if it cannot be read as a database."""
    try:
        db = sqlite3.connect(f"{Path(path).absolute().as_uri()}?mode=ro&immutable=1", uri=True)
    except sqlite3.Error:
        return None
    try:
        return [
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name LIMIT ?",
                (limit,),
            )
        ]
    except sqlite3.Error:
        return None
    finally:
        db.close()


def _tables_of(path: Path) -> str:
    """`` (tables: a, b)`` of a SQLite file, read without writing or locking it."""
    names = table_names(path)
    if names is None:
        return ""
    if not names:
        return " (no tables)"
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return f" (tables: {shown})"


def check_intact(db: sqlite3.Connection) -> None:
    """Every page of every table and index of an existing outbox: a damaged file fails
    here, before anything is written (a count of the windows alone can pass on an intact
    index over torn rows)."""
    if db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise NotAnOutbox(f"is a damaged timeback-client outbox ({verdict})")
