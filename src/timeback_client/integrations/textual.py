"""Textual integration: ``track(activity, app)`` and the activity follows the terminal app.

```python
from textual.app import App
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import textual as timeback_textual

class Tutor(App[None]):
    def __init__(self, activity):
        super().__init__()
        self.activity = activity

    def on_mount(self) -> None:
        timeback_textual.track(self.activity, self)   # on the app's loop, once it runs

with Timeback(BASE_URL, headers=AUTH) as timeback:
    activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                       course={"subject": "Math", "grade": 3},
                                       time=TimeOptions(idle_timeout=60))
    Tutor(activity).run()
    activity.end()
```

What the tracker does, on the app's asyncio loop and without ever waiting on the network:

- key presses, pastes, mouse buttons, wheel and pointer moves call `Activity.touch` (at
  most once per ``touch_interval``), which also ends an idle pause;
- the terminal reporting that it lost the focus (``AppBlur``) pauses the activity at that
  event, and the focus coming back (``AppFocus``), or a key press or click (Textual takes
  those for the focus too), resumes it. A pause made by the app itself is left alone;
- once the activity has ended, by any means, the tracker lets go.

Terminals report focus only when they support focus reporting (most do: xterm, VTE,
kitty, iTerm2, Windows Terminal, tmux with ``focus-events on``); without it only input
and ``idle_timeout`` apply. A terminal minimised, or hidden behind another window while it
keeps the focus, says nothing. It works with the blocking `Timeback` and with
`AsyncTimeback` (its activity started on the app's loop).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

try:
    from textual import events
    from textual.app import App
    from textual.timer import Timer
except ImportError as exc:  # pragma: no cover - exercised in a venv without Textual
    raise ImportError(
        "timeback_client.integrations.textual needs Textual: "
        "pip install 'timeback-client[textual]' (or pip install textual)"
    ) from exc

from .._activity import AsyncActivity
from .._sync import Activity
from ._presence import DEFAULT_TOUCH_INTERVAL, Presence, PresenceTracker

__all__ = ["TextualTracker", "track"]

INPUT_EVENTS: Final = (
    events.Key,
    events.Paste,
    events.MouseDown,
    events.MouseMove,
    events.MouseScrollDown,
    events.MouseScrollUp,
)
# Input Textual itself takes as the focus coming back (App.on_event sets app_focus).
_FOCUSING_INPUT: Final = (events.Key, events.MouseDown)


class TextualTracker(PresenceTracker):
    """What `track` installed on the app. `stop()` removes it; so does the activity's end.

    Attributes:
        activity: the tracked activity.
        app: the tracked app.
    """

    def __init__(
        self,
        activity: Activity | AsyncActivity,
        app: App[object],
        *,
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        poll_interval: float = 0.5,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval: {poll_interval!r} is not positive; pass e.g. 0.5")
        self.activity = activity
        self.app = app
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=touch_interval)
        self._stopped = False
        # Textual has no public hook that sees every event an app receives (its
        # message_hook belongs to the test pilot), and a message handler cannot be added
        # to an app from outside. Every event reaches the app through its `on_event`, so
        # the tracker wraps it on this one instance, and `stop()` takes the wrapper away.
        self._inner: Callable[[events.Event], Awaitable[None]] = app.on_event
        app.on_event = self._on_event  # type: ignore[method-assign]
        self._poll_timer: Timer | None = app.set_interval(poll_interval, self._poll)
        self._presence.check_ended()

    def stop(self) -> None:
        """Take the tracker off the app and stop its timer. Idempotent; the activity is
        left as it is."""
        if self._stopped:
            return
        self._stopped = True
        if self._poll_timer is not None:
            self._poll_timer.stop()
            self._poll_timer = None
        if self.app.__dict__.get("on_event") == self._on_event:
            del self.app.on_event

    async def _on_event(self, event: events.Event) -> None:
        if not self._stopped:
            self._observe(event)
        await self._inner(event)

    def _observe(self, event: events.Event) -> None:
        presence = self._presence
        if isinstance(event, INPUT_EVENTS):
            presence.input_seen()
            if presence.focused or not isinstance(event, _FOCUSING_INPUT):
                return
            presence.focused = True
        elif isinstance(event, events.AppBlur):
            presence.focused = False
        elif isinstance(event, events.AppFocus):
            presence.focused = True
        else:
            return
        # A terminal's focus is the whole app's: no burst of moves between widgets to wait
        # out, so act at once, the pause counted from this event.
        presence.settle()

    def _poll(self) -> None:
        if not self._stopped:
            self._presence.check_ended()


def track(
    activity: Activity | AsyncActivity,
    app: App[object],
    *,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
) -> TextualTracker:
    """Let a Textual app drive an activity: input touches it, the terminal's focus pauses it.

    Call it on the app's loop once the app runs (in ``on_mount``, say), with the activity
    started.

    Args:
        activity: the activity to drive (from ``Timeback.activity.start`` or
            ``AsyncTimeback.activity.start``).
        app: the running app.
        touch_interval: the least time between two ``touch()`` calls, in seconds.
        poll_interval: how often to look whether the activity has ended, in seconds.

    Returns:
        The tracker; ``stop()`` takes it off the app (done for you once the activity ends).
    """
    return TextualTracker(activity, app, touch_interval=touch_interval, poll_interval=poll_interval)
