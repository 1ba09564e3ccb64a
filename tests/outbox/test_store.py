"""The outbox file on its own: privacy, leases between processes, recovery, bounded size."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from timeback_client._models import Course, Window
from timeback_client._outbox import Outbox, OutboxError, identity_of

BACKEND = "https://app.example/api/timeback"
IDENTITY = identity_of(BACKEND, {"Authorization": "Bearer secret-token"}, {"sid": "cookie-value"})


def window(run_id: str, start_ms: int, active: int, paused: int = 0) -> Window:
    return Window(
        activity_id="lesson-1",
        name="Fractions",
        course=Course(subject="Math", grade=3),
        run_id=run_id,
        started_at_ms=1_767_603_600_000 + start_ms,
        ended_at_ms=1_767_603_600_000 + start_ms + active + paused,
        elapsed_ms=active,
        paused_ms=paused,
    )


def add(outbox: Outbox, w: Window) -> int:
    return outbox.add(
        run_id=w.run_id,
        started_at_ms=w.started_at_ms,
        ended_at_ms=w.ended_at_ms,
        elapsed_ms=w.elapsed_ms,
        body=w.to_bytes(),
        identity=IDENTITY,
    )


def kill_owner(path: Path, owner: str) -> None:
    """What a SIGKILL leaves: the owner row of a process that no longer renews it."""
    db = sqlite3.connect(path)
    db.execute("UPDATE owners SET lease_until = 0 WHERE owner = ?", (owner,))
    db.commit()
    db.close()


def test_file_and_folder_are_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "outbox.sqlite3"
    Outbox(path, backend=BACKEND).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_no_credential_is_ever_written(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, backend=BACKEND)
    add(outbox, window("0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 15_000))
    outbox.checkpoint([("run-x", IDENTITY, 0, 10, 10, b"{}")])
    outbox.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"secret-token" not in raw
    assert b"cookie-value" not in raw


def test_a_live_process_keeps_its_windows_and_a_dead_ones_are_replayed_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, backend=BACKEND)
    run = "0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10"
    windows = [window(run, i * 15_000, 15_000) for i in range(3)]
    rows = [add(first, w) for w in windows]
    first.mark_sent(rows[1])
    second = Outbox(path, backend=BACKEND)
    assert second.claim_orphans(IDENTITY) == []  # first is alive: nothing to take

    kill_owner(path, first.owner)
    claimed = second.claim_orphans(IDENTITY)
    # Sent-but-unanswered first (the server may remember it only for a while), then in order.
    assert [c.row_id for c in claimed] == [rows[1], rows[0], rows[2]]
    assert [c.body for c in claimed] == [windows[i].to_bytes() for i in (1, 0, 2)]
    assert claimed[0].sent_at is not None
    assert second.claim_orphans(IDENTITY) == claimed  # idempotent for the new owner


def test_a_checkpoint_of_a_dead_process_becomes_a_window(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, backend=BACKEND)
    w = window("0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 900)
    first.checkpoint([(w.run_id, IDENTITY, w.started_at_ms, w.ended_at_ms, 900, w.to_bytes())])
    kill_owner(path, first.owner)
    claimed = Outbox(path, backend=BACKEND).claim_orphans(IDENTITY)
    assert [(c.run_id, c.elapsed_ms, c.body) for c in claimed] == [(w.run_id, 900, w.to_bytes())]


def test_cutting_a_window_replaces_its_checkpoint_atomically(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, backend=BACKEND)
    run = "0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10"
    partial = window(run, 0, 900)
    first.checkpoint([(run, IDENTITY, partial.started_at_ms, partial.ended_at_ms, 900, b"{}")])
    add(first, window(run, 0, 1_000))
    kill_owner(path, first.owner)
    claimed = Outbox(path, backend=BACKEND).claim_orphans(IDENTITY)
    # Only the cut window: its checkpoint shares its startedAt and must never be sent too.
    assert [c.elapsed_ms for c in claimed] == [1_000]


def test_windows_of_another_identity_or_backend_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Outbox(path, backend=BACKEND)
    add(first, window("0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 15_000))
    kill_owner(path, first.owner)
    other = identity_of(BACKEND, {"Authorization": "Bearer someone-else"}, {})
    assert Outbox(path, backend=BACKEND).claim_orphans(other) == []
    assert Outbox(path, backend="https://other.example/api").claim_orphans(IDENTITY) == []


def test_a_process_that_exited_is_dead_at_once_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    code = (
        "import sys; from timeback_client._outbox import Outbox; "
        "o = Outbox(sys.argv[1], backend=sys.argv[2]); "
        "o.add(run_id='r', started_at_ms=0, ended_at_ms=5, elapsed_ms=5, body=b'{}', "
        "identity=sys.argv[3]); import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(path), BACKEND, IDENTITY], check=True)
    claimed = Outbox(path, backend=BACKEND).claim_orphans(IDENTITY)
    assert [c.run_id for c in claimed] == ["r"]


def test_when_full_adjacent_unsent_windows_merge_and_keep_every_millisecond(
    tmp_path: Path,
) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", backend=BACKEND, max_windows=3)
    run = "0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10"
    for i in range(6):
        add(outbox, window(run, i * 15_000, 10_000, paused=5_000))
    assert outbox.make_room() == 0
    kept = outbox.pending()
    assert len(kept) <= 3
    bodies = [json.loads(k.body) for k in kept]
    assert sum(b["elapsedMs"] for b in bodies) == 60_000
    assert sum(b["pausedMs"] for b in bodies) == 30_000
    for body in bodies:
        start = Window.from_json(body)  # the invariant holds for merged windows
        assert start.ended_at_ms - start.started_at_ms == start.elapsed_ms + start.paused_ms


def test_when_merging_is_not_enough_the_loss_is_reported_in_ms(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", backend=BACKEND, max_windows=1)
    # Two runs, nothing adjacent: merging cannot help.
    add(outbox, window("0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 7_000))
    add(outbox, window("1b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 9_000))
    assert outbox.make_room() == 7_000
    assert [k.elapsed_ms for k in outbox.pending()] == [9_000]


def test_sent_windows_are_never_merged(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.sqlite3", backend=BACKEND, max_windows=1)
    run = "0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10"
    rows = [add(outbox, window(run, i * 15_000, 15_000)) for i in range(2)]
    outbox.mark_sent(rows[0])
    outbox.mark_sent(rows[1])
    assert outbox.make_room() == 0  # nothing it may touch: kept, over the bound
    assert len(outbox.pending()) == 2


@pytest.mark.parametrize("content", [b"not a database at all" * 50, b""])
def test_a_foreign_or_corrupt_file_is_set_aside_and_a_new_outbox_made(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(content)
    outbox = Outbox(path, backend=BACKEND)
    if content:
        assert outbox.set_aside is not None
        assert outbox.set_aside.read_bytes() == content
    assert outbox.count() == 0


def test_another_applications_sqlite_file_is_not_touched(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE notes (text TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    outbox = Outbox(path, backend=BACKEND)
    assert outbox.set_aside is not None
    kept = sqlite3.connect(outbox.set_aside)
    assert kept.execute("SELECT text FROM notes").fetchall() == [("keep me",)]


def test_an_unusable_location_raises_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((OutboxError, OSError)):
        Outbox(blocker / "outbox.sqlite3", backend=BACKEND)


def test_identity_is_a_one_way_fingerprint() -> None:
    one = identity_of(BACKEND, {"Authorization": "Bearer a"}, {})
    assert one != identity_of(BACKEND, {"Authorization": "Bearer b"}, {})
    assert one == identity_of(BACKEND, {"authorization": "Bearer a", "Accept": "x"}, {})
    assert "Bearer" not in one
    assert os.sep not in one
