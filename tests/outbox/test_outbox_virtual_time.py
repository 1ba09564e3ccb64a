"""Long stretches on the virtual clock: an hour offline, a send without an answer for
over five minutes, a replayed window the server may remember, machine suspends."""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections.abc import Callable
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx
import pytest
from outbox_kit import AUTH, COURSE, STUDENTS, TALLY, check_delivery, stored_windows, synced

from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    Course,
    DeliveryError,
    ErrorContext,
    SystemClock,
    TimebackError,
    TimeOptions,
    VirtualClock,
    Window,
)
from timeback_client._delivery_errors import DuplicateRiskError
from timeback_client._outbox import Outbox, WindowRow, open_window
from timeback_client._sender import DEDUPE_MEMORY_MS, UNANSWERED_RETRY_CAP, Backoff
from timeback_client.emulator import Emulator

pytestmark = pytest.mark.anyio

BASE = "http://emulator.localhost/api/timeback"


class Line(httpx.AsyncBaseTransport):
    """The network between the client and the emulator: ``fail(request)`` returns an
    exception to raise instead of passing the request on (None: pass it on)."""

    def __init__(self, emulator: Emulator, clock: VirtualClock) -> None:
        self._inner = emulator.transport()
        self._clock = clock
        self.fail: Callable[[httpx.Request], Exception | None] = lambda request: None
        self.attempts: list[tuple[int, bytes, bool]] = []  # (virtual ms, body, failed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        failure = self.fail(request)
        self.attempts.append((self._clock.now_ms, body, failure is not None))
        if failure is not None:
            raise failure
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


def start(
    timeback: AsyncTimeback,
    on_error: Callable[[DeliveryError, ErrorContext], object] | None = None,
) -> AsyncActivity:
    return timeback.activity.start(
        id="lesson-1", name="Fractions", course=COURSE, on_error=on_error
    )


@pytest.mark.parametrize("students", [1, 2])
async def test_an_hour_offline_then_back_delivers_every_window_once_in_order(
    tmp_path: Path, students: int
) -> None:
    """The network is down for an hour (connections refused): every window waits in the
    outbox, the sender retries each run's head window with capped backoff (no busy loop,
    also with two runs waiting at once on one shared sender), and once back online every
    window goes, once, in order, with exact totals."""
    clock = VirtualClock()
    outbox = tmp_path / "outbox.sqlite3"
    with Emulator(students=STUDENTS) as emulator:
        line = Line(emulator, clock)
        online = False

        def refuse(request: httpx.Request) -> Exception | None:
            return None if online else httpx.ConnectError("network unreachable", request=request)

        line.fail = refuse
        # A busy loop never lets the virtual clock settle: a real-time bound catches it.
        with anyio.fail_after(30):
            async with AsyncExitStack() as stack:
                http = await stack.enter_async_context(httpx.AsyncClient(transport=line))
                activities = []
                for _ in range(students):
                    timeback = await stack.enter_async_context(
                        AsyncTimeback(
                            BASE, headers=AUTH, http_client=http, clock=clock, outbox=outbox
                        )
                    )
                    activities.append(start(timeback))
                await clock.advance(3600)
                offline_attempts = len(line.attempts)
                await synced(outbox)
                waiting = stored_windows(outbox)
                online = True
                await clock.advance(120)
                for activity in activities:
                    await activity.end()
        assert stored_windows(outbox) == 0
        measured = {activity.run_id: activity.elapsed_ms for activity in activities}
        delivery = check_delivery(emulator, measured)
        for activity in activities:
            run = emulator.run(activity.run_id)
            arrival = sorted(run.windows, key=lambda w: w.seq)
            assert [w.started_at for w in arrival] == [w.started_at for w in run.windows]
            assert run.sessions == 1
            assert activity.elapsed_ms == 3720 * 1000
    assert waiting == students * 3600 // 15
    # Equal jitter waits at least half the cap between attempts once the cap is reached.
    cap = Backoff().cap
    assert offline_attempts <= students * (3600 / (cap / 2) + 10)
    TALLY.add(delivery, an_hour_offline_on_the_virtual_clock=1)
    TALLY.offline_attempts.append(offline_attempts)
    print(f"\nan hour offline: {offline_attempts} attempts, {delivery.windows} windows")


