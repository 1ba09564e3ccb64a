"""pygame integration: ``track(activity)``, then ``tracker.process_event(event)`` in the loop.

```python
import pygame
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import pygame as timeback_pygame

pygame.init()
screen = pygame.display.set_mode((640, 480))
with Timeback(BASE_URL, headers=AUTH) as timeback:
    activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                       course={"subject": "Math", "grade": 3},
                                       time=TimeOptions(idle_timeout=60))
    tracker = timeback_pygame.track(activity)
    running = True
    while running:
        for event in pygame.event.get():
            tracker.process_event(event)    # as pygame_gui's manager.process_events(event)
            if event.type == pygame.QUIT:
                running = False
        ...                                 # draw, flip, clock.tick(60)
    activity.end()
```

It works with pygame (2.1.3 and later) and pygame-ce, which share the ``pygame`` module.
`PygameTracker.process_event` looks at every event the game hands it, never consumes
or changes one, and costs well under a microsecond for most (see
``benchmarks/bench_pygame.py``):

- key presses, text input, mouse buttons, wheel and motion, touch fingers, and joystick
  and game controller buttons and hats call `Activity.touch` (at most once per
  ``touch_interval``), which also ends an idle pause;
- the window losing the input focus (``WINDOWFOCUSLOST``), or being minimised or hidden
  (``WINDOWMINIMIZED``, ``WINDOWHIDDEN``), pauses the activity at once; the focus coming
  back to the shown window (``WINDOWFOCUSGAINED`` with ``WINDOWRESTORED`` or
  ``WINDOWSHOWN``) resumes it. The old ``ACTIVEEVENT`` (input focus and iconified states)
  is followed too. A pause made by the app itself is left alone;
- once the activity has ended, by any means, the tracker lets go (``active`` turns False)
  at the next event it is handed.

pygame has no timers of its own to call back the tracker: it sees only what the loop
hands it. A game that stops pumping events (a long blocking load) is seen again once it
pumps; ``idle_timeout`` runs on the SDK's own thread regardless. Every call returns at
once: the game's loop never waits on the network.
"""

from __future__ import annotations

import time
from typing import Final, Protocol

try:
    import pygame
except ImportError as exc:  # pragma: no cover - exercised in a venv without pygame
    raise ImportError(
        "timeback_client.integrations.pygame needs pygame or pygame-ce: "
        "pip install 'timeback-client[pygame]' (or pip install pygame-ce)"
    ) from exc

from .._sync import Activity
from ._presence import DEFAULT_TOUCH_INTERVAL, Presence, PresenceTracker

__all__ = ["PygameTracker", "track"]


class _Event(Protocol):
    """What the tracker reads of a ``pygame.event.Event``."""

    @property
    def type(self) -> int: ...


def _types(*names: str) -> frozenset[int]:
    # A name an older pygame lacks (the WINDOW* events came with pygame 2) is left out.
    return frozenset(t for name in names if isinstance(t := getattr(pygame, name, None), int))


INPUT_EVENTS: Final = _types(
    "KEYDOWN",
    "TEXTINPUT",
    "MOUSEBUTTONDOWN",
    "MOUSEMOTION",
    "MOUSEWHEEL",
    "FINGERDOWN",
    "FINGERMOTION",
    "JOYBUTTONDOWN",
    "JOYHATMOTION",
    "CONTROLLERBUTTONDOWN",
)
_FOCUS_LOST: Final = _types("WINDOWFOCUSLOST")
_FOCUS_GAINED: Final = _types("WINDOWFOCUSGAINED")
_HIDDEN: Final = _types("WINDOWMINIMIZED", "WINDOWHIDDEN")
_SHOWN: Final = _types("WINDOWRESTORED", "WINDOWSHOWN", "WINDOWMAXIMIZED")
_ACTIVEEVENT: Final[int] = pygame.ACTIVEEVENT
# ACTIVEEVENT's ``state`` bits (SDL 1's SDL_APPINPUTFOCUS and SDL_APPACTIVE); the mouse
# entering or leaving the window (SDL_APPMOUSEFOCUS, 1) says nothing about the student.
_APP_INPUT_FOCUS: Final = 2
_APP_ACTIVE: Final = 4
PRESENCE_EVENTS: Final = _FOCUS_LOST | _FOCUS_GAINED | _HIDDEN | _SHOWN | {_ACTIVEEVENT}


class PygameTracker(PresenceTracker):
    """What `track` returned: hand it every event with `process_event`; `stop()` lets go.

    Attributes:
        activity: the tracked activity.
    """

    def __init__(
        self,
        activity: Activity,
        *,
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        poll_interval: float = 0.5,
    ) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval: {poll_interval!r} is not positive; pass e.g. 0.5")
        self.activity = activity
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=touch_interval)
        self._poll_interval = poll_interval
        self._next_poll = time.monotonic() + poll_interval
        self._stopped = False

    def process_event(self, event: _Event) -> bool:
        """Look at one event of the game's loop; call it for every event.

        Returns:
            False: the event is never consumed, and the game handles it as before
            (the return value of pygame_gui's ``process_events``).
        """
        if self._stopped:
            return False
        kind = event.type
        if kind in INPUT_EVENTS:
            self._presence.input_seen()
        elif kind in PRESENCE_EVENTS:
            self._on_presence_event(event)
        if time.monotonic() >= self._next_poll:
            self._next_poll = time.monotonic() + self._poll_interval
            self._presence.check_ended()
        return False

    def stop(self) -> None:
        """Stop following the events: `process_event` does nothing from now on.
        Idempotent; the activity is left as it is."""
        self._stopped = True

    def _on_presence_event(self, event: _Event) -> None:
        presence = self._presence
        kind = event.type
        if kind in _FOCUS_LOST:
            presence.focused = False
        elif kind in _FOCUS_GAINED:
            presence.focused = True
        elif kind in _HIDDEN:
            presence.visible = False
        elif kind in _SHOWN:
            presence.visible = True
        else:  # ACTIVEEVENT: pygame 1's focus and iconify events, still sent by pygame 2
            state, gain = getattr(event, "state", 0), bool(getattr(event, "gain", 1))
            if not state & (_APP_INPUT_FOCUS | _APP_ACTIVE):
                return
            if state & _APP_INPUT_FOCUS:
                presence.focused = gain
            if state & _APP_ACTIVE:
                presence.visible = gain
        # A game window has no widgets to pass the focus between, so no burst to wait out:
        # act at once, the pause counted from this event.
        presence.settle()


def track(
    activity: Activity,
    *,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
) -> PygameTracker:
    """Let a pygame game's events drive an activity: input touches it, focus pauses it.

    Call it on the game's thread once the activity has started, then hand every event of
    the loop to ``tracker.process_event(event)``.

    Args:
        activity: the activity to drive (from ``Timeback.activity.start``).
        touch_interval: the least time between two ``touch()`` calls, in seconds.
        poll_interval: how often, at most, `process_event` looks whether the activity has
            ended, in seconds.

    Returns:
        The tracker.
    """
    return PygameTracker(activity, touch_interval=touch_interval, poll_interval=poll_interval)
