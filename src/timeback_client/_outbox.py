"""The durable outbox: windows on disk until the backend has them.

A window is stored by the outbox writer's next transaction (about a second) and deleted
only after its final answer; the open window of each running activity is checkpointed as
often. A transaction counts as done only once the disk has it (``synchronous=FULL``: the
WAL is synced at every commit), so a crash of the process, a power cut or an hour offline
loses at most that last second. The next process that opens the outbox for the same backend
replays what was left, with the exact bytes first written.

Storage is one SQLite file in WAL mode, private to the user (mode 0600 in a 0700
directory), written by one connection per process (the writer's); where it lives by
default, and how what its former place holds reaches it, is `_outbox_home`'s. Each client
is an *owner* with a lease its process renews; rows belong to one owner at a time, and only rows
of owners whose lease ran out, whose process is gone, or who left, can be claimed, in one
transaction. Credentials are never stored: a window keeps only the SHA-256 *identity* of
the credentials it was sent with (`_options.identity_of`), so it is replayed only as the
same student.

When the outbox is full, adjacent never-sent windows of a run are merged (windows are
additive, so a merged window keeps every invariant) rather than dropped.

This module is the store; its neighbours each hold one idea: the tables and their
migrations (`_outbox_schema`), the proof that a file is an outbox before SQLite opens it
(`_file_proof`), the owners, their leases and whether their processes still run
(`_leases`), each file's part in a move between two files (`_outbox_moves`, above the
store), and a window's body, made from a checkpoint or from two merged windows
(`_models`, beside `Window`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Final

import attrs

from ._errors import OutboxError
from ._file_proof import NotAnOutbox, check_intact, create_private, foreign_content
from ._leases import OwnerLeases
from ._models import merge_bodies, window_body
from ._outbox_schema import create_or_migrate

__all__ = [
    "DEFAULT_MAX_WINDOWS",
    "CheckpointRow",
    "Outbox",
    "OutboxError",
    "StoredWindow",
    "WindowRow",
    "open_window",
]

DEFAULT_MAX_WINDOWS: Final = 50_000
_PAGE_SIZE: Final = 1024
# What a commit waits for: FULL, a sync of the WAL, so a committed window survives a power
# cut, not only a crash of the process.
SYNCHRONOUS: Final = "FULL"


@attrs.frozen(kw_only=True)
class StoredWindow:
    """A window as stored: its row, run, exact body, and whether it was ever sent."""

    row_id: int
    run_id: str
    started_at_ms: int
    ended_at_ms: int
    elapsed_ms: int
    body: bytes
    identity: str
    sent_at: float | None  # epoch seconds of the first attempt, None if never sent


@attrs.frozen(kw_only=True)
class WindowRow:
    """A window to store: whose, where to, its exact body, and its first attempt if any."""

    owner: str
    backend: str
    identity: str
    run_id: str
    started_at_ms: int
    ended_at_ms: int
    elapsed_ms: int
    body: bytes
    sent_at: float | None = None


@attrs.frozen(kw_only=True)
class CheckpointRow:
    """The open window of a run as of its last change, and the run's body template (id,
    name, course, runId) from which a window is made again after a crash.

    Attributes:
        started_at_ms: where the open window starts (wall ms).
        ended_at_ms: the instant the numbers are true at: the last change (wall ms).
        elapsed_ms: active ms in the open window then.
        running: whether active time was counting then (it goes on counting until the
            process's last stamp, minus what the machine spent suspended).
        suspended_ms: the clock's suspended total then.
        stamp: the stamp that says until when the process was alive.
    """

    owner: str
    backend: str
    identity: str
    run_id: str
    started_at_ms: int
    ended_at_ms: int
    elapsed_ms: int
    template: bytes
    running: bool = False
    suspended_ms: int = 0
    stamp: str | None = None


def open_window(
    checkpoint: tuple[int, int, int, int, int], stamp: tuple[int, int] | None
) -> tuple[int, int, int]:
    """The open window a crash left: ``(start, end, active)`` in ms.

    ``checkpoint``: ``(started_at_ms, ended_at_ms, elapsed_ms, running, suspended_ms)``
    as last written; ``stamp``: ``(wall_ms, suspended_ms)`` of its process's clock, last
    written, or None. A running window counted every millisecond up to the stamp that was
    not spent suspended: no change to it happened before the stamp without being written
    with it, so this never counts more than was active.
    """
    start, as_of, elapsed, running, suspended = checkpoint
    if not running or stamp is None or stamp[0] <= as_of:
        return start, as_of, elapsed
    alive, suspended_then = stamp
    extra = alive - as_of
    asleep = min(extra, max(0, suspended_then - suspended))
    return start, alive, elapsed + extra - asleep


# Rows held by an owner of this process (host and pid bound after it).
_OURS: Final = "owner IN (SELECT owner FROM owners WHERE host = ? AND pid = ?)"
_SELECT_UNSENT_OF_OURS: Final = (
    "SELECT row_id, run_id, started_at_ms, ended_at_ms, elapsed_ms, body FROM windows "  # noqa: S608 - fixed clauses, values bound
    "WHERE backend = ? AND " + _OURS + " AND sent_at IS NULL "
)

_SELECT_WINDOWS: Final = (
    "SELECT row_id, run_id, started_at_ms, ended_at_ms, elapsed_ms, body, identity, sent_at "
    "FROM windows "
)


class Outbox:
    """One connection to the outbox file, shared by every owner of one process.

    Only the outbox writer (`_writer.OutboxWriter`) uses it, on its own thread, and groups
    what it writes into `transaction()`s; reads are plain. Several processes may use the
    file at once (SQLite's own locking, WAL mode).

    A file is opened only once it is proven to be an outbox (`foreign_content`); anything
    else at the path is left exactly as it is: never renamed, chmodded, written or
    truncated, and nothing is created beside it.

    Args:
        path: the SQLite file (created private to the user if missing).
        max_windows: beyond this many stored windows of a backend, merge, then drop the
            oldest.
        busy_timeout: how long a write waits for another process's lock before it fails
            (the writer then keeps what it had and tries again later).
        create: False to open only an existing outbox.
        set_aside: True only for a file in the SDK's own state directory: one that is not
            an outbox, or is a damaged one, is renamed beside itself (its bytes and mode as
            they were) and a new outbox made. False (a path the app named): it is refused.

    Raises:
        OutboxError: the file is not a usable outbox (and ``set_aside`` is False, or it
            could not be set aside), or it cannot be created or opened.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_windows: int = DEFAULT_MAX_WINDOWS,
        busy_timeout: float = 10.0,
        create: bool = True,
        set_aside: bool = False,
    ) -> None:
        self.path = Path(path)
        self.max_windows = max_windows
        self._busy_timeout = busy_timeout
        self.set_aside: Path | None = None
        #: Why the file that was there was set aside (see ``set_aside``).
        self.set_aside_because: str | None = None
        if create:
            self._db = self._open(may_set_aside=set_aside)
        else:
            self._db = self._open_existing()
        #: The owners of this file's rows and their leases (`_leases.OwnerLeases`).
        self.leases = OwnerLeases(self._db)

    @property
    def connection(self) -> sqlite3.Connection:
        """The connection, for the store's neighbours that run statements of their own in
        its transactions (`_outbox_moves`). Only the writer's thread may use it."""
        return self._db

    # -- opening --------------------------------------------------------------------

    def _open_existing(self) -> sqlite3.Connection:
        try:
            return self._connect(create=False)
        except NotAnOutbox as exc:
            raise OutboxError(f"{self.path} {exc}; it was left as it is") from None
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot use the outbox {self.path}: {exc}") from exc

    def _open(self, *, may_set_aside: bool) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return self._connect()
        except NotAnOutbox as exc:
            problem = str(exc)
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot use the outbox {self.path}: {exc}") from exc
        if not may_set_aside:
            raise OutboxError(
                f"{self.path} {problem}; it was left as it is (the SDK never moves or changes "
                "a file it cannot prove is its own outbox)"
            )
        self.set_aside = self._move_aside(problem)
        self.set_aside_because = problem
        try:
            return self._connect()
        except (NotAnOutbox, sqlite3.DatabaseError) as exc:
            raise OutboxError(f"cannot create outbox {self.path}: {exc}") from None

    def _move_aside(self, problem: str) -> Path:
        """Rename the file (in the SDK's own directory) to a name no file has, with its
        journal: another program's database may hold committed data there. Its bytes and
        mode stay as they were, for inspection."""
        aside = self.path.with_name(
            f"{self.path.name}.corrupt-{int(time.time())}-{uuid.uuid4().hex[:8]}"
        )
        try:
            os.rename(self.path, aside)
        except OSError as exc:
            raise OutboxError(
                f"outbox {self.path} {problem}, and cannot be set aside: {exc}"
            ) from exc
        for suffix in ("-wal", "-shm", "-journal"):
            with contextlib.suppress(OSError):
                os.rename(f"{self.path}{suffix}", f"{aside}{suffix}")
        return aside

    def _connect(self, *, create: bool = True) -> sqlite3.Connection:
        if create:
            create_private(self.path)
        # Look before SQLite opens the file: opening alone may write (it rolls back a hot
        # journal of another program's database), and switching to WAL rewrites the header.
        problem = foreign_content(self.path)
        if problem is not None:
            raise NotAnOutbox(problem)
        # Without create, SQLite's own "rw" mode: a file gone since it was looked for is
        # an error, never a new file.
        name = self.path if create else f"{self.path.absolute().as_uri()}?mode=rw"
        db = sqlite3.connect(
            name,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            uri=not create,
        )
        try:
            try:
                check_intact(db)
            except sqlite3.DatabaseError as exc:
                if exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB):
                    raise NotAnOutbox(f"is a damaged timeback-client outbox ({exc})") from None
                raise
            # A new file gets small pages: a second's checkpoint rewrites one page, so
            # smaller pages mean fewer bytes written per second (set before any table).
            db.execute(f"PRAGMA page_size={_PAGE_SIZE}")
            # Stored means on the disk: every commit syncs the WAL (NORMAL would sync it
            # only at checkpoints, and a power cut could take back minutes of commits).
            # The writer commits at most about once a second, so this is one sync a second.
            db.execute(f"PRAGMA synchronous={SYNCHRONOUS}")
            # macOS: fsync() leaves the data in the drive's cache; F_FULLFSYNC empties it.
            db.execute("PRAGMA fullfsync=ON")
            db.execute("PRAGMA checkpoint_fullfsync=ON")
            # A new file's first transaction writes the schema and the application id
            # together (a rollback journal makes it atomic): a file with a database header
            # is therefore ours only if it carries the id. WAL comes after.
            with self._transaction(db):
                create_or_migrate(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("SELECT count(*) FROM windows").fetchone()
        except BaseException:
            db.close()
            raise
        return db

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error:
            # A failed COMMIT (disk full, I/O error) may leave the transaction open.
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def transaction(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One write transaction: everything in it reaches the file together, or nothing."""
        return self._transaction(self._db)

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    # -- claims -----------------------------------------------------------------------

    def claim_orphans(self, owner: str, backend: str, identity: str) -> list[StoredWindow]:
        """Take over what dead or departed owners left for this backend and identity.

        Call it in a transaction, after `OwnerLeases.forget_dead_owners`. Their
        checkpoints become windows. Returns the windows taken over (never ``owner``'s
        own), in order: sent-but-unanswered first (they are the ones the server may
        remember), oldest first within each.
        """
        db = self._db
        # Rows taken over carry this mark until they are returned: the owner's own rows,
        # also those of this very transaction, are never among them.
        claim = f"{owner}:claim"
        gone = [name for name in self.leases.gone_owners() if name != owner]
        if not gone:
            return []
        marks = ",".join("?" * len(gone))
        self.close_open_windows(
            "backend = ? AND identity = ? AND owner IN (" + marks + ")",
            (backend, identity, *gone),
            claim,
        )
        db.execute(
            f"UPDATE windows SET owner = ? WHERE owner IN ({marks}) "  # noqa: S608 - only placeholders
            "AND backend = ? AND identity = ?",
            (claim, *gone, backend, identity),
        )
        taken = self._rows(
            "WHERE owner = ? ORDER BY sent_at IS NULL, run_id, started_at_ms", (claim,)
        )
        db.execute("UPDATE windows SET owner = ? WHERE owner = ?", (owner, claim))
        return taken

    def close_open_windows(self, where: str, params: tuple[object, ...], owner: str) -> None:
        """The checkpoints ``where`` says become windows of ``owner``: each open window up
        to its process's last stamp (its owner is gone, so it grows no more)."""
        db = self._db
        select = (
            "SELECT run_id, backend, identity, c.started_at_ms, c.ended_at_ms, c.elapsed_ms, "
            "body, running, c.suspended_ms, s.wall_ms, s.suspended_ms "
            "FROM checkpoints AS c LEFT JOIN stamps AS s ON s.stamp = c.stamp WHERE " + where
        )
        for (
            run_id,
            backend,
            ident,
            *numbers,
            template,
            running,
            asleep,
            alive,
            asleep_then,
        ) in db.execute(select, params).fetchall():
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
            stamp = None if alive is None else (alive, asleep_then)
            start, end, elapsed = open_window((*numbers, running, asleep), stamp)
            body = window_body(bytes(template), start, end, elapsed) if elapsed > 0 else None
            if body is None:
                continue  # an empty open window, or an unreadable one: nothing to replay
            db.execute(
                "INSERT OR IGNORE INTO windows (backend, identity, run_id, started_at_ms, "
                "ended_at_ms, elapsed_ms, body, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (backend, ident, run_id, start, end, elapsed, body, owner),
            )

    def waiting_for_others(self, backend: str, identity: str) -> tuple[int, int]:
        """What earlier owners left for this backend under other identities (which a claim
        does not take): ``(windows, active ms)``, open windows counted up to their stamp."""
        db = self._db
        count, active_ms = db.execute(
            "SELECT count(*), coalesce(sum(elapsed_ms), 0) FROM windows "
            "WHERE backend = ? AND identity != ? "
            "AND owner NOT IN (SELECT owner FROM owners)",
            (backend, identity),
        ).fetchone()
        for *numbers, running, asleep, alive, asleep_then in db.execute(
            "SELECT c.started_at_ms, c.ended_at_ms, c.elapsed_ms, running, c.suspended_ms, "
            "s.wall_ms, s.suspended_ms "
            "FROM checkpoints AS c LEFT JOIN stamps AS s ON s.stamp = c.stamp "
            "WHERE backend = ? AND identity != ? "
            "AND owner NOT IN (SELECT owner FROM owners)",
            (backend, identity),
        ):
            stamp = None if alive is None else (alive, asleep_then)
            elapsed = open_window((*numbers, running, asleep), stamp)[2]
            if elapsed > 0:
                count += 1
                active_ms += elapsed
        return int(count), int(active_ms)

    # -- windows --------------------------------------------------------------------

    def add(self, rows: Iterable[WindowRow]) -> None:
        """Store windows before (or as) they are sent. A window already stored is kept."""
        self._db.executemany(
            "INSERT OR IGNORE INTO windows (backend, identity, run_id, started_at_ms, "
            "ended_at_ms, elapsed_ms, body, owner, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    r.backend,
                    r.identity,
                    r.run_id,
                    r.started_at_ms,
                    r.ended_at_ms,
                    r.elapsed_ms,
                    r.body,
                    r.owner,
                    r.sent_at,
                )
                for r in rows
            ],
        )

    def mark_sent(self, keys: Iterable[tuple[float, str, int]]) -> None:
        """Record first attempts, each ``(epoch seconds, run_id, started_at_ms)``."""
        self._db.executemany(
            "UPDATE windows SET sent_at = ? WHERE run_id = ? AND started_at_ms = ? "
            "AND sent_at IS NULL",
            keys,
        )

    def mark_refused(self, keys: Iterable[tuple[str, int]]) -> None:
        """Windows the backend answered with a refusal they are kept through (held), each
        ``(run_id, started_at_ms)``: the server does not have them, as if never sent."""
        self._db.executemany(
            "UPDATE windows SET sent_at = NULL WHERE run_id = ? AND started_at_ms = ?", keys
        )

    def remove(self, keys: Iterable[tuple[str, int]]) -> None:
        """Windows that got their final answer, each ``(run_id, started_at_ms)``."""
        self._db.executemany("DELETE FROM windows WHERE run_id = ? AND started_at_ms = ?", keys)

    # -- checkpoints ------------------------------------------------------------------

    def put_checkpoint(self, row: CheckpointRow) -> int:
        """Write the open window of a run (replacing what it had); its row's id."""
        db = self._db
        db.execute("DELETE FROM checkpoints WHERE run_id = ?", (row.run_id,))
        cursor = db.execute(
            "INSERT INTO checkpoints (run_id, backend, identity, started_at_ms, "
            "ended_at_ms, elapsed_ms, body, owner, running, suspended_ms, stamp) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.run_id,
                row.backend,
                row.identity,
                row.started_at_ms,
                row.ended_at_ms,
                row.elapsed_ms,
                row.template,
                row.owner,
                int(row.running),
                row.suspended_ms,
                row.stamp,
            ),
        )
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def move_checkpoints(self, rows: Iterable[tuple[int, int, int, int, int, int]]) -> None:
        """Changed open windows: ``(row id, started_at_ms, ended_at_ms, elapsed_ms,
        running, suspended_ms)``, one row each, found by its id."""
        self._db.executemany(
            "UPDATE checkpoints SET started_at_ms = ?, ended_at_ms = ?, elapsed_ms = ?, "
            "running = ?, suspended_ms = ? WHERE rowid = ?",
            [(*numbers, row_id) for row_id, *numbers in rows],
        )

    def stamp(self, stamp: str, wall_ms: int, suspended_ms: int) -> None:
        """This process was alive at ``wall_ms`` of a clock, which had then counted
        ``suspended_ms`` of suspend: the running checkpoints of that clock count until
        here."""
        self._db.execute(
            "INSERT INTO stamps (stamp, wall_ms, suspended_ms) VALUES (?, ?, ?) "
            "ON CONFLICT (stamp) DO UPDATE SET wall_ms = excluded.wall_ms, "
            "suspended_ms = excluded.suspended_ms",
            (stamp, wall_ms, suspended_ms),
        )

    def forget_stamps(self) -> None:
        """Stamps no checkpoint refers to any more."""
        self._db.execute(
            "DELETE FROM stamps WHERE stamp NOT IN "
            "(SELECT stamp FROM checkpoints WHERE stamp IS NOT NULL)"
        )

    def drop_checkpoints(self, row_ids: Iterable[int]) -> None:
        """These runs' activities ended: their checkpoints go."""
        self._db.executemany(
            "DELETE FROM checkpoints WHERE rowid = ?", [(row_id,) for row_id in row_ids]
        )

    # -- reading ----------------------------------------------------------------------

    def count(self, backend: str | None = None) -> int:
        """Windows stored (for one backend, or all), every owner's."""
        if backend is None:
            row = self._db.execute("SELECT count(*) FROM windows").fetchone()
        else:
            row = self._db.execute(
                "SELECT count(*) FROM windows WHERE backend = ?", (backend,)
            ).fetchone()
        return int(row[0])

    def summary(self) -> tuple[int, int, int | None]:
        """Every window stored, every owner's: how many, their active ms, and the start
        (wall ms) of the oldest, or None."""
        count, active, oldest = self._db.execute(
            "SELECT count(*), coalesce(sum(elapsed_ms), 0), min(started_at_ms) FROM windows"
        ).fetchone()
        return int(count), int(active), None if oldest is None else int(oldest)

    def pending(self, owner: str) -> list[StoredWindow]:
        """An owner's stored windows, oldest first."""
        return self._rows("WHERE owner = ? ORDER BY row_id", (owner,))

    def checkpoints(self) -> list[tuple[str, int, int, int]]:
        """Every checkpoint: ``(run_id, started_at_ms, ended_at_ms, elapsed_ms)``."""
        return [
            (str(r[0]), int(r[1]), int(r[2]), int(r[3]))
            for r in self._db.execute(
                "SELECT run_id, started_at_ms, ended_at_ms, elapsed_ms FROM checkpoints"
            )
        ]

    def _rows(self, where: str, params: tuple[object, ...]) -> list[StoredWindow]:
        return [
            StoredWindow(
                row_id=row[0],
                run_id=row[1],
                started_at_ms=row[2],
                ended_at_ms=row[3],
                elapsed_ms=row[4],
                body=bytes(row[5]),
                identity=row[6],
                sent_at=row[7],
            )
            for row in self._db.execute(
                _SELECT_WINDOWS + where,  # fixed clauses from this module, values bound
                params,
            )
        ]

    # -- bounded size -----------------------------------------------------------------

    def make_room(self, backend: str) -> int:
        """Keep at most `max_windows` of a backend: merge adjacent never-sent windows of a
        run, then, only if that is not enough, drop the oldest never-sent ones. Only this
        process's windows are touched. Call it in a transaction.

        Returns the active ms that could not be kept (0 when merging was enough).
        """
        excess = self.count(backend) - self.max_windows
        if excess <= 0:
            return 0
        db = self._db
        excess -= self._merge(backend, excess)
        lost = 0
        if excess > 0:
            doomed = db.execute(
                f"SELECT row_id, elapsed_ms FROM windows WHERE backend = ? AND {_OURS} "  # noqa: S608 - fixed clause
                "AND sent_at IS NULL ORDER BY row_id LIMIT ?",
                (backend, socket.gethostname(), os.getpid(), excess),
            ).fetchall()
            for row_id, elapsed in doomed:
                db.execute("DELETE FROM windows WHERE row_id = ?", (row_id,))
                lost += elapsed
        return lost

    def _merge(self, backend: str, wanted: int) -> int:
        db = self._db
        rows = [
            _Row(*row)
            for row in db.execute(
                _SELECT_UNSENT_OF_OURS + "ORDER BY run_id, started_at_ms",
                (backend, socket.gethostname(), os.getpid()),
            )
        ]
        merged = 0
        previous: _Row | None = None
        for row in rows:
            body = None
            if merged < wanted and previous is not None and previous.touches(row):
                body = merge_bodies(previous.body, row.body)
            if previous is None or body is None:
                previous = row
                continue
            previous.ended_at_ms = row.ended_at_ms
            previous.elapsed_ms += row.elapsed_ms
            previous.body = body
            db.execute("DELETE FROM windows WHERE row_id = ?", (row.row_id,))
            db.execute(
                "UPDATE windows SET ended_at_ms = ?, elapsed_ms = ?, body = ? WHERE row_id = ?",
                (previous.ended_at_ms, previous.elapsed_ms, previous.body, previous.row_id),
            )
            merged += 1
        return merged


@attrs.define
class _Row:
    row_id: int
    run_id: str
    started_at_ms: int
    ended_at_ms: int
    elapsed_ms: int
    body: bytes

    def touches(self, other: _Row) -> bool:
        return self.run_id == other.run_id and self.ended_at_ms == other.started_at_ms
