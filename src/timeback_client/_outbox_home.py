"""Where the outbox lives, and how what an earlier location holds gets there.

The default outbox is per-user *state* (`default_outbox_path`): it holds time not
delivered yet, which must survive what a cache may not. Earlier versions kept it in the
user's cache directory (`former_outbox_path`), which macOS and cleaning tools may empty.
The writer of the default file moves what the former one holds into it before each claim
(`move_outbox`), so whatever a process of an earlier version left there is replayed from
the new place, and a process of an earlier version still running keeps its own windows.

How a move neither loses nor doubles a window
---------------------------------------------
Renaming or copying the file would not do: another process may have it open (on POSIX it
would go on writing to the renamed file, or to an unlinked one; Windows refuses), and a
copy taken while it writes misses its last transaction. Windows move one by one instead,
under the rules the outbox already has for processes sharing a file: only what dead or
departed owners left is moved, and a window of a live owner stays until it leaves.

SQLite makes a transaction atomic across two files only outside WAL mode, so a move is
four transactions, each on one file, and a crash between any two leaves a state the next
mover recognises:

1. In the source, under its write lock: finish the moves of movers that died (see 3),
   then mark every window and open window of a dead or departed owner
   ``move-<uuid>:claim``, an owner registered for this process. No claim takes a window
   whose owner ends in ``:claim``, not even one of an earlier version. Committed.
2. In the source again, holding its write lock throughout: if the mark is still
   registered (no other mover released it since), the target adds the windows and
   records the move's name in the same transaction (``moves_in``), and commits; then the
   source deletes the marked windows and commits.
3. A crash after 1 leaves marked windows whose owner is gone: the next mover releases
   them (they become a departed owner's again) unless the target recorded the move, in
   which case it deletes them, since the target has them.
4. In the target: the record is forgotten once the source holds nothing of the move.

The target adds with ``INSERT OR IGNORE`` on the window's (run, start): a window it has
already is never stored twice. The emptied former file is left in place: deleting a
SQLite file another process may have open could lose what that process writes next.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import sys
import uuid
from pathlib import Path
from typing import Final

import platformdirs

from ._errors import OutboxError
from ._file_proof import foreign_content
from ._outbox import Outbox
from ._outbox_moves import MOVE_PREFIX, OutboxMoves

__all__ = ["FORMER_BUSY_TIMEOUT", "default_outbox_path", "former_outbox_path", "move_outbox"]

# How long a move waits for another process's lock on the former file before it gives up
# until the next claim: the move is never urgent, and a client's start waits for it.
FORMER_BUSY_TIMEOUT: Final = 0.5


def default_outbox_path(app_name: str = "timeback-client") -> Path:
    """The per-user *state* location, by platform convention (through `platformdirs`):
    ``$XDG_STATE_HOME/timeback-client`` (``~/.local/state/...``) on Linux and other
    XDG systems, ``~/Library/Application Support/timeback-client`` on macOS and
    ``%LOCALAPPDATA%\\timeback-client`` on Windows, each ending in ``outbox.sqlite3``.

    State, as the XDG spec has it: data that must outlive a restart but is of this machine
    (an editor's crash-recovery files live there too). Not a cache, which the system
    (macOS) and cleaning tools purge; not the roaming profile on Windows, since the file's
    leases name processes of this machine.
    """
    return platformdirs.user_state_path(app_name, appauthor=False) / "outbox.sqlite3"


def former_outbox_path(app_name: str = "timeback-client") -> Path:
    """Where earlier versions kept the default outbox: the user's cache directory, found
    exactly as they found it."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / app_name / "Cache" / "outbox.sqlite3"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / app_name / "outbox.sqlite3"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / app_name / "outbox.sqlite3"


def move_outbox(source: str | os.PathLike[str], target: Outbox) -> int:
    """Move into ``target`` what dead or departed owners left in the outbox file
    ``source``, if there is one: windows of every backend and identity, and open windows
    closed as a claim closes them. They are then orphans in ``target``, replayed by the
    next claim of their backend and identity. Windows of live owners stay where they are
    (a later move takes them once their owner leaves or dies).

    Call it on the thread that owns ``target``, outside its transactions. A missing,
    empty, or unusable ``source`` is never created or set aside.

    Returns:
        The windows moved.

    Raises:
        OutboxError: ``source`` holds windows but cannot be opened or written, or the
            move failed. Nothing is lost: what was not moved stays in ``source``.
    """
    path = Path(source)
    if not _holds_windows(path) or os.path.realpath(path) == os.path.realpath(target.path):
        return 0
    former = Outbox(path, busy_timeout=FORMER_BUSY_TIMEOUT, create=False)
    try:
        return _move(former, target, os.path.realpath(path))
    except sqlite3.Error as exc:
        raise OutboxError(
            f"could not move the windows left in {path} to {target.path}: {exc}; "
            "they stay there, and the next client tries again"
        ) from exc
    finally:
        former.close()


def _move(source: Outbox, target: Outbox, key: str) -> int:
    marker = f"{MOVE_PREFIX}{uuid.uuid4().hex}"
    leaving, arriving = OutboxMoves(source), OutboxMoves(target)
    with source.transaction():
        source.leases.forget_dead_owners()
        # Read under the source's write lock: a move lands only under it, so what the
        # target recorded cannot change for any mark left here meanwhile.
        done = leaving.settle_moves(arriving.moves_in(key))
        rows = leaving.mark_for_move(marker)
    landed = False
    if rows:
        try:
            with source.transaction():
                if leaving.holds_move(marker):
                    with target.transaction():
                        target.add(rows)
                        arriving.record_move(marker, key)
                    landed = True
                    leaving.drop_move(marker)
        except sqlite3.Error:
            if not landed:
                # The target does not have them: give them back at once rather than
                # when the mark's lease lapses.
                with contextlib.suppress(sqlite3.Error), source.transaction():
                    leaving.release_move(marker)
                raise
            # The target has them; the marked copies stay marked until a later move
            # finds the mark's lease lapsed and drops them (step 3).
        else:
            if landed:
                done.append(marker)
    if done:
        # A record left behind costs a row; a later move forgets it.
        with contextlib.suppress(sqlite3.Error), target.transaction():
            arriving.forget_moves(done)
    return len(rows) if landed else 0


def _holds_windows(path: Path) -> bool:
    """Whether the file may hold windows or open windows: a read-only look, so an emptied
    former file costs a read, never a transaction (True when it cannot tell)."""
    try:
        if not stat.S_ISREG(path.stat().st_mode):
            return False
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True  # cannot tell (a folder it may not read): opening it will say why
    try:
        if foreign_content(path) is not None:
            return False  # not an outbox: nothing of ours to move, and it is never opened
    except OSError:
        return True  # cannot tell: opening it will say why
    try:
        db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return True
    try:
        found = db.execute(
            "SELECT EXISTS (SELECT 1 FROM windows) OR EXISTS (SELECT 1 FROM checkpoints)"
        ).fetchone()
        return bool(found[0])
    except sqlite3.Error:
        return True
    finally:
        db.close()
