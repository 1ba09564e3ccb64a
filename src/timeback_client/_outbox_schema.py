"""The outbox's tables, and the migrations that bring an older file up to date.

A new file gets the schema, the application id (`_file_proof.APPLICATION_ID`) and the
version in its first transaction; an older one gets the migrations it lacks, in order.
"""

from __future__ import annotations

import sqlite3
from typing import Final

from ._file_proof import APPLICATION_ID

__all__ = ["MIGRATIONS", "SCHEMA", "SCHEMA_VERSION", "create_or_migrate"]

SCHEMA_VERSION: Final = 3

SCHEMA: Final = """
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
CREATE INDEX IF NOT EXISTS windows_backend ON windows (backend, identity);
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

# Version 2: a checkpoint is the open window as of its last change, and whether it was
# counting then; a stamp, written once a second, says until when its process was alive.
# Version 3: the moves from another outbox file that reached this one
# (`_outbox_moves.OutboxMoves.record_move`).
MIGRATIONS: Final = {
    2: (
        "ALTER TABLE checkpoints ADD COLUMN running INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE checkpoints ADD COLUMN suspended_ms INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE checkpoints ADD COLUMN stamp TEXT",
        "CREATE TABLE IF NOT EXISTS stamps (stamp TEXT PRIMARY KEY, "
        "wall_ms INTEGER NOT NULL, suspended_ms INTEGER NOT NULL)",
        "CREATE INDEX IF NOT EXISTS checkpoints_owner ON checkpoints (owner)",
    ),
    3: ("CREATE TABLE IF NOT EXISTS moves_in (marker TEXT PRIMARY KEY, source TEXT NOT NULL)",),
}


def create_or_migrate(db: sqlite3.Connection) -> None:
    """Make the tables, or bring them to `SCHEMA_VERSION`, and mark the file as an outbox.
    Call it in the file's first write transaction: a file with a database header is then
    an outbox only if it carries the application id."""
    for statement in SCHEMA.split(";"):
        if statement.strip():
            db.execute(statement)
    version = db.execute("PRAGMA user_version").fetchone()[0]
    for target in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target]:
            db.execute(statement)
    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
    db.execute(f"PRAGMA user_version={max(version, SCHEMA_VERSION)}")
