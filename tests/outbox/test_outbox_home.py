"""Where the outbox lives (per-user state, by platform) and the move of what its former
place, the user's cache directory, holds: nothing lost, nothing counted twice, whatever
process holds the former file and wherever a mover stops."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import platformdirs
import pytest
from outbox_kit import (
    AUTH,
    OPENED,
    STUDENTS,
    TALLY,
    Owner,
    WireLog,
    boottime_ms,
    check_delivery,
    children,
    serve,
    stored_windows,
    synced,
    wait_for,
)

from timeback_client import AsyncTimeback, TimebackError, VirtualClock
from timeback_client._models import Course, Window
from timeback_client._options import identity_of
from timeback_client._outbox import Outbox, OutboxError
from timeback_client._outbox_home import default_outbox_path, former_outbox_path, move_outbox
from timeback_client._outbox_moves import OutboxMoves
from timeback_client._writer import CHECKPOINT_INTERVAL
from timeback_client.emulator import Emulator, UnknownRun

BACKEND = "https://app.example/api/timeback"
IDENTITY = identity_of(BACKEND, {"Authorization": "Bearer t"}, {})
T0 = 1_767_603_600_000
COURSE = Course(subject="Math", grade=3)
# A kill may cost the time since the last checkpoint (as in test_outbox_processes).
KILL_LOSS_BOUND_MS = round(CHECKPOINT_INTERVAL * 1000) + 300


# -- where it lives ---------------------------------------------------------------------


def _platform_dirs(name: str) -> type[Any]:
    if name == "win32":
        from platformdirs.windows import Windows

        return Windows
    if name == "darwin":
        from platformdirs.macos import MacOS

        return MacOS
    from platformdirs.unix import Unix

    return Unix


def _home(monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))  # what Path.home() reads on Windows


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_STATE_HOME": "{tmp}/state"}, "{tmp}/state"),
        ("linux", {}, "{tmp}/home/.local/state"),
        ("darwin", {}, "{tmp}/home/Library/Application Support"),
        (
            "win32",
            {
                "LOCALAPPDATA": r"C:\Users\ada\AppData\Local",
                "WIN_PD_OVERRIDE_LOCAL_APPDATA": r"C:\Users\ada\AppData\Local",
            },
            r"C:\Users\ada\AppData\Local",
        ),
    ],
    ids=["linux, XDG_STATE_HOME set", "linux, XDG_STATE_HOME unset", "macos", "windows"],
)
def test_the_default_outbox_is_per_user_state_by_platform(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    """Each platform's per-user state (or data) directory, never its cache, without an
    author folder on Windows and outside the roaming profile."""
    monkeypatch.setattr(platformdirs, "PlatformDirs", _platform_dirs(platform))
    for name in ("XDG_STATE_HOME", "XDG_DATA_HOME", "WIN_PD_OVERRIDE_LOCAL_APPDATA"):
        monkeypatch.delenv(name, raising=False)
    _home(monkeypatch, tmp_path / "home")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    base = Path(expected.format(tmp=tmp_path))
    assert default_outbox_path() == base / "timeback-client" / "outbox.sqlite3"
    assert default_outbox_path("my-kiosk") == base / "my-kiosk" / "outbox.sqlite3"


@pytest.mark.parametrize(
    ("platform", "env", "expected"),
    [
        ("linux", {"XDG_CACHE_HOME": "{tmp}/cache"}, "{tmp}/cache/timeback-client"),
        ("linux", {}, "{tmp}/home/.cache/timeback-client"),
        ("darwin", {}, "{tmp}/home/Library/Caches/timeback-client"),
        ("win32", {"LOCALAPPDATA": "{tmp}/local"}, "{tmp}/local/timeback-client/Cache"),
        ("win32", {}, "{tmp}/home/AppData/Local/timeback-client/Cache"),
    ],
    ids=[
        "linux, XDG_CACHE_HOME set",
        "linux, XDG_CACHE_HOME unset",
        "macos",
        "windows, LOCALAPPDATA set",
        "windows, LOCALAPPDATA unset",
    ],
)
def test_the_former_outbox_is_where_earlier_versions_kept_it(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    platform: str,
    env: dict[str, str],
    expected: str,
) -> None:
    monkeypatch.setattr(sys, "platform", platform)
    for name in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    _home(monkeypatch, tmp_path / "home")
    for name, value in env.items():
        monkeypatch.setenv(name, value.format(tmp=tmp_path))
    assert former_outbox_path() == Path(expected.format(tmp=tmp_path)) / "outbox.sqlite3"


# -- what an earlier process left -------------------------------------------------------


def window(run: str, start_s: int, active_s: int) -> Window:
    return Window(
        activity_id="lesson-1",
        name="Fractions",
        course=COURSE,
        run_id=run,
        started_at_ms=T0 + start_s * 1000,
        ended_at_ms=T0 + (start_s + active_s) * 1000,
        elapsed_ms=active_s * 1000,
        paused_ms=0,
    )


class Earlier(Owner):
    """A client of an earlier version on the former file: an owner with its windows and
    the open window of its run, each written as that version's writer writes them."""

    def __init__(
        self, path: Path, *, backend: str = BACKEND, identity: str = IDENTITY, run: str = ""
    ) -> None:
        super().__init__(path, backend, identity)
        self.path = path
        self.run = run or str(uuid.uuid4())

    def leave(self) -> None:
        super().leave()
        self.outbox.close()

    def die(self) -> None:
        """What a SIGKILL leaves: an owner row nobody renews, of a process that is gone."""
        self.outbox.close()
        kill_owners(self.path, "owner = ?", self.owner)


