"""Time survives a misconfigured backend: windows refused for a cause its operator can fix
(a course not synced or not in the config, a student not in the roster) are held, in the
outbox too, until the fix, then delivered once; a wrong window is still dropped.

Every story runs against the emulator, in process, on the virtual clock; the operator's
fix is the emulator's (`sync_course`, `add_course`, `add_to_roster`).
"""

from __future__ import annotations

import datetime
import itertools
import json
import random
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from pathlib import Path

import anyio
import attrs
import httpx
import pytest

from fake_backend import FakeBackend
from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    BackendConfigurationError,
    Course,
    CourseFields,
    DeliveryError,
    DuplicateRiskError,
    ErrorContext,
    HeldWindows,
    HoldExpiredError,
    InvalidPayloadError,
    TimebackError,
    UndeliveredError,
    UserResolutionError,
    ValidationError,
    VirtualClock,
    Window,
)
from timeback_client._sender import HOLD_RETRY, Delivery, Endpoint, HeartbeatSender
from timeback_client.emulator import Course as ConfiguredCourse
from timeback_client.emulator import Emulator
from window_invariants import check_windows

pytestmark = pytest.mark.anyio

BASE = "http://emulator.localhost/api/timeback"
TOKEN = "tok-ada"
EMAIL = "ada@example.edu"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MATH_3: CourseFields = {"subject": "Math", "grade": 3}
SYNCED_READING = ConfiguredCourse(
    subject="Reading", grade=3, staging_id="reading-3", production_id="reading-3"
)
HOLD_RETRY_MS = round(HOLD_RETRY * 1000)


@attrs.frozen
class Misconfiguration:
    """A backend that refuses Math grade 3 for one cause, and the operator's fix."""

    cause: str
    error_type: type[DeliveryError]
    emulator: Callable[[], Emulator]
    fix: Callable[[Emulator], object]


MISCONFIGURATIONS = [
    Misconfiguration(
        cause="MISSING_SYNCED_COURSE_ID",
        error_type=BackendConfigurationError,
        emulator=lambda: Emulator(
            students={TOKEN: EMAIL},
            courses=[ConfiguredCourse(subject="Math", grade=3), SYNCED_READING],
        ),
        fix=lambda emulator: emulator.sync_course(subject="Math", grade=3),
    ),
    Misconfiguration(
        cause="UNKNOWN_COURSE",
        error_type=BackendConfigurationError,
        emulator=lambda: Emulator(students={TOKEN: EMAIL}, courses=[SYNCED_READING]),
        fix=lambda emulator: emulator.add_course(
            ConfiguredCourse(subject="Math", grade=3, staging_id="m3", production_id="m3")
        ),
    ),
    Misconfiguration(
        cause="USER_RESOLUTION_FAILED",
        error_type=UserResolutionError,
        emulator=lambda: Emulator(students={TOKEN: EMAIL}, roster=["someone@example.edu"]),
        fix=lambda emulator: emulator.add_to_roster(EMAIL),
    ),
]


class Wire(httpx.AsyncBaseTransport):
    """The emulator's transport, noting each heartbeat's virtual instant and status."""

    def __init__(self, emulator: Emulator, clock: VirtualClock) -> None:
        self._inner = emulator.transport()
        self._clock = clock
        self.seen: list[tuple[int, str, int]] = []  # (virtual ms, startedAt, status)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started_at = httpx.Response(200, content=await request.aread()).json()["startedAt"]
        response = await self._inner.handle_async_request(request)
        self.seen.append((self._clock.now_ms, started_at, response.status_code))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


Reports = list[tuple[TimebackError, ErrorContext]]


def start(timeback: AsyncTimeback, reports: Reports) -> AsyncActivity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=MATH_3,
        on_error=lambda error, context: reports.append((error, context)),
    )


