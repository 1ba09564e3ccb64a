"""A running activity: the app's calls, applied at the instant they are made.

`pause`, `resume` and `touch` may be called from any thread: the app's own (a GUI's, a
notebook's) or the event loop's. Each reads the clock where it is called and changes the
activity's `Timekeeper` under the activity's lock, at once; what follows (a window to
send, a callback to run) is handed to the client's `Pipeline` and runs in the loop. The
caller never waits for the loop, the disk or the network. Only `end()` waits, for
delivery, and never past ``flush_timeout``.

The engine's scheduler calls `fire` when a deadline of the activity passes (a heartbeat,
an idle timeout), under the same lock. Each change of the open window (a cut, a pause, a
resume) is told to the outbox as it happens, with the window it cut, in one message.
Nothing under the lock waits, or calls the app's code.

A window's labels are its timeline instants mapped by the clock when it is cut, so they
follow a step of the wall clock (see `_clock`); after a step back they may fall on labels
the run used already. The server dedupes on ``runId + startedAt``, so a window whose start
label the run has used moves, start and end together, to the first unused millisecond
after it (`StartLabels`): its duration, active and paused time stay exact, and it may
overlap its neighbours by that millisecond, as windows after a step back overlap anyway.
Only windows cut here are checked: the open window a crash replays from the outbox keeps
the start its clock gives it, which repeats an earlier start only if a step back lined
the timeline up with the run's earlier windows to the millisecond.
"""

from __future__ import annotations

import array
import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import anyio

from ._clock import Reading
from ._delivery_errors import DeliveryError, UndeliveredError
from ._ledger import Cut
from ._models import Course, ErrorContext, OpenWindow, TimeOptions, Window, body_template
from ._pipeline import Pipeline, call_safely
from ._timekeeper import IDLE, Step, Timekeeper

__all__ = [
    "AsyncActivity",
    "ErrorCallback",
    "FlushCallback",
    "StartLabels",
    "StateCallback",
    "await_delivery",
    "end_in_background",
    "end_now",
]

logger = logging.getLogger("timeback_client")

ErrorCallback = Callable[[DeliveryError, ErrorContext], object]
FlushCallback = Callable[[int], object]
StateCallback = Callable[[], object]


