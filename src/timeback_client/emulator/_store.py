"""Storage of what the emulated backend sent to Caliper: SQLite, in memory or in a file.

One code path for both: ``sqlite3`` on ``":memory:"`` by default, on a file when asked, so
a restart with the same file keeps every event and every dedupe key. One connection is
shared by the event loop serving requests and by the threads inspecting it, so every
access goes through one lock (``check_same_thread=False`` only lifts sqlite3's own guard).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from typing import Any, Literal

import attrs

from .._errors import ValidationError
from .._file_proof import foreign_content, table_names

EventKind = Literal["heartbeat", "time", "completion"]

_SCHEMA_VERSION = 1
# Milliseconds are kept as decimal text: the vendor accepts any JSON integer (2**64 ms is a
# valid, if absurd, window) and SQLite integers stop at 2**63 - 1.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    dedupe_key TEXT UNIQUE,
    run_id TEXT,
    student TEXT NOT NULL,
    activity_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    started_at TEXT,
    ended_at TEXT,
    active_ms TEXT,
    inactive_ms TEXT,
    received_at TEXT NOT NULL,
    caliper TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, seq);
CREATE INDEX IF NOT EXISTS completions_by_student ON events (student, object_id, seq)
    WHERE kind = 'completion';
"""
#: Encodes as starlette's ``JSONResponse`` does, for JSON text served as it is.
COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_SELECT_ALL = """
SELECT seq, kind, run_id, student, activity_id, object_id, started_at, ended_at,
       active_ms, inactive_ms, received_at, caliper
FROM events ORDER BY seq
"""
_SELECT_FACTS = """
SELECT seq, kind, run_id, student, activity_id, object_id, started_at, ended_at,
       active_ms, inactive_ms
FROM events WHERE run_id IS NOT NULL ORDER BY seq
"""
_SELECT_RUN = """
SELECT seq, kind, run_id, student, activity_id, object_id, started_at, ended_at,
       active_ms, inactive_ms, received_at, caliper
FROM events WHERE run_id = ? ORDER BY seq
"""


@attrs.frozen(kw_only=True)
class EventFacts:
    """What a stored event says apart from its Caliper payload and arrival stamp.

    Enough for the problem rules, and read without decoding any Caliper JSON (see
    ``SentEvent`` for the attributes).
    """

    seq: int
    kind: EventKind
    run_id: str | None
    student: str
    activity_id: str
    object_id: str
    started_at: str | None
    ended_at: str | None
    active_ms: int | None
    inactive_ms: int | None