def kill_owners(path: Path, where: str, *params: object) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(f"UPDATE owners SET lease_until = 0, pid = -1 WHERE {where}", params)
    db.close()


def left_by_a_dead_process(path: Path, *, run: str = "") -> tuple[Earlier, list[Window]]:
    """Three windows (the middle one sent, unanswered) and an open window of 4 s."""
    earlier = Earlier(path, run=run)
    windows = [window(earlier.run, 15 * i, 15) for i in range(3)]
    for i, w in enumerate(windows):
        earlier.add(w, sent=i == 1)
    open_part = window(earlier.run, 45, 4)
    earlier.checkpoint(open_part)
    earlier.die()
    return earlier, [*windows, open_part]


class Claimant:
    """A client of this version on the new file: claims, and delivers what it claimed."""

    def __init__(self, path: Path, identity: str = IDENTITY, backend: str = BACKEND) -> None:
        self.outbox = Outbox(path)
        OPENED.append(self.outbox)
        self.owner = uuid.uuid4().hex
        self.identity, self.backend = identity, backend
        self.delivered: list[bytes] = []
        with self.outbox.transaction():
            self.outbox.leases.register(self.owner)

    def claim_and_deliver(self) -> list[bytes]:
        with self.outbox.transaction():
            self.outbox.leases.forget_dead_owners()
            rows = self.outbox.claim_orphans(self.owner, self.backend, self.identity)
        with self.outbox.transaction():
            self.outbox.remove((r.run_id, r.started_at_ms) for r in rows)
        self.delivered += [r.body for r in rows]
        return [r.body for r in rows]