async def test_a_send_unanswered_for_over_five_minutes_is_retried_promptly_and_reported_once(
    tmp_path: Path,
) -> None:
    """Every send times out for six virtual minutes: the window is retried within 5 s
    each time, DuplicateRiskError reaches on_error exactly once, and it is delivered
    once the backend answers."""
    clock = VirtualClock()
    reports: list[tuple[DeliveryError, ErrorContext]] = []
    with Emulator(students=STUDENTS) as emulator:
        line = Line(emulator, clock)
        line.fail = lambda request: (
            httpx.ReadTimeout("no answer", request=request) if clock.now_ms < 375_000 else None
        )
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=line, clock=clock, outbox=tmp_path / "o.sqlite3"
        ) as timeback:
            activity = start(timeback, on_error=lambda e, c: reports.append((e, c)))
            await clock.advance(15)  # the first window goes, and gets no answer
            await clock.advance(6 * 60 + 30)
            await activity.end()
        delivery = check_delivery(emulator, {activity.run_id: activity.elapsed_ms})
    first = line.attempts[0][1]
    tries = [at for at, body, _ in line.attempts if body == first]
    assert len(tries) > 60
    assert max(b - a for a, b in itertools.pairwise(tries)) <= UNANSWERED_RETRY_CAP * 1000
    risks = [(e, c) for e, c in reports if isinstance(e, DuplicateRiskError)]
    assert len(risks) == 1
    error, context = risks[0]
    assert error.window is not None
    assert error.window.to_bytes() == first
    assert context.will_retry is True
    TALLY.add(delivery, no_answer_for_6_virtual_minutes=1)


async def test_a_window_first_answered_after_five_minutes_is_reported(tmp_path: Path) -> None:
    """Unanswered until just within the 5 minutes, then accepted just past them: the real
    server may have counted the first send and forgotten it, so this one may count twice.
    That must be reported (once), not silent."""
    clock = VirtualClock()
    reports: list[DeliveryError] = []
    first_sent: list[int] = []

    def until_five_minutes(request: httpx.Request) -> Exception | None:
        if not first_sent:
            first_sent.append(clock.now_ms)
        if clock.now_ms - first_sent[0] <= DEDUPE_MEMORY_MS:
            return httpx.ReadTimeout("no answer", request=request)
        return None

    with Emulator(students=STUDENTS) as emulator:
        line = Line(emulator, clock)
        line.fail = until_five_minutes
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=line, clock=clock, outbox=tmp_path / "o.sqlite3"
        ) as timeback:
            activity = start(timeback, on_error=lambda e, c: reports.append(e))
            await clock.advance(15)
            await clock.advance(5 * 60 + 10)
            await activity.end()
        check_delivery(emulator, {activity.run_id: activity.elapsed_ms})
    assert sum(isinstance(e, DuplicateRiskError) for e in reports) == 1


def leave_unanswered(path: Path, url: str, identity: str, window: Window, age_s: float) -> None:
    """What a process that died leaves: a window it sent ``age_s`` ago without an answer."""
    outbox = Outbox(path)
    with outbox.transaction():
        outbox.add(
            [
                WindowRow(
                    owner="departed",
                    backend=url,
                    identity=identity,
                    run_id=window.run_id,
                    started_at_ms=window.started_at_ms,
                    ended_at_ms=window.ended_at_ms,
                    elapsed_ms=window.elapsed_ms,
                    body=window.to_bytes(),
                )
            ]
        )
        outbox.mark_sent([(time.time(), window.run_id, window.started_at_ms)])
    outbox.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE windows SET sent_at = ?", (time.time() - age_s,))
    db.close()


@pytest.mark.parametrize(("age_s", "unanswered_ms"), [(290, 20_000), (400, 0)])
async def test_a_replayed_window_the_server_may_have_forgotten_is_reported(
    tmp_path: Path, age_s: float, unanswered_ms: int
) -> None:
    """A dead process sent a window ``age_s`` ago and got no answer. The next client
    replays it, unanswered for ``unanswered_ms`` more: whether it is retried past the
    server's 5-minute memory or accepted at once after it, the client-level on_error
    hears DuplicateRiskError once."""
    clock = VirtualClock()
    path = tmp_path / "outbox.sqlite3"
    sent = Window(
        activity_id="lesson-1",
        name="Fractions",
        course=Course.from_value(COURSE),
        run_id="0b6e9c1e-4a8e-4f44-9a57-7e3b1f1c2a10",
        started_at_ms=clock.wall_ms(-60_000),
        ended_at_ms=clock.wall_ms(-45_000),
        elapsed_ms=15_000,
        paused_ms=0,
    )
    leave_unanswered(path, BASE, "ada", sent, age_s)
    reports: list[TimebackError] = []
    with Emulator(students=STUDENTS) as emulator:
        line = Line(emulator, clock)
        line.fail = lambda request: (
            httpx.ReadTimeout("no answer", request=request)
            if clock.now_ms < unanswered_ms
            else None
        )
        async with AsyncTimeback(
            BASE,
            headers=AUTH,
            transport=line,
            clock=clock,
            outbox=path,
            identity="ada",
            on_error=lambda e, c: reports.append(e),
        ) as timeback:
            # The writer reads what the dead process left on its own thread; the replay's
            # first attempt goes out as soon as it has, before any time passes here.
            with anyio.fail_after(30):
                while timeback.statistics().engine.attempts == 0:  # noqa: ASYNC110 - the writer's thread
                    await anyio.sleep(0.01)
            await clock.advance(30)
        check_delivery(emulator, {sent.run_id: 15_000})
    assert sum(isinstance(e, DuplicateRiskError) for e in reports) == 1, reports


