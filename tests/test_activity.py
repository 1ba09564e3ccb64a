"""An activity's lifecycle and its windows, on a virtual clock, on asyncio and trio."""

from __future__ import annotations

import gc
import random
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_backend import FakeBackend
from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    LifecycleError,
    TimeOptions,
    ValidationError,
    VirtualClock,
    Window,
)
from timeback_client._models import format_timestamp
from window_invariants import check_windows, total_active_ms

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:9/api/timeback"
COURSE = {"subject": "Math", "grade": 3}
T0 = 1_767_603_600_000  # the VirtualClock's default wall start, 2026-01-05T09:00:00.000Z


class Session:
    """A client on a virtual clock against a recording backend."""

    def __init__(self, clock: VirtualClock, backend: FakeBackend, timeback: AsyncTimeback) -> None:
        self.clock = clock
        self.backend = backend
        self.timeback = timeback
        self.events: list[str] = []

    def start(self, **options: Any) -> AsyncActivity:
        options.setdefault("id", "lesson-1")
        options.setdefault("name", "Fractions")
        options.setdefault("course", COURSE)
        options.setdefault("on_pause", lambda: self.events.append("pause"))
        options.setdefault("on_resume", lambda: self.events.append("resume"))
        return self.timeback.activity.start(**options)

    @property
    def windows(self) -> list[tuple[int, int, int, int]]:
        """(start, end, active, paused) of each delivered window, times relative to T0."""
        result = []
        for body in self.backend.delivered:
            w = Window.from_json(body)
            result.append((w.started_at_ms - T0, w.ended_at_ms - T0, w.elapsed_ms, w.paused_ms))
        return result


@pytest.fixture
async def session() -> AsyncIterator[Session]:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        yield Session(clock, backend, timeback)


# -- heartbeats -------------------------------------------------------------------------------


@pytest.mark.parametrize("interval", [15.0, 2.5, 0.001])
async def test_a_heartbeat_goes_every_interval_exactly(session: Session, interval: float) -> None:
    ms = round(interval * 1000)
    session.start(time=TimeOptions(heartbeat_interval=interval))
    await session.clock.advance(interval * 4)
    assert session.windows == [(i * ms, (i + 1) * ms, ms, 0) for i in range(4)]
    await session.clock.advance(interval / 2 if ms > 1 else 0)
    assert len(session.windows) == 4


async def test_heartbeats_go_to_the_heartbeat_route_as_json(session: Session) -> None:
    activity = session.start()
    await session.clock.advance(15)
    await activity.end()
    for seen in session.backend.seen:
        assert seen.url == BASE + "/activity/heartbeat"
        assert seen.headers["content-type"] == "application/json"
    assert session.backend.delivered[0] == {
        "id": "lesson-1",
        "name": "Fractions",
        "course": {"subject": "Math", "grade": 3},
        "runId": activity.run_id,
        "startedAt": "2026-01-05T09:00:00.000Z",
        "endedAt": "2026-01-05T09:00:15.000Z",
        "elapsedMs": 15_000,
        "pausedMs": 0,
    }


# -- pause and resume ---------------------------------------------------------------------------


async def test_pause_flushes_the_time_so_far_at_once(session: Session) -> None:
    activity = session.start()
    await session.clock.advance(7.25)
    activity.pause()
    await session.clock.advance(0)
    assert session.windows == [(0, 7_250, 7_250, 0)]
    assert activity.is_paused
    assert session.events == ["pause"]


async def test_no_heartbeats_while_paused_and_the_first_window_after_carries_paused_ms(
    session: Session,
) -> None:
    activity = session.start()
    await session.clock.advance(20)
    activity.pause()
    await session.clock.advance(300)
    assert len(session.windows) == 2
    activity.resume()
    await session.clock.advance(15)
    assert session.windows == [
        (0, 15_000, 15_000, 0),
        (15_000, 20_000, 5_000, 0),
        (20_000, 335_000, 15_000, 300_000),
    ]
    assert session.events == ["pause", "resume"]