def check_recorded_once(emulator: Emulator, run_id: str, active_ms: int) -> None:
    """The run's time is in the backend exactly once: every window, none twice."""
    run = emulator.run(run_id)
    assert run.active_ms == active_ms
    starts = [window.started_at for window in run.windows]
    assert len(starts) == len(set(starts))
    assert run.sessions == 1


@pytest.fixture
def open_emulator() -> Iterator[Callable[[Misconfiguration], Emulator]]:
    """Makes a case's emulator, and closes every one made at the test's end."""
    with ExitStack() as stack:
        yield lambda case: stack.enter_context(case.emulator())


@pytest.mark.parametrize("case", MISCONFIGURATIONS, ids=lambda case: case.cause)
async def test_held_windows_wait_for_the_operator_s_fix_then_each_is_delivered_once(
    case: Misconfiguration, tmp_path: Path, open_emulator: Callable[[Misconfiguration], Emulator]
) -> None:
    """Refused for a cause the operator fixes: the windows are held (the app is told
    once, with the backend's own words; statistics say what waits and why), the head is
    tried every few minutes, and once the fix is in, every window goes, exactly once."""
    clock = VirtualClock()
    emulator = open_emulator(case)
    wire = Wire(emulator, clock)
    reports: Reports = []
    async with AsyncTimeback(
        BASE, headers=AUTH, transport=wire, clock=clock, outbox=tmp_path / "outbox.sqlite3"
    ) as timeback:
        activity = start(timeback, reports)
        await clock.advance(30 * 60)
        # One report, for the cause: not one per window, nor per retry (a 404's quick
        # retries before its hold included).
        held_reports = [(e, c) for e, c in reports if isinstance(e, DeliveryError) and e.retryable]
        assert len(reports) == len(held_reports) == 1
        error, context = reports[-1]
        assert type(error) is case.error_type
        assert isinstance(error, DeliveryError)
        assert getattr(error, "code", None) == case.cause
        assert context.will_retry
        if case.cause == "MISSING_SYNCED_COURSE_ID":
            assert "Run `timeback resources push` first." in str(error)
        # The head only, every few minutes (the 404's quick retries aside).
        slow = [at for at, _, _ in wire.seen][-5:]
        assert all(
            0.8 * HOLD_RETRY_MS <= b - a <= 1.2 * HOLD_RETRY_MS for a, b in itertools.pairwise(slow)
        )
        assert len(wire.seen) <= 3 + 30 * 60 // (0.8 * HOLD_RETRY)
        assert len({started for _, started, _ in wire.seen}) == 1
        (held,) = timeback.statistics().held
        assert isinstance(held, HeldWindows)
        assert (held.cause, held.credentials) == (case.cause, False)
        assert held.windows == 120
        assert held.active_ms == 30 * 60 * 1000
        assert held.message == str(error)
        first_cut = datetime.datetime(2026, 1, 5, 9, 0, 15, tzinfo=datetime.UTC)
        # Held at the first refusal (for a 404, after its few quick retries).
        assert first_cut <= held.since <= first_cut + datetime.timedelta(seconds=5)
        assert held.reason
        # Every held window is in the outbox, none as "sent and unanswered" (the flush
        # tries the head again, and waits for its refusal).
        assert await timeback.flush(0.5)
        with closing(sqlite3.connect(tmp_path / "outbox.sqlite3")) as db:
            rows = db.execute("SELECT count(*), count(sent_at) FROM windows").fetchone()
        assert rows == (120, 0)

        case.fix(emulator)
        await clock.advance(1.2 * HOLD_RETRY)  # the next slow retry is accepted...
        assert timeback.statistics().held == ()  # ...and the others follow at once
        await activity.end()
        assert not await timeback.flush(0)
    check_recorded_once(emulator, activity.run_id, activity.elapsed_ms)
    assert len(reports) == len(held_reports)  # told once, and not of the recovery
    accepted = [started for _, started, status in wire.seen if status == 204]
    assert len(accepted) == len(set(accepted)) == activity.elapsed_ms // 15_000