async def test_a_suspend_counts_as_paused_and_a_long_one_starts_a_clean_slate() -> None:
    """A 60 s suspend while active is reported as paused time; a suspend longer than
    abandon_after is not reported at all, and tracking goes on from a clean slate."""
    clock = VirtualClock()
    options = TimeOptions(abandon_after=120)
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=emulator.transport(), clock=clock, outbox=None
        ) as timeback:
            short = timeback.activity.start(id="l", name="n", course=COURSE, time=options)
            await clock.advance(20)
            await clock.suspend(60)
            await clock.advance(10)
            await short.end()
            long = timeback.activity.start(id="l", name="n", course=COURSE, time=options)
            await clock.advance(20)
            await clock.suspend(300)
            await clock.advance(10)
            await long.end()
        check_delivery(emulator, {short.run_id: 30_000, long.run_id: 30_000})
        assert emulator.run(short.run_id).inactive_ms == 60_000
        assert emulator.run(short.run_id).sessions == 1
        assert emulator.run(long.run_id).inactive_ms == 0
        assert emulator.run(long.run_id).sessions == 2


def test_the_system_clock_reads_no_suspend_when_there_is_none() -> None:
    """Hundreds of readings in a row: no millisecond of suspend from clock jitter."""
    clock = SystemClock()
    readings = [clock.read() for _ in range(500)]
    for _ in range(100):
        time.sleep(0.001)
        readings.append(clock.read())
    assert {r.suspended_ms for r in readings} == {0}
    timeline = [r.timeline_ms for r in readings]
    assert timeline == sorted(timeline)


def replayable(path: Path) -> list[tuple[int, int, int]]:
    """What a crash now would replay of the open windows, ``(start, end, active ms)``:
    the checkpoints counted up to their stamps, as the next client's claim counts them."""
    db = sqlite3.connect(path)
    try:
        rows = db.execute(
            "SELECT c.started_at_ms, c.ended_at_ms, c.elapsed_ms, running, c.suspended_ms, "
            "s.wall_ms, s.suspended_ms FROM checkpoints AS c "
            "LEFT JOIN stamps AS s ON s.stamp = c.stamp"
        ).fetchall()
    finally:
        db.close()
    return [
        open_window(tuple(checkpoint), None if alive is None else (alive, asleep_then))
        for *checkpoint, alive, asleep_then in rows
    ]


@pytest.mark.parametrize("step_s", [60, -40])
async def test_a_crash_after_a_wall_clock_step_replays_exactly_what_was_active(
    tmp_path: Path, step_s: int
) -> None:
    """The open window was checkpointed before the wall clock stepped, and the stamp
    that says until when the process lived is taken after it: a crash then must replay
    the time really active (not the step as active time forwards, not less backwards),
    labelled in the true time."""
    clock = VirtualClock()
    t0 = clock.wall_ms(0)
    path = tmp_path / "outbox.sqlite3"
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=emulator.transport(), clock=clock, outbox=path
        ) as timeback:
            activity = start(timeback)
            await clock.advance(20)  # a window cut at 15 s; the open one holds 5 s
            await synced(path)
            before = replayable(path)
            clock.step_wall(step_s)
            await clock.advance(5)
            await synced(path)
            after = replayable(path)
            now = clock.wall_now_ms()
            await activity.end()
        check_delivery(emulator, {activity.run_id: 25_000})
    assert before == [(t0 + 15_000, t0 + 20_000, 5_000)]
    shift = step_s * 1000
    assert after == [(t0 + shift + 15_000, now, 10_000)]
    assert now == t0 + shift + 25_000