async def test_pause_and_resume_are_idempotent(session: Session) -> None:
    activity = session.start()
    activity.resume()
    await session.clock.advance(5)
    activity.pause()
    activity.pause()
    await session.clock.advance(5)
    activity.resume()
    activity.resume()
    await session.clock.advance(15)
    assert session.events == ["pause", "resume"]
    assert session.windows == [(0, 5_000, 5_000, 0), (5_000, 25_000, 15_000, 5_000)]


async def test_a_pause_longer_than_abandon_after_restarts_from_a_clean_slate(
    session: Session,
) -> None:
    activity = session.start(time=TimeOptions(abandon_after=60))
    await session.clock.advance(10)
    activity.pause()
    await session.clock.advance(60.001)
    activity.resume()
    await session.clock.advance(15)
    await activity.end()
    assert session.windows == [(0, 10_000, 10_000, 0), (70_001, 85_001, 15_000, 0)]
    check_windows(session.backend.delivered, gaps_at=[T0 + 70_001])
    assert activity.elapsed_ms == 25_000


async def test_a_pause_of_exactly_abandon_after_is_reported(session: Session) -> None:
    activity = session.start(time=TimeOptions(abandon_after=60))
    await session.clock.advance(10)
    activity.pause()
    await session.clock.advance(60)
    activity.resume()
    await session.clock.advance(15)
    assert session.windows[-1] == (10_000, 85_000, 15_000, 60_000)


async def test_ending_while_paused_reports_the_pause(session: Session) -> None:
    activity = session.start()
    await session.clock.advance(10)
    activity.pause()
    await session.clock.advance(30)
    await activity.end()
    assert session.windows == [(0, 10_000, 10_000, 0), (10_000, 40_000, 0, 30_000)]


# -- idleness -----------------------------------------------------------------------------------


async def test_idle_timeout_pauses_and_touch_resumes(session: Session) -> None:
    activity = session.start(time=TimeOptions(idle_timeout=40))
    await session.clock.advance(39.999)
    assert not activity.is_paused
    await session.clock.advance(0.001)
    assert activity.is_paused
    assert activity.is_idle
    assert session.windows == [
        (0, 15_000, 15_000, 0),
        (15_000, 30_000, 15_000, 0),
        (30_000, 40_000, 10_000, 0),
    ]
    await session.clock.advance(100)
    activity.touch()
    assert not activity.is_paused
    await session.clock.advance(15)
    assert session.windows[-1] == (40_000, 155_000, 15_000, 100_000)
    assert session.events == ["pause", "resume"]


async def test_touch_postpones_the_idle_pause(session: Session) -> None:
    activity = session.start(time=TimeOptions(idle_timeout=40, heartbeat_interval=100))
    await session.clock.advance(30)
    activity.touch()
    await session.clock.advance(39.999)
    assert not activity.is_paused
    await session.clock.advance(0.001)
    assert activity.is_idle
    assert session.windows == [(0, 70_000, 70_000, 0)]


async def test_touch_does_not_resume_a_user_pause(session: Session) -> None:
    activity = session.start(time=TimeOptions(idle_timeout=40))
    await session.clock.advance(5)
    activity.pause()
    activity.touch()
    await session.clock.advance(100)
    activity.touch()
    assert activity.is_paused
    assert not activity.is_idle


async def test_a_pause_on_top_of_idleness_needs_resume(session: Session) -> None:
    activity = session.start(time=TimeOptions(idle_timeout=40))
    await session.clock.advance(40)
    assert activity.is_idle
    activity.pause()  # e.g. the app's window was minimised while idle
    activity.touch()
    assert activity.is_paused
    assert not activity.is_idle
    activity.resume()
    assert not activity.is_paused
    assert session.events == ["pause", "resume"]


# -- suspend -------------------------------------------------------------------------------------


