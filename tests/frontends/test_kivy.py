"""`integrations.kivy` in Kivy's real loop on a private Xvfb X server.

Kivy's SDL2 window reads real X events: key presses, pointer moves and clicks sent with
xdotool, the X input focus moved away to the root window and back, the window really
hidden and shown. Each frame is what Kivy's own main loop does (``EventLoop.idle()``,
then the window's ``mainloop()`` pass over SDL's queue). Time is the pytest plugin's
virtual clock, so the totals the emulator records are exact.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [
    pytest.mark.skipif(
        sys.platform != "linux", reason="Kivy on a private Xvfb X server: Linux only"
    ),
    # Kivy before 2.3.1 imports imghdr, deprecated since Python 3.11.
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

ROOT = Path(__file__).resolve().parents[2]
COURSE = {"subject": "Math", "grade": 3}

if shutil.which("xdotool") is None:  # pragma: no cover - scripts/test.sh installs it
    pytest.skip("xdotool is not installed (apt-get install xdotool)", allow_module_level=True)

for name, value in {
    "KIVY_NO_ARGS": "1",
    "KIVY_NO_CONSOLELOG": "1",
    "KIVY_NO_FILELOG": "1",
    "KIVY_LOG_MODE": "PYTHON",
}.items():
    os.environ.setdefault(name, value)
pytest.importorskip("kivy", reason="Kivy is not installed (extra 'kivy'; no wheels for 3.14)")

from timeback_client import Activity, Timeback, TimeOptions  # noqa: E402
from timeback_client.emulator import Emulator  # noqa: E402


class Kivy:
    """Kivy's window on the X display, its frames, and the X events sent to it."""

    def __init__(self) -> None:
        from kivy.base import EventLoop, runTouchApp
        from kivy.core.window import Window
        from kivy.uix.widget import Widget

        self.loop, self.window = EventLoop, Window
        self.root = Widget()
        # Kivy's setup without its blocking loop: input providers (the mouse) and the
        # window; the tests then run its frames themselves.
        runTouchApp(self.root, embedded=True)
        self.id = str(Window.get_window_info().window)
        self.x_root = _root_window_id()
        self.focus_here()

    def frame(self) -> None:
        self.loop.idle()
        self.window.mainloop()

    def run_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {condition}")
            self.frame()
            time.sleep(0.005)

    def xdotool(self, *args: str) -> None:
        subprocess.run(["xdotool", *args], check=True, timeout=10)

    def focus_here(self) -> None:
        self.xdotool("windowfocus", "--sync", self.id)
        self.run_until(lambda: bool(self.window.focus))

    def focus_away(self) -> None:
        self.xdotool("windowfocus", self.x_root)  # no window of the app has it
        self.run_until(lambda: not self.window.focus)

    def show(self, widget: Any) -> None:
        self.window.remove_widget(self.root)
        self.root = widget
        self.window.add_widget(widget)
        self.frame()


def _root_window_id() -> str:
    # The only window at depth 0 is the screen's root window.
    found = subprocess.run(
        ["xdotool", "search", "--maxdepth", "0", ""],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    )
    return found.stdout.split()[0]


@pytest.fixture(scope="module")
def kivy(x_display: str, tmp_path_factory: pytest.TempPathFactory) -> Kivy:
    os.environ["KIVY_HOME"] = str(tmp_path_factory.mktemp("kivy"))
    # SDL reads its video driver when the window opens: X11, whatever a shell or another
    # test set (the pygame tests use SDL's dummy driver).
    driver = os.environ.pop("SDL_VIDEODRIVER", None)
    try:
        return Kivy()
    finally:
        if driver is not None:
            os.environ["SDL_VIDEODRIVER"] = driver


@pytest.fixture
def window(kivy: Kivy) -> Iterator[Kivy]:
    kivy.focus_here()
    yield kivy
    if kivy.window.focus is False:
        kivy.focus_here()


def start(timeback: Timeback, *, idle_timeout: float | None = None) -> Activity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=30, idle_timeout=idle_timeout),
    )


