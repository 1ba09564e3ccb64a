"""`integrations.tk.track` on a real Tk window (Xvfb), a real activity and Tk events.

The ``window`` fixture (a Toplevel, see conftest) fails a test whose Tk callbacks raised.
"""

from __future__ import annotations

import sys
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from tkinter import ttk

import pytest

from timeback_client import Activity, Timeback, TimeOptions
from timeback_client.integrations import tk as timeback_tk

from .conftest import Recorder

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="Tk on a private Xvfb X server: Linux only"
)

COURSE = {"subject": "Math", "grade": 3}


@pytest.fixture
def timeback(recorder: Recorder) -> Iterator[Timeback]:
    with Timeback("http://backend.localhost/api/timeback", transport=recorder.transport) as client:
        yield client


def start(timeback: Timeback, *, idle_timeout: float | None = None) -> Activity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=30, idle_timeout=idle_timeout, flush_timeout=2),
    )


def run_until(window: tk.Misc, condition: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {condition}")
        window.update()
        time.sleep(0.005)


def run(window: tk.Misc, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        window.update()
        time.sleep(0.005)


def test_input_anywhere_in_the_window_ends_an_idle_pause(
    window: tk.Toplevel, timeback: Timeback
) -> None:
    entry = ttk.Entry(window)
    entry.pack()
    activity = start(timeback, idle_timeout=0.3)
    timeback_tk.track(activity, window)
    window.focus_force()
    entry.focus_set()  # key events go to the focus widget

    run_until(window, lambda: activity.is_idle)
    entry.event_generate("<KeyPress>", keysym="a")
    run_until(window, lambda: not activity.is_paused)
    run_until(window, lambda: activity.is_idle)
    entry.event_generate("<ButtonPress>", button=1, x=3, y=3)
    run_until(window, lambda: not activity.is_paused)


def test_the_focus_leaving_the_app_pauses_but_moving_inside_it_does_not(
    window: tk.Toplevel, timeback: Timeback, recorder: Recorder
) -> None:
    first, second = ttk.Entry(window), ttk.Entry(window)
    first.pack()
    second.pack()
    activity = start(timeback)
    tracker = timeback_tk.track(activity, window)

    # Focus moving between widgets of the window: no pause, no window cut.
    first.event_generate("<FocusOut>")
    second.event_generate("<FocusIn>")
    run(window, 0.3)
    assert not activity.is_paused
    assert recorder.windows == []

    window.event_generate("<FocusOut>")  # the toplevel itself: the app lost the focus
    run_until(window, lambda: activity.is_paused)
    assert not tracker.in_foreground
    window.event_generate("<FocusIn>")
    run_until(window, lambda: not activity.is_paused)


def test_unmapping_the_window_pauses_but_hiding_a_widget_does_not(
    window: tk.Toplevel, timeback: Timeback
) -> None:
    panel = ttk.Frame(window, width=100, height=50)
    panel.pack()
    activity = start(timeback)
    timeback_tk.track(activity, window)
    run(window, 0.1)

    panel.pack_forget()  # a real <Unmap> of a child
    run(window, 0.3)
    assert not activity.is_paused

    window.withdraw()  # a real <Unmap> (and FocusOut) of the window, as when minimised
    run_until(window, lambda: activity.is_paused)
    window.deiconify()
    window.focus_force()  # what a window manager does for a restored window
    run_until(window, lambda: not activity.is_paused)


def test_leaving_while_idle_keeps_it_paused_until_the_student_is_back(
    window: tk.Toplevel, timeback: Timeback
) -> None:
    activity = start(timeback, idle_timeout=0.3)
    timeback_tk.track(activity, window)
    run_until(window, lambda: activity.is_idle)

    window.event_generate("<FocusOut>")
    run(window, 0.2)
    window.event_generate("<Motion>", x=5, y=5)  # the pointer crossing the window behind
    run(window, 0.1)
    assert activity.is_paused
    window.event_generate("<FocusIn>")
    run_until(window, lambda: not activity.is_paused)


def test_a_pause_made_by_the_app_is_not_undone(window: tk.Toplevel, timeback: Timeback) -> None:
    activity = start(timeback)
    timeback_tk.track(activity, window)

    activity.pause()  # the app's own "Pause" button
    window.event_generate("<FocusOut>")
    run(window, 0.2)
    window.event_generate("<FocusIn>")
    window.event_generate("<KeyPress>", keysym="a")
    run(window, 0.2)
    assert activity.is_paused


def test_stop_removes_only_the_trackers_bindings(window: tk.Toplevel, timeback: Timeback) -> None:
    seen: list[str] = []
    window.bind("<KeyPress>", lambda e: seen.append("app"), add="+")
    activity = start(timeback, idle_timeout=0.3)
    tracker = timeback_tk.track(activity, window)
    tracker.stop()
    tracker.stop()  # idempotent
    window.focus_force()

    run_until(window, lambda: activity.is_idle)
    window.event_generate("<KeyPress>", keysym="a")
    run(window, 0.2)
    assert seen == ["app"]  # the app's handler survives (Python < 3.13 would drop it)
    assert activity.is_idle  # and the tracker's is gone


def test_the_tracker_lets_go_once_the_activity_ends(
    window: tk.Toplevel, timeback: Timeback
) -> None:
    activity = start(timeback)
    tracker = timeback_tk.track(activity, window, poll_interval=0.05)

    activity.end(wait=False)
    # Input and focus changes right after the end never raise into Tk's event loop
    # (the window fixture fails the test on any callback exception)...
    window.event_generate("<KeyPress>", keysym="a")
    window.event_generate("<FocusOut>")
    run(window, 0.2)
    # ...and the bindings are gone at the next look.
    run_until(window, lambda: not tracker.active)
    assert window.bind("<KeyPress>") == ""


def test_destroying_the_window_ends_the_activity_without_waiting(
    window: tk.Toplevel, timeback: Timeback, recorder: Recorder
) -> None:
    activity = start(timeback)
    tracker = timeback_tk.track(activity, window)
    run(window, 0.1)

    began = time.perf_counter()
    window.destroy()
    assert time.perf_counter() - began < 0.5
    assert activity.is_ended
    assert not tracker.active
    deadline = time.monotonic() + 3
    while not recorder.windows and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(recorder.windows) == 1


def test_a_mouse_move_storm_costs_one_touch_per_interval(
    window: tk.Toplevel, timeback: Timeback
) -> None:
    activity = start(timeback)
    touches: list[float] = []
    real_touch = activity.touch

    def counting_touch() -> None:
        touches.append(time.monotonic())
        real_touch()

    activity.touch = counting_touch  # type: ignore[method-assign]
    timeback_tk.track(activity, window, touch_interval=0.25)

    began = time.perf_counter()
    for i in range(1000):
        window.event_generate("<Motion>", x=i % 100, y=5)
    spent = time.perf_counter() - began
    assert 1 <= len(touches) <= 1 + spent / 0.25 + 1