async def test_a_machine_suspend_counts_as_paused_not_active(session: Session) -> None:
    activity = session.start()
    await session.clock.advance(5)
    await session.clock.suspend(30)  # the heartbeat due at 15 s wakes late, at 35 s
    assert activity.elapsed_ms == 5_000
    await session.clock.advance(15)
    assert session.windows == [(0, 35_000, 5_000, 30_000), (35_000, 50_000, 15_000, 0)]


async def test_a_suspend_longer_than_abandon_after_restarts_from_a_clean_slate(
    session: Session,
) -> None:
    activity = session.start(time=TimeOptions(abandon_after=60))
    await session.clock.advance(5)
    await session.clock.suspend(61)
    await session.clock.advance(15)
    await activity.end()
    assert session.windows == [(0, 5_000, 5_000, 0), (66_000, 81_000, 15_000, 0)]
    check_windows(session.backend.delivered, gaps_at=[T0 + 66_000])
    assert activity.elapsed_ms == 20_000


async def test_elapsed_ms_counts_sent_windows_and_the_open_one(session: Session) -> None:
    activity = session.start()
    assert activity.elapsed_ms == 0
    await session.clock.advance(20)
    assert activity.elapsed_ms == 20_000
    activity.pause()
    await session.clock.advance(50)
    assert activity.elapsed_ms == 20_000
    activity.resume()
    await session.clock.advance(1.5)
    assert activity.elapsed_ms == 21_500


# -- end ---------------------------------------------------------------------------------------


async def test_end_sends_the_last_window_is_idempotent_and_never_submits(
    session: Session,
) -> None:
    activity = session.start()
    await session.clock.advance(22)
    await activity.end()
    await activity.end()
    assert activity.is_ended
    assert session.timeback.activity.current is None
    assert session.windows == [(0, 15_000, 15_000, 0), (15_000, 22_000, 7_000, 0)]
    await session.clock.advance(600)
    assert len(session.backend.seen) == 2
    assert activity.elapsed_ms == 22_000  # frozen at the end
    assert all(s.url.endswith("/activity/heartbeat") for s in session.backend.seen)


async def test_time_false_sends_no_request_ever(session: Session) -> None:
    activity = session.start(time=False)
    assert session.timeback.activity.current is activity
    await session.clock.advance(20)
    activity.pause()
    await session.clock.advance(700)
    activity.resume()
    activity.touch()
    await session.clock.advance(3_600)
    await activity.end()
    assert activity.is_ended
    assert session.timeback.activity.current is None
    await session.clock.advance(60)
    await session.timeback.aclose()
    assert session.backend.seen == []


async def test_async_with_ends_the_activity_on_exit(session: Session) -> None:
    async with session.start() as activity:
        await session.clock.advance(3)
    assert activity.is_ended
    assert session.windows == [(0, 3_000, 3_000, 0)]


async def test_async_with_ends_the_activity_when_the_body_raises(session: Session) -> None:
    activity = session.start()

    async def body() -> None:
        async with activity:
            await session.clock.advance(3)
            raise KeyError("app error")

    with pytest.raises(KeyError):
        await body()
    assert activity.is_ended
    assert session.windows == [(0, 3_000, 3_000, 0)]


# -- lifecycle errors ------------------------------------------------------------------------


async def test_start_while_an_activity_runs_is_a_lifecycle_error(session: Session) -> None:
    first = session.start()
    with pytest.raises(LifecycleError, match="still running"):
        session.start(id="lesson-2")
    await first.end()
    second = session.start(id="lesson-2")
    assert session.timeback.activity.current is second


@pytest.mark.parametrize("method", ["pause", "resume", "touch"])
async def test_changing_an_ended_activity_does_nothing(session: Session, method: str) -> None:
    """A GUI's handlers may call after the lesson ended: nothing is lost, nothing raised."""
    activity = session.start()
    await session.clock.advance(3)
    await activity.end()
    getattr(activity, method)()
    await session.clock.advance(30)
    assert session.windows == [(0, 3_000, 3_000, 0)]
    assert activity.is_ended
    assert not activity.is_paused


async def test_start_before_the_client_is_open_says_to_use_async_with() -> None:
    timeback = AsyncTimeback(BASE)
    with pytest.raises(LifecycleError, match="async with"):
        timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)


