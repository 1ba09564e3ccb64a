"""The outbox writer: one thread per file per process, one transaction a second at most,
nothing written for a paused activity, and what it stores reaches the file in time."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import anyio
import httpx
import pytest
from outbox_kit import AUTH, COURSE, STUDENTS, stored_windows, synced

from timeback_client import AsyncTimeback, Engine, SystemClock, Timeback, TimeOptions
from timeback_client._outbox import open_window
from timeback_client._writer import OutboxOwner, outbox_writer, release_writer
from timeback_client.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://emulator.localhost/api/timeback"


def checkpoints(path: Path) -> list[tuple[str, int]]:
    """The open windows a crash now would replay: ``(run_id, active ms)``."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT run_id, c.started_at_ms, c.ended_at_ms, c.elapsed_ms, running, "
            "c.suspended_ms, s.wall_ms, s.suspended_ms FROM checkpoints AS c "
            "LEFT JOIN stamps AS s ON s.stamp = c.stamp"
        ).fetchall()
    finally:
        db.close()
    replayed = []
    for run_id, *numbers, alive, asleep in rows:
        stamp = None if alive is None else (alive, asleep)
        _, _, active = open_window(tuple(numbers), stamp)  # type: ignore[arg-type]
        if active:
            replayed.append((str(run_id), active))
    return replayed


def test_a_running_activity_makes_at_most_one_transaction_a_second(tmp_path: Path) -> None:
    """The default interval, a real clock: checkpoints, windows, their deletion and the
    lease all go in the writer's one transaction a second."""
    path = tmp_path / "outbox.sqlite3"
    with (
        Emulator(students=STUDENTS) as emulator,
        Timeback(BASE, headers=AUTH, transport=emulator.transport(), outbox=path) as timeback,
    ):
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=TimeOptions(heartbeat_interval=1)
        )
        time.sleep(0.5)
        before = timeback.statistics().outbox
        assert before is not None
        time.sleep(4)
        after = timeback.statistics().outbox
        assert after is not None
        activity.end()
        assert emulator.problems() == ()
        assert emulator.run(activity.run_id).active_ms == activity.elapsed_ms
    assert after.transactions - before.transactions <= 5
    assert after.failures == 0


def test_a_paused_activity_writes_nothing_but_its_lease(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with (
        Emulator(students=STUDENTS) as emulator,
        Timeback(BASE, headers=AUTH, transport=emulator.transport(), outbox=path) as timeback,
    ):
        activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        time.sleep(0.3)
        activity.pause()
        time.sleep(1.5)  # the pause's window is written, and the checkpoint dropped
        before = timeback.statistics().outbox
        assert before is not None
        time.sleep(4)
        after = timeback.statistics().outbox
        assert after is not None
        assert after.transactions - before.transactions <= 1  # one lease renewal at most
        assert after.watched == 1
        assert checkpoints(path) == []
        activity.end()


def test_the_open_window_is_checkpointed_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    with (
        Emulator(students=STUDENTS) as emulator,
        Timeback(BASE, headers=AUTH, transport=emulator.transport(), outbox=path) as timeback,
    ):
        activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        time.sleep(2.5)
        written = checkpoints(path)
        measured = activity.elapsed_ms
        activity.end()
    assert [run_id for run_id, _ in written] == [activity.run_id]
    assert measured - 1_200 <= written[0][1] <= measured
    assert checkpoints(path) == []  # the activity ended: its last window replaced it
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM checkpoints").fetchone() == (0,)
    db.close()


async def test_many_clients_of_a_process_share_one_writer_and_its_transactions(
    tmp_path: Path,
) -> None:
    """Fifty students on one engine and one outbox file: one writer thread, and its
    transactions do not grow with the number of students."""
    path = tmp_path / "outbox.sqlite3"
    accepted: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        accepted.append(1)
        return httpx.Response(204)

    threads_before = {t.name for t in threading.enumerate()}
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http,
        Engine(http_client=http, clock=SystemClock()) as engine,
    ):
        clients = [
            AsyncTimeback("http://127.0.0.1:9/api/timeback", engine=engine, outbox=path)
            for _ in range(50)
        ]
        for client in clients:
            await client.__aenter__()
        options = TimeOptions(heartbeat_interval=0.5)
        activities = [
            client.activity.start(id="lesson-1", name="Fractions", course=COURSE, time=options)
            for client in clients
        ]
        await anyio.sleep(1.2)  # a tick: the writer has taken in the activities
        outbox = clients[0].statistics().outbox
        assert outbox is not None
        assert outbox.owners == 50
        assert outbox.watched == 50
        writers = {t.name for t in threading.enumerate()} - threads_before
        assert len([name for name in writers if "outbox writer" in name]) == 1
        before = outbox.transactions
        await anyio.sleep(3)
        outbox = clients[0].statistics().outbox
        assert outbox is not None
        assert outbox.transactions - before <= 4
        for activity in activities:
            await activity.end()
        for client in clients:
            await client.__aexit__(None, None, None)
    assert len(accepted) >= 50 * 6
    assert stored_windows(path) == 0


async def test_a_window_without_an_answer_is_on_disk_within_a_second(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    answered = anyio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await answered.wait()
        return httpx.Response(204)

    async with AsyncTimeback(
        "http://127.0.0.1:9/api/timeback",
        transport=httpx.MockTransport(hang),
        outbox=path,
        clock=SystemClock(),
    ) as timeback:
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            time=TimeOptions(heartbeat_interval=0.3),
        )
        await anyio.sleep(0.35)  # one window cut, its request hanging
        await anyio.sleep(1.2)
        assert stored_windows(path) >= 1
        answered.set()
        await activity.end()
        await synced(path)
        assert stored_windows(path) == 0


def test_a_refused_window_is_kept_as_never_received(tmp_path: Path) -> None:
    """A window the backend refused and the SDK holds: the file keeps it without a first
    attempt (the server does not have it, so a replay is no double count), whether the
    refusal reaches the writer in the attempt's transaction or a later one; another
    attempt marks it again."""
    path = tmp_path / "outbox.sqlite3"
    writer = outbox_writer(path)
    owner = OutboxOwner(writer, backend=BASE, identity="ada", report=lambda error: None)
    key = ("run-1", 1_000)

    def sent_at() -> float | None:
        writer.flush().result(10)
        db = sqlite3.connect(path)
        try:
            (value,) = db.execute("SELECT sent_at FROM windows").fetchone()
        finally:
            db.close()
        return None if value is None else float(value)

    try:
        owner.store(key, 16_000, 15_000, b"{}", (16_000, 16_000, 0, False, 0))
        owner.sending(key)
        owner.held(key)  # in the transaction that stores it
        assert sent_at() is None
        owner.sending(key)
        assert sent_at() is not None
        owner.held(key)  # in a later one
        assert sent_at() is None
        owner.sending(key)
        owner.held(key)
        owner.sending(key)  # the last word wins
        assert sent_at() is not None
    finally:
        owner.leave().result(10)
        stopped = release_writer(writer)
        if stopped is not None:
            stopped.result(10)
