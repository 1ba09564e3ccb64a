"""The durable outbox: windows on disk until the backend has them.

A window is written here before it is sent and deleted only after a final answer, so a
crash, a power cut or an hour offline loses nothing; the open window of each running
activity is checkpointed about once a second, so a crash loses at most that second. The
next process that opens the outbox for the same backend replays what was left, with the
exact bytes first written.

Storage is one SQLite file in WAL mode, private to the user (mode 0600 in a 0700
directory). Several processes may share it: each registers as an *owner* with a lease it
renews; rows belong to one owner at a time, and only rows of owners whose lease ran out
(or whose process is gone) can be claimed, in one transaction. Credentials are never
stored: a window keeps only the SHA-256 *identity* of the credentials it was sent with,
so it is replayed only as the same student.

When the outbox is full, adjacent never-sent windows of a run are merged (windows are
additive, so a merged window keeps every invariant) rather than dropped.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import sqlite3
import stat
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Final

import attrs

from ._errors import OutboxError

__all__ = [
    "DEFAULT_MAX_WINDOWS",
    "Outbox",
    "OutboxError",
    "StoredWindow",
    "default_outbox_path",
    "identity_of",
]

DEFAULT_MAX_WINDOWS: Final = 50_000
LEASE_SECONDS: Final = 15.0
_SCHEMA_VERSION: Final = 1
_APPLICATION_ID: Final = 0x54424B31  # "TBK1": tells our file from any other SQLite file


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


def identity_of(base_url: str, headers: Mapping[str, str], cookies: Mapping[str, str]) -> str:
    """A one-way fingerprint of where and as whom windows are sent (never the secrets)."""
    digest = hashlib.sha256(base_url.encode())
    for name, value in sorted((k.lower(), v) for k, v in headers.items()):
        if name in ("authorization", "cookie") or name.startswith("x-"):
            digest.update(f"\0{name}\0{value}".encode())
    for name, value in sorted(cookies.items()):
        digest.update(f"\0cookie:{name}\0{value}".encode())
    return digest.hexdigest()


def default_outbox_path(app_name: str = "timeback-client") -> Path:
    """The per-user cache location, by platform convention."""
    if sys.platform == "win32":  # pragma: no cover - Windows only
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
        return base / app_name / "Cache" / "outbox.sqlite3"
    if sys.platform == "darwin":  # pragma: no cover - macOS only
        return Path.home() / "Library" / "Caches" / app_name / "outbox.sqlite3"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / app_name / "outbox.sqlite3"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS owners (
    owner TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    lease_until REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS windows (
    row_id INTEGER PRIMARY KEY AUTOINCREMENT,
    backend TEXT NOT NULL,
    identity TEXT NOT NULL,
    run_id TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    owner TEXT NOT NULL,
    sent_at REAL,
    UNIQUE (run_id, started_at_ms)
);
CREATE INDEX IF NOT EXISTS windows_owner ON windows (owner);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    identity TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER NOT NULL,
    elapsed_ms INTEGER NOT NULL,
    body BLOB NOT NULL,
    owner TEXT NOT NULL
);
"""


_SELECT_WINDOWS: Final = (
    "SELECT row_id, run_id, started_at_ms, ended_at_ms, elapsed_ms, body, identity, sent_at "
    "FROM windows "
)