async def test_start_after_the_client_closed_is_a_lifecycle_error() -> None:
    async with AsyncTimeback(BASE, transport=FakeBackend().transport) as timeback:
        pass
    with pytest.raises(LifecycleError, match="closed"):
        timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)


@pytest.mark.parametrize(
    ("field", "changes"),
    [
        ("id", {"id": ""}),
        ("id", {"id": None}),
        ("name", {"name": "  "}),
        ("course.subject", {"course": {"subject": "Maths", "grade": 3}}),
        ("course.grade", {"course": {"subject": "Math", "grade": 13}}),
        ("course", {"course": {"subject": "Math", "grade": 3, "level": 1}}),
        ("run_id", {"run_id": "attempt-1"}),
        ("time", {"time": "yes"}),
        ("time", {"time": 1}),
        ("on_error", {"on_error": "print"}),
        ("on_pause", {"on_pause": 3}),
    ],
)
async def test_bad_input_at_start_names_the_field(
    session: Session, field: str, changes: dict[str, Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        session.start(**changes)
    assert caught.value.field == field
    assert session.timeback.activity.current is None
    await session.clock.advance(30)
    assert session.backend.seen == []


async def test_a_saved_run_id_resumes_that_run_lowercased(session: Session) -> None:
    saved = "6F1D3C0E-6B4A-4D0E-9A57-7E3B1F1C2A10"
    activity = session.start(run_id=saved)
    assert activity.run_id == saved.lower()
    await session.clock.advance(15)
    await activity.end()
    assert {b["runId"] for b in session.backend.delivered} == {saved.lower()}


async def test_a_new_run_gets_a_fresh_lowercase_uuid(session: Session) -> None:
    first = session.start()
    await first.end()
    second = session.start()
    assert first.run_id != second.run_id
    assert first.run_id == first.run_id.lower()


async def test_close_ends_the_running_activity_and_sends_its_last_window(
    session: Session,
) -> None:
    activity = session.start()
    await session.clock.advance(4)
    await session.timeback.aclose()
    assert activity.is_ended
    assert session.windows == [(0, 4_000, 4_000, 0)]


# -- a long session ----------------------------------------------------------------------------


async def test_a_two_hour_session_with_many_pauses_adds_up_exactly(session: Session) -> None:
    """Random spans of activity and pauses, some longer than abandon_after, for two hours:
    every window invariant holds, and the totals are exact to the millisecond."""
    rng = random.Random(7)
    activity = session.start(time=TimeOptions(heartbeat_interval=15, abandon_after=600))
    now = active = paused = 0
    clean_slates: list[int] = []
    while now < 2 * 3_600_000:
        span = rng.randint(1, 240_000)
        await session.clock.advance(span / 1000)
        now += span
        active += span
        assert activity.elapsed_ms == active
        activity.pause()
        roll = rng.random()
        pause = (
            600_000
            if roll < 0.05
            else rng.randint(600_001, 900_000)
            if roll < 0.15
            else rng.randint(1, 120_000)
        )
        await session.clock.advance(pause / 1000)
        now += pause
        activity.resume()
        if pause > 600_000:
            clean_slates.append(T0 + now)
        else:
            paused += pause
    await session.clock.advance(1.234)
    active += 1_234
    await activity.end()

    delivered = session.backend.delivered
    assert len(session.backend.seen) == len(delivered)  # nothing retried, nothing lost
    windows = check_windows(delivered, gaps_at=clean_slates)
    assert list(windows) == [activity.run_id]
    assert total_active_ms(delivered) == active == activity.elapsed_ms
    assert sum(b["pausedMs"] for b in delivered) == paused
    assert all(b["elapsedMs"] <= 15_000 for b in delivered)
    assert len(clean_slates) >= 2
    assert len(delivered) > 100
    assert delivered[-1]["endedAt"] == format_timestamp(T0 + now + 1_234)


# -- any sequence of calls ---------------------------------------------------------------------

ABANDON_S = 4
IDLE_S = 3


@dataclass
class ActivityModel:
    """What an activity's active time should be, from the documented rules alone.

    Time counts as active while neither paused (by the app, or for idleness) nor suspended;
    the activity pauses itself ``IDLE_S`` after the last input; `touch()` resumes only that.
    """

    now: int = 0
    state: str = "active"  # "active", "user" (paused by the app) or "idle"
    last_input: int = 0
    paused_since: int = 0
    active: int = 0
    clean_slates: set[int] = field(default_factory=set)  # where a gap may start

    def advance(self, ms: int) -> None:
        if self.state == "active":
            idle_at = self.last_input + IDLE_S * 1000
            if self.now + ms >= idle_at:
                self.active += idle_at - self.now
                self._pause("idle", idle_at)
            else:
                self.active += ms
        self.now += ms

    def suspend(self, ms: int) -> None:
        self.now += ms
        if self.state == "active":
            self.clean_slates.add(self.now)  # if it was long, tracking restarts here
            if self.now >= self.last_input + IDLE_S * 1000:
                self._pause("idle", self.now)  # the idle timer fires late, on waking

    def pause(self) -> None:
        if self.state == "idle":
            self.state = "user"
        elif self.state == "active":
            self._pause("user", self.now)

    def resume(self) -> None:
        if self.state != "active":
            if self.now - self.paused_since > ABANDON_S * 1000:
                self.clean_slates.add(self.now)
            self.state = "active"
            self.last_input = self.now

    def touch(self) -> None:
        if self.state == "idle":
            self.resume()
        elif self.state == "active":
            self.last_input = self.now

    def _pause(self, why: str, at: int) -> None:
        self.state = why
        self.paused_since = at


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.integers(0, 8_000)),
            st.tuples(st.just("suspend"), st.integers(0, 8_000)),
            st.tuples(st.sampled_from(["pause", "resume", "touch"]), st.just(0)),
        ),
        max_size=30,
    )
)
async def test_any_sequence_of_calls_keeps_the_invariants(ops: list[tuple[str, int]]) -> None:
    """pause / resume / touch / time passing / suspends, in any order: the windows keep every
    invariant and carry exactly the active time of a model of the documented rules."""
    clock = VirtualClock()
    backend = FakeBackend(clock)
    model = ActivityModel()
    options = TimeOptions(heartbeat_interval=1, idle_timeout=IDLE_S, abandon_after=ABANDON_S)
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=options
        )
        for name, ms in ops:
            if name == "advance":
                await clock.advance(ms / 1000)
                model.advance(ms)
            elif name == "suspend":
                await clock.suspend(ms / 1000)
                model.suspend(ms)
            else:
                getattr(activity, name)()
                getattr(model, name)()
            assert activity.elapsed_ms == model.active
            assert activity.is_paused == (model.state != "active")
            assert activity.is_idle == (model.state == "idle")
        await activity.end()
    delivered = backend.delivered
    assert len(backend.seen) == len(delivered)
    check_windows(delivered, gaps_at=[T0 + t for t in model.clean_slates], exact_gaps=False)
    assert total_active_ms(delivered) == model.active == activity.elapsed_ms
    assert all(b["elapsedMs"] <= 1_000 for b in delivered)


async def test_a_long_running_client_forgets_activities_once_delivered(session: Session) -> None:
    """A kiosk starts thousands of activities over months: ended, delivered ones are let go
    (by the client, the scheduler and the outbox writer, whose thread lets go of the last
    one as soon as it hears of its end)."""
    ended: list[weakref.ref[AsyncActivity]] = []
    for _ in range(50):
        activity = session.start()
        await session.clock.advance(20)
        await activity.end()
        ended.append(weakref.ref(activity))
    del activity
    session.start()
    with anyio.fail_after(5):
        while True:
            gc.collect()
            if [ref for ref in ended if ref() is not None] == []:
                break
            await anyio.sleep(0.01)
    assert len(session.windows) == 100
