"""Bad and hostile input: outbox files that are not ours or cannot be written, response
bodies that are not JSON or are huge; and what the outbox files keep of a real session."""

from __future__ import annotations

import sqlite3
import stat
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import anyio
import httpx
import pytest
from outbox_kit import (
    AUTH,
    COURSE,
    EMAIL,
    STUDENTS,
    TALLY,
    WireLog,
    check_delivery,
    corrupt_outbox,
    serve,
    serve_again,
    stored_windows,
    synced,
    untouched,
    wait_until,
    waiting_windows,
)

from timeback_client import (
    AsyncTimeback,
    ErrorContext,
    Timeback,
    TimebackError,
    TimeOptions,
    ValidationError,
    VirtualClock,
)
from timeback_client._outbox import Outbox, OutboxError
from timeback_client._outbox_home import default_outbox_path
from timeback_client._wire import MAX_ERROR_BODY
from timeback_client.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://emulator.localhost/api/timeback"


def foreign_sqlite(path: Path) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute("CREATE TABLE notes (text TEXT)")
        db.execute("INSERT INTO notes VALUES ('keep me')")
    db.close()


def set_aside(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith("outbox.sqlite3.corrupt-")]


def make_bad(path: Path, kind: str) -> None:
    if kind == "garbage":
        path.write_bytes(b"\x00not an outbox\xff" * 500)
    elif kind == "another app's database":
        foreign_sqlite(path)
    else:
        corrupt_outbox(path)
    path.chmod(0o644)


@pytest.mark.parametrize("client", ["AsyncTimeback", "Timeback"])
@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("garbage", "holds 7,500 bytes of data"),
        ("another app's database", "another application's SQLite database (tables: notes)"),
    ],
)
def test_a_path_the_app_named_that_holds_something_else_is_refused_at_the_call(
    tmp_path: Path, kind: str, says: str, client: str
) -> None:
    """An app that passes its own file as ``outbox=`` hears so at once, from either
    client, in a ValidationError that names ``outbox=`` and what the file holds; the file
    keeps its bytes, mode and name, and nothing is made beside it."""
    path = tmp_path / "app.db"
    make_bad(path, kind)
    before = untouched(path)
    make = AsyncTimeback if client == "AsyncTimeback" else Timeback
    with pytest.raises(ValidationError) as raised:
        make(BASE, headers=AUTH, outbox=path)
    assert raised.value.field == "outbox"
    assert says in str(raised.value)
    assert "left it as it is" in str(raised.value)
    assert untouched(path) == before


async def test_a_damaged_outbox_at_the_app_s_path_is_left_as_it_was_and_time_goes_on(
    tmp_path: Path,
) -> None:
    """An outbox by its header, but torn: the call cannot tell without reading it all, so
    the writer finds out; on_error hears OutboxError, the file stays as it was, and the
    session is delivered from memory."""
    path = tmp_path / "outbox.sqlite3"
    make_bad(path, "torn pages")
    before = untouched(path)
    reports: list[tuple[TimebackError, ErrorContext]] = []
    clock = VirtualClock()
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE,
            headers=AUTH,
            transport=emulator.transport(),
            clock=clock,
            outbox=path,
            on_error=lambda e, c: reports.append((e, c)),
        ) as timeback:
            activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            await clock.advance(45)
            await activity.end()
        delivery = check_delivery(emulator, {activity.run_id: 45_000})
    assert [type(e) for e, _ in reports] == [OutboxError]
    assert "damaged timeback-client outbox" in str(reports[0][0])
    assert "windows stay in memory" in str(reports[0][0])
    assert untouched(path) == before
    TALLY.add(delivery, **{"outbox file: torn pages at the app's path": 1})


