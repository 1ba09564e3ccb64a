"""A wall clock that steps under a running activity (NTP on a kiosk that booted with a
stale clock, a VM restore, a person setting the clock), on both clients: labels follow the
true time, active and paused time do not move, and no start label of a run repeats."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest

from timeback_client import (
    AsyncTimeback,
    CourseFields,
    SystemClock,
    Timeback,
    TimeOptions,
    VirtualClock,
    Window,
)
from timeback_client._clock import STEP_MS, ScaledClock
from timeback_client.emulator import Emulator
from window_invariants import check_windows

BASE = "http://emulator.localhost/api/timeback"
TOKEN = "tok-ada"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COURSE: CourseFields = {"subject": "Math", "grade": 3}
T0 = 1_767_603_600_000  # the VirtualClock's default wall start
EVERY_15_S = TimeOptions(heartbeat_interval=15)


class Recorder(httpx.AsyncBaseTransport):
    """Every heartbeat body as it went out, in front of the emulator (which would answer a
    repeated startedAt as a duplicate and keep only one of the two)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.bodies: list[dict[str, object]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(await request.aread()))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def windows(self, run_id: str) -> list[Window]:
        return [Window.from_json(b) for b in self.bodies if b["runId"] == run_id]


def emulator_on(clock: VirtualClock) -> Emulator:
    """An emulator whose "now" is the virtual wall clock, stepped or not."""
    return Emulator(
        students={TOKEN: "ada@example.edu"},
        clock=lambda: datetime.fromtimestamp(clock.wall_now_ms() / 1000, UTC),
    )


def spans(windows: list[Window]) -> list[tuple[int, int, int, int]]:
    """(start, end, active, paused) of each window, labels relative to T0."""
    return [(w.started_at_ms - T0, w.ended_at_ms - T0, w.elapsed_ms, w.paused_ms) for w in windows]


def unique_starts(windows: list[Window]) -> bool:
    starts = [w.started_at_ms for w in windows]
    return len(starts) == len(set(starts))


# -- the clocks ---------------------------------------------------------------------------


class WallSource:
    """A wall clock a test can step: the real one, plus ``step_ns``."""

    def __init__(self) -> None:
        self.step_ns = 0

    def __call__(self) -> int:
        return time.time_ns() + self.step_ns

    def true_ms(self) -> int:
        return self() // 1_000_000


def test_the_system_clock_maps_to_the_stepped_wall_clock_after_a_read() -> None:
    """Forwards and backwards, a step of more than 2 s moves every label mapped after the
    next read() by the step; a drift under 2 s never does; durations stay the timeline's."""
    wall = WallSource()
    clock = SystemClock(wall_ns=wall)
    start = clock.read().timeline_ms
    offset = clock.wall_ms(0)
    assert abs(clock.wall_ms(start) - wall.true_ms()) <= 5

    wall.step_ns = (STEP_MS - 100) * 1_000_000  # a drift: NTP slews it away
    clock.read()
    assert clock.wall_ms(0) == offset

    for step_s in (45, -45 - 3_600):
        wall.step_ns += step_s * 1_000_000_000
        assert clock.wall_ms(0) == offset  # nothing moves until the clock is read
        now = clock.read().timeline_ms
        assert abs(clock.wall_ms(now) - wall.true_ms()) <= 5
        assert clock.wall_ms(now) - clock.wall_ms(start) == now - start
        offset = clock.wall_ms(0)


def test_the_scaled_clock_follows_a_step_of_the_real_wall_clock() -> None:
    """Scaled time runs ahead of the wall clock by design: that is no step, a real one is."""
    wall = WallSource()
    clock = ScaledClock(1000.0, wall_ns=wall)
    offset = clock.wall_ms(0)
    time.sleep(0.01)  # ten lesson seconds: far more than STEP_MS ahead of the wall clock
    clock.read()
    assert clock.wall_ms(0) == offset
    wall.step_ns = -60 * 1_000_000_000
    clock.read()
    assert abs(clock.wall_ms(0) - (offset - 60_000)) <= 5


