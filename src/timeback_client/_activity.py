"""The lifecycle of one activity: start, pause, resume, touch, the heartbeat loop, end."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import attrs

from ._clock import Clock
from ._errors import DeliveryError, LifecycleError, UndeliveredError
from ._ledger import Cut, Ledger
from ._models import Course, ErrorContext, TimeOptions, Window
from ._sender import DeliveryListener, HeartbeatSender

__all__ = [
    "AsyncActivity",
    "ErrorCallback",
    "FlushCallback",
    "StateCallback",
    "Tracking",
    "call_safely",
]

logger = logging.getLogger("timeback_client")

ErrorCallback = Callable[[DeliveryError, ErrorContext], object]
FlushCallback = Callable[[int], object]
StateCallback = Callable[[], object]

_USER: Final = "user"
_IDLE: Final = "idle"


@attrs.frozen(kw_only=True)
class Tracking:
    """What an activity borrows from its client.

    Attributes:
        clock: where time comes from.
        sender: the sender its windows go through (to wait for their delivery).
        submit: hands a window to the client (outbox, then sender).
        task_group: where the heartbeat loop runs.
        on_end: called once the activity ended and sent its last window.
    """

    clock: Clock
    sender: HeartbeatSender
    submit: Callable[[Window, DeliveryListener], None]
    task_group: anyio.abc.TaskGroup
    on_end: Callable[[AsyncActivity], None]


class AsyncActivity:
    """A running activity, created by ``AsyncTimeback.activity.start()``.

    `pause`, `resume` and `touch` are plain calls that never wait on the network;
    `end` is awaited. Use it as ``async with timeback.activity.start(...) as activity:``
    to end it on exit. Callbacks run in the event loop that runs the client.
    """

    def __init__(
        self,
        tracking: Tracking,
        *,
        id: str,  # noqa: A002 - the contract's name for the activity slug
        name: str,
        course: Course,
        run_id: str | None,
        options: TimeOptions,
        send_time: bool,
        on_error: ErrorCallback | None = None,
        on_flush: FlushCallback | None = None,
        on_pause: StateCallback | None = None,
        on_resume: StateCallback | None = None,
    ) -> None:
        self._tracking = tracking
        self._clock = tracking.clock
        self.id: Final = id
        self.name: Final = name
        self.course: Final = course
        self.run_id: Final = run_id or str(uuid.uuid4())
        self.options: Final = options
        self._send_time = send_time
        self._on_error = on_error
        self._on_flush = on_flush
        self._on_pause = on_pause
        self._on_resume = on_resume

        start = self._clock.read()
        self._ledger = Ledger(start, abandon_after_ms=_ms(options.abandon_after))
        self._started_ms = start.timeline_ms
        self.started_at: Final = datetime.fromtimestamp(
            self._clock.wall_ms(start.timeline_ms) / 1000, UTC
        )
        self._interval_ms = _ms(options.heartbeat_interval)
        self._idle_ms = None if options.idle_timeout is None else _ms(options.idle_timeout)
        self._beat_due_ms = start.timeline_ms + self._interval_ms
        self._last_input_ms = start.timeline_ms
        self._paused_by: str | None = None
        self._ended = False
        self._wake: anyio.CancelScope | None = None
        self._loop_scope = anyio.CancelScope()
        if send_time or self._idle_ms is not None:
            tracking.task_group.start_soon(self._heartbeat_loop, name=f"timeback {self.run_id}")

    # -- state ----------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        """Whether time currently counts as paused (by `pause()` or for idleness)."""
        return self._paused_by is not None

    @property
    def is_idle(self) -> bool:
        """Whether the activity paused itself because no `touch()` came in time."""
        return self._paused_by == _IDLE

    @property
    def is_ended(self) -> bool:
        """Whether `end()` was called."""
        return self._ended

    @property
    def elapsed_ms(self) -> int:
        """Active milliseconds in this session so far: sent windows plus the open one."""
        return self._ledger.active_ms(self._clock.read())

    def __repr__(self) -> str:
        state = "ended" if self._ended else "paused" if self.is_paused else "active"
        return f"<Activity {self.id!r} run_id={self.run_id} {state} elapsed_ms={self.elapsed_ms}>"

    # -- lifecycle --------------------------------------------------------------------

    def pause(self) -> None:
        """Stop counting active time; the time so far is sent at once. Idempotent."""
        self._check_running("pause")
        if self._paused_by == _IDLE:
            # The app pauses an idle activity: from now on only resume() ends the pause.
            self._paused_by = _USER
            return
        self._pause(_USER)

    def resume(self) -> None:
        """Count active time again. After a pause longer than ``abandon_after``, tracking
        restarts from a clean slate (the gap is not reported)."""
        self._check_running("resume")
        if self._paused_by is None:
            return
        now = self._clock.read()
        self._emit(self._ledger.resume(now))
        self._paused_by = None
        self._last_input_ms = now.timeline_ms
        self._beat_due_ms = now.timeline_ms + self._interval_ms
        self._rewake()
        call_safely("on_resume", self._on_resume)

    def touch(self) -> None:
        """Tell the activity that the student did something (a key, a click, a scroll).

        Resets the idle timer, and resumes an activity that paused itself for idleness
        (not one paused by `pause()`).
        """
        self._check_running("touch")
        if self._paused_by == _IDLE:
            self.resume()
        else:
            self._last_input_ms = self._clock.read().timeline_ms

    async def end(self) -> None:
        """Send the last window and wait (at most ``flush_timeout``) for delivery.

        Never records completion: that is the server's `record()`, with this run_id.
        Calling it again does nothing.
        """
        if self._ended:
            return
        self._finish()
        await self._await_delivery()

    async def __aenter__(self) -> AsyncActivity:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            await self.end()

    # -- internals used by the clients -----------------------------------------------

    def _end_soon(self) -> None:
        """End now and wait for delivery in the background (for a GUI thread)."""
        if self._ended:
            return
        self._finish()
        self._tracking.task_group.start_soon(self._await_delivery)

    def _finish(self) -> None:
        self._ended = True
        self._loop_scope.cancel()
        self._emit(self._ledger.finish(self._clock.read()))
        self._tracking.on_end(self)

    async def _await_delivery(self) -> None:
        if not self._send_time:
            return
        sender = self._tracking.sender
        with anyio.move_on_after(self.options.flush_timeout, shield=True):
            await sender.settle([self.run_id])
        left = tuple(d.window for d in sender.undelivered([self.run_id]))
        if left:
            error = UndeliveredError(
                f"{len(left)} window(s) of run {self.run_id} not delivered within "
                f"flush_timeout={self.options.flush_timeout}s; still trying until close",
                windows=left,
            )
            self._report(error, "flush", attempts=0, will_retry=True)

    def _check_running(self, method: str) -> None:
        if self._ended:
            raise LifecycleError(
                f"{method}() after end(): activity {self.id!r} (run {self.run_id}) has ended. "
                "Start a new activity, with the same run_id to resume this run."
            )

    def _pause(self, why: str) -> None:
        if self._paused_by is not None:
            return
        self._emit(self._ledger.pause(self._clock.read()))
        self._paused_by = why
        self._rewake()
        call_safely("on_pause", self._on_pause)

    def _rewake(self) -> None:
        # The heartbeat loop sleeps until a deadline that has just changed.
        if self._wake is not None:
            self._wake.cancel()

    def _emit(self, cut: Cut | None) -> None:
        if cut is not None and self._send_time:
            self._tracking.submit(self._window(cut), self)

    def _window(self, cut: Cut) -> Window:
        return Window(
            activity_id=self.id,
            name=self.name,
            course=self.course,
            run_id=self.run_id,
            started_at_ms=self._clock.wall_ms(cut.start_ms),
            ended_at_ms=self._clock.wall_ms(cut.end_ms),
            elapsed_ms=cut.active_ms,
            paused_ms=cut.paused_ms,
        )

    def _open_window(self) -> Window | None:
        """The window that would be sent if the activity were cut now (for checkpoints)."""
        if self._ended or not self._send_time:
            return None
        cut = self._ledger.open_window(self._clock.read())
        return None if cut is None else self._window(cut)

    # -- the heartbeat loop -------------------------------------------------------------

    def _next_deadline(self) -> int | None:
        if self._paused_by is not None:
            return None
        due = self._beat_due_ms if self._send_time else None
        if self._idle_ms is not None:
            idle_at = self._last_input_ms + self._idle_ms
            due = idle_at if due is None else min(due, idle_at)
        return due

    async def _heartbeat_loop(self) -> None:
        with self._loop_scope:
            while True:
                deadline = self._next_deadline()
                with anyio.CancelScope() as self._wake:
                    if deadline is None:
                        await anyio.sleep_forever()
                    else:
                        await self._clock.sleep_until(deadline)
                self._wake = None
                self._on_deadline()

    def _on_deadline(self) -> None:
        reading = self._clock.read()
        now = reading.timeline_ms
        if self._paused_by is not None:
            return
        if self._idle_ms is not None and now >= self._last_input_ms + self._idle_ms:
            self._pause(_IDLE)
        elif self._send_time and now >= self._beat_due_ms:
            self._emit(self._ledger.cut(reading))
            self._beat_due_ms += self._interval_ms
            if self._beat_due_ms <= now:
                # Late (a suspend, a busy loop): keep the cadence from now, no burst.
                self._beat_due_ms = now + self._interval_ms

    # -- what the sender tells us (DeliveryListener) -----------------------------------

    def delivered(self, window: Window, *, duplicate: bool) -> None:
        """A window reached the backend: ``on_flush(elapsed_ms)``."""
        call_safely("on_flush", self._on_flush, window.elapsed_ms)

    def failed(
        self, window: Window, error: DeliveryError, *, attempts: int, will_retry: bool
    ) -> None:
        """A delivery attempt failed: log it and tell ``on_error``."""
        self._report(error, "heartbeat", attempts=attempts, will_retry=will_retry)

    def _report(
        self, error: DeliveryError, operation: str, *, attempts: int, will_retry: bool
    ) -> None:
        level = logging.DEBUG if will_retry and attempts > 1 else logging.WARNING
        logger.log(level, "timeback %s for run %s: %s", operation, self.run_id, error)
        context = ErrorContext(
            operation=operation,
            activity_id=self.id,
            run_id=self.run_id,
            attempts=attempts,
            will_retry=will_retry,
        )
        call_safely("on_error", self._on_error, error, context)


def call_safely(name: str, callback: Callable[..., object] | None, *args: Any) -> None:
    """Run a user callback; one that raises is logged and never breaks tracking."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        logger.exception("timeback %s callback raised; tracking goes on", name)


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
