"""The state machine of one activity's time: why it is paused, when it goes idle, when
its next heartbeat is due, and the ledger that counts it all.

Pure code, like the `Ledger` it drives: no I/O, no clock of its own, no threads. Every
transition takes the `Reading` its caller took, and returns a `Step`: the window it cut
(if any) and whether the activity paused or resumed. The activity (`_activity`) applies a
step (sends the window, calls the app's callbacks); the scheduler asks `due()` when to
call `fire()` next. So the whole behaviour of an activity's time can be tested on plain
readings, exhaustively.

Pauses have a reason: the app's own `pause()` (only `resume()` ends it), or idleness
(no `touch()` within ``idle_ms``; the next `touch()` ends it). An app pausing an idle
activity takes the pause over.
"""

from __future__ import annotations

from typing import Final, Literal

import attrs

from ._clock import Reading
from ._ledger import Cut, Ledger

__all__ = ["IDLE", "USER", "PauseReason", "Step", "Timekeeper"]

PauseReason = Literal["user", "idle"]
USER: Final = "user"
IDLE: Final = "idle"


@attrs.frozen
class Step:
    """What one transition asks of the activity.

    Attributes:
        cut: the window closed by it, to be sent (None: none).
        paused: the activity paused (``on_pause``).
        resumed: the activity resumed (``on_resume``).
    """

    cut: Cut | None = None
    paused: bool = False
    resumed: bool = False


_NOTHING: Final = Step()


class Timekeeper:
    """One activity's time, from its start to its end.

    Args:
        start: the reading at which the activity starts, active.
        interval_ms: a heartbeat (a window) is due this often while active.
        idle_ms: without `touch` this long, the activity pauses itself (None: never).
        abandon_after_ms: a pause or suspend longer than this is not reported.
        beats: whether heartbeats are due at all (False: ``time=False``).
    """

    __slots__ = (
        "_beat_due_ms",
        "_beats",
        "_idle_ms",
        "_interval_ms",
        "_last_input_ms",
        "ended",
        "ledger",
        "paused_by",
    )

    def __init__(
        self,
        start: Reading,
        *,
        interval_ms: int,
        idle_ms: int | None,
        abandon_after_ms: int,
        beats: bool = True,
    ) -> None:
        self.ledger = Ledger(start, abandon_after_ms=abandon_after_ms)
        self._interval_ms = interval_ms
        self._idle_ms = idle_ms
        self._beats = beats
        self._beat_due_ms = start.timeline_ms + interval_ms
        self._last_input_ms = start.timeline_ms
        self.paused_by: PauseReason | None = None
        self.ended = False

    def due(self) -> int | None:
        """The timeline instant at which `fire` has something to do, or None (paused,
        ended, or nothing to wait for)."""
        if self.ended or self.paused_by is not None:
            return None
        due = self._beat_due_ms if self._beats else None
        if self._idle_ms is not None:
            idle_at = self._last_input_ms + self._idle_ms
            due = idle_at if due is None else min(due, idle_at)
        return due

    def fire(self, now: Reading) -> Step:
        """A deadline from `due` passed: pause for idleness, or cut a heartbeat's window.

        Does nothing if nothing is due yet (a deadline that moved since it was read).
        """
        if self.ended or self.paused_by is not None:
            return _NOTHING
        at = now.timeline_ms
        if self._idle_ms is not None and at >= self._last_input_ms + self._idle_ms:
            self.paused_by = IDLE
            return Step(self.ledger.pause(now), paused=True)
        if self._beats and at >= self._beat_due_ms:
            cut = self.ledger.cut(now)
            self._beat_due_ms += self._interval_ms
            if self._beat_due_ms <= at:
                # Late (a suspend, a busy loop): keep the cadence from now, no burst.
                self._beat_due_ms = at + self._interval_ms
            return Step(cut)
        return _NOTHING

    def pause(self, now: Reading) -> Step:
        """The app pauses: the window so far is cut. Idempotent; takes over an idle pause."""
        if self.ended:
            return _NOTHING
        if self.paused_by == IDLE:
            # From now on only resume() ends the pause; the time was cut at the idle pause.
            self.paused_by = USER
            return _NOTHING
        if self.paused_by is not None:
            return _NOTHING
        self.paused_by = USER
        return Step(self.ledger.pause(now), paused=True)

    def resume(self, now: Reading) -> Step:
        """Count active time again (after a long pause, from a clean slate). Idempotent."""
        if self.ended or self.paused_by is None:
            return _NOTHING
        cut = self.ledger.resume(now)
        self.paused_by = None
        self._last_input_ms = now.timeline_ms
        self._beat_due_ms = now.timeline_ms + self._interval_ms
        return Step(cut, resumed=True)

    def touch(self, now: Reading) -> Step:
        """Input from the student: resets the idle timer, and ends an idle pause."""
        if self.ended:
            return _NOTHING
        if self.paused_by == IDLE:
            return self.resume(now)
        self._last_input_ms = now.timeline_ms
        return _NOTHING

    def cut(self, now: Reading) -> Step:
        """Close the open window at ``now`` so the time so far can be delivered (a flush),
        without pausing or moving the next heartbeat.

        Cuts nothing when ended, or when the open window holds no active time (while
        paused, the pause's time goes with the next window, as it would have anyway).
        """
        if self.ended or self.ledger.open_window(now) is None:
            return _NOTHING
        return Step(self.ledger.cut(now))

    def finish(self, now: Reading) -> Step:
        """The activity ends: the last window is cut. Later calls do nothing."""
        if self.ended:
            return _NOTHING
        self.ended = True
        return Step(self.ledger.finish(now))

    def active_ms(self, now: Reading) -> int:
        """Active ms so far: every cut window plus the open one up to ``now``."""
        return self.ledger.active_ms(now)

    def open_window(self, now: Reading) -> Cut | None:
        """The open window as it stands at ``now`` (None: no active time in it, or ended)."""
        if self.ended:
            return None
        return self.ledger.open_window(now)