async def test_invalid_payload_is_still_dropped_and_reported_while_others_are_held(
    open_emulator: Callable[[Misconfiguration], Emulator],
) -> None:
    """The window that is wrong is dropped (the same bytes would never be accepted);
    the windows behind it, refused for an unsynced course, are held and delivered."""
    clock = VirtualClock()
    emulator = open_emulator(MISCONFIGURATIONS[0])
    emulator.faults.add(status=400, code="INVALID_PAYLOAD", message="elapsedMs is wrong")
    wire = Wire(emulator, clock)
    reports: Reports = []
    async with AsyncTimeback(BASE, headers=AUTH, transport=wire, clock=clock) as timeback:
        activity = start(timeback, reports)
        await clock.advance(60)
        emulator.sync_course(subject="Math", grade=3)
        await clock.advance(1.2 * HOLD_RETRY)
        await activity.end()
    [(dropped, dropped_context), (held, _)] = reports
    assert type(dropped) is InvalidPayloadError
    assert not dropped.retryable
    assert not dropped_context.will_retry
    assert dropped.window is not None
    assert type(held) is BackendConfigurationError
    assert [started for _, started, _ in wire.seen].count(dropped.window.started_at) == 1
    run = emulator.run(activity.run_id)
    assert run.active_ms == activity.elapsed_ms - dropped.window.elapsed_ms
    assert dropped.window.started_at not in {w.started_at for w in run.windows}


async def test_held_windows_survive_a_restart_and_are_tried_at_once_by_the_next_client(
    tmp_path: Path, open_emulator: Callable[[Misconfiguration], Emulator]
) -> None:
    """The client closes with windows held; the next one (an hour later, the course
    still not synced) replays them at once from the outbox, holds them again (no double
    count suspected: they were refused, not unanswered), and delivers them once the
    course is synced."""
    outbox = tmp_path / "outbox.sqlite3"
    emulator = open_emulator(MISCONFIGURATIONS[0])
    first_reports: Reports = []
    clock = VirtualClock()
    async with AsyncTimeback(
        BASE, headers=AUTH, transport=emulator.transport(), clock=clock, outbox=outbox
    ) as first:
        activity = start(first, first_reports)
        await clock.advance(10 * 60)
        await activity.end()
    active_ms = activity.elapsed_ms
    assert active_ms == 10 * 60 * 1000
    # The cause once; then end() and close() say what they leave, kept for the next start.
    kinds = [(type(error), context.operation) for error, context in first_reports]
    assert kinds == [
        (BackendConfigurationError, "heartbeat"),
        (UndeliveredError, "flush"),
        (UndeliveredError, "flush"),
    ]
    assert all(context.will_retry for _, context in first_reports)
    assert "MISSING_SYNCED_COURSE_ID" in str(first_reports[-1][0])

    later = VirtualClock(wall_start_ms=clock.wall_ms(clock.now_ms) + 3_600_000)
    wire = Wire(emulator, later)
    reports: Reports = []
    async with AsyncTimeback(
        BASE,
        headers=AUTH,
        transport=wire,
        clock=later,
        outbox=outbox,
        on_error=lambda error, context: reports.append((error, context)),
    ) as second:
        # The writer reads what the first client left on its own thread, and the replay
        # goes out as soon as it has: no time passes on the client's clock meanwhile.
        with anyio.fail_after(30):
            while not wire.seen:  # noqa: ASYNC110 - the replay starts on the writer's thread
                await anyio.sleep(0.01)
        assert wire.seen[0][0] == 0  # tried at the client's start
        await later.advance(1)
        (held,) = second.statistics().held
        assert (held.cause, held.windows, held.active_ms) == (
            "MISSING_SYNCED_COURSE_ID",
            40,
            active_ms,
        )
        emulator.sync_course(subject="Math", grade=3)
        await later.advance(1.2 * HOLD_RETRY)
        assert not await second.flush(5)
    # The client hears of the cause once for the replayed run; never of a double count.
    assert [type(error) for error, _ in reports] == [BackendConfigurationError]
    assert not any(isinstance(error, DuplicateRiskError) for error, _ in reports)
    check_recorded_once(emulator, activity.run_id, active_ms)
    with closing(sqlite3.connect(outbox)) as db:
        assert db.execute("SELECT count(*) FROM windows").fetchone() == (0,)


