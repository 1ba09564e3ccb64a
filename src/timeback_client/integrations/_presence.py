"""Presence: what the toolkits observe (input, focus, visibility) turned into activity calls.

Toolkit-neutral and synchronous; the `tk`, `qt`, `jupyter`, `pygame`, `kivy` and `textual`
modules feed it from their event handlers on the GUI (or kernel, or event loop) thread, and
their trackers share `PresenceTracker`. Every activity call it makes returns at once (the sync
facade only hands it to the SDK's own thread), so the GUI thread never waits on the network.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["DEFAULT_TOUCH_INTERVAL", "SETTLE_DELAY_MS", "Presence", "PresenceTracker", "Tracked"]

# A mouse move storm delivers hundreds of events a second; the idle timer is measured in
# seconds, so one touch per quarter second loses nothing and costs almost nothing.
DEFAULT_TOUCH_INTERVAL = 0.25

# Focus moving between two widgets of one window, or a dialog taking it for a moment,
# sends focus-out and focus-in in quick succession; toolkits wait this long after such
# an event before they act, so that these moves never cut a window.
SETTLE_DELAY_MS = 100


class Tracked(Protocol):
    """What presence needs of an activity: the blocking `Activity` and `AsyncActivity` both
    have it, and their calls return at once."""

    @property
    def is_paused(self) -> bool: ...
    @property
    def is_idle(self) -> bool: ...
    @property
    def is_ended(self) -> bool: ...
    def pause(self) -> None: ...
    def resume(self) -> None: ...
    def touch(self) -> None: ...


class Presence:
    """Whether the student is at the activity, and the activity calls that follow from it.

    The activity counts as in the foreground while the app has the focus and its window
    is shown (not hidden, not minimised). Leaving the foreground pauses it (an idle
    pause included); coming back resumes it, but only if this object paused it: a pause
    made by the app itself is never undone here.

    Args:
        activity: the tracked activity.
        on_ended: called once, when a call finds that the activity has ended.
        touch_interval: the least time, in seconds, between two `touch()` calls.
        monotonic: the clock the throttle reads (seconds).
    """

    def __init__(
        self,
        activity: Tracked,
        *,
        on_ended: Callable[[], object],
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if touch_interval < 0:
            raise ValueError(f"touch_interval: {touch_interval!r} is negative; pass e.g. 0.25")
        self.activity = activity
        self._on_ended = on_ended
        self._touch_interval = touch_interval
        self._monotonic = monotonic
        self._last_touch: float | None = None
        self.focused = True
        self.visible = True
        self.paused_here = False
        self.ended = False

    @property
    def in_foreground(self) -> bool:
        """Whether the app has the focus and its window is shown."""
        return self.focused and self.visible

    def touch_due(self) -> bool:
        """Whether input now would `touch()` (for toolkits that must look before counting)."""
        last = self._last_touch
        return last is None or self._monotonic() - last >= self._touch_interval

    def input_seen(self) -> None:
        """A key, click, scroll or pointer move: `touch()`, at most once per interval."""
        if not self.touch_due():
            return
        self._last_touch = self._monotonic()
        self._call(self.activity.touch)

    def settle(self) -> None:
        """Pause or resume the activity to match `in_foreground`."""
        if self.ended:
            return
        if not self.in_foreground:
            if not self.paused_here and self._may_pause():
                self.paused_here = self._call(self.activity.pause)
        elif self.paused_here:
            self.paused_here = False
            self._call(self.activity.resume)

    def check_ended(self) -> bool:
        """Look whether the activity has ended (`on_ended` runs if it has); for polling."""
        if not self.ended:
            try:
                ended = self.activity.is_ended
            except RuntimeError:  # its client was closed
                ended = True
            if ended:
                self._ended()
        return self.ended

    def _may_pause(self) -> bool:
        """Running, or paused for idleness only (then pause() makes it a pause of ours,
        which coming back ends: the student is back)."""
        try:
            return not self.activity.is_paused or self.activity.is_idle
        except RuntimeError:  # see _call
            self._ended()
            return False

    def _call(self, method: Callable[[], None]) -> bool:
        if self.ended:
            return False
        try:
            method()
            ended = self.activity.is_ended  # ended by the app since: the call did nothing
        except RuntimeError:
            # Its client was closed and the SDK's thread is gone: let go, and never raise
            # into the toolkit's event loop.
            ended = True
        if ended:
            self._ended()
            return False
        return True

    def _ended(self) -> None:
        if not self.ended:
            self.ended = True
            self._on_ended()


class PresenceTracker:
    """What every toolkit's tracker shares: its `Presence` and whether it has stopped.

    A tracker sets ``_presence`` and ``_stopped`` in its ``__init__`` and ``_stopped``
    again in its ``stop()``.
    """

    _presence: Presence
    _stopped: bool

    @property
    def active(self) -> bool:
        """Whether the tracker still follows the toolkit (False once stopped or ended)."""
        return not self._stopped

    @property
    def in_foreground(self) -> bool:
        """Whether the app had the focus and its window was shown, at the last event."""
        return self._presence.in_foreground
