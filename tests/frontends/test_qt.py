"""`integrations.qt.track` on a real QApplication (offscreen), a real activity and real events.

Input comes from QTest (key clicks, mouse moves, clicks through the offscreen platform)
or `QApplication.sendEvent`; visibility from really hiding, showing and minimising
windows; application state through `QGuiApplication.applicationStateChanged`, the
signal Qt emits when the platform reports a change.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

pytest.importorskip("PySide6.QtWidgets", reason="PySide6 is not installed (extra 'qt')")

from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QLineEdit, QVBoxLayout, QWidget

from timeback_client import Activity, Timeback, TimeOptions
from timeback_client.integrations import qt as timeback_qt

from .conftest import Recorder

COURSE = {"subject": "Math", "grade": 3}
IDLE = 0.4


@pytest.fixture(scope="module")
def qapp() -> QApplication:
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    app = QApplication.instance() or QApplication([])
    assert isinstance(app, QApplication)
    return app


@pytest.fixture
def timeback(recorder: Recorder) -> Iterator[Timeback]:
    with Timeback("http://backend.localhost/api/timeback", transport=recorder.transport) as client:
        yield client


@pytest.fixture
def window(qapp: QApplication) -> Iterator[tuple[QWidget, QLineEdit]]:
    widget = QWidget()
    widget.setWindowTitle("lesson")
    field = QLineEdit(widget)
    QVBoxLayout(widget).addWidget(field)
    widget.show()
    QTest.qWait(20)
    yield widget, field
    widget.close()
    widget.deleteLater()
    QTest.qWait(10)


def start(timeback: Timeback, *, idle_timeout: float | None = IDLE) -> Activity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=30, idle_timeout=idle_timeout, flush_timeout=2),
    )


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Run the Qt event loop until ``condition()`` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {condition}")
        QTest.qWait(10)


def test_input_keeps_the_activity_awake_and_ends_an_idle_pause(
    timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    widget, field = window
    activity = start(timeback)
    timeback_qt.track(activity, widget)

    for _ in range(8):  # 0.8 s of typing, twice the idle timeout
        QTest.keyClick(field, Qt.Key.Key_A)
        QTest.qWait(100)
        assert not activity.is_paused
    assert field.text() == "a" * 8  # the filter never eats an event

    wait_until(lambda: activity.is_idle)
    QTest.mouseClick(field, Qt.MouseButton.LeftButton)
    wait_until(lambda: not activity.is_paused)


def test_a_mouse_move_storm_costs_one_touch_per_interval(
    timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    widget, field = window
    activity = start(timeback, idle_timeout=None)
    touches: list[float] = []
    real_touch = activity.touch

    def counting_touch() -> None:
        touches.append(time.monotonic())
        real_touch()

    activity.touch = counting_touch  # type: ignore[method-assign]
    timeback_qt.track(activity, widget, touch_interval=0.25)

    began = time.perf_counter()
    for i in range(2000):
        move = QMouseEvent(
            QEvent.Type.MouseMove,
            QPointF(i % 50, 5),
            QPointF(i % 50, 5),
            Qt.MouseButton.NoButton,
            Qt.MouseButton.NoButton,
            Qt.KeyboardModifier.NoModifier,
        )
        QApplication.sendEvent(field, move)
    spent = time.perf_counter() - began

    print(f"{len(touches)} touches for 2000 moves in {spent * 1000:.0f} ms")
    assert 1 <= len(touches) <= 1 + spent / 0.25 + 1
    assert spent < 2.0  # 2,000 events through the filter: well under a millisecond each


def test_hiding_or_minimising_the_window_pauses_and_showing_it_resumes(
    timeback: Timeback, window: tuple[QWidget, QLineEdit], recorder: Recorder
) -> None:
    widget, _ = window
    activity = start(timeback, idle_timeout=None)
    tracker = timeback_qt.track(activity, widget)

    QTest.qWait(150)
    widget.hide()
    wait_until(lambda: activity.is_paused)
    assert not tracker.in_foreground
    QTest.qWait(200)
    widget.show()
    wait_until(lambda: not activity.is_paused)

    widget.showMinimized()
    wait_until(lambda: activity.is_paused)
    widget.showNormal()
    wait_until(lambda: not activity.is_paused)

    activity.end()
    windows = recorder.windows
    assert sum(w["pausedMs"] for w in windows) >= 200  # the hidden time, as paused
    for before, after in itertools.pairwise(windows):
        assert after["startedAt"] == before["endedAt"]


def test_the_application_going_inactive_pauses_and_coming_back_resumes(
    qapp: QApplication, timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    activity = start(timeback, idle_timeout=None)
    timeback_qt.track(activity, qapp)

    qapp.applicationStateChanged.emit(Qt.ApplicationState.ApplicationInactive)
    wait_until(lambda: activity.is_paused)
    qapp.applicationStateChanged.emit(Qt.ApplicationState.ApplicationActive)
    wait_until(lambda: not activity.is_paused)


def test_a_pause_made_by_the_app_is_not_undone_by_coming_back(
    timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    widget, field = window
    activity = start(timeback, idle_timeout=None)
    timeback_qt.track(activity, widget)

    activity.pause()  # e.g. the app's own "Pause" button
    widget.hide()
    QTest.qWait(150)
    widget.show()
    QTest.qWait(150)
    QTest.keyClick(field, Qt.Key.Key_B)
    QTest.qWait(50)
    assert activity.is_paused


def test_given_a_window_only_input_to_that_window_counts(
    qapp: QApplication, timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    widget, field = window
    other = QLineEdit()
    other.setGeometry(600, 400, 200, 40)  # away from the tracked window, under no pointer
    other.show()
    try:
        activity = start(timeback)
        timeback_qt.track(activity, widget)
        wait_until(lambda: activity.is_idle)
        QTest.keyClick(other, Qt.Key.Key_X)
        QTest.mouseMove(other, QPoint(3, 3))
        QTest.qWait(100)
        assert activity.is_idle
        QTest.keyClick(field, Qt.Key.Key_Y)
        wait_until(lambda: not activity.is_paused)
    finally:
        other.close()
        other.deleteLater()


def test_the_tracker_lets_go_once_the_activity_ends(
    qapp: QApplication, timeback: Timeback, window: tuple[QWidget, QLineEdit]
) -> None:
    widget, field = window
    activity = start(timeback)
    tracker = timeback_qt.track(activity, widget, poll_interval=0.05)

    activity.end(wait=False)
    # Input and state changes right after the end never raise into Qt's event loop...
    QTest.keyClick(field, Qt.Key.Key_A)
    widget.hide()
    widget.show()
    # ...and the filter is removed at the next look.
    wait_until(lambda: not tracker.active)


def test_destroying_the_window_ends_the_activity_without_waiting(
    qapp: QApplication, timeback: Timeback, recorder: Recorder
) -> None:
    widget = QWidget()
    widget.show()
    activity = start(timeback, idle_timeout=None)
    tracker = timeback_qt.track(activity, widget)
    QTest.qWait(100)

    began = time.perf_counter()
    widget.deleteLater()
    wait_until(lambda: activity.is_ended)
    assert time.perf_counter() - began < 1.0
    assert not tracker.active
    wait_until(lambda: len(recorder.windows) == 1)


def test_importing_without_pyside6_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['PySide6'] = None\n"
        "try:\n"
        "    import timeback_client.integrations.qt\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'timeback-client[qt]'" in out