@pytest.mark.parametrize("kind", ["garbage", "another app's database", "torn pages"])
async def test_in_the_sdk_s_own_directory_a_bad_file_is_set_aside_and_tracking_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str
) -> None:
    """The default file, in the SDK's own state directory: on_error hears OutboxError, the
    bad file is kept aside with its bytes and mode, a new outbox takes its place, and the
    session is delivered."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    path = default_outbox_path()
    assert path.is_relative_to(tmp_path)
    path.parent.mkdir(parents=True)
    make_bad(path, kind)
    original = path.read_bytes()
    reports: list[tuple[TimebackError, ErrorContext]] = []
    clock = VirtualClock()
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE,
            headers=AUTH,
            transport=emulator.transport(),
            clock=clock,
            on_error=lambda e, c: reports.append((e, c)),
        ) as timeback:
            activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            await clock.advance(45)
            await synced(path)
            assert stored_windows(path) == 0  # the new outbox is in use
            await activity.end()
        delivery = check_delivery(emulator, {activity.run_id: 45_000})
    assert [type(e) for e, _ in reports] == [OutboxError]
    assert reports[0][1].operation == "outbox"
    aside = set_aside(path.parent)
    assert len(aside) == 1
    assert aside[0].read_bytes() == original
    assert stat.S_IMODE(aside[0].stat().st_mode) == 0o644
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    TALLY.add(delivery, **{f"outbox file: {kind}": 1})


def test_another_app_s_database_in_wal_mode_is_never_opened_for_writing(
    tmp_path: Path,
) -> None:
    """Another app's WAL database, with committed rows still only in its -wal file: at a
    path the app named, the outbox neither writes to it nor touches its journal; in the
    SDK's own directory both are set aside together."""
    path = tmp_path / "outbox.sqlite3"
    other = sqlite3.connect(path)
    other.execute("PRAGMA journal_mode=WAL")
    other.execute("PRAGMA wal_autocheckpoint=0")
    with other:
        other.execute("CREATE TABLE notes (text TEXT)")
        other.execute("INSERT INTO notes VALUES ('only in the journal')")
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutboxError, match="another application's SQLite database"):
        Outbox(path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == files
    outbox = Outbox(path, set_aside=True)
    other.close()
    outbox.close()
    assert outbox.set_aside is not None
    kept = sqlite3.connect(outbox.set_aside)
    assert kept.execute("SELECT text FROM notes").fetchall() == [("only in the journal",)]
    kept.close()


async def test_an_unwritable_outbox_location_keeps_tracking_in_memory(tmp_path: Path) -> None:
    """The outbox cannot even be created (its folder is a file): reported through
    on_error, and the session is delivered from memory."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    reports: list[TimebackError] = []
    clock = VirtualClock()
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE,
            headers=AUTH,
            transport=emulator.transport(),
            clock=clock,
            outbox=blocker / "outbox.sqlite3",
            on_error=lambda e, c: reports.append(e),
        ) as timeback:
            activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            await clock.advance(45)
            await activity.end()
        delivery = check_delivery(emulator, {activity.run_id: 45_000})
    assert [type(e) for e in reports] == [OutboxError]
    assert "windows stay in memory" in str(reports[0])
    TALLY.add(delivery, unwritable_outbox_location=1)


class Flood(httpx.AsyncByteStream):
    """A response body of ``size`` bytes in 16 KiB chunks; counts what was read.

    An iterator object rather than an async generator, so that only httpx's own
    generators are left unfinished when the reader stops early."""

    def __init__(self, size: int, content: bytes = b"<html>no json here</html>") -> None:
        self.size = size
        self.read = 0
        self._chunk = (content * (16384 // len(content) + 1))[:16384]

    def __aiter__(self) -> Flood:
        return self

    async def __anext__(self) -> bytes:
        if self.read >= self.size:
            raise StopAsyncIteration
        self.read += len(self._chunk)
        return self._chunk


HUGE = 10 * 1024 * 1024


@pytest.mark.parametrize(
    ("status", "declared"),
    [(502, True), (200, True), (200, False), (502, False)],
    ids=["502 10 MB declared", "200 10 MB declared", "200 10 MB chunked", "502 10 MB chunked"],
)
@pytest.mark.filterwarnings(
    # Stopping a chunked body midway leaves httpx's chain of async generators to the
    # garbage collector, which trio reports (encode/httpx#3686); a declared length is
    # never read at all, so only the chunked cases can see this.
    "ignore:Exception ignored in. <async_generator object:pytest.PytestUnraisableExceptionWarning"
)
async def test_a_huge_non_json_body_is_read_no_further_than_needed(
    status: int, declared: bool
) -> None:
    """A 10 MB answer that is not JSON, with or without Content-Length, accepting the
    window (200, the backend stored it) or not (502, retried): no crash, at most
    MAX_ERROR_BODY (and a chunk) read, and the window delivered once."""
    clock = VirtualClock()
    floods: list[Flood] = []
    with Emulator(students=STUDENTS) as emulator:
        inner = emulator.transport()

        async def handler(request: httpx.Request) -> httpx.Response:
            if floods:
                return await inner.handle_async_request(request)
            if status == 200:
                await inner.handle_async_request(request)  # stored; the answer is replaced
            flood = Flood(HUGE)
            floods.append(flood)
            headers = {"content-length": str(HUGE)} if declared else {}
            return httpx.Response(status, headers=headers, stream=flood)

        async with AsyncTimeback(
            BASE, headers=AUTH, transport=httpx.MockTransport(handler), clock=clock, outbox=None
        ) as timeback:
            activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            await clock.advance(45)
            await activity.end()
        delivery = check_delivery(emulator, {activity.run_id: 45_000})
    assert floods[0].read <= MAX_ERROR_BODY + 16384
    if declared:
        assert floods[0].read == 0
    TALLY.add(delivery, **{f"HTTP {status} with a 10 MB non-JSON body": 1})


@pytest.fixture
def secrets() -> dict[str, str]:
    return {
        "token": "bearer-7f3a9c51e2d4",
        "cookie": "cookie-4d2b8e07aa19",
        "api key": "key-91c3f0d6b7e8",
    }


def modes(folder: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}


async def stop(server: AbstractContextManager[str]) -> None:
    await anyio.to_thread.run_sync(server.__exit__, None, None, None)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes; Windows has ACLs")
async def test_outbox_files_are_private_and_hold_no_credential(secrets: dict[str, str]) -> None:
    """A real session with a bearer token, a session cookie and an API key header, in
    the default outbox, ended while the backend is down (so windows stay on disk): every
    outbox file is 0600 in a 0700 folder, and no credential value is in any of them."""
    wire = WireLog()
    path = default_outbox_path()
    headers = {"Authorization": f"Bearer {secrets['token']}", "X-Api-Key": secrets["api key"]}
    cookies = {"timeback_session": secrets["cookie"]}
    with Emulator(students={secrets["token"]: EMAIL}) as emulator:
        server = serve(emulator, wire)
        url = server.__enter__()
        try:
            async with AsyncTimeback(url, headers=headers, cookies=cookies) as timeback:
                activity = timeback.activity.start(
                    id="lesson-1",
                    name="Fractions",
                    course=COURSE,
                    time=TimeOptions(heartbeat_interval=0.1, flush_timeout=0.3),
                )
                await anyio.sleep(1.2)  # a checkpoint or so too
                during = modes(path.parent)
        finally:
            await stop(server)
        # The backend is down now: these windows stay on disk.
        async with AsyncTimeback(url, headers=headers, cookies=cookies) as timeback:
            resumed = timeback.activity.start(
                id="lesson-1",
                name="Fractions",
                course=COURSE,
                run_id=activity.run_id,
                time=TimeOptions(heartbeat_interval=0.1, flush_timeout=0.3),
            )
            # A heartbeat's window, however late a loaded machine runs it, then the end's.
            await wait_until(lambda: waiting_windows(timeback) >= 1, "a window")
            await resumed.end()
        assert stored_windows(path) >= 2
        after = modes(path.parent)
        raw = b"".join(p.read_bytes() for p in path.parent.iterdir())
        port = httpx.URL(url).port
        assert port is not None
        with serve_again(emulator, wire, port):
            async with AsyncTimeback(url, headers=headers, cookies=cookies):
                pass
        measured = {activity.run_id: activity.elapsed_ms + resumed.elapsed_ms}
        check_delivery(emulator, measured, wire=wire)
    assert {f"{path.name}{s}" for s in ("", "-wal", "-shm")} <= set(during)
    assert set(during.values()) == {0o600}, during
    assert set(after.values()) == {0o600}, after
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    for name, value in secrets.items():
        assert value.encode() not in raw, f"the {name} is in the outbox"
    assert secrets["token"].encode() in b"".join(
        r.token.encode() for r in wire.requests
    )  # it was sent, though
