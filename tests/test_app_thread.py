"""The app's thread never waits: not for the SDK's loop, not for a locked disk, not for a
slow callback; and the instant counted is the one at which the app called.

Each call is made on a helper thread with a deadline: a call that waited for the loop or
the disk would still be waiting when the deadline passes (the loop and the disk are held
until after it), so these tests assert behaviour, not speed.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

from timeback_client import (
    Activity,
    ErrorContext,
    OutboxError,
    Reading,
    Timeback,
    TimebackError,
    TimeOptions,
    VirtualClock,
)
from timeback_client._writer import flush_outbox
from timeback_client.emulator import Emulator

BASE = "http://emulator.localhost/api/timeback"
STUDENTS = {"ada-token": "ada@example.edu"}
AUTH = {"Authorization": "Bearer ada-token"}
COURSE = {"subject": "Math", "grade": 3}
T0 = 1_767_603_600_000


def returns_promptly(call: Callable[[], object], what: str, timeout: float = 3.0) -> None:
    """Run ``call`` on a thread of its own; fail if it has not returned by ``timeout``."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{what} waited (for the loop, the disk or a callback)"
    assert errors == []


class SteppedClock:
    """A clock the test sets by hand, from any thread; the loop polls it."""

    def __init__(self) -> None:
        self.now_ms = 0

    def read(self) -> Reading:
        return Reading(self.now_ms, 0)

    def wall_ms(self, timeline_ms: int) -> int:
        return T0 + timeline_ms

    async def sleep_until(self, timeline_ms: int) -> None:
        # Set by hand from another thread: there is nothing to wait on but the value.
        while self.now_ms < timeline_ms:  # noqa: ASYNC110
            await anyio.sleep(0.002)


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(students=STUDENTS) as emulator:
        yield emulator


def test_app_calls_return_while_another_connection_holds_the_outbox_lock(
    tmp_path: Path, emulator: Emulator
) -> None:
    """Another process (here: a connection of the test's own) holds the outbox's write
    lock: pause, resume, touch and end(wait=False) still take effect at once, windows are
    still delivered, the app hears of the locked file once, and once the lock is gone
    everything is written; the totals are exact."""
    path = tmp_path / "outbox.sqlite3"
    clock = VirtualClock()
    reports: list[tuple[TimebackError, ErrorContext]] = []
    timeback = Timeback(
        BASE,
        headers=AUTH,
        transport=emulator.transport(),
        clock=clock,
        outbox=path,
        on_error=lambda error, context: reports.append((error, context)),
    )
    try:

        def advance(seconds: float) -> None:
            timeback.portal.call(clock.advance, seconds)

        activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        advance(20)
        # The client's start does not wait for the outbox: the writer makes it on its own
        # thread. Once it has, the lock is taken.
        joined = flush_outbox(path)
        assert joined is not None
        joined.result(timeout=30)
        locker = sqlite3.connect(path, isolation_level=None, timeout=0)
        locker.execute("BEGIN EXCLUSIVE")  # what a second copy of the app or a backup does
        try:
            returns_promptly(activity.pause, "pause()")
            assert activity.is_paused
            advance(10)
            returns_promptly(activity.resume, "resume()")
            advance(25)
            returns_promptly(activity.touch, "touch()")
            returns_promptly(lambda: activity.end(wait=False), "end(wait=False)")
            assert activity.is_ended
            flushed = flush_outbox(path)
            assert flushed is not None
            assert not flushed.done()  # the writer is the one that waits for the disk
            # Held past the writer's patience: it gives up this try and tells the app.
            deadline = time.monotonic() + 15
            while not any(isinstance(e, OutboxError) for e, _ in reports):
                assert time.monotonic() < deadline, "the locked outbox was never reported"
                time.sleep(0.02)
            assert not flushed.done()
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        flushed.result(timeout=30)
    finally:
        timeback.close()
    run = emulator.run(activity.run_id)
    assert run.active_ms == 45_000
    assert [w.elapsed_ms for w in run.windows] == [15_000, 5_000, 15_000, 10_000]
    assert emulator.problems() == ()
    outbox_reports = [e for e, _ in reports if isinstance(e, OutboxError)]
    assert len(outbox_reports) == 1
    assert "locked" in str(outbox_reports[0])
    db = sqlite3.connect(path)
    assert db.execute("SELECT count(*) FROM windows").fetchone() == (0,)
    db.close()


def test_app_calls_return_while_a_callback_blocks_the_sdk_thread_and_count_the_app_s_instant(
    emulator: Emulator,
) -> None:
    """An ``on_flush`` callback holds the SDK's thread. Meanwhile the app pauses, at lesson
    time 15.4 s, and only at 16 s does the callback let go: the pause counts at 15.4 s,
    the app's instant, not at the moment the SDK's thread got to it."""
    clock = SteppedClock()
    in_callback = threading.Event()
    release = threading.Event()
    flushed: list[int] = []

    def on_flush(elapsed_ms: int) -> None:
        flushed.append(elapsed_ms)
        if len(flushed) == 1:
            in_callback.set()
            release.wait(10)

    with Timeback(
        BASE, headers=AUTH, transport=emulator.transport(), clock=clock, outbox=None
    ) as timeback:
        activity: Activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            time=TimeOptions(heartbeat_interval=15),
            on_flush=on_flush,
        )
        clock.now_ms = 15_000  # the first heartbeat; its on_flush then holds the thread
        assert in_callback.wait(10)
        clock.now_ms = 15_400
        returns_promptly(activity.pause, "pause()")
        assert activity.is_paused
        assert activity.elapsed_ms == 15_400
        clock.now_ms = 16_000
        release.set()
        clock.now_ms = 20_000
        returns_promptly(activity.resume, "resume()")
        clock.now_ms = 21_000
        activity.end()
    run = emulator.run(activity.run_id)
    assert [(w.elapsed_ms, w.paused_ms) for w in run.windows] == [
        (15_000, 0),
        (400, 0),
        (1_000, 4_600),
    ]
    assert run.active_ms == 16_400
    assert emulator.problems() == ()