def test_the_window_losing_the_focus_is_paused_time_from_that_event(
    window: Kivy, timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    from timeback_client.integrations import kivy as timeback_kivy

    activity = start(timeback)
    tracker = timeback_kivy.track(activity)
    advance(10)
    window.focus_away()
    assert activity.is_paused
    assert not tracker.in_foreground
    advance(4)
    window.focus_here()
    assert not activity.is_paused
    advance(6)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (16_000, 4_000)
    window.run_until(lambda: not tracker.active)


def test_hiding_the_window_pauses_and_showing_it_resumes(
    window: Kivy, timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    from timeback_client.integrations import kivy as timeback_kivy

    activity = start(timeback)
    tracker = timeback_kivy.track(activity, poll_interval=0.02)
    advance(5)
    window.window.hide()  # a real unmap: SDL reports it hidden (and the focus gone)
    window.run_until(lambda: activity.is_paused)
    advance(3)
    window.window.show()
    window.focus_here()
    window.run_until(lambda: not activity.is_paused)
    advance(2)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (7_000, 3_000)
    window.run_until(lambda: not tracker.active)


def test_the_app_paused_by_the_system_pauses_and_resumed_resumes(
    window: Kivy, timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    from kivy.app import App

    from timeback_client.integrations import kivy as timeback_kivy

    app = App()
    activity = start(timeback)
    tracker = timeback_kivy.track(activity, app=app, poll_interval=0.02)
    advance(5)
    assert app.dispatch("on_pause") is True  # as Window.do_pause asks: the app's own answer
    assert activity.is_paused
    advance(30)
    app.dispatch("on_resume")
    assert not activity.is_paused
    advance(5)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (10_000, 30_000)
    window.run_until(lambda: not tracker.active)


INPUTS: dict[str, Callable[[Kivy], None]] = {
    "key": lambda kivy: kivy.xdotool("key", "--window", kivy.id, "a"),
    "pointer move": lambda kivy: kivy.xdotool("mousemove", "--window", kivy.id, "40", "60"),
    "touch (a click)": lambda kivy: kivy.xdotool("click", "--window", kivy.id, "1"),
}


@pytest.mark.parametrize("case", INPUTS)
def test_input_ends_an_idle_pause(
    case: str,
    window: Kivy,
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    from timeback_client.integrations import kivy as timeback_kivy

    window.xdotool("mousemove", "--window", window.id, "5", "5")
    window.frame()
    activity = start(timeback, idle_timeout=5)
    tracker = timeback_kivy.track(activity, touch_interval=0, poll_interval=0.02)
    advance(8)
    assert activity.is_idle
    INPUTS[case](window)
    window.run_until(lambda: not activity.is_paused)
    advance(2)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (7_000, 3_000)
    window.run_until(lambda: not tracker.active)


def test_a_pause_made_by_the_app_is_not_undone(window: Kivy, timeback: Timeback) -> None:
    from timeback_client.integrations import kivy as timeback_kivy

    activity = start(timeback)
    tracker = timeback_kivy.track(activity)
    activity.pause()
    window.focus_away()
    window.focus_here()
    window.xdotool("key", "--window", window.id, "b")
    for _ in range(10):
        window.frame()
    assert activity.is_paused
    tracker.stop()


def test_stop_removes_only_the_trackers_bindings(window: Kivy, timeback: Timeback) -> None:
    from timeback_client.integrations import kivy as timeback_kivy

    seen: list[str] = []
    uid = window.window.fbind("on_key_down", lambda *args: seen.append("app"))
    try:
        activity = start(timeback)
        tracker = timeback_kivy.track(activity)
        tracker.stop()
        tracker.stop()  # idempotent
        window.focus_away()
        assert not activity.is_paused  # the tracker's binding is gone
        window.focus_here()
        window.xdotool("key", "--window", window.id, "c")
        window.run_until(lambda: seen == ["app"])  # the app's own is still there
    finally:
        window.window.unbind_uid("on_key_down", uid)


def test_the_fraction_bars_lesson_counts_the_time_of_the_lesson(
    window: Kivy, timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    """The example lesson, tapped through: three answers 10 s apart, 20 s away, 10 s more."""
    from examples.kivy_lesson.lesson import FractionBarsApp, LessonScreen

    from timeback_client.integrations import kivy as timeback_kivy

    activity = start(timeback, idle_timeout=60)
    app = FractionBarsApp(activity)
    screen = app.build()
    assert isinstance(screen, LessonScreen)
    window.show(screen)
    tracker = timeback_kivy.track(activity, app=app, poll_interval=0.02)

    def tap_the_right_bar() -> None:
        window.frame()
        bar = next(b for b in screen.bars.children if b.fraction == screen.target)
        x, y = bar.to_window(*bar.center)
        top = window.window.height - y  # Kivy counts from the bottom, X from the top
        asked = screen.asked
        window.xdotool("mousemove", "--window", window.id, str(int(x)), str(int(top)))
        window.xdotool("click", "1")
        window.run_until(lambda: screen.asked == asked + 1)

    for _ in range(3):
        advance(10)
        tap_the_right_bar()
    window.focus_away()
    advance(20)
    window.focus_here()
    advance(10)
    screen.refresh_status()
    window.frame()
    assert (screen.score, screen.asked) == (3, 3)
    assert screen.status.text == "Tracking · active 0:40 · 3/3 correct"
    if os.environ.get("TIMEBACK_SCREENSHOTS"):  # docs/images/kivy-lesson.png, on demand
        for _ in range(3):
            window.frame()
        window.window.screenshot(name=str(ROOT / "artifacts" / "kivy-lesson.png"))
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (40_000, 20_000)
    window.run_until(lambda: not tracker.active)


def test_importing_without_kivy_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['kivy'] = None; sys.modules['kivy.app'] = None\n"
        "try:\n"
        "    import timeback_client.integrations.kivy\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'timeback-client[kivy]'" in out
