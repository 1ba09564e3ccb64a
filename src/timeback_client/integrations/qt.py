"""PySide6 integration: ``track(activity, app_or_widget)`` and the activity follows the app.

```python
from PySide6.QtWidgets import QApplication
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import qt as timeback_qt

app = QApplication([])
with Timeback(BASE_URL, headers=AUTH) as timeback:
    activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                       course={"subject": "Math", "grade": 3},
                                       time=TimeOptions(idle_timeout=60))
    timeback_qt.track(activity, app)    # or a window: track(activity, lesson_window)
    app.exec()                          # quitting ends the activity
```

What the tracker does, all on the GUI thread and without ever waiting on the network:

- key presses, mouse buttons, wheel, pointer moves, touch and tablet input call
  `Activity.touch` (at most once per ``touch_interval``), which also ends an idle pause;
  given a widget, only input to its window counts;
- the application leaving the active state (``Qt.ApplicationInactive``, hidden,
  suspended), or the window being hidden or minimised (given the application: every
  window), pauses the activity; coming back resumes it (a pause made by the app itself is
  left alone);
- the window being destroyed, or the application quitting, ends the activity with
  ``end(wait=False)`` (``end_on_destroy``);
- once the activity has ended, by any means, the event filter and connections are removed.

SDK callbacks (``on_pause``, ``on_error``, ...) still run on the SDK's thread: hand them
to the GUI thread with a signal (queued across threads), never by touching widgets there.
"""

from __future__ import annotations

import contextlib
from typing import Final

try:
    from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
    from PySide6.QtGui import QGuiApplication
    from PySide6.QtWidgets import QApplication, QWidget
except ImportError as exc:  # pragma: no cover - exercised in a venv without PySide6
    raise ImportError(
        "timeback_client.integrations.qt needs PySide6: "
        "pip install 'timeback-client[qt]' (or pip install PySide6-Essentials)"
    ) from exc

from .._sync import Activity
from ._presence import DEFAULT_TOUCH_INTERVAL, SETTLE_DELAY_MS, Presence, PresenceTracker

__all__ = ["QtTracker", "track"]

_INPUT_EVENTS: Final = frozenset(
    {
        QEvent.Type.KeyPress,
        QEvent.Type.MouseButtonPress,
        QEvent.Type.MouseButtonDblClick,
        QEvent.Type.MouseMove,
        QEvent.Type.Wheel,
        QEvent.Type.TouchBegin,
        QEvent.Type.TouchUpdate,
        QEvent.Type.TabletPress,
        QEvent.Type.TabletMove,
    }
)
_VISIBILITY_EVENTS: Final = frozenset(
    {QEvent.Type.Show, QEvent.Type.Hide, QEvent.Type.WindowStateChange}
)