@attrs.frozen(kw_only=True, init=False, repr=False)
class SentEvent(EventFacts):
    """One Caliper event the emulated backend sent, with what it was made from.

    Attributes:
        seq: Arrival order, 1-based, stable across restarts with a database file.
        kind: ``"heartbeat"`` (a TimeSpentEvent from a heartbeat window), ``"time"``
            (the TimeSpentEvent of ``record()`` with ``time``) or ``"completion"`` (the
            ActivityCompletedEvent of ``record()``).
        run_id: The run (Caliper ``session`` without ``urn:uuid:``); None for a
            ``record()`` without ``run_id``.
        student: The student's email.
        activity_id: The activity slug (``id`` of the heartbeat, ``activity.id``).
        object_id: The canonical activity URL (Caliper ``object.id``).
        started_at: ``startedAt`` of a heartbeat window, ``time.started_at`` of a
            record, exactly as sent.
        ended_at: ``endedAt`` of a heartbeat window, or the event time of a record.
        active_ms: Active milliseconds of a time-spent event.
        inactive_ms: Inactive (paused) milliseconds of a time-spent event.
        received_at: When the emulator stored it (ISO 8601, UTC).
        caliper: The Caliper event as sent (a fresh copy on every read).
    """

    received_at: str
    # The event is kept as its JSON text and decoded on each read of ``caliper``: a
    # string is one object the cyclic garbage collector never scans, where the decoded
    # event is a dozen dicts and lists it would rescan at every full collection while
    # tens of thousands of events are held (``runs()``). Compared decoded, as a dict is.
    _caliper_json: str = attrs.field(alias="caliper", eq=json.loads)

    def __init__(
        self,
        *,
        seq: int,
        kind: EventKind,
        run_id: str | None,
        student: str,
        activity_id: str,
        object_id: str,
        started_at: str | None,
        ended_at: str | None,
        active_ms: int | None,
        inactive_ms: int | None,
        received_at: str,
        caliper: dict[str, Any],
    ) -> None:
        self.__attrs_init__(
            seq=seq,
            kind=kind,
            run_id=run_id,
            student=student,
            activity_id=activity_id,
            object_id=object_id,
            started_at=started_at,
            ended_at=ended_at,
            active_ms=active_ms,
            inactive_ms=inactive_ms,
            received_at=received_at,
            # A string is already the JSON text: ``attrs.evolve()`` passes the field on.
            caliper=caliper if isinstance(caliper, str) else json.dumps(caliper),
        )

    @property
    def caliper(self) -> dict[str, Any]:
        """The Caliper event as sent (a fresh copy on every read)."""
        decoded: dict[str, Any] = json.loads(self._caliper_json)
        return decoded

    def __repr__(self) -> str:
        facts = ", ".join(
            f"{field.name}={getattr(self, field.name)!r}" for field in attrs.fields(EventFacts)
        )
        return f"SentEvent({facts}, received_at={self.received_at!r}, caliper={self.caliper!r})"

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON form served by ``GET /_emulator/events``."""
        return {**self._facts_json(), "caliper": self.caliper}

    def _facts_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "kind": self.kind,
            "runId": self.run_id,
            "student": self.student,
            "activityId": self.activity_id,
            "objectId": self.object_id,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "activeMs": self.active_ms,
            "inactiveMs": self.inactive_ms,
            "receivedAt": self.received_at,
        }


def event_json_text(event: SentEvent) -> str:
    """``event.to_json()`` as JSON text, the stored Caliper text spliced in as it is.

    Encoding tens of thousands of events (``GET /_emulator/runs``) this way never builds
    their Caliper dicts at all.
    """
    facts = COMPACT_JSON.encode(event._facts_json())
    return f'{facts[:-1]},"caliper":{event._caliper_json}}}'


def _stored_event(
    seq: int,
    kind: EventKind,
    run_id: str | None,
    student: str,
    activity_id: str,
    object_id: str,
    started_at: str | None,
    ended_at: str | None,
    active_ms: int | None,
    inactive_ms: int | None,
    received_at: str,
    caliper_json: str,
) -> SentEvent:
    """A ``SentEvent`` from its stored JSON text, without decoding it and encoding it again."""
    event = SentEvent.__new__(SentEvent)
    event.__attrs_init__(
        seq=seq,
        kind=kind,
        run_id=run_id,
        student=student,
        activity_id=activity_id,
        object_id=object_id,
        started_at=started_at,
        ended_at=ended_at,
        active_ms=active_ms,
        inactive_ms=inactive_ms,
        received_at=received_at,
        caliper=caliper_json,
    )
    return event


@attrs.frozen(kw_only=True)
class NewEvent:
    """An event about to be stored: a ``SentEvent`` without its ``seq``."""

    kind: EventKind
    run_id: str | None
    student: str
    activity_id: str
    object_id: str
    started_at: str | None
    ended_at: str | None
    active_ms: int | None
    inactive_ms: int | None
    received_at: str
    caliper: dict[str, Any]


#: "TBKE": tells an emulator's event store from any other SQLite file.
STORE_APPLICATION_ID = 0x54424B45
# What an event store made before it carried the application id holds.
_LEGACY_TABLES = {"events", "sqlite_sequence"}


def _check_store_file(path: str) -> None:
    """A file the harness named is the emulator's store, or nothing yet (or empty and
    private); anything else is refused and left exactly as it is."""
    problem = foreign_content(path, application_id=STORE_APPLICATION_ID)
    if problem is None:
        return
    tables = table_names(path, limit=10)
    if tables and "events" in tables and set(tables) <= _LEGACY_TABLES:
        return  # a store of an earlier version (before the application id)
    raise ValidationError(
        "db",
        f"{path} {problem}, not an emulator's event store; the emulator left it as it is",
        "Pass a file of its own (the emulator creates it), or None to keep events in memory.",
    )


class Store:
    """Thread-safe event storage.

    Args:
        path: SQLite database file, created if missing; None keeps everything in memory.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self._lock = threading.Lock()
        target = ":memory:" if path is None else os.fspath(path)
        if path is not None:
            _check_store_file(target)
            # Events name students: create the file private to the user before SQLite does.
            with contextlib.suppress(FileExistsError):
                os.close(os.open(target, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        self._db = sqlite3.connect(target, check_same_thread=False, isolation_level=None)
        with self._lock:
            # The schema and the application id in one transaction, before WAL: a file
            # with a database header is then the emulator's only if it carries the id.
            self._db.executescript(
                f"BEGIN IMMEDIATE;\n{_SCHEMA}\n"
                f"PRAGMA application_id={STORE_APPLICATION_ID};\nCOMMIT;"
            )
            (version,) = self._db.execute("PRAGMA user_version").fetchone()
            if version not in (0, _SCHEMA_VERSION):
                raise ValueError(f"{target}: unknown emulator database version {version}")
            self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
            if path is not None:
                # WAL keeps a crash from losing committed events without an fsync per read.
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")

    def has_key(self, dedupe_key: str) -> bool:
        """Whether a heartbeat window with this dedupe key was already accepted."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM events WHERE dedupe_key = ?", (dedupe_key,)
            ).fetchone()
        return row is not None

    def add(self, event: NewEvent, *, dedupe_key: str | None = None) -> SentEvent | None:
        """Store an event; with a dedupe key, only if that key is new (atomically).

        Returns:
            The stored event, or None when the dedupe key was already taken.
        """
        caliper_json = json.dumps(event.caliper)
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (kind, dedupe_key, run_id, student, activity_id,"
                " object_id, started_at, ended_at, active_ms, inactive_ms, received_at, caliper)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    event.kind,
                    dedupe_key,
                    event.run_id,
                    event.student,
                    event.activity_id,
                    event.object_id,
                    event.started_at,
                    event.ended_at,
                    _ms_text(event.active_ms),
                    _ms_text(event.inactive_ms),
                    event.received_at,
                    caliper_json,
                ),
            )
            if cursor.rowcount == 0:
                return None
            seq = cursor.lastrowid
        assert seq is not None  # an INSERT that inserted always has a rowid
        return _stored_event(
            seq,
            event.kind,
            event.run_id,
            event.student,
            event.activity_id,
            event.object_id,
            event.started_at,
            event.ended_at,
            event.active_ms,
            event.inactive_ms,
            event.received_at,
            caliper_json,
        )

    def events(self, run_id: str | None = None) -> tuple[SentEvent, ...]:
        """All events in arrival order, or those of one run."""
        with self._lock:
            if run_id is None:
                rows = self._db.execute(_SELECT_ALL).fetchall()
            else:
                rows = self._db.execute(_SELECT_RUN, (run_id,)).fetchall()
        return tuple(_event_from_row(row) for row in rows)

    def facts(self) -> tuple[EventFacts, ...]:
        """The facts of every event that names a run, in arrival order, Caliper unread."""
        with self._lock:
            rows = self._db.execute(_SELECT_FACTS).fetchall()
        return tuple(_facts_from_row(row) for row in rows)

    def completions(self, student: str, object_id: str) -> list[tuple[str, dict[str, Any]]]:
        """End time and Caliper event of a student's completions of an activity, in order.

        Only completions with an end time; read through a partial index of completions,
        so the cost follows this student's completions, not the events stored.
        """
        with self._lock:
            rows = self._db.execute(
                "SELECT ended_at, caliper FROM events WHERE kind = 'completion'"
                " AND student = ? AND object_id = ? AND ended_at IS NOT NULL ORDER BY seq",
                (student, object_id),
            ).fetchall()
        return [(str(ended_at), json.loads(caliper)) for ended_at, caliper in rows]

    def run_ids(self) -> list[str]:
        """Every runId seen, in order of first appearance."""
        with self._lock:
            rows = self._db.execute(
                "SELECT run_id FROM events WHERE run_id IS NOT NULL "
                "GROUP BY run_id ORDER BY min(seq)"
            ).fetchall()
        return [str(row[0]) for row in rows]

    def version(self) -> tuple[int, int]:
        """How many events are stored, and the last one's ``seq``: moves with each event
        stored (a cheap question, for a page that polls)."""
        with self._lock:
            count, last = self._db.execute("SELECT count(*), max(seq) FROM events").fetchone()
        return int(count), int(last or 0)

    def clear(self) -> None:
        """Forget every event and dedupe key."""
        with self._lock:
            self._db.execute("DELETE FROM events")

    def close(self) -> None:
        """Close the database; the store is unusable afterwards."""
        with self._lock:
            self._db.close()


def _event_from_row(row: tuple[Any, ...]) -> SentEvent:
    (seq, kind, run_id, student, activity_id, object_id, started_at, ended_at) = row[:8]
    active_ms, inactive_ms, received_at, caliper_json = row[8:]
    return _stored_event(
        seq,
        kind,
        run_id,
        student,
        activity_id,
        object_id,
        started_at,
        ended_at,
        None if active_ms is None else int(active_ms),
        None if inactive_ms is None else int(inactive_ms),
        received_at,
        caliper_json,
    )


def _facts_from_row(row: tuple[Any, ...]) -> EventFacts:
    seq, kind, run_id, student, activity_id, object_id, started_at, ended_at = row[:8]
    active_ms, inactive_ms = row[8:]
    return EventFacts(
        seq=seq,
        kind=kind,
        run_id=run_id,
        student=student,
        activity_id=activity_id,
        object_id=object_id,
        started_at=started_at,
        ended_at=ended_at,
        active_ms=None if active_ms is None else int(active_ms),
        inactive_ms=None if inactive_ms is None else int(inactive_ms),
    )


def _ms_text(ms: int | None) -> str | None:
    return None if ms is None else str(ms)