class AsyncActivity:
    """A running activity, created by ``AsyncTimeback.activity.start()``.

    `pause`, `resume` and `touch` are plain calls that never wait (and are safe from any
    thread); `end` is awaited. Use it as ``async with timeback.activity.start(...) as
    activity:`` to end it on exit. Callbacks run in the event loop that runs the client.

    Attributes:
        id (str): the activity's slug, as given to ``start()``.
        name (str): its display name.
        course (Course): its course.
        run_id (str): the run, always a lowercase UUID string: save it to resume the run
            later.
        started_at (datetime): when the activity started (aware, UTC).
        options (TimeOptions): how it tracks time.
    """

    __slots__ = (
        "__weakref__",
        "_clock",
        "_lock",
        "_on_end",
        "_on_error",
        "_on_flush",
        "_on_pause",
        "_on_resume",
        "_pipeline",
        "_problem",
        "_send_time",
        "_starts",
        "_time",
        "course",
        "id",
        "name",
        "options",
        "run_id",
        "schedule_entry",
        "started_at",
        "template",
    )

    def __init__(
        self,
        pipeline: Pipeline,
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
        on_end: Callable[[AsyncActivity], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._clock = pipeline.clock
        self._lock = threading.Lock()
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
        self._on_end = on_end
        self._problem: DeliveryError | None = None
        self._starts = StartLabels()
        self.schedule_entry: list[Any] | None = None
        # The fields every window of the run shares, for the outbox's checkpoints.
        self.template: Final = body_template(id, name, course, self.run_id)

        start = self._clock.read()
        self._time = Timekeeper(
            start,
            interval_ms=_ms(options.heartbeat_interval),
            idle_ms=None if options.idle_timeout is None else _ms(options.idle_timeout),
            abandon_after_ms=_ms(options.abandon_after),
            beats=send_time,
        )
        self.started_at: Final = datetime.fromtimestamp(
            self._clock.wall_ms(start.timeline_ms) / 1000, UTC
        )
        if send_time:
            pipeline.start_run(self.run_id, self, self.template, self._open_window())
        # The caller kicks, once it holds no lock: posted work may run app callbacks.
        pipeline.schedule(self)

    # -- state ------------------------------------------------------------------------

    @property
    def is_paused(self) -> bool:
        """Whether time currently counts as paused (by `pause()` or for idleness)."""
        return self._time.paused_by is not None

    @property
    def is_idle(self) -> bool:
        """Whether the activity paused itself because no `touch()` came in time."""
        return self._time.paused_by == IDLE

    @property
    def is_ended(self) -> bool:
        """Whether `end()` was called."""
        return self._time.ended

    @property
    def elapsed_ms(self) -> int:
        """Active milliseconds in this session so far: sent windows plus the open one."""
        with self._lock:
            return self._time.active_ms(self._clock.read())

    @property
    def delivery_problem(self) -> DeliveryError | None:
        """The last delivery problem of this activity's windows, or None once a window is
        delivered after it (for a status display; `on_error` tells each problem)."""
        return self._problem

    def __repr__(self) -> str:
        state = "ended" if self.is_ended else "paused" if self.is_paused else "active"
        return f"<Activity {self.id!r} run_id={self.run_id} {state} elapsed_ms={self.elapsed_ms}>"

    # -- the app's calls ------------------------------------------------------------------

    def pause(self) -> None:
        """Stop counting active time; the time so far is sent at once. Idempotent; does
        nothing once the activity has ended."""
        self._change(Timekeeper.pause)

    def resume(self) -> None:
        """Count active time again. After a pause longer than ``abandon_after``, tracking
        restarts from a clean slate (the gap is not reported). Does nothing once the
        activity has ended."""
        self._change(Timekeeper.resume)

    def touch(self) -> None:
        """Tell the activity that the student did something (a key, a click, a scroll).

        Resets the idle timer, and resumes an activity that paused itself for idleness
        (not one paused by `pause()`). Does nothing once the activity has ended.
        """
        self._change(Timekeeper.touch)

    async def end(self) -> None:
        """Send the last window and wait (at most ``flush_timeout``) for delivery.

        Never records completion: that is the server's `record()`, with this run_id.
        Calling it again does nothing.
        """
        if self._finish():
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

    def _change(self, transition: Callable[[Timekeeper, Reading], Step]) -> None:
        with self._lock:
            if self._time.ended:
                # Nothing is lost by a late call (a GUI's key or focus handler after the
                # lesson ended): it does nothing, and raises nothing into the app.
                return
            self._apply(transition(self._time, self._clock.read()))
        self._pipeline.kick()

    # -- what the client, the scheduler and the writer call ------------------------------

    def _finish(self) -> bool:
        """End now, at the caller's instant; False if it had ended already."""
        with self._lock:
            if self._time.ended:
                return False
            self._apply(self._time.finish(self._clock.read()))
            if self._send_time:
                self._pipeline.end_run(self.run_id)
            self._pipeline.unschedule(self)
        if self._on_end is not None:
            self._on_end(self)
        self._pipeline.kick()
        return True

    def _cut(self) -> None:
        """Cut the open window at the caller's instant, so the time so far goes now (for
        the client's ``flush()``): the next window starts where this one ends."""
        with self._lock:
            if self._time.ended or not self._send_time:
                return
            self._apply(self._time.cut(self._clock.read()))
        self._pipeline.kick()

    def _end_soon(self) -> None:
        """End now and follow delivery in the background (for a thread that must not wait)."""
        if self._finish():
            self._pipeline.start_soon(self._await_delivery)

    async def _await_delivery(self) -> None:
        if not self._send_time:
            return
        left, held_for = await self._pipeline.settle_run(self.run_id, self.options.flush_timeout)
        if left:
            why = (
                f"held (the backend refuses them: {held_for}); kept, and sent once it is fixed"
                if held_for is not None
                else f"not delivered within flush_timeout={self.options.flush_timeout}s; "
                "still trying until close"
            )
            error = UndeliveredError(
                f"{len(left)} window(s) of run {self.run_id} {why}",
                windows=left,
                retryable=True,
            )
            self._report(error, "flush", attempts=0, will_retry=True)

    def due(self) -> int | None:
        """When the scheduler should call `fire` next (the scheduler's `Scheduled`)."""
        with self._lock:
            return self._time.due()

    def fire(self) -> None:
        """A deadline passed: a heartbeat's window, or an idle pause."""
        with self._lock:
            self._apply(self._time.fire(self._clock.read()))

    def _open_window(self) -> OpenWindow:
        """The open window as of the last change, in timeline ms (see `Ledger.state`):
        the outbox writer maps it to wall ms as it writes, with the offset of the stamp
        it writes beside it, so a step of the wall clock in between counts for nothing."""
        return self._time.ledger.state()

    def _apply(self, step: Step) -> None:
        """Hand on what a transition asks for (under the lock: windows leave in order, and
        each with the open window after it)."""
        pipeline = self._pipeline
        if self._send_time:
            # The ledger changes only in a step that cut, paused or resumed (a pause of an
            # empty window cuts nothing, yet stops the counting).
            if step.cut is not None:
                pipeline.emit(self._window(step.cut), self._open_window())
            elif step.paused or step.resumed:
                pipeline.change(self.run_id, self._open_window())
        if step.paused:
            pipeline.notify("on_pause", self._on_pause)
        if step.resumed:
            pipeline.notify("on_resume", self._on_resume)
            pipeline.schedule(self)

    def _window(self, cut: Cut) -> Window:
        start = self._clock.wall_ms(cut.start_ms)
        # One mapping, not two: another thread's read() may take a new offset between
        # two, and endedAt - startedAt must be the timeline's span to the millisecond.
        end = start + (cut.end_ms - cut.start_ms)
        moved = self._starts.claim(start, end)
        if moved:
            logger.debug(
                "timeback run %s: start label %d used before (the wall clock stepped back); "
                "the window moves %d ms later",
                self.run_id,
                start,
                moved,
            )
        return Window(
            activity_id=self.id,
            name=self.name,
            course=self.course,
            run_id=self.run_id,
            started_at_ms=start + moved,
            ended_at_ms=end + moved,
            elapsed_ms=cut.active_ms,
            paused_ms=cut.paused_ms,
        )

    # -- what the pipeline tells us (RunListener) ----------------------------------------

    def flushed(self, window: Window, *, duplicate: bool) -> None:
        """A window reached the backend (or, with the client disabled, was cut):
        ``on_flush(elapsed_ms)``."""
        self._problem = None
        call_safely("on_flush", self._on_flush, window.elapsed_ms)

    def problem(
        self,
        window: Window,
        error: DeliveryError,
        *,
        attempts: int,
        will_retry: bool,
        operation: str = "heartbeat",
    ) -> None:
        """A delivery problem of the run (a failed attempt, a hold, windows left at a
        flush deadline): log it and tell ``on_error``."""
        self._report(error, operation, attempts=attempts, will_retry=will_retry)

    def _report(
        self, error: DeliveryError, operation: str, *, attempts: int, will_retry: bool
    ) -> None:
        # Told to on_error, a problem is logged only at DEBUG (the app decides what to show);
        # without it, at WARNING, and only once for a window being retried.
        self._problem = error
        retried = operation == "heartbeat" and will_retry and attempts > 1
        quiet = self._on_error is not None or retried
        logger.log(
            logging.DEBUG if quiet else logging.WARNING,
            "timeback %s for run %s: %s",
            operation,
            self.run_id,
            error,
        )
        context = ErrorContext(
            operation=operation,
            activity_id=self.id,
            run_id=self.run_id,
            attempts=attempts,
            will_retry=will_retry,
        )
        call_safely("on_error", self._on_error, error, context)


# -- the blocking face's entry points (`_sync.Activity`) ----------------------------------
# A blocking `end()` is `AsyncActivity.end` in two halves: the end itself, at the caller's
# instant on the caller's thread, and the wait for delivery, in the loop. Named here, so
# the blocking face calls no private method of the async one.


def end_now(activity: AsyncActivity) -> bool:
    """End ``activity`` at the caller's instant, on the caller's thread, without waiting;
    False if it had ended already."""
    return activity._finish()


def end_in_background(activity: AsyncActivity) -> None:
    """End ``activity`` now and follow its delivery as a task of the engine (for a thread
    that must not wait: what is not delivered in time reaches ``on_error``)."""
    activity._end_soon()


async def await_delivery(activity: AsyncActivity) -> None:
    """In the loop: wait (at most ``flush_timeout``) for the ended activity's windows, and
    report those still undelivered, as `AsyncActivity.end` does."""
    await activity._await_delivery()


class StartLabels:
    """The start labels a run has used, so that none is used twice.

    While the wall clock only goes forward, each window starts at or after the latest end
    label, and no earlier start can be met again: only that end is compared. A step back
    brings labels below it, onto starts of windows cut *before* the step, so every start
    is kept, not only those since a step: in an ``array`` of int64, 8 bytes a window and
    one object the garbage collector does not track (a two-hour lesson of 15 s windows
    keeps 4 kB), searched only when a start falls below the latest end.
    """

    __slots__ = ("_latest_end", "_used")

    def __init__(self) -> None:
        self._used = array.array("q")
        self._latest_end: int | None = None

    def claim(self, start: int, end: int) -> int:
        """Record the window ``start..end``; return how many ms it must move later for
        its start to be unused (0 unless the wall clock stepped back)."""
        moved = 0
        if self._latest_end is not None and start < self._latest_end:
            while start + moved in self._used:
                moved += 1
        self._used.append(start + moved)
        if self._latest_end is None or end + moved > self._latest_end:
            self._latest_end = end + moved
        return moved


def _ms(seconds: float) -> int:
    return round(seconds * 1000)
