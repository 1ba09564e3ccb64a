"""Pure time accounting for one activity: active and paused spans, cut into windows.

The ledger does no I/O and reads no clock: every operation takes a `Reading` taken by
its caller. Between two readings, the timeline's advance is split into active time and
paused time (a suspend counts as paused), and added to the *open window*. Cutting the
open window yields a `Cut` and opens the next one at the same instant, so the windows of
a tracking span are contiguous, never share a start, and satisfy
``end - start == active + paused`` exactly, in integer milliseconds.

Two events restart tracking from a clean slate, leaving an unreported gap, as the browser
SDK does after a long absence: a resume after a pause longer than ``abandon_after_ms``,
and a suspend longer than that while active.
"""

from __future__ import annotations

import attrs

from ._clock import Reading

__all__ = ["Cut", "Ledger"]


@attrs.frozen
class Cut:
    """A closed window on the timeline, before it gets an activity and wall-clock times."""

    start_ms: int
    end_ms: int
    active_ms: int
    paused_ms: int


class Ledger:
    """The time accounting of one activity in one session.

    Args:
        start: the reading at which tracking starts, active.
        abandon_after_ms: a pause or suspend longer than this is not reported.
    """

    __slots__ = (
        "_abandon_after_ms",
        "_active_ms",
        "_cut_active_ms",
        "_finished",
        "_is_paused",
        "_mark_ms",
        "_mark_suspended_ms",
        "_paused_ms",
        "_paused_since_ms",
        "_window_start_ms",
    )

    def __init__(self, start: Reading, *, abandon_after_ms: int) -> None:
        self._abandon_after_ms = abandon_after_ms
        # The last reading applied, as two ints (a Reading kept for an interval would be
        # one more object for the garbage collector's old generation, per heartbeat).
        self._mark_ms = start.timeline_ms
        self._mark_suspended_ms = start.suspended_ms
        self._window_start_ms = start.timeline_ms
        self._active_ms = 0
        self._paused_ms = 0
        self._is_paused = False
        self._paused_since_ms = 0
        self._cut_active_ms = 0
        self._finished = False

    @property
    def is_paused(self) -> bool:
        """Whether time currently counts as paused."""
        return self._is_paused

    def active_ms(self, now: Reading) -> int:
        """Active ms so far: every cut window plus the open one up to ``now``."""
        if self._finished:
            return self._cut_active_ms  # time after the end is nobody's
        active, _ = self._split(now)
        return self._cut_active_ms + self._active_ms + active

    def open_window(self, now: Reading) -> Cut | None:
        """The open window as `cut` would close it at ``now``, without closing it.

        None when it holds no active time (nothing worth checkpointing). Does not change
        the ledger.
        """
        active, paused = self._split(now)
        if self._active_ms + active == 0 or (
            not self._is_paused and paused > self._abandon_after_ms
        ):
            return None
        start = self._window_start_ms
        total_active = self._active_ms + active
        total_paused = self._paused_ms + paused
        return Cut(start, start + total_active + total_paused, total_active, total_paused)

    def state(self) -> tuple[int, int, int, bool, int]:
        """The open window as of the last reading: ``(start, as_of, active, counting,
        suspended)``, timeline ms. It changes only when a reading is applied (a cut, a
        pause, a resume, the finish), never by time passing: while ``counting``, active
        time goes on growing with the timeline, minus what is spent suspended."""
        return (
            self._window_start_ms,
            self._mark_ms,
            self._active_ms,
            not self._is_paused and not self._finished,
            self._mark_suspended_ms,
        )

    def cut(self, now: Reading) -> Cut | None:
        """Close the open window at ``now`` (a heartbeat). None if it is empty."""
        # After a long suspend _observe() has already closed the window and opened an
        # empty one at ``now``, so there is nothing more to close.
        closed = self._observe(now)
        return closed if closed is not None else self._close_window()

    def pause(self, now: Reading) -> Cut | None:
        """Stop counting active time and close the window (so the time so far is sent)."""
        closed = self.cut(now)
        if not self._is_paused:
            self._is_paused = True
            self._paused_since_ms = now.timeline_ms
        return closed

    def resume(self, now: Reading) -> Cut | None:
        """Count active time again; after a long pause, restart from a clean slate.

        Returns a window only if a suspend while active had to be cut off first.
        """
        closed = self._observe(now)
        if self._is_paused:
            self._is_paused = False
            if now.timeline_ms - self._paused_since_ms > self._abandon_after_ms:
                self._restart(now.timeline_ms)
        return closed

    def finish(self, now: Reading) -> Cut | None:
        """Close the last window at ``now`` (the activity ends).

        A pause still running counts as paused time, unless it lasted longer than
        ``abandon_after_ms``: then it is not reported, as on a resume.
        """
        closed = self._observe(now)
        self._finished = True
        if closed is not None:
            return closed
        if self._is_paused and now.timeline_ms - self._paused_since_ms > self._abandon_after_ms:
            self._restart(now.timeline_ms)
            return None
        return self._close_window()

    def _split(self, now: Reading) -> tuple[int, int]:
        """Split the time since the last reading into (active, paused) ms."""
        elapsed = max(0, now.timeline_ms - self._mark_ms)
        suspended = min(elapsed, max(0, now.suspended_ms - self._mark_suspended_ms))
        if self._is_paused:
            return 0, elapsed
        return elapsed - suspended, suspended

    def _observe(self, now: Reading) -> Cut | None:
        """Account for the time since the last reading.

        Returns the window cut off by a suspend longer than ``abandon_after_ms``, if any.
        """
        if now.timeline_ms < self._mark_ms:
            raise ValueError("readings must not go back in time")
        active, paused = self._split(now)
        self._mark_ms, self._mark_suspended_ms = now
        if not self._is_paused and paused > self._abandon_after_ms:
            # A long suspend while active: report the awake part, drop the absence.
            self._active_ms += active
            closed = self._close_window()
            self._restart(now.timeline_ms)
            return closed
        self._active_ms += active
        self._paused_ms += paused
        return None

    def _close_window(self) -> Cut | None:
        if self._active_ms + self._paused_ms == 0:
            return None
        start = self._window_start_ms
        end = start + self._active_ms + self._paused_ms
        closed = Cut(start, end, self._active_ms, self._paused_ms)
        self._cut_active_ms += self._active_ms
        self._window_start_ms = end
        self._active_ms = self._paused_ms = 0
        return closed

    def _restart(self, at_ms: int) -> None:
        self._window_start_ms = at_ms
        self._active_ms = self._paused_ms = 0
        self._paused_since_ms = at_ms
