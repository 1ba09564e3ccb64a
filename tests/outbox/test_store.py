"""The outbox file on its own: privacy, leases between processes, recovery, bounded size."""

from __future__ import annotations

import ctypes
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from outbox_kit import BACKEND, IDENTITY, OPENED, Owner, corrupt_outbox, untouched

from timeback_client._leases import windows_process_alive
from timeback_client._models import Course, Window
from timeback_client._options import identity_of
from timeback_client._outbox import Outbox, OutboxError, WindowRow, open_window


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


def kill(path: Path, owner: Owner) -> None:
    """What a SIGKILL leaves: the owner row of a process that no longer renews it."""
    db = sqlite3.connect(path)
    db.execute("UPDATE owners SET lease_until = 0, pid = -1 WHERE owner = ?", (owner.owner,))
    db.commit()
    db.close()


RUN = "0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes; Windows has ACLs")
def test_file_and_folder_are_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "outbox.sqlite3"
    Outbox(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_no_credential_is_ever_written(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    owner = Owner(path)
    owner.add(window(RUN, 0, 15_000))
    owner.checkpoint(window(RUN, 15_000, 10))
    owner.outbox.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"secret-token" not in raw
    assert b"cookie-value" not in raw


def test_a_live_owner_keeps_its_windows_and_a_dead_one_s_are_replayed_in_order(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    windows = [window(RUN, i * 15_000, 15_000) for i in range(3)]
    for w in windows:
        first.add(w)
    first.mark_sent(windows[1])
    second = Owner(path)
    assert second.claim() == []  # first is alive: nothing to take

    kill(path, first)
    claimed = second.claim()
    # Sent-but-unanswered first (the server may remember it only for a while), then in order.
    assert [body for _, _, body in claimed] == [windows[i].to_bytes() for i in (1, 0, 2)]
    assert second.claim() == []  # taken once; the owner's own windows are never "taken"


def test_a_claim_never_returns_the_owner_s_own_windows(tmp_path: Path) -> None:
    """A client's own windows (in memory, on their way) must not come back as a replay, even
    when they are stored in the same transaction as its claim."""
    path = tmp_path / "outbox.sqlite3"
    owner = Owner(path)
    own = window(RUN, 0, 15_000)
    row = WindowRow(
        owner=owner.owner,
        backend=BACKEND,
        identity=IDENTITY,
        run_id=own.run_id,
        started_at_ms=own.started_at_ms,
        ended_at_ms=own.ended_at_ms,
        elapsed_ms=own.elapsed_ms,
        body=own.to_bytes(),
    )
    with owner.outbox.transaction():
        owner.outbox.add([row])
        owner.outbox.leases.forget_dead_owners()
        assert owner.outbox.claim_orphans(owner.owner, BACKEND, IDENTITY) == []
    assert len(owner.pending()) == 1


def test_a_departed_owner_s_windows_are_claimed_by_the_next_one(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.add(window(RUN, 0, 15_000))
    first.leave()  # a client closed with a window undelivered
    assert [elapsed for _, elapsed, _ in Owner(path).claim()] == [15_000]


def test_a_checkpoint_of_a_dead_owner_becomes_a_window(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    w = window(RUN, 0, 900, paused=100)
    first.checkpoint(w)
    kill(path, first)
    assert Owner(path).claim() == [(w.run_id, 900, w.to_bytes())]


def test_moving_a_checkpoint_rewrites_only_its_numbers(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.checkpoint(window(RUN, 0, 900))
    moved = window(RUN, 0, 1_700, paused=300)
    with first.outbox.transaction():
        first.outbox.move_checkpoints(
            [(first.checkpoint_row, moved.started_at_ms, moved.ended_at_ms, moved.elapsed_ms, 0, 0)]
        )
    kill(path, first)
    assert Owner(path).claim() == [(RUN, 1_700, moved.to_bytes())]


def test_a_running_checkpoint_counts_until_its_process_s_last_stamp_minus_suspend(
    tmp_path: Path,
) -> None:
    """As of its last change the open window held 900 ms and was counting; the process
    stamped its clock 5 s later, 1.5 s of which the machine spent suspended: the window
    a crash leaves counts 900 + 5,000 - 1,500 ms, and ends at the stamp."""
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    as_of = window(RUN, 0, 900, paused=100)
    first.checkpoint(as_of, running=True, suspended_ms=2_000, stamp="p1")
    with first.outbox.transaction():
        first.outbox.stamp("p1", as_of.ended_at_ms + 5_000, 3_500)
    kill(path, first)
    replayed = window(RUN, 0, 900 + 5_000 - 1_500, paused=100 + 1_500)
    assert Owner(path).claim() == [(RUN, 4_400, replayed.to_bytes())]


def test_a_running_checkpoint_without_a_later_stamp_counts_what_it_says(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    as_of = window(RUN, 0, 900)
    first.checkpoint(as_of, running=True, stamp="p1")
    with first.outbox.transaction():
        first.outbox.stamp("p1", as_of.ended_at_ms - 10, 0)  # older than the change
    kill(path, first)
    assert Owner(path).claim() == [(RUN, 900, as_of.to_bytes())]


@given(
    start=st.integers(0, 10**6),
    active=st.integers(0, 10**6),
    paused=st.integers(0, 10**6),
    running=st.booleans(),
    suspended=st.integers(0, 10**6),
    stamp=st.one_of(st.none(), st.tuples(st.integers(0, 4 * 10**6), st.integers(0, 3 * 10**6))),
)
def test_the_open_window_a_crash_leaves_keeps_every_invariant(
    start: int,
    active: int,
    paused: int,
    running: bool,
    suspended: int,
    stamp: tuple[int, int] | None,
) -> None:
    """Whatever the stamp: the window never ends before its change, never counts more
    active time than the time between its start and its end, and adds up."""
    as_of = start + active + paused
    begin, end, counted = open_window((start, as_of, active, int(running), suspended), stamp)
    assert begin == start
    assert end >= as_of
    assert active <= counted <= end - start
    if not running:
        assert (end, counted) == (as_of, active)


def test_an_empty_checkpoint_is_not_replayed(tmp_path: Path) -> None:
    """A paused activity's open window holds no active time: its row is kept, empty."""
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.checkpoint(window(RUN, 0, 900))
    with first.outbox.transaction():
        first.outbox.move_checkpoints([(first.checkpoint_row, 0, 0, 0, 0, 0)])
    kill(path, first)
    assert Owner(path).claim() == []


def test_a_window_and_the_emptied_checkpoint_it_replaces_go_together(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.checkpoint(window(RUN, 0, 900))
    cut = window(RUN, 0, 1_000)
    with first.outbox.transaction():
        first.outbox.move_checkpoints([(first.checkpoint_row, 0, 0, 0, 0, 0)])
        first.outbox.add(
            [
                WindowRow(
                    owner=first.owner,
                    backend=BACKEND,
                    identity=IDENTITY,
                    run_id=RUN,
                    started_at_ms=cut.started_at_ms,
                    ended_at_ms=cut.ended_at_ms,
                    elapsed_ms=cut.elapsed_ms,
                    body=cut.to_bytes(),
                )
            ]
        )
    kill(path, first)
    # Only the cut window: its checkpoint shares its startedAt and must never be sent too.
    assert [elapsed for _, elapsed, _ in Owner(path).claim()] == [1_000]


def test_windows_of_another_identity_or_backend_are_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.add(window(RUN, 0, 15_000))
    kill(path, first)
    other = identity_of(BACKEND, {"Authorization": "Bearer someone-else"}, {})
    second = Owner(path)
    assert second.claim(identity=other) == []
    assert second.claim(backend="https://other.example/api") == []
    assert len(second.claim()) == 1


def test_a_process_that_exited_is_dead_at_once_without_waiting_for_its_lease(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    code = (
        "import sys; from timeback_client._outbox import Outbox, WindowRow; "
        "o = Outbox(sys.argv[1])\n"
        "with o.transaction():\n"
        "    o.leases.register('gone')\n"
        "    o.add([WindowRow(owner='gone', backend=sys.argv[2], identity=sys.argv[3], "
        "run_id='r', started_at_ms=0, ended_at_ms=5, elapsed_ms=5, body=b'{}')])\n"
        "import os; os._exit(0)"
    )
    subprocess.run([sys.executable, "-c", code, str(path), BACKEND, IDENTITY], check=True)
    assert [run_id for run_id, _, _ in Owner(path).claim()] == ["r"]


def test_when_full_adjacent_unsent_windows_merge_and_keep_every_millisecond(
    tmp_path: Path,
) -> None:
    owner = Owner(tmp_path / "outbox.sqlite3", max_windows=3)
    for i in range(6):
        owner.add(window(RUN, i * 15_000, 10_000, paused=5_000))
    assert owner.make_room() == 0
    bodies = owner.pending()
    assert len(bodies) <= 3
    assert sum(b["elapsedMs"] for b in bodies) == 60_000  # type: ignore[misc]
    assert sum(b["pausedMs"] for b in bodies) == 30_000  # type: ignore[misc]
    for body in bodies:
        merged = Window.from_json(body)  # the invariant holds for merged windows
        assert merged.ended_at_ms - merged.started_at_ms == merged.elapsed_ms + merged.paused_ms


def test_when_merging_is_not_enough_the_loss_is_reported_in_ms(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "outbox.sqlite3", max_windows=1)
    # Two runs, nothing adjacent: merging cannot help.
    owner.add(window("0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 7_000))
    owner.add(window("1b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10", 0, 9_000))
    assert owner.make_room() == 7_000
    assert [b["elapsedMs"] for b in owner.pending()] == [9_000]


def test_sent_windows_are_never_merged(tmp_path: Path) -> None:
    owner = Owner(tmp_path / "outbox.sqlite3", max_windows=1)
    for i in range(2):
        owner.add(window(RUN, i * 15_000, 15_000), sent=True)
    assert owner.make_room() == 0  # nothing it may touch: kept, over the bound
    assert len(owner.pending()) == 2


def app_database(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE progress (lesson TEXT, score INTEGER)")
    db.execute("INSERT INTO progress VALUES ('fractions', 9)")
    db.commit()
    db.close()
    path.chmod(0o644)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda p: p.write_bytes(b"not a database at all" * 50), "holds 1,050 bytes of text"),
        (lambda p: p.write_bytes(bytes(range(256)) * 4), "holds 1,024 bytes of data"),
        (app_database, "another application's SQLite database (tables: progress)"),
        (lambda p: (p.write_bytes(b""), p.chmod(0o644)), "empty file that other users may read"),
        (lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\x01" * 40), "truncated SQLite"),
    ],
    ids=["text", "binary", "another app's database", "empty, readable by others", "truncated"],
)
def test_a_file_that_is_not_an_outbox_is_refused_and_left_exactly_as_it_was(
    tmp_path: Path, make: Any, says: str
) -> None:
    """At a path the app named: no rename, no chmod, no write, nothing beside it."""
    path = tmp_path / "app.db"
    make(path)
    before = untouched(path)
    with pytest.raises(OutboxError, match="it was left as it is") as raised:
        Outbox(path)
    assert says in str(raised.value)
    assert untouched(path) == before


@pytest.mark.parametrize("content", [b"not a database at all" * 50, b"SQLite format 3\x00" * 9])
def test_in_the_sdk_s_own_directory_a_foreign_file_is_set_aside_as_it_was(
    tmp_path: Path, content: bytes
) -> None:
    """``set_aside=True`` (the default file, in the SDK's own state directory): the file
    is renamed to a name of its own, bytes and mode unchanged, and a new outbox made."""
    path = tmp_path / "outbox.sqlite3"
    path.write_bytes(content)
    path.chmod(0o640)
    outbox = Outbox(path, set_aside=True)
    OPENED.append(outbox)
    assert outbox.set_aside is not None
    assert outbox.set_aside.read_bytes() == content
    assert stat.S_IMODE(outbox.set_aside.stat().st_mode) == 0o640
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert outbox.count() == 0


def test_setting_aside_never_replaces_a_file_already_there(tmp_path: Path) -> None:
    """Two bad files set aside within one second keep distinct names: neither is lost."""
    path = tmp_path / "outbox.sqlite3"
    kept = []
    for content in (b"first" * 30, b"second" * 30):
        path.unlink(missing_ok=True)
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        path.write_bytes(content)
        outbox = Outbox(path, set_aside=True)
        outbox.close()
        assert outbox.set_aside is not None
        kept.append(outbox.set_aside)
    assert kept[0] != kept[1]
    assert [p.read_bytes() for p in kept] == [b"first" * 30, b"second" * 30]


def test_an_empty_private_file_becomes_the_outbox(tmp_path: Path) -> None:
    """What a crash between creating the file and its first transaction leaves: empty and
    0600, it holds nothing to lose, so it is used as it is."""
    path = tmp_path / "outbox.sqlite3"
    path.touch(mode=0o600)
    path.chmod(0o600)
    outbox = Outbox(path)
    OPENED.append(outbox)
    assert outbox.set_aside is None
    assert outbox.count() == 0


def test_an_outbox_s_mode_is_never_changed(tmp_path: Path) -> None:
    """The SDK makes its file 0600 when it creates it; a mode the user set later (a
    backup tool's group, say) is theirs."""
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    path.chmod(0o640)
    OPENED.append(Outbox(path))
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_a_damaged_outbox_at_the_app_s_path_is_refused_as_it_was(tmp_path: Path) -> None:
    """Ours by its header, but torn: outside the SDK's own directory it is not moved."""
    path = tmp_path / "outbox.sqlite3"
    corrupt_outbox(path)
    before = untouched(path)
    with pytest.raises(OutboxError, match="damaged timeback-client outbox"):
        Outbox(path)
    assert untouched(path) == before


def test_a_locked_outbox_is_never_set_aside(tmp_path: Path) -> None:
    """Another process holding the write lock longer than the busy timeout is no sign of
    a bad file: opening fails for now, and the file stays where it is, for its owner."""
    path = tmp_path / "outbox.sqlite3"
    Outbox(path).close()
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OutboxError, match="locked"):
            Outbox(path, busy_timeout=0.05, set_aside=True)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert sorted(p.name for p in tmp_path.iterdir() if ".corrupt-" in p.name) == []


def test_an_unusable_location_raises_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises((OutboxError, OSError)):
        Outbox(blocker / "outbox.sqlite3")


def test_identity_is_a_one_way_fingerprint() -> None:
    one = identity_of(BACKEND, {"Authorization": "Bearer a"}, {})
    assert one != identity_of(BACKEND, {"Authorization": "Bearer b"}, {})
    assert one == identity_of(BACKEND, {"authorization": "Bearer a", "Accept": "x"}, {})
    assert "Bearer" not in one
    assert os.sep not in one


def test_an_outbox_of_schema_version_1_is_migrated_and_its_time_replayed(tmp_path: Path) -> None:
    """A file written by the previous release: its checkpoints held the open window's
    exact numbers. Opened now, it gains the new columns in place, and what a dead process
    left there is replayed exactly as before."""
    path = tmp_path / "outbox.sqlite3"
    db = sqlite3.connect(path)
    version_1 = (
        "CREATE TABLE owners (owner TEXT PRIMARY KEY, host TEXT NOT NULL, pid INTEGER NOT NULL,"
        " lease_until REAL NOT NULL);"
        "CREATE TABLE windows (row_id INTEGER PRIMARY KEY AUTOINCREMENT, backend TEXT NOT NULL,"
        " identity TEXT NOT NULL, run_id TEXT NOT NULL, started_at_ms INTEGER NOT NULL,"
        " ended_at_ms INTEGER NOT NULL, elapsed_ms INTEGER NOT NULL, body BLOB NOT NULL,"
        " owner TEXT NOT NULL, sent_at REAL, UNIQUE (run_id, started_at_ms));"
        "CREATE INDEX windows_owner ON windows (owner);"
        "CREATE TABLE checkpoints (run_id TEXT PRIMARY KEY, backend TEXT NOT NULL,"
        " identity TEXT NOT NULL, started_at_ms INTEGER NOT NULL, ended_at_ms INTEGER NOT NULL,"
        " elapsed_ms INTEGER NOT NULL, body BLOB NOT NULL, owner TEXT NOT NULL);"
        f"PRAGMA application_id={0x54424B31}; PRAGMA user_version=1;"
    )
    db.executescript(version_1)
    open_part = window(RUN, 0, 900, paused=100)
    db.execute(
        "INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            RUN,
            BACKEND,
            IDENTITY,
            open_part.started_at_ms,
            open_part.ended_at_ms,
            900,
            open_part.to_bytes(),
            "gone",
        ),
    )
    db.commit()
    db.close()
    assert Owner(path).claim() == [(RUN, 900, open_part.to_bytes())]
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone() == (3,)
    assert "running" in {row[1] for row in db.execute("PRAGMA table_info(checkpoints)")}
    assert "source" in {row[1] for row in db.execute("PRAGMA table_info(moves_in)")}
    db.close()


class FakeKernel32:
    """The few Win32 calls the outbox makes to see whether a process runs."""

    def __init__(self, *, opens: bool, exit_code: int = 259, last_error: int = 87) -> None:
        self.opens = opens
        self.exit_code = exit_code
        self.last_error = last_error
        self.closed: list[int] = []

    def OpenProcess(self, access: int, inherit: bool, pid: int) -> int:
        assert access == 0x1000  # PROCESS_QUERY_LIMITED_INFORMATION: no rights to harm
        return 42 if self.opens else 0

    def GetExitCodeProcess(self, handle: int, code: Any) -> int:
        code._obj.value = self.exit_code
        return 1

    def GetLastError(self) -> int:
        return self.last_error

    def CloseHandle(self, handle: int) -> int:
        self.closed.append(handle)
        return 1


@pytest.mark.parametrize(
    ("kernel32", "alive"),
    [
        (FakeKernel32(opens=True, exit_code=259), True),  # STILL_ACTIVE
        (FakeKernel32(opens=True, exit_code=0), False),  # exited
        (FakeKernel32(opens=False, last_error=87), False),  # no such process
        (FakeKernel32(opens=False, last_error=5), True),  # another user's, running
    ],
)
def test_on_windows_liveness_is_asked_of_the_win32_api_never_os_kill(
    kernel32: FakeKernel32, alive: bool
) -> None:
    """On Windows, os.kill(pid, 0) sends Ctrl-C to a process group: the outbox asks
    OpenProcess and GetExitCodeProcess instead, and closes what it opened."""
    assert windows_process_alive(4321, kernel32) is alive
    assert kernel32.closed == ([42] if kernel32.opens else [])


def no_kill(pid: int, signal: int) -> None:
    raise AssertionError("os.kill on Windows sends Ctrl-C to a process group")


@pytest.mark.parametrize(
    ("kernel32", "taken"),
    [
        (FakeKernel32(opens=False, last_error=87), [15_000]),  # the process is gone
        (FakeKernel32(opens=True, exit_code=259), []),  # it still runs
    ],
)
def test_on_windows_an_exited_process_s_windows_are_claimed_before_its_lease_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel32: FakeKernel32, taken: list[int]
) -> None:
    """Another process of this host, its lease still running: on Windows the outbox
    asks kernel32 (loaded as the Win32 DLL) whether it runs, never os.kill."""
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.add(window(RUN, 0, 15_000))
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE owners SET pid = 4321 WHERE owner = ?", (first.owner,))
    db.close()
    loaded: list[tuple[str, bool]] = []

    def win_dll(name: str, use_last_error: bool = False) -> FakeKernel32:
        loaded.append((name, use_last_error))
        return kernel32

    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "WinDLL", win_dll, raising=False)
    monkeypatch.setattr(os, "kill", no_kill)
    assert [elapsed for _, elapsed, _ in Owner(path).claim()] == taken
    assert loaded == [("kernel32", True)]


def test_a_file_system_that_refuses_modes_still_keeps_the_outbox(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A FAT-formatted stick or a network share may refuse chmod: the outbox works there
    all the same (as private as the folder it is made in)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "chmod", refuse)
    path = tmp_path / "outbox.sqlite3"
    first = Owner(path)
    first.add(window(RUN, 0, 15_000))
    first.leave()
    assert [elapsed for _, elapsed, _ in Owner(path).claim()] == [15_000]