@pytest.mark.anyio
async def test_the_virtual_clock_steps_its_wall_clock_but_not_its_timeline() -> None:
    clock = VirtualClock()
    await clock.advance(10)
    clock.step_wall(-30)
    assert clock.now_ms == 10_000
    assert clock.wall_now_ms() == T0 - 20_000
    assert clock.wall_ms(10_000) == T0 + 10_000  # labels follow at the next read
    assert clock.read() == (10_000, 0)
    assert clock.wall_ms(10_000) == T0 - 20_000
    clock.step_wall(STEP_MS / 1000)  # exactly 2 s is a drift, not a step
    clock.read()
    assert clock.wall_ms(10_000) == T0 - 20_000


# -- both clients ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("at_s", [20, 30], ids=["mid-window", "just-after-a-cut"])
@pytest.mark.parametrize("step_s", [45, -45, -15])
async def test_windows_cut_after_a_step_carry_the_true_time(at_s: int, step_s: int) -> None:
    """15 s heartbeats, a step of the wall clock ``at_s`` into the lesson, 60 s in all,
    with a pause: the windows cut before the step keep their labels, every window cut
    after it (the one open during the step too) is labelled in the stepped time, and
    active and paused ms are what the timeline says. Backwards, labels overlap earlier
    windows', yet no startedAt repeats (a step of -15 s, one heartbeat exactly, lines the
    windows up on the earlier ones to the millisecond)."""
    clock = VirtualClock()
    with emulator_on(clock) as emulator:
        wire = Recorder(emulator.transport())
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=wire, clock=clock, outbox=None
        ) as timeback:
            activity = timeback.activity.start(
                id="lesson-1", name="Fractions", course=COURSE, time=EVERY_15_S
            )
            await clock.advance(at_s)
            clock.step_wall(step_s)
            await clock.advance(40 - at_s)
            activity.pause()
            await clock.advance(5)
            activity.resume()
            await clock.advance(15)
            await activity.end()
        windows = wire.windows(activity.run_id)
        # Cut at 15, 30, 40 (the pause) and 60 s of the timeline: a window cut at t ends
        # at T0 + t before the step, and at T0 + t + step after it.
        ends = [
            t + (step_s * 1000 if t > at_s * 1000 else 0) for t in (15_000, 30_000, 40_000, 60_000)
        ]
        # Back by 15 s, the first window cut after the step would start where an earlier
        # one did (at 0 s, or at 15 s): it moves 1 ms later.
        moved = {(-15, 20): 1, (-15, 30): 2}.get((step_s, at_s))
        assert [end for _, end, _, _ in spans(windows)] == [
            end + (i == moved) for i, end in enumerate(ends)
        ]
        for window in windows:  # Window checks end - start == active + paused on its own
            assert window.ended_at_ms - window.started_at_ms == window.elapsed_ms + window.paused_ms
        assert sum(w.elapsed_ms for w in windows) == 55_000 == activity.elapsed_ms
        assert sum(w.paused_ms for w in windows) == 5_000
        assert unique_starts(windows)
        assert windows[-1].ended_at_ms == clock.wall_now_ms()  # the true time at the end
        run = emulator.run(activity.run_id)
        assert (run.active_ms, run.inactive_ms, len(run.windows)) == (55_000, 5_000, 4)
        # A step forward leaves a gap between labels, which no rule minds; a step back
        # makes windows overlap in time, which the emulator reports (see its docs).
        rules = {p.rule for p in emulator.problems()}
        assert rules == (set() if step_s > 0 else {"overlapping-windows"})