class QtTracker(QObject, PresenceTracker):
    """The event filter `track` installed. `stop()` removes it; so does the activity's end.

    Owned by the application object, so it lives on without a reference from the caller.

    Attributes:
        activity: the tracked activity.
        window: the tracked window, or None when the whole application is tracked.
    """

    def __init__(
        self,
        activity: Activity,
        app_or_widget: QGuiApplication | QWidget,
        *,
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        poll_interval: float = 0.5,
        end_on_destroy: bool = True,
    ) -> None:
        app = QCoreApplication.instance()
        if app is None:
            raise RuntimeError("track() needs a QApplication: create it first")
        if not isinstance(app, QGuiApplication):
            raise TypeError(
                "track() needs a QApplication or QGuiApplication, not a QCoreApplication"
            )
        super().__init__(app)
        self.activity = activity
        self.window: QWidget | None = (
            app_or_widget.window() if isinstance(app_or_widget, QWidget) else None
        )
        self._app = app
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=touch_interval)
        self._end_on_destroy = end_on_destroy
        self._app_active = True
        self._stopped = False

        self._settle_timer = QTimer(self)
        self._settle_timer.setSingleShot(True)
        self._settle_timer.setInterval(SETTLE_DELAY_MS)
        self._settle_timer.timeout.connect(self._settle)
        self._poll_timer = QTimer(self)
        self._poll_timer.setInterval(max(1, round(poll_interval * 1000)))
        self._poll_timer.timeout.connect(self._poll)

        app.installEventFilter(self)
        app.applicationStateChanged.connect(self._on_application_state)
        app.aboutToQuit.connect(self._on_gone)
        if self.window is not None:
            self.window.destroyed.connect(self._on_gone)
        self._poll_timer.start()

    def stop(self) -> None:
        """Remove the event filter, connections and timers. Idempotent; the activity is
        left as it is."""
        if self._stopped:
            return
        self._stopped = True
        self._settle_timer.stop()
        self._poll_timer.stop()
        self._app.removeEventFilter(self)
        # A connection whose other end is already gone raises on disconnect: no matter.
        with contextlib.suppress(RuntimeError, TypeError):
            self._app.applicationStateChanged.disconnect(self._on_application_state)
        with contextlib.suppress(RuntimeError, TypeError):
            self._app.aboutToQuit.disconnect(self._on_gone)
        if self.window is not None:
            with contextlib.suppress(RuntimeError, TypeError):
                self.window.destroyed.disconnect(self._on_gone)
        self.window = None
        self.deleteLater()

    # -- Qt hooks (GUI thread) -----------------------------------------------------------

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """See every event of the application; never consume one."""
        kind = event.type()
        if kind in _INPUT_EVENTS:
            # Look at the clock before the receiver: most input comes inside the interval.
            if self._presence.touch_due() and self._is_ours(watched):
                self._presence.input_seen()
        elif kind in _VISIBILITY_EVENTS and watched.isWidgetType():
            self._settle_timer.start()  # restarts: a burst settles once
        return False

    def _on_application_state(self, state: Qt.ApplicationState) -> None:
        self._app_active = state == Qt.ApplicationState.ApplicationActive
        self._settle_timer.start()

    def _on_gone(self) -> None:
        if self._end_on_destroy and not self._presence.ended:
            # Never wait in the GUI thread. A RuntimeError: its client is already closed.
            with contextlib.suppress(RuntimeError):
                self.activity.end(wait=False)
        self.stop()

    def _settle(self) -> None:
        if self._stopped:
            return
        self._presence.focused = self._app_active
        self._presence.visible = self._shown()
        self._presence.settle()

    def _poll(self) -> None:
        if not self._stopped:
            self._presence.check_ended()

    # -- helpers -------------------------------------------------------------------------

    def _is_ours(self, watched: QObject) -> bool:
        if self.window is None:
            return True
        # Mouse input reaches the window's QWindow first and then the widget under the
        # pointer; counting the widgets is enough.
        return isinstance(watched, QWidget) and watched.window() is self.window

    def _shown(self) -> bool:
        windows = [self.window] if self.window is not None else _top_level_windows()
        return any(w.isVisible() and not w.isMinimized() for w in windows)


def _top_level_windows() -> list[QWidget]:
    return [w for w in QApplication.topLevelWidgets() if w.isWindow() and not _is_popup(w)]


def _is_popup(widget: QWidget) -> bool:
    # Menus and tooltips are windows too, but never where the student works.
    kind = widget.windowType()
    return kind in (Qt.WindowType.Popup, Qt.WindowType.ToolTip)


def track(
    activity: Activity,
    app_or_widget: QGuiApplication | QWidget,
    *,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
    end_on_destroy: bool = True,
) -> QtTracker:
    """Let a Qt application or window drive an activity: input touches it, state pauses it.

    Call it on the GUI thread, with the QApplication created and the activity started.

    Args:
        activity: the activity to drive (from ``Timeback.activity.start``).
        app_or_widget: the QApplication (all its windows count), or a widget (its window).
        touch_interval: the least time between two ``touch()`` calls, in seconds.
        poll_interval: how often to look whether the activity has ended, in seconds.
        end_on_destroy: the window's destruction, or the application quitting, ends the
            activity (``end(wait=False)``).

    Returns:
        The tracker; ``stop()`` removes it (done for you once the activity ends).
    """
    return QtTracker(
        activity,
        app_or_widget,
        touch_interval=touch_interval,
        poll_interval=poll_interval,
        end_on_destroy=end_on_destroy,
    )
