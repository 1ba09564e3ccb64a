"""The local progress store: each student's lessons, their state and their open runId.

The docs' advice, followed here: save the ``run_id`` as soon as the activity starts (not
when it ends: the app may never get there), resume the run with it while the lesson is
unfinished, and forget it once the backend recorded the completion, so that the next
attempt gets a fresh run. The file is readable by its owner only (mode 0600): it says
who studied what and when.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

State = Literal["new", "in progress", "completed"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (
    student     TEXT NOT NULL,
    lesson      TEXT NOT NULL,
    run_id      TEXT,               -- the open run, resumed on the next opening
    active_ms   INTEGER NOT NULL DEFAULT 0,  -- active time in that run, all sessions
    completions INTEGER NOT NULL DEFAULT 0,
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (student, lesson)
)
"""


def default_data_dir(app_name: str = "timeback-kiosk") -> Path:
    """The per-user data directory: XDG on Linux, Application Support, LOCALAPPDATA."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / app_name


@dataclass(frozen=True)
class LessonProgress:
    """Where one student stands in one lesson."""

    run_id: str | None
    active_ms: int
    completions: int

    @property
    def state(self) -> State:
        if self.run_id is not None:
            return "in progress"
        return "completed" if self.completions else "new"


NEW = LessonProgress(run_id=None, active_ms=0, completions=0)


class ProgressStore:
    """SQLite progress, used from the Tk thread only.

    Args:
        path: the database file; created with mode 0600 (its directory with 0700).
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Create the file ourselves, so that it never exists with looser permissions
        # (SQLite gives its journal the database file's mode).
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute(_SCHEMA)

    def get(self, student: str, lesson: str) -> LessonProgress:
        row = self._db.execute(
            "SELECT run_id, active_ms, completions FROM progress WHERE student=? AND lesson=?",
            (student, lesson),
        ).fetchone()
        return NEW if row is None else LessonProgress(*row)

    def run_started(self, student: str, lesson: str, run_id: str) -> None:
        """Save the run at once. A run other than the saved one starts at zero time."""
        self._db.execute(
            """INSERT INTO progress (student, lesson, run_id, updated_at) VALUES (?, ?, ?, ?)
               ON CONFLICT (student, lesson) DO UPDATE SET
                 active_ms = CASE WHEN run_id IS excluded.run_id THEN active_ms ELSE 0 END,
                 run_id = excluded.run_id, updated_at = excluded.updated_at""",
            (student, lesson, run_id, _now()),
        )

    def add_time(self, student: str, lesson: str, run_id: str, active_ms: int) -> None:
        """Add a session's active time to the run (if it is still the open one)."""
        self._db.execute(
            """UPDATE progress SET active_ms = active_ms + ?, updated_at = ?
               WHERE student=? AND lesson=? AND run_id=?""",
            (active_ms, _now(), student, lesson, run_id),
        )

    def completed(self, student: str, lesson: str, run_id: str) -> None:
        """The backend recorded the run's completion: forget the run, count the completion."""
        self._db.execute(
            """UPDATE progress SET run_id = NULL, completions = completions + 1, updated_at = ?
               WHERE student=? AND lesson=? AND run_id=?""",
            (_now(), student, lesson, run_id),
        )

    def close(self) -> None:
        self._db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
