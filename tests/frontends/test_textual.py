"""`integrations.textual` in Textual's real loop, driven by its ``run_test()`` pilot: keys
and clicks through the pilot, and ``AppBlur``/``AppFocus`` posted into the app's queue as
Textual's drivers post them when the terminal reports its focus. Time is the pytest
plugin's virtual clock, so the totals the emulator records are exact.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("textual", reason="Textual is not installed (extra 'textual')")

from textual import events
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Static

from timeback_client import (
    Activity,
    AsyncActivity,
    AsyncTimeback,
    Timeback,
    TimeOptions,
    VirtualClock,
)
from timeback_client.emulator import Emulator
from timeback_client.integrations import textual as timeback_textual

COURSE = {"subject": "Math", "grade": 3}
ROOT = Path(__file__).resolve().parents[2]
STUDENT_TOKEN = "test-student-token"  # the plugin's emulator's student


class Lesson(App[None]):
    def __init__(self, activity: Activity | AsyncActivity, **options: Any) -> None:
        super().__init__()
        self.activity = activity
        self.options = options
        self.tracker: timeback_textual.TextualTracker | None = None
        self.keys: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("3/4 = ?/8", id="answer")

    def on_mount(self) -> None:
        self.tracker = timeback_textual.track(self.activity, self, **self.options)

    def on_key(self, event: events.Key) -> None:
        self.keys.append(event.key)


def options(idle_timeout: float | None = None) -> TimeOptions:
    return TimeOptions(heartbeat_interval=30, idle_timeout=idle_timeout)


def start(timeback: Timeback, *, idle_timeout: float | None = None) -> Activity:
    return timeback.activity.start(
        id="lesson-1", name="Fractions", course=COURSE, time=options(idle_timeout)
    )


def play(app: App[None], script: Callable[[Pilot[None]], Awaitable[None]]) -> None:
    async def main() -> None:
        async with app.run_test() as pilot:
            await script(pilot)

    asyncio.run(main())


async def post(pilot: Pilot[None], event: events.Event) -> None:
    """Post an event as a driver does, and let the app handle it."""
    pilot.app.post_message(event)
    await pilot.pause()


def test_the_terminal_losing_the_focus_is_paused_time_from_that_event(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    activity = start(timeback)
    app = Lesson(activity)

    async def script(pilot: Pilot[None]) -> None:
        advance(10)
        await post(pilot, events.AppBlur())
        assert activity.is_paused
        assert app.tracker is not None
        assert not app.tracker.in_foreground
        advance(4)
        await post(pilot, events.AppFocus())
        assert not activity.is_paused
        advance(6)

    play(app, script)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (16_000, 4_000)


def wheel_down() -> events.MouseScrollDown:
    """A wheel turn at (1, 1): Textual 1 and later name the widget first."""
    fields = (1, 1, 0, 1, 0, False, False, False)
    if "widget" in inspect.signature(events.MouseScrollDown).parameters:
        return events.MouseScrollDown(None, *fields)  # type: ignore[arg-type]
    return events.MouseScrollDown(*fields)  # type: ignore[arg-type, call-arg]


INPUTS: dict[str, Callable[[Pilot[None]], Awaitable[object]]] = {
    "key": lambda pilot: pilot.press("7"),
    "click": lambda pilot: pilot.click("#answer"),
    "pointer move": lambda pilot: pilot.hover("#answer", offset=(3, 0)),
    "wheel": lambda pilot: post(pilot, wheel_down()),
}


@pytest.mark.parametrize("case", INPUTS)
def test_input_ends_an_idle_pause(
    case: str,
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    activity = start(timeback, idle_timeout=5)
    app = Lesson(activity, touch_interval=0)

    async def script(pilot: Pilot[None]) -> None:
        advance(8)
        assert activity.is_idle
        await INPUTS[case](pilot)
        await pilot.pause()
        assert not activity.is_paused
        advance(2)

    play(app, script)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (7_000, 3_000)


def test_a_key_after_a_blur_is_the_student_back(timeback: Timeback) -> None:
    # Textual takes a key press or click for the focus coming back (a terminal may not
    # report it); so does the tracker.
    activity = start(timeback)
    app = Lesson(activity)

    async def script(pilot: Pilot[None]) -> None:
        await post(pilot, events.AppBlur())
        assert activity.is_paused
        await pilot.press("x")
        assert not activity.is_paused
        assert app.keys == ["x"]  # the event went on to the app as before

    play(app, script)


def test_a_pause_made_by_the_app_is_not_undone(timeback: Timeback) -> None:
    activity = start(timeback)
    app = Lesson(activity)

    async def script(pilot: Pilot[None]) -> None:
        activity.pause()
        await post(pilot, events.AppBlur())
        await post(pilot, events.AppFocus())
        await pilot.press("a")
        assert activity.is_paused

    play(app, script)


def test_stop_and_the_activitys_end_take_the_tracker_off(timeback: Timeback) -> None:
    activity = start(timeback)
    app = Lesson(activity, poll_interval=0.02)

    async def script(pilot: Pilot[None]) -> None:
        tracker = app.tracker
        assert tracker is not None
        assert "on_event" in app.__dict__
        activity.end(wait=False)
        await pilot.press("a")  # never raises into the app's loop
        await post(pilot, events.AppBlur())
        for _ in range(100):
            if not tracker.active:
                break
            await pilot.pause(0.02)
        assert not tracker.active
        assert "on_event" not in app.__dict__  # the app's own on_event again
        await pilot.press("b")
        assert app.keys == ["a", "b"]

    play(app, script)


def test_the_async_client_on_the_apps_loop(
    timeback_emulator: Emulator, virtual_clock: VirtualClock
) -> None:
    async def main() -> str:
        async with AsyncTimeback(
            "http://emulator.localhost/api/timeback",
            headers={"Authorization": f"Bearer {STUDENT_TOKEN}"},
            transport=timeback_emulator.transport(),
            clock=virtual_clock,
            outbox=None,
        ) as timeback:
            activity = timeback.activity.start(
                id="lesson-1", name="Fractions", course=COURSE, time=options(5)
            )
            app = Lesson(activity, touch_interval=0)
            async with app.run_test() as pilot:
                await virtual_clock.advance(3)
                await post(pilot, events.AppBlur())
                assert activity.is_paused
                await virtual_clock.advance(2)
                await post(pilot, events.AppFocus())
                await virtual_clock.advance(8)  # idle from 3 s after the return
                assert activity.is_idle
                await pilot.press("1")
                assert not activity.is_paused
                await virtual_clock.advance(1)
            await activity.end()
            return activity.run_id

    run = timeback_emulator.run(asyncio.run(main()))
    assert (run.active_ms, run.inactive_ms) == (9_000, 5_000)


def test_the_tutor_counts_the_time_of_the_lesson(
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    """The example tutor, used: three answers 10 s apart, 20 s away, 10 s more."""
    from examples.textual_tutor.tutor import Tutor, start

    activity = start(timeback)
    app = Tutor(activity)

    async def script(pilot: Pilot[None]) -> None:
        for _ in range(3):
            advance(10)
            await pilot.press(*str(app.question.answer), "enter")
        await post(pilot, events.AppBlur())
        advance(20)
        await post(pilot, events.AppFocus())
        advance(10)
        await pilot.press("1")
        app.refresh_status()
        await pilot.pause()
        assert (app.score, app.asked) == (3, 3)
        assert app.status() == "Tracking · active 0:40 · 3/3 correct"
        if os.environ.get("TIMEBACK_SCREENSHOTS"):  # docs/images/textual-tutor.svg
            app.save_screenshot("textual-tutor.svg", str(ROOT / "artifacts"))

    play(app, script)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (40_000, 20_000)


def test_importing_without_textual_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['textual'] = None\n"
        "try:\n"
        "    import timeback_client.integrations.textual\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'timeback-client[textual]'" in out