@pytest.mark.anyio
async def test_a_step_back_of_one_heartbeat_never_repeats_a_start() -> None:
    """Two activities on one clock, regular 15 s windows, the wall clock set back by 15 s,
    then by 15 s again: the first window of each run cut after each step would start where
    an earlier window did, and moves one millisecond later, keeping its length; the next
    one starts where the timeline puts it. No startedAt repeats in either run, and no
    window is lost to the backend's dedupe."""
    clock = VirtualClock()
    with emulator_on(clock) as emulator:
        wire = Recorder(emulator.transport())
        async with (
            AsyncTimeback(BASE, headers=AUTH, transport=wire, clock=clock, outbox=None) as one,
            AsyncTimeback(BASE, headers=AUTH, transport=wire, clock=clock, outbox=None) as two,
        ):
            first = one.activity.start(id="a", name="A", course=COURSE, time=EVERY_15_S)
            await clock.advance(5)
            second = two.activity.start(id="b", name="B", course=COURSE, time=EVERY_15_S)
            await clock.advance(25)
            clock.step_wall(-15)
            await clock.advance(30)
            clock.step_wall(-15)
            await clock.advance(30)
            await first.end()
            await second.end()
        for activity in (first, second):
            windows = wire.windows(activity.run_id)
            assert unique_starts(windows), spans(windows)
            assert sum(w.elapsed_ms for w in windows) == activity.elapsed_ms
            assert emulator.run(activity.run_id).active_ms == activity.elapsed_ms
        assert spans(wire.windows(first.run_id)) == [
            (0, 15_000, 15_000, 0),
            (15_000, 30_000, 15_000, 0),
            (15_001, 30_001, 15_000, 0),  # 30..45 s, 15 s back: 15_000 was used
            (30_000, 45_000, 15_000, 0),
            (30_001, 45_001, 15_000, 0),  # 60..75 s, 30 s back: 30_000 was used
            (45_000, 60_000, 15_000, 0),
        ]
        assert spans(wire.windows(second.run_id)) == [
            (5_000, 20_000, 15_000, 0),
            (5_001, 20_001, 15_000, 0),  # 20..35 s, 15 s back: 5_000 was used
            (20_000, 35_000, 15_000, 0),
            (20_001, 35_001, 15_000, 0),  # 50..65 s, 30 s back: 20_000 was used
            (35_000, 50_000, 15_000, 0),
            (50_000, 60_000, 10_000, 0),
        ]
        assert first.elapsed_ms == second.elapsed_ms + 5_000 == 90_000


@pytest.mark.anyio
async def test_a_drift_under_two_seconds_never_moves_a_label() -> None:
    """Many small steps that add up to less than STEP_MS (NTP slewing): windows stay
    exactly contiguous on the clock they started with."""
    clock = VirtualClock()
    with emulator_on(clock) as emulator:
        wire = Recorder(emulator.transport())
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=wire, clock=clock, outbox=None
        ) as timeback:
            activity = timeback.activity.start(
                id="lesson-1", name="Fractions", course=COURSE, time=EVERY_15_S
            )
            for _ in range(6):
                await clock.advance(10)
                clock.step_wall(0.33)  # 1.98 s in all
            await activity.end()
        windows = wire.windows(activity.run_id)
        assert spans(windows) == [(i * 15_000, (i + 1) * 15_000, 15_000, 0) for i in range(4)]
        check_windows(wire.bodies)


# -- the blocking client -----------------------------------------------------------------


@pytest.fixture
def kiosk() -> Iterator[tuple[VirtualClock, Emulator, Recorder, Timeback]]:
    clock = VirtualClock()
    with emulator_on(clock) as emulator:
        wire = Recorder(emulator.transport())
        with Timeback(BASE, headers=AUTH, transport=wire, clock=clock, outbox=None) as timeback:
            yield clock, emulator, wire, timeback


@pytest.mark.parametrize("step_s", [40, -15])
def test_the_blocking_client_labels_windows_in_the_true_time_after_a_step(
    kiosk: tuple[VirtualClock, Emulator, Recorder, Timeback], step_s: int
) -> None:
    """The kiosk's case on the blocking client: the app started on a stale clock, NTP
    stepped it 20 s later; from the window open at the step on, labels carry the true
    time, and the totals are exact. Back by one heartbeat, no start repeats."""
    clock, emulator, wire, timeback = kiosk
    activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
    timeback.portal.call(clock.advance, 20)
    clock.step_wall(step_s)
    timeback.portal.call(clock.advance, 25)
    activity.end()
    windows = wire.windows(activity.run_id)
    shift = step_s * 1000
    moved = 1 if step_s == -15 else 0  # 15 s + shift = 0 s: the first window's start
    assert spans(windows) == [
        (0, 15_000, 15_000, 0),
        (15_000 + shift + moved, 30_000 + shift + moved, 15_000, 0),
        (30_000 + shift, 45_000 + shift, 15_000, 0),
    ]
    assert unique_starts(windows)
    assert windows[-1].ended_at_ms == clock.wall_now_ms()
    assert emulator.run(activity.run_id).active_ms == activity.elapsed_ms == 45_000