async def test_windows_held_past_hold_for_are_dropped_and_reported_with_their_ms(
    open_emulator: Callable[[Misconfiguration], Emulator],
) -> None:
    """An age limit the app sets: what waited longer is dropped, and the app is told how
    many milliseconds it lost; what is younger is delivered once the fix comes."""
    clock = VirtualClock()
    emulator = open_emulator(MISCONFIGURATIONS[0])
    reports: Reports = []
    async with AsyncTimeback(
        BASE,
        headers=AUTH,
        transport=emulator.transport(),
        clock=clock,
        hold_for=datetime.timedelta(hours=1),
    ) as timeback:
        activity = start(timeback, reports)
        await clock.advance(2 * 3600)
        expired = [e for e, _ in reports if isinstance(e, HoldExpiredError)]
        assert expired
        (held,) = timeback.statistics().held
        # Active all along: the oldest window kept starts this far into the lesson.
        kept_from_ms = 2 * 3600 * 1000 - held.active_ms
        # Nothing younger than the hour was dropped; nothing is kept more than one slow
        # retry past it.
        assert kept_from_ms <= 3600 * 1000
        assert kept_from_ms + 15_000 >= 3600 * 1000 - 1.2 * HOLD_RETRY_MS
        emulator.sync_course(subject="Math", grade=3)
        await clock.advance(1.2 * HOLD_RETRY)
        await activity.end()
    lost_ms = sum(error.active_ms for error in expired)
    for error in expired:
        assert not error.retryable
        assert error.cause == "MISSING_SYNCED_COURSE_ID"
        assert f"{error.active_ms} active ms" in str(error)
        assert all(clock.wall_ms(0) <= w.started_at_ms for w in error.windows)
    # What was dropped is a contiguous stretch from the lesson's start: the oldest first.
    dropped = [json.loads(w.to_bytes()) for error in expired for w in error.windows]
    check_windows(dropped)
    assert dropped[0]["startedAt"] == "2026-01-05T09:00:00.000Z"
    run = emulator.run(activity.run_id)
    assert run.active_ms + lost_ms == activity.elapsed_ms
    dropped_starts = {w.started_at for error in expired for w in error.windows}
    assert not dropped_starts & {w.started_at for w in run.windows}


@pytest.mark.parametrize("hold_for", [0, -1, float("nan"), True, "7d", datetime.timedelta(0)])
def test_hold_for_must_be_a_positive_duration(hold_for: object) -> None:
    with pytest.raises(ValidationError, match="hold_for") as raised:
        AsyncTimeback(BASE, hold_for=hold_for)  # type: ignore[arg-type]
    assert "timedelta" in raised.value.fix


# -- the sender: the others of a cause follow promptly -----------------------------------


class Listener:
    """A sender's listener that keeps what it hears."""

    def __init__(self) -> None:
        self.accepted: list[Window] = []
        self.reports: list[DeliveryError] = []

    def sending(self, delivery: Delivery) -> None:
        pass

    def delivered(self, delivery: Delivery, *, duplicate: bool) -> None:
        self.accepted.append(delivery.window)

    def failed(self, delivery: Delivery, error: DeliveryError, *, will_retry: bool) -> None:
        self.reports.append(error)

    def held(self, delivery: Delivery, error: DeliveryError, *, report: bool) -> None:
        if report:
            self.reports.append(error)