class Outbox:
    """One process's handle on the outbox file for one backend.

    Args:
        path: the SQLite file (created private to the user if missing).
        backend: the backend's base URL; windows of other backends are never touched.
        max_windows: beyond this many stored windows, merge, then drop the oldest.

    Raises:
        OutboxError: the file is not an outbox (it is moved aside, and a new one made),
            or cannot be created.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, backend: str, max_windows: int = DEFAULT_MAX_WINDOWS
    ) -> None:
        self.path = Path(path)
        self.backend = backend
        self.max_windows = max_windows
        self.owner = uuid.uuid4().hex
        self.set_aside: Path | None = None
        self._db = self._open()
        self.renew()

    # -- opening --------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            problem = exc
        # Not ours, or corrupt: keep it aside for inspection and start a new one, so
        # tracking goes on.
        aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise OutboxError(f"outbox {self.path} is unusable ({problem}): {exc}") from problem
        self.set_aside = aside
        # Its journal goes with it: another app's database may hold committed data there.
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            raise OutboxError(f"cannot create outbox {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        # Create the file private before SQLite does, so it is never readable by others.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        with contextlib.suppress(OSError):
            os.chmod(self.path, stat.S_IRUSR | stat.S_IWUSR)
        db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        try:
            # Look before writing anything (switching to WAL rewrites the header): a file
            # that is not ours, or is damaged, is set aside exactly as it was.
            _check_ours(db)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with self._transaction(db):
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA application_id={_APPLICATION_ID}")
                db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            db.execute("SELECT count(*) FROM windows").fetchone()
        except BaseException:
            db.close()
            raise
        for suffix in ("-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.chmod(f"{self.path}{suffix}", stat.S_IRUSR | stat.S_IWUSR)
        return db

    @staticmethod
    @contextlib.contextmanager
    def _transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.Error:
            # A failed COMMIT (disk full, I/O error) may leave the transaction open.
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def close(self) -> None:
        """Give up this process's claim (others may replay what is left) and close."""
        with contextlib.suppress(sqlite3.Error), self._transaction(self._db) as db:
            db.execute("DELETE FROM owners WHERE owner = ?", (self.owner,))
        self._db.close()

    # -- leases ---------------------------------------------------------------------

    def renew(self) -> None:
        """Keep this process's claim on its rows for another `LEASE_SECONDS`."""
        with self._transaction(self._db) as db:
            db.execute(
                "INSERT INTO owners (owner, host, pid, lease_until) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (owner) DO UPDATE SET lease_until = excluded.lease_until",
                (self.owner, socket.gethostname(), os.getpid(), time.time() + LEASE_SECONDS),
            )

    def claim_orphans(self, identity: str) -> list[StoredWindow]:
        """Take over what dead or departed processes left for this backend and identity.

        Their checkpoints become windows. Returns the windows now owned here, in order:
        sent-but-unanswered first (they are the ones the server may remember), oldest
        first within each.
        """
        with self._transaction(self._db) as db:
            for owner in self._dead_owners(db):
                db.execute("DELETE FROM owners WHERE owner = ?", (owner,))
            live = {owner for (owner,) in db.execute("SELECT owner FROM owners")}
            orphans = [
                row
                for row in db.execute(
                    "SELECT run_id, identity, started_at_ms, ended_at_ms, elapsed_ms, body, "
                    "owner FROM checkpoints WHERE backend = ? AND identity = ?",
                    (self.backend, identity),
                )
                if row[6] not in live
            ]
            for run_id, ident, start, end, elapsed, body, _ in orphans:
                db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
                db.execute(
                    "INSERT OR IGNORE INTO windows (backend, identity, run_id, started_at_ms, "
                    "ended_at_ms, elapsed_ms, body, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (self.backend, ident, run_id, start, end, elapsed, body, self.owner),
                )
            owners = sorted(live - {self.owner})
            marks = ",".join("?" * len(owners))
            exclude = f"AND owner NOT IN ({marks})" if owners else ""
            db.execute(
                f"UPDATE windows SET owner = ? WHERE backend = ? AND identity = ? {exclude}",  # noqa: S608 - only placeholders
                (self.owner, self.backend, identity, *owners),
            )
            return self._rows(
                db,
                "WHERE owner = ? AND backend = ? AND identity = ? "
                "ORDER BY sent_at IS NULL, run_id, started_at_ms",
                (self.owner, self.backend, identity),
            )

    def _dead_owners(self, db: sqlite3.Connection) -> list[str]:
        """Owners whose lease ran out, or whose process on this host is gone."""
        now, host = time.time(), socket.gethostname()
        dead = []
        for owner, owner_host, pid, lease_until in db.execute(
            "SELECT owner, host, pid, lease_until FROM owners WHERE owner != ?", (self.owner,)
        ):
            if lease_until < now or (owner_host == host and not _process_alive(pid)):
                dead.append(owner)
        return dead

    # -- windows --------------------------------------------------------------------

    def add(
        self,
        *,
        run_id: str,
        started_at_ms: int,
        ended_at_ms: int,
        elapsed_ms: int,
        body: bytes,
        identity: str,
    ) -> int:
        """Store a window before it is sent, and drop its run's checkpoint; its row id."""
        with self._transaction(self._db) as db:
            db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))
            cursor = db.execute(
                "INSERT INTO windows (backend, identity, run_id, started_at_ms, ended_at_ms, "
                "elapsed_ms, body, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.backend,
                    identity,
                    run_id,
                    started_at_ms,
                    ended_at_ms,
                    elapsed_ms,
                    body,
                    self.owner,
                ),
            )
            row_id = cursor.lastrowid
        assert row_id is not None
        return row_id

    def mark_sent(self, row_id: int) -> None:
        """Record the first attempt: from now on the server may have the window."""
        self._db.execute(
            "UPDATE windows SET sent_at = ? WHERE row_id = ? AND sent_at IS NULL",
            (time.time(), row_id),
        )

    def remove(self, row_id: int) -> None:
        """The window got its final answer: forget it."""
        self._db.execute("DELETE FROM windows WHERE row_id = ?", (row_id,))

    def checkpoint(self, items: Iterable[tuple[str, str, int, int, int, bytes]]) -> None:
        """Replace the open-window checkpoints of the given runs, in one transaction.

        Each item: (run_id, identity, started_at_ms, ended_at_ms, elapsed_ms, body).
        """
        with self._transaction(self._db) as db:
            db.executemany(
                "INSERT INTO checkpoints (run_id, backend, identity, started_at_ms, "
                "ended_at_ms, elapsed_ms, body, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id) DO UPDATE SET ended_at_ms = excluded.ended_at_ms, "
                "elapsed_ms = excluded.elapsed_ms, body = excluded.body, "
                "started_at_ms = excluded.started_at_ms, owner = excluded.owner",
                [
                    (run_id, self.backend, ident, start, end, elapsed, body, self.owner)
                    for run_id, ident, start, end, elapsed, body in items
                ],
            )

    def drop_checkpoint(self, run_id: str) -> None:
        """The open window closed with nothing to send (or the run ended)."""
        self._db.execute("DELETE FROM checkpoints WHERE run_id = ?", (run_id,))

    def count(self) -> int:
        """Windows stored for this backend (every owner)."""
        return int(
            self._db.execute(
                "SELECT count(*) FROM windows WHERE backend = ?", (self.backend,)
            ).fetchone()[0]
        )

    def pending(self) -> list[StoredWindow]:
        """This process's stored windows, oldest first."""
        return self._rows(self._db, "WHERE owner = ? ORDER BY row_id", (self.owner,))

    def _rows(
        self, db: sqlite3.Connection, where: str, params: tuple[object, ...]
    ) -> list[StoredWindow]:
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
            for row in db.execute(
                _SELECT_WINDOWS + where,  # fixed clauses from this module, values bound
                params,
            )
        ]

    # -- bounded size -----------------------------------------------------------------

    def make_room(self) -> int:
        """Keep at most `max_windows`: merge adjacent never-sent windows of a run, then,
        only if that is not enough, drop the oldest never-sent ones.

        Returns the active ms that could not be kept (0 when merging was enough).
        """
        excess = self.count() - self.max_windows
        if excess <= 0:
            return 0
        with self._transaction(self._db) as db:
            excess -= self._merge(db, excess)
            lost = 0
            if excess > 0:
                doomed = db.execute(
                    "SELECT row_id, elapsed_ms FROM windows WHERE backend = ? AND owner = ? "
                    "AND sent_at IS NULL ORDER BY row_id LIMIT ?",
                    (self.backend, self.owner, excess),
                ).fetchall()
                for row_id, elapsed in doomed:
                    db.execute("DELETE FROM windows WHERE row_id = ?", (row_id,))
                    lost += elapsed
        return lost

    def _merge(self, db: sqlite3.Connection, wanted: int) -> int:
        rows = [
            _Row(*row)
            for row in db.execute(
                "SELECT row_id, run_id, started_at_ms, ended_at_ms, elapsed_ms, body "
                "FROM windows WHERE backend = ? AND owner = ? AND sent_at IS NULL "
                "ORDER BY run_id, started_at_ms",
                (self.backend, self.owner),
            )
        ]
        merged = 0
        previous: _Row | None = None
        for row in rows:
            body = None
            if merged < wanted and previous is not None and previous.touches(row):
                body = _merge_bodies(previous.body, row.body)
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


def _check_ours(db: sqlite3.Connection) -> None:
    app_id = db.execute("PRAGMA application_id").fetchone()[0]
    tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if app_id not in (0, _APPLICATION_ID) or (app_id == 0 and tables):
        raise sqlite3.DatabaseError("not a timeback-client outbox")
    if tables:
        # Every page of every table and index: a damaged file fails here, untouched
        # (a count of the windows alone can pass on an intact index over torn rows).
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise sqlite3.DatabaseError(f"damaged outbox: {verdict}")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def _merge_bodies(first: bytes, second: bytes) -> bytes | None:
    """One window covering two adjacent ones, or None if they differ in anything else."""
    a, b = json.loads(first), json.loads(second)
    same = ("id", "name", "course", "runId")
    if any(a.get(k) != b.get(k) for k in same) or a["endedAt"] != b["startedAt"]:
        return None
    merged = dict(a)
    merged["endedAt"] = b["endedAt"]
    merged["elapsedMs"] = a["elapsedMs"] + b["elapsedMs"]
    merged["pausedMs"] = a["pausedMs"] + b["pausedMs"]
    return json.dumps(merged, separators=(",", ":"), ensure_ascii=False).encode()
