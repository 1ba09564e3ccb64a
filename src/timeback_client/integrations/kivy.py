"""Kivy integration: ``track(activity)`` and the activity follows the window and the app.

```python
from kivy.app import App
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import kivy as timeback_kivy

class Lesson(App):
    def on_start(self):
        timeback_kivy.track(self.activity, app=self)   # the Window, and this App

with Timeback(BASE_URL, headers=AUTH) as timeback:
    lesson = Lesson()
    lesson.activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                              course={"subject": "Math", "grade": 3},
                                              time=TimeOptions(idle_timeout=60))
    lesson.run()
    lesson.activity.end()
```

What the tracker does, on Kivy's main thread and without ever waiting on the network:

- touches (and mouse presses, which Kivy makes touches), touch and pointer moves, key
  presses, text input and joystick buttons call `Activity.touch` (at most once per
  ``touch_interval``), which also ends an idle pause; it never consumes one;
- the window losing the focus (``Window.focus``), being minimised (``on_minimize``) or
  hidden (``on_hide``), or the app being paused by the system (``App.on_pause``: Android,
  iOS, a kiosk shell) pauses the activity at that event; the focus coming back to the
  shown window (``on_restore``, ``on_show``, ``on_maximize``, ``App.on_resume``) resumes
  it. A pause made by the app itself is left alone;
- once the activity has ended, by any means (looked at on Kivy's ``Clock``), every
  binding is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

try:
    from kivy.app import App
    from kivy.clock import Clock, ClockEvent
    from kivy.event import EventDispatcher
except ImportError as exc:  # pragma: no cover - exercised in a venv without Kivy
    raise ImportError(
        "timeback_client.integrations.kivy needs Kivy: "
        "pip install 'timeback-client[kivy]' (or pip install kivy)"
    ) from exc

from .._sync import Activity
from ._presence import DEFAULT_TOUCH_INTERVAL, Presence, PresenceTracker

__all__ = ["KivyTracker", "track"]

INPUT_EVENTS: Final = (
    "on_touch_down",
    "on_touch_move",
    "on_key_down",
    "on_textinput",
    "on_joy_button_down",
    "on_joy_hat",
)
_HIDING: Final = ("on_minimize", "on_hide")
_SHOWING: Final = ("on_restore", "on_show", "on_maximize")


class KivyTracker(PresenceTracker):
    """The bindings `track` made. `stop()` removes them; so does the activity's end.

    Attributes:
        activity: the tracked activity.
        window: the watched window (Kivy's ``Window``).
        app: the watched app, or None.
    """

    def __init__(
        self,
        activity: Activity,
        *,
        window: EventDispatcher | None = None,
        app: App | None = None,
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        poll_interval: float = 0.5,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval: {poll_interval!r} is not positive; pass e.g. 0.5")
        self.activity = activity
        self.window: EventDispatcher = _default_window() if window is None else window
        self.app = App.get_running_app() if app is None else app
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=touch_interval)
        self._presence.focused = bool(getattr(self.window, "focus", True))
        self._stopped = False
        self._bindings: list[tuple[EventDispatcher, str, int]] = []
        for name in INPUT_EVENTS:
            self._bind(self.window, name, self._on_input)
        self._bind(self.window, "mouse_pos", self._on_input)  # the pointer, no button down
        self._bind(self.window, "focus", self._on_focus)
        for name in _HIDING:
            self._bind(self.window, name, self._on_hidden)
        for name in _SHOWING:
            self._bind(self.window, name, self._on_shown)
        if self.app is not None:
            self._bind(self.app, "on_pause", self._on_hidden)
            self._bind(self.app, "on_resume", self._on_shown)
        self._poll_event: ClockEvent | None = Clock.schedule_interval(self._poll, poll_interval)
        self._presence.settle()

    def stop(self) -> None:
        """Remove every binding and the Clock poll. Idempotent; the activity is left as it is."""
        if self._stopped:
            return
        self._stopped = True
        if self._poll_event is not None:
            self._poll_event.cancel()
            self._poll_event = None
        bindings, self._bindings = self._bindings, []
        for dispatcher, name, uid in bindings:
            dispatcher.unbind_uid(name, uid)

    # -- handlers (Kivy's main thread). Each returns None: an event dispatcher stops at a
    # handler that returns True, and the app's own handlers must still see every event.

    def _on_input(self, *args: Any) -> None:
        self._presence.input_seen()

    def _on_focus(self, window: object, focused: bool) -> None:
        self._presence.focused = bool(focused)
        self._settle()

    def _on_hidden(self, *args: Any) -> None:
        self._presence.visible = False
        self._settle()

    def _on_shown(self, *args: Any) -> None:
        self._presence.visible = True
        self._settle()

    def _settle(self) -> None:
        # One window, whose focus SDL reports whole: act at once, counted from the event.
        if not self._stopped:
            self._presence.settle()

    def _poll(self, dt: float) -> None:
        if not self._stopped:
            self._presence.check_ended()

    def _bind(self, dispatcher: EventDispatcher, name: str, handler: Callable[..., None]) -> None:
        uid = dispatcher.fbind(name, handler)
        if uid:  # 0: the dispatcher has no such event or property (an older Kivy)
            self._bindings.append((dispatcher, name, uid))


def _default_window() -> EventDispatcher:
    # Imported here: importing kivy.core.window opens the window, which an app does when
    # its configuration is done, not when this module is imported.
    from kivy.core.window import Window

    return Window


def track(
    activity: Activity,
    *,
    app: App | None = None,
    window: EventDispatcher | None = None,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
) -> KivyTracker:
    """Let Kivy's window and app drive an activity: input touches it, away pauses it.

    Call it on Kivy's main thread once the activity has started (in the app's
    ``on_start``, say).

    Args:
        activity: the activity to drive (from ``Timeback.activity.start``).
        app: the app whose ``on_pause``/``on_resume`` count (default: the running app).
        window: the window to watch (default: Kivy's ``Window``).
        touch_interval: the least time between two ``touch()`` calls, in seconds.
        poll_interval: how often to look whether the activity has ended, in seconds
            (on Kivy's ``Clock``).

    Returns:
        The tracker; ``stop()`` removes its bindings (done for you once the activity ends).
    """
    return KivyTracker(
        activity,
        window=window,
        app=app,
        touch_interval=touch_interval,
        poll_interval=poll_interval,
    )