def window(run_id: str) -> Window:
    return Window(
        activity_id="lesson-1",
        name="Fractions",
        course=Course(subject="Math", grade=3),
        run_id=run_id,
        started_at_ms=1_767_603_600_000,
        ended_at_ms=1_767_603_615_000,
        elapsed_ms=15_000,
        paused_ms=0,
    )


async def test_when_one_held_window_is_accepted_the_others_of_its_cause_go_at_once() -> None:
    """Two runs held for an unsynced course, each on its own slow cadence: the first
    retry after the fix is accepted, and the other run is tried at that very instant,
    not at its own next turn minutes later. A run held for another cause is not."""
    clock = VirtualClock()
    synced = False

    def answer(request: httpx.Request) -> httpx.Response:
        body = httpx.Response(200, content=request.content).json()
        if body["course"].get("code") == "OTHER":
            return httpx.Response(400, json={"error": {"code": "UNKNOWN_COURSE"}})
        if synced:
            return httpx.Response(204)
        return httpx.Response(503, json={"error": {"code": "MISSING_SYNCED_COURSE_ID"}})

    backend = FakeBackend(clock, responder=answer)
    listener = Listener()
    runs = [str(uuid.uuid4()) for _ in range(3)]
    async with (
        httpx.AsyncClient(transport=backend.transport) as http,
        anyio.create_task_group() as tg,
    ):
        sender = HeartbeatSender(http, clock, task_group=tg, rng=random.Random(7))
        endpoint = Endpoint(BASE + "/activity/heartbeat")
        for run_id in runs[:2]:
            sender.submit(Delivery(window=window(run_id), endpoint=endpoint, listener=listener))
            await clock.advance(10)  # their slow turns fall apart
        other = attrs.evolve(window(runs[2]), course=Course(code="OTHER"))
        sender.submit(Delivery(window=other, endpoint=endpoint, listener=listener))
        await clock.advance(1)
        synced = True
        with anyio.fail_after(30):  # real seconds: a failure below must not hang
            while not listener.accepted:
                await clock.advance(1)
        sender.close()
        tg.cancel_scope.cancel()
    assert len(listener.reports) == 3  # each run's cause, once
    assert {w.run_id for w in listener.accepted} == set(runs[:2])
    answers = [(s.run_id, s.at_ms, s.status) for s in backend.seen]
    fixed_at = next(at for _, at, status in answers if status == 204)
    # Both runs go at the instant of the first acceptance, though their own slow turns
    # were 10 s apart; the run held for another cause is not tried then.
    assert sorted(r for r, at, status in answers if at == fixed_at and status == 204) == sorted(
        runs[:2]
    )
    assert (runs[2], fixed_at, 400) not in answers


async def test_a_flush_after_the_fix_delivers_the_held_windows_at_once(
    open_emulator: Callable[[Misconfiguration], Emulator],
) -> None:
    """The app need not wait for the next slow retry: ``flush()`` tries held windows now,
    and once the operator has fixed the cause, they are delivered, exactly once."""
    clock = VirtualClock()
    emulator = open_emulator(MISCONFIGURATIONS[0])
    wire = Wire(emulator, clock)
    reports: Reports = []
    async with AsyncTimeback(
        BASE, headers=AUTH, transport=wire, clock=clock, outbox=None
    ) as timeback:
        activity = start(timeback, reports)
        await clock.advance(10 * 60)
        assert timeback.statistics().held != ()
        still = await timeback.flush(0.5)  # not fixed yet: tried, refused, still held
        assert still
        assert timeback.statistics().held != ()

        MISCONFIGURATIONS[0].fix(emulator)
        tried = len(wire.seen)
        assert not await timeback.flush(2)  # no virtual time passes: the flush did it
        assert timeback.statistics().held == ()
        assert len(wire.seen) > tried
        await activity.end()
    check_recorded_once(emulator, activity.run_id, activity.elapsed_ms)
    assert len(reports) == 1
