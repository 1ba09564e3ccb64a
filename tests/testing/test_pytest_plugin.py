"""The pytest plugin, used as an app's test suite would use it."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from timeback_client import AsyncTimeback, Timeback, TimeOptions, VirtualClock
from timeback_client.emulator import Emulator

MINUTE = 60.0


def test_a_two_hour_stateful_session_runs_fast_with_exact_totals(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    started = time.perf_counter()
    activity = timeback.activity.start(
        id="lesson-1", name="Fractions", course={"subject": "Math", "grade": 3}
    )
    active_s = paused_s = 0.0
    for _ in range(6):  # six 20-minute blocks: 15 min work, 5 min break
        advance(15 * MINUTE)
        active_s += 15 * MINUTE
        activity.pause()
        advance(5 * MINUTE)
        paused_s += 5 * MINUTE
        activity.resume()
    activity.end()
    elapsed = time.perf_counter() - started

    run = timeback_emulator.run(activity.run_id)
    assert run.active_ms == active_s * 1000 == activity.elapsed_ms
    # Every pause is reported with the window that follows it; the last one ends the run.
    assert run.inactive_ms == paused_s * 1000
    assert run.sessions == 1
    assert timeback_emulator.problems() == ()
    # Not a speed figure (this machine is shared): the point is that two virtual hours do
    # not wait anything like real hours, which a minute's bound shows on any machine.
    assert elapsed < 60.0, f"two virtual hours took {elapsed:.2f} s of real time"


def test_resuming_a_run_in_a_later_session_adds_up(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    first = timeback.activity.start(id="lesson-1", name="Fractions", course={"code": "CS-101"})
    advance(10 * MINUTE)
    first.end()
    advance(60 * MINUTE)  # the student is away; no session runs
    second = timeback.activity.start(
        id="lesson-1", name="Fractions", course={"code": "CS-101"}, run_id=first.run_id
    )
    advance(7 * MINUTE)
    second.end()
    run = timeback_emulator.run(first.run_id)
    assert run.active_ms == 17 * MINUTE * 1000
    assert run.sessions == 2
    assert not run.completed
    assert timeback_emulator.problems() == ()


def test_idle_timeout_is_exact_on_the_virtual_clock(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    activity = timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course={"subject": "Reading", "grade": 0},
        time=TimeOptions(idle_timeout=2 * MINUTE),
    )
    advance(10 * MINUTE)  # no input: pauses itself 2 minutes in
    assert activity.is_idle
    activity.touch()
    advance(1 * MINUTE)
    activity.end()
    assert timeback_emulator.run(activity.run_id).active_ms == 3 * MINUTE * 1000


@pytest.mark.anyio
async def test_the_async_client_fixture(
    async_timeback: AsyncTimeback, virtual_clock: VirtualClock, timeback_emulator: Emulator
) -> None:
    activity = async_timeback.activity.start(
        id="lesson-2", name="Decimals", course={"subject": "Math", "grade": 5}
    )
    await virtual_clock.advance(95)
    await activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert run.active_ms == 95_000
    assert [w.elapsed_ms for w in run.windows] == [15_000] * 6 + [5_000]