def count(path: Path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def former(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "timeback-client" / "outbox.sqlite3"


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Outbox]:
    outbox = Outbox(tmp_path / "state" / "timeback-client" / "outbox.sqlite3")
    yield outbox
    outbox.close()


def test_what_a_dead_process_left_moves_once_and_is_claimed_in_order(
    former: Path, target: Outbox
) -> None:
    """Windows and the open window a killed process left: all reach the new file (the
    open window closed as a claim closes it), the sent-but-unanswered one is replayed
    first, and nothing is left behind or moved again."""
    _, left = left_by_a_dead_process(former)
    assert move_outbox(former, target) == 4
    claimant = Claimant(target.path)
    assert claimant.claim_and_deliver() == [left[i].to_bytes() for i in (1, 0, 2, 3)]
    assert (count(former, "windows"), count(former, "checkpoints")) == (0, 0)
    assert move_outbox(former, target) == 0
    assert claimant.claim_and_deliver() == []
    assert count(target.path, "moves_in") == 0


def test_every_backend_and_identity_moves_and_each_claims_its_own(
    former: Path, target: Outbox
) -> None:
    other_identity = identity_of(BACKEND, {"Authorization": "Bearer u"}, {})
    other_backend = "https://other.example/api/timeback"
    owners = [
        Earlier(former),
        Earlier(former, identity=other_identity),
        Earlier(former, backend=other_backend),
    ]
    for i, earlier in enumerate(owners):
        earlier.add(window(earlier.run, 0, 10 + i))
        earlier.leave()  # departed, with a window undelivered
    assert move_outbox(former, target) == 3
    claims = [
        Claimant(target.path, identity=e.identity, backend=e.backend).claim_and_deliver()
        for e in owners
    ]
    assert claims == [[window(e.run, 0, 10 + i).to_bytes()] for i, e in enumerate(owners)]


def test_a_live_owner_of_the_former_file_keeps_its_windows_until_it_leaves(
    former: Path, target: Outbox
) -> None:
    """An earlier version still running (here: a live owner of this very process) keeps
    what it holds; once it leaves, the next move takes it."""
    live = Earlier(former)
    live.add(window(live.run, 0, 15))
    live.checkpoint(window(live.run, 15, 3))
    assert move_outbox(former, target) == 0
    assert count(former, "windows") == 1
    assert Claimant(target.path).claim_and_deliver() == []
    live.leave()
    assert move_outbox(former, target) == 2
    assert len(Claimant(target.path).claim_and_deliver()) == 2


def test_an_earlier_version_never_claims_windows_being_moved(
    former: Path, target: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mover dies between marking the windows and handing them to the target: an
    earlier version's claim on the former file leaves them alone (they may be in the
    target already), and the next mover finishes the move."""
    _, left = left_by_a_dead_process(former)
    crash_at(monkeypatch, "add")  # the target's add: nothing reached it
    with pytest.raises(Crash):
        move_outbox(former, target)
    monkeypatch.undo()
    kill_owners(former, "owner LIKE 'move-%'")
    assert Earlier(former).claim() == []
    assert move_outbox(former, target) == 4
    assert len(Claimant(target.path).claim_and_deliver()) == len(left)


class Crash(BaseException):
    """The process dies here: nothing after it runs, nothing uncommitted is kept."""


def crash_at(monkeypatch: pytest.MonkeyPatch, method: str, on: type[object] = Outbox) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise Crash(method)

    monkeypatch.setattr(on, method, crash)


@pytest.mark.parametrize(
    ("part", "step"),
    [
        (Outbox, "add"),  # the target's transaction: the windows never reached it
        # The source's last transaction: the target has them, the source too.
        (OutboxMoves, "drop_move"),
        (OutboxMoves, "forget_moves"),  # the target's record of the move: the source is clean
    ],
)
def test_a_mover_that_dies_at_any_step_loses_nothing_and_moves_nothing_twice(
    former: Path,
    target: Outbox,
    monkeypatch: pytest.MonkeyPatch,
    part: type[object],
    step: str,
) -> None:
    """A client delivers (and forgets) whatever reached the new file before the next
    mover comes: if that mover moved a window again, it would be delivered twice."""
    _, left = left_by_a_dead_process(former)
    crash_at(monkeypatch, step, on=part)
    with pytest.raises(Crash):
        move_outbox(former, target)
    monkeypatch.undo()
    kill_owners(former, "owner LIKE 'move-%'")
    claimant = Claimant(target.path)
    claimant.claim_and_deliver()
    move_outbox(former, target)
    claimant.claim_and_deliver()
    assert sorted(claimant.delivered) == sorted(w.to_bytes() for w in left)
    assert count(former, "windows") == 0


def test_a_source_that_fails_once_the_target_has_the_windows_never_doubles_them(
    former: Path, target: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The target took the windows, then the former file failed to let them go (a disk
    error): they count as moved, and their marked copies wait there until the mark's
    lease lapses and a later move drops them, never moving them again."""
    _, left = left_by_a_dead_process(former)

    def disk_error(self: OutboxMoves, marker: str) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(OutboxMoves, "drop_move", disk_error)
    assert move_outbox(former, target) == 4
    monkeypatch.undo()
    claimant = Claimant(target.path)
    claimant.claim_and_deliver()
    assert move_outbox(former, target) == 0  # the mark is still live: left alone
    assert count(former, "windows") == 4
    kill_owners(former, "owner LIKE 'move-%'")  # its lease lapses
    assert move_outbox(former, target) == 0
    claimant.claim_and_deliver()
    assert sorted(claimant.delivered) == sorted(w.to_bytes() for w in left)
    assert (count(former, "windows"), count(target.path, "moves_in")) == (0, 0)


def test_a_mover_whose_mark_was_released_meanwhile_moves_nothing(
    former: Path, target: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between its two steps a mover's mark lapsed (a suspend longer than its lease) and
    another mover released the windows: it must not copy them, the other one will."""
    left_by_a_dead_process(former)
    holds_move = OutboxMoves.holds_move

    def released_meanwhile(self: OutboxMoves, marker: str) -> bool:
        self.release_move(marker)  # what the other mover did first
        return holds_move(self, marker)

    monkeypatch.setattr(OutboxMoves, "holds_move", released_meanwhile)
    assert move_outbox(former, target) == 0
    monkeypatch.undo()
    assert count(target.path, "windows") == 0
    assert move_outbox(former, target) == 4
    assert len(Claimant(target.path).claim_and_deliver()) == 4


def test_a_move_the_target_refuses_gives_the_windows_back_at_once(
    former: Path, tmp_path: Path
) -> None:
    """The new file is locked by another process past the wait: the move is reported and
    the windows are a departed owner's again (not held for a lease), moved next time."""
    left_by_a_dead_process(former)
    target = Outbox(tmp_path / "state" / "outbox.sqlite3", busy_timeout=0.05)
    OPENED.append(target)
    locker = sqlite3.connect(target.path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    with pytest.raises(OutboxError, match="they stay there"):
        move_outbox(former, target)
    locker.execute("ROLLBACK")
    locker.close()
    db = sqlite3.connect(former)
    owners = {row[0] for row in db.execute("SELECT owner FROM windows")}
    registered = {row[0] for row in db.execute("SELECT owner FROM owners")}
    db.close()
    assert len(owners) == 1
    assert not any(owner.endswith(":claim") for owner in owners)
    assert not owners & registered
    assert move_outbox(former, target) == 4
    target.close()


def test_no_former_file_is_never_created(former: Path, target: Outbox) -> None:
    assert move_outbox(former, target) == 0
    assert not former.parent.exists()


def test_an_emptied_former_file_is_only_read(former: Path, target: Outbox) -> None:
    """Every client start looks at the former file: once it is empty, the look writes
    nothing to it (its write-ahead log stays empty), and no transaction is made."""
    earlier = Earlier(former)
    earlier.leave()
    before = former.read_bytes()
    assert move_outbox(former, target) == 0
    assert former.read_bytes() == before
    wal = former.with_name(former.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0


@pytest.mark.parametrize("kind", ["garbage", "another app's database"])
def test_a_former_file_that_is_not_an_outbox_is_left_as_it_is(
    former: Path, target: Outbox, kind: str
) -> None:
    former.parent.mkdir(parents=True)
    if kind == "garbage":
        former.write_bytes(b"\x00not an outbox\xff" * 500)
    else:
        db = sqlite3.connect(former)
        with db:
            db.execute("CREATE TABLE windows (text TEXT)")
            db.execute("INSERT INTO windows VALUES ('keep me')")
        db.close()
    former.chmod(0o644)
    before = former.read_bytes()
    assert move_outbox(former, target) == 0  # nothing of ours there: never opened
    assert sorted(p.name for p in former.parent.iterdir()) == [former.name]
    assert former.read_bytes() == before
    assert stat.S_IMODE(former.stat().st_mode) == 0o644


@contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """The folder and its files cannot be written, even by root: mode bits for a user,
    the immutable attribute for root (whom mode bits do not stop)."""
    paths = [folder, *folder.iterdir()]
    if os.geteuid() != 0:
        modes = {p: stat.S_IMODE(p.stat().st_mode) for p in paths}
        for p in paths:
            p.chmod(0o500 if p.is_dir() else 0o400)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("running as root without chattr: no way to make a folder read-only")
    made = subprocess.run([chattr, "+i", *map(str, paths)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"running as root, and chattr +i is refused: {made.stderr!r}")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", *map(str, paths)], check=True)


posix_only = pytest.mark.skipif(
    sys.platform == "win32", reason="Windows has no read-only folders by mode bits"
)


@posix_only
def test_an_unwritable_former_file_is_reported_left_as_it_is_and_moved_later(
    former: Path, target: Outbox
) -> None:
    left_by_a_dead_process(former)
    before = {p.name: p.read_bytes() for p in former.parent.iterdir()}
    with read_only(former.parent), pytest.raises(OutboxError, match=str(former.parent)):
        move_outbox(former, target)
    assert {p.name: p.read_bytes() for p in former.parent.iterdir()} == before
    assert move_outbox(former, target) == 4


@posix_only
def test_the_new_folder_and_files_are_private_to_the_user(former: Path, target: Outbox) -> None:
    left_by_a_dead_process(former)
    move_outbox(former, target)
    assert stat.S_IMODE(target.path.parent.stat().st_mode) == 0o700
    files = [p for p in target.path.parent.iterdir() if p.name.startswith("outbox.sqlite3")]
    assert {p.name for p in files} >= {"outbox.sqlite3", "outbox.sqlite3-wal"}
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in files} == {p.name: 0o600 for p in files}


# -- real clients -------------------------------------------------------------------------

BASE = "http://emulator.localhost/api/timeback"


def client(emulator: Emulator, clock: VirtualClock, token: str, **options: Any) -> AsyncTimeback:
    return AsyncTimeback(
        BASE,
        headers={"Authorization": f"Bearer {token}"},
        transport=emulator.transport(),
        clock=clock,
        identity="ada",
        **options,
    )


async def leave_in_former_place(emulator: Emulator, clock: VirtualClock) -> tuple[str, int]:
    """A session of an earlier version, whose backend refused its credentials (401): its
    windows stay in the former file when it closes. Returns its run and the count."""
    former = former_outbox_path()
    async with client(emulator, clock, "tok-unknown", outbox=former) as earlier:
        activity = earlier.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        await clock.advance(45)
        await activity.end()
        await synced(former)
    kept = stored_windows(former)
    assert kept >= 3
    return activity.run_id, kept


async def session(emulator: Emulator, clock: VirtualClock, **options: Any) -> str:
    """A session of this version in the default place, delivered."""
    async with client(emulator, clock, "tok-ada", **options) as now:
        activity = now.activity.start(id="lesson-2", name="Decimals", course=COURSE)
        await clock.advance(30)
        await activity.end()
    return activity.run_id


@pytest.mark.anyio
async def test_a_client_on_the_former_file_keeps_its_windows_until_it_closes() -> None:
    """A client of this process still uses the former file (as an earlier version's
    process would): a client in the default place, opened meanwhile, leaves its windows
    alone; once it closed, the next client in the default place replays them, once,
    and both files end up empty."""
    former, new = former_outbox_path(), default_outbox_path()
    clock = VirtualClock()
    reports: list[TimebackError] = []
    with Emulator(students=STUDENTS) as emulator:
        async with client(emulator, clock, "tok-unknown", outbox=former) as earlier:
            first = earlier.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            await clock.advance(45)
            await first.end()
            await synced(former)
            kept = stored_windows(former)
            assert kept >= 3
            second = await session(emulator, clock, on_error=lambda e, c: reports.append(e))
            assert stored_windows(former) == kept
            with pytest.raises(UnknownRun):
                emulator.run(first.run_id)
        await session(emulator, clock, on_error=lambda e, c: reports.append(e))
        delivery = check_delivery(emulator, {first.run_id: 45_000, second: 30_000})
    assert reports == []
    assert (stored_windows(former), stored_windows(new)) == (0, 0)
    TALLY.add(delivery, **{"outbox moved from its former place (same process)": 1})


@posix_only
@pytest.mark.anyio
async def test_an_unwritable_former_place_is_reported_and_moved_once_it_can_be() -> None:
    former = former_outbox_path()
    clock = VirtualClock()
    reports: list[TimebackError] = []
    with Emulator(students=STUDENTS) as emulator:
        first, _ = await leave_in_former_place(emulator, clock)
        with read_only(former.parent):
            second = await session(emulator, clock, on_error=lambda e, c: reports.append(e))
        assert [type(e) for e in reports] == [OutboxError]
        assert str(former) in str(reports[0])
        with pytest.raises(UnknownRun):
            emulator.run(first)
        await session(emulator, clock)
        check_delivery(emulator, {first: 45_000, second: 30_000})
    assert stored_windows(former) == 0


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="the kill instant is read on CLOCK_BOOTTIME, the child's clock on Linux only",
)
def test_a_process_on_the_former_place_keeps_its_windows_and_once_killed_they_move() -> None:
    """A process of an earlier version (outbox in the user's cache) tracks with refused
    credentials, so its windows pile up there. A client of this version, in the default
    place, opened meanwhile, leaves them to it. Once it is killed (SIGKILL), the next
    client replays its windows and its open window: its time up to the kill reaches the
    backend once, less at most one checkpoint interval, and the new place is private to
    the user."""
    former, new = former_outbox_path(), default_outbox_path()
    wire = WireLog()

    async def open_and_close(url: str) -> None:
        with anyio.fail_after(15):
            async with AsyncTimeback(url, headers=AUTH, identity="ada"):
                pass

    with Emulator(students=STUDENTS) as emulator, serve(emulator, wire) as url:
        spec = ("work", url, str(former), "--token", "tok-unknown", "--identity", "ada")
        with children((*spec, "--interval", "0.5")) as (earlier,):
            started = earlier.message()
            wait_for(lambda: stored_windows(former) >= 2, 10, "windows in the former place")
            anyio.run(open_and_close, url, backend="trio")
            with pytest.raises(UnknownRun):
                emulator.run(started["run_id"])
            assert stored_windows(former) >= 2
            killed_at = boottime_ms()
            earlier.kill()
        anyio.run(open_and_close, url, backend="asyncio")
        measured = {started["run_id"]: killed_at - started["start_timeline_ms"]}
        delivery = check_delivery(
            emulator, measured, wire=wire, may_lose_ms=KILL_LOSS_BOUND_MS, early_ms=3
        )
    assert (stored_windows(former), stored_windows(new)) == (0, 0)
    assert stat.S_IMODE(new.parent.stat().st_mode) == 0o700
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in new.parent.iterdir()} == {
        p.name: 0o600 for p in new.parent.iterdir()
    }
    TALLY.add(delivery, **{"outbox moved from its former place (SIGKILL)": 1})
