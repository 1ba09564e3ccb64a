"""Owners of an outbox file's rows, their leases, and whether their processes still run.

Each client of a process is an *owner* of rows in the outbox file, registered with a lease
its process renews (the writer does, every few seconds) for `LEASE_SECONDS`. An owner whose
lease ran out, or whose process on this host is gone, is forgotten, and what it held can
be claimed (`_outbox.Outbox.claim_orphans`) or moved (`_outbox_moves`). Whether a process
runs is asked with signal 0 on POSIX, and through the Win32 API on Windows, where
``os.kill(pid, 0)`` would send Ctrl-C to a process group.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import sys
import time
from typing import Any, Final

__all__ = ["LEASE_SECONDS", "OwnerLeases", "process_alive", "windows_process_alive"]

LEASE_SECONDS: Final = 15.0


class OwnerLeases:
    """The ``owners`` table of one outbox file: who holds rows, and until when.

    Each method runs its statements on the store's connection, in the caller's
    transaction where it says so; only the outbox writer's thread calls them.
    """

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def register(self, owner: str) -> None:
        """Add an owner (a client of this process) with a lease of `LEASE_SECONDS`."""
        self._db.execute(
            "INSERT INTO owners (owner, host, pid, lease_until) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until",
            (owner, socket.gethostname(), os.getpid(), time.time() + LEASE_SECONDS),
        )

    def forget_earlier_process(self) -> None:
        """Remove owners left by an earlier process that had this one's pid on this host:
        this process's own owners register after its writer opens the file."""
        self._db.execute(
            "DELETE FROM owners WHERE host = ? AND pid = ?", (socket.gethostname(), os.getpid())
        )

    def renew(self) -> None:
        """Extend the lease of every owner of this process for another `LEASE_SECONDS`."""
        self._db.execute(
            "UPDATE owners SET lease_until = ? WHERE host = ? AND pid = ?",
            (time.time() + LEASE_SECONDS, socket.gethostname(), os.getpid()),
        )

    def release(self, owner: str) -> None:
        """The owner leaves: what it still holds can be claimed by the next client."""
        self._db.execute("DELETE FROM owners WHERE owner = ?", (owner,))

    def forget_dead_owners(self) -> None:
        """Remove owners whose lease ran out, or whose process on this host is gone. Call
        it in a transaction, before claims."""
        db, host, pid = self._db, socket.gethostname(), os.getpid()
        db.execute("DELETE FROM owners WHERE lease_until < ?", (time.time(),))
        others = db.execute(
            "SELECT DISTINCT pid FROM owners WHERE host = ? AND pid != ?", (host, pid)
        ).fetchall()
        db.executemany(
            "DELETE FROM owners WHERE host = ? AND pid = ?",
            [(host, other) for (other,) in others if not process_alive(other)],
        )

    def gone_owners(self) -> list[str]:
        """Owners of rows who are no longer registered: found through the owner index, not
        by reading every row. Names ending in ``:claim`` are rows being taken over (by a
        claim within its transaction, or by a move, see `_outbox_moves`): never orphans."""
        return [
            row[0]
            for row in self._db.execute(
                "SELECT DISTINCT owner FROM windows WHERE owner NOT IN (SELECT owner FROM owners) "
                "UNION SELECT DISTINCT owner FROM checkpoints "
                "WHERE owner NOT IN (SELECT owner FROM owners)"
            )
            if not row[0].endswith(":claim")
        ]


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` on this host still runs."""
    if sys.platform == "win32":
        return windows_process_alive(pid)
    try:
        os.kill(pid, 0)  # signal 0: a check, nothing is sent
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    except OSError:
        return False
    return True


_STILL_ACTIVE: Final = 259
_ERROR_ACCESS_DENIED: Final = 5
_PROCESS_QUERY_LIMITED_INFORMATION: Final = 0x1000


def windows_process_alive(pid: int, kernel32: Any = None) -> bool:
    """`process_alive` on Windows, through the Win32 API (``os.kill(pid, 0)`` there would
    send Ctrl-C to a process group). ``kernel32``: the DLL, or a stand-in in tests."""
    import ctypes

    if kernel32 is None:
        kernel32 = ctypes.WinDLL("kernel32", use_last_error=True)  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(_PROCESS_QUERY_LIMITED_INFORMATION, False, pid)
    if not handle:
        # Another user's process cannot be opened, yet it runs.
        return bool(kernel32.GetLastError() == _ERROR_ACCESS_DENIED)
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True  # could not tell: taken as alive (its lease still expires)
        return code.value == _STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
