"""The route of a client's windows, in one place:

```
activity --cut--> Window --emit()--> outbox owner (stored as it is sent)
                                 \\--> sender --POST--> backend
                                                          |
            sending / delivered / failed / held <--answer-/
             |--> outbox owner (maybe received; forgotten once final; held: never received)
             \\--> activity: flushed (on_flush) / problem (on_error)
```

Each client owns one `Pipeline`, and it is the one door between the client's activities
and the engine. An activity hands it every window it cuts (`emit`, from whatever thread
changed the activity, under the activity's lock, never waiting) and asks it for the rest
by name: its deadlines (`schedule`, `unschedule`), its callbacks (`notify`), its delivery
(`settle_run`); the client retries held windows (`retry_held`), takes new credentials
(`credentials_changed`) and hands work to the loop (`call_soon`, `start_soon`). Nobody
else touches the engine's scheduler or sender.

The pipeline stores each window with the outbox owner and queues it with the engine's
sender. The sender reports each attempt's outcome back here, and only here, in its own
words (`_sender.DeliveryListener`): the pipeline passes each to the outbox owner, which
alone decides what it means for the file, and tells the activity that owns the run in
the app's words (`RunListener`: ``flushed`` and ``problem``, its ``on_flush`` and
``on_error``). Windows left by earlier sessions come back from the outbox once the writer
has read them (the client's start never waits for that) and take the same route,
reported to the client's ``on_error``.

A disabled client (``enabled=False``) has a pipeline that sends and stores nothing: it has
no outbox, hands no window to the sender, and answers each window itself, in the loop,
as it is cut (the activity's ``on_flush``), so an app behaves as it would in production.
"""

from __future__ import annotations

import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, Protocol

import anyio
import anyio.abc

from ._clock import Clock
from ._delivery_errors import DeliveryError, DuplicateRiskError, ResponseError, UndeliveredError
from ._errors import TimebackError
from ._models import ErrorContext, OpenWindow, Window
from ._outbox import StoredWindow
from ._scheduler import Scheduled, Scheduler
from ._sender import Delivery, Endpoint, HeartbeatSender
from ._writer import (
    OutboxOwner,
    OutboxStatistics,
    outbox_writer,
    release_writer,
)

__all__ = ["Pipeline", "RunListener", "call_safely"]

logger = logging.getLogger("timeback_client")

ClientReport = Callable[[TimebackError, ErrorContext | None], None]


class RunListener(Protocol):
    """What the pipeline tells the activity that owns a run, in the app's words: what its
    ``on_flush`` and ``on_error`` hear. (The sender's words, `_sender.DeliveryListener`,
    are the pipeline's and the outbox owner's: delivered, failed, held.)"""

    def flushed(self, window: Window, *, duplicate: bool) -> None:
        """The window is done: the backend has it (or, with the client disabled, it was
        cut); ``on_flush``."""

    def problem(
        self,
        window: Window,
        error: DeliveryError,
        *,
        attempts: int,
        will_retry: bool,
        operation: str = "heartbeat",
    ) -> None:
        """An attempt failed or the backend holds the window (``operation="heartbeat"``),
        or windows were left undelivered at close (``"flush"``): ``on_error``;
        ``will_retry`` says whether the SDK tries again."""


class Pipeline:
    """One client's route from activity to backend and back.

    Args:
        scheduler: the engine's scheduler (the loop, for work from other threads).
        sender: the engine's sender.
        task_group: the engine's task group (for waits that outlive a call).
        endpoint: where, and as whom, this client sends.
        backend: the client's base URL (whose windows the outbox keeps apart).
        identity: whose windows these are (the outbox replays them only to the same).
        outbox: the outbox file, or None to keep windows in memory only.
        report: tells the client's ``on_error`` of a problem that belongs to no activity.
        explicit_identity: whether the app named the identity (see `OutboxOwner`).
        enabled: False: send and store nothing (``outbox`` is then ignored); each window
            is answered here, as it is cut.
    """

    __slots__ = (
        "_claim",
        "_closed",
        "_listeners",
        "_owner",
        "_replayed",
        "_report",
        "_scheduler",
        "_sender",
        "_task_group",
        "backend",
        "enabled",
        "endpoint",
        "identity",
    )

    def __init__(
        self,
        *,
        scheduler: Scheduler,
        sender: HeartbeatSender,
        task_group: anyio.abc.TaskGroup,
        endpoint: Endpoint,
        backend: str,
        identity: str,
        outbox: str | None,
        report: ClientReport,
        explicit_identity: bool = False,
        enabled: bool = True,
    ) -> None:
        self._scheduler = scheduler
        self.enabled = enabled
        self._sender = sender
        self._task_group = task_group
        self.endpoint = endpoint
        self.backend = backend
        self.identity = identity
        self._report = report
        self._listeners: dict[str, RunListener] = {}
        self._replayed: set[str] | None = None  # made when a replay comes
        self._closed = False
        self._owner: OutboxOwner | None = None
        self._claim: concurrent.futures.Future[list[StoredWindow]] | None = None
        if outbox is not None and enabled:
            self._owner = OutboxOwner(
                outbox_writer(outbox),
                backend=backend,
                identity=identity,
                report=self._report_soon,
                explicit_identity=explicit_identity,
            )
            # What earlier sessions left comes back when the writer has read it, on its own
            # thread: opening a client never waits for the disk (a sign-in on a GUI thread).
            self._claim = self._owner.claim()
            self._claim.add_done_callback(
                lambda future: self.call_soon(self._replay, future.result())
            )

    @property
    def clock(self) -> Clock:
        """The clock every activity of this client reads (the engine's)."""
        return self._scheduler.clock

    def outbox_statistics(self) -> OutboxStatistics | None:
        """The outbox writer's snapshot, or None without an outbox."""
        return None if self._owner is None else self._owner.writer.statistics()

    @property
    def runs(self) -> list[str]:
        """Runs whose windows this client sent or replayed."""
        return [*self._listeners, *(self._replayed or ())]

    # -- activities -------------------------------------------------------------------

    def start_run(
        self, run_id: str, listener: RunListener, template: bytes, state: OpenWindow
    ) -> None:
        """A new activity: its outcomes go to ``listener``; its open window, from ``state``
        on, is kept in the outbox with ``template`` (its id, name, course and runId)."""
        self._listeners[run_id] = listener
        if self._owner is not None:
            self._owner.watch(run_id, template, self.clock, state)

    def change(self, run_id: str, state: OpenWindow) -> None:
        """The run's open window changed without a cut (under the activity's lock)."""
        if self._owner is not None:
            self._owner.change(run_id, state)

    def end_run(self, run_id: str) -> None:
        """The run's activity ended (call it after emitting its last window)."""
        if self._owner is not None:
            self._owner.unwatch(run_id)

    def emit(self, window: Window, state: OpenWindow) -> None:
        """A window just cut, and its run's open window after it: store both (together),
        and queue the window for sending.

        Called under the activity's lock, from any thread; never waits.
        """
        if not self.enabled:
            self._scheduler.post(self._answer_locally, window)
            return
        delivery = Delivery(window=window, endpoint=self.endpoint, listener=self)
        if self._owner is not None:
            self._owner.store(
                window.key,
                window.ended_at_ms,
                window.elapsed_ms,
                delivery.body,
                state,
            )
        self._scheduler.post(self._sender.submit, delivery)

    def schedule(self, activity: Scheduled) -> None:
        """Drive ``activity``'s deadlines (its `due`) from the engine's scheduler, from
        now on or anew after a change. Called under the activity's lock: posted, it runs
        at the next `kick`."""
        self._scheduler.post(self._scheduler.update, activity)

    def unschedule(self, activity: Scheduled) -> None:
        """Stop driving ``activity``'s deadlines (it ended). Posted, as `schedule` is."""
        self._scheduler.post(self._scheduler.remove, activity)

    def notify(self, name: str, callback: Callable[..., object] | None, *args: Any) -> None:
        """Run an app callback (``on_pause``, ``on_resume``) in the loop, after the windows
        emitted before it, contained by `call_safely`. Posted, as `schedule` is."""
        self._scheduler.post(call_safely, name, callback, *args)

    def kick(self) -> None:
        """Run what was handed over (`emit`, `schedule`, `notify` ...): now in the loop's
        thread, soon from any other. Called once the caller holds no lock: what runs may
        call the app's code."""
        self._scheduler.kick()

    def call_soon(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` in the loop, after what was handed over before it, and wake
        the loop for it: the one way for a caller that holds no lock, on any thread."""
        self._scheduler.post(func, *args)
        self._scheduler.kick()

    def start_soon(self, func: Callable[[], Coroutine[Any, Any, object]]) -> None:
        """Run ``func()`` as a task of the engine (a wait that outlives its caller), from
        any thread, without waiting for the loop."""
        self.call_soon(self._task_group.start_soon, func)

    def undelivered(self) -> tuple[Window, ...]:
        """The windows of this client that the backend does not have yet, oldest first per
        run. A copy, safe to take from any thread."""
        return tuple(d.window for d in self._sender.undelivered(self.runs))

    def forget_settled(self, keep: Iterable[str] = ()) -> None:
        """Let go of ended runs with nothing left to deliver (a kiosk runs for months),
        soon, in the loop; from any thread."""
        self.call_soon(self._forget_settled, tuple(keep))

    def _forget_settled(self, keep: Iterable[str]) -> None:
        kept = set(keep)
        for run_id in list(self._listeners):
            if run_id not in kept and not self._sender.undelivered([run_id]):
                del self._listeners[run_id]

    async def settle_run(
        self, run_id: str, seconds: float
    ) -> tuple[tuple[Window, ...], str | None]:
        """Wait (at most ``seconds``, shielded) for the run's windows to be delivered,
        refused for good or held. Returns the windows still undelivered, and the cause
        they are held for (None: not held, only not answered yet)."""
        with anyio.move_on_after(seconds, shield=True):
            await self._sender.settle([run_id])
        left = tuple(d.window for d in self._sender.undelivered([run_id]))
        held = self._sender.held([run_id]) if left else []
        return left, held[0][0].cause if held else None

    def retry_held(self) -> None:
        """Try the held windows of this client's endpoint again now, not at their next slow
        retry (a flush after the operator's fix delivers them). In the loop."""
        self._sender.retry_held(self.endpoint)

    def credentials_changed(self) -> None:
        """The endpoint's credentials were replaced: windows held back for want of them go
        again, with the new ones. From any thread."""
        self.call_soon(self._sender.release_held, self.endpoint)

    # -- outcomes (the sender's DeliveryListener; in the loop) -------------------------

    def sending(self, delivery: Delivery) -> None:
        """The window's first attempt: the outbox marks it as possibly received."""
        if self._owner is not None:
            self._owner.sending(delivery.window.key)

    def delivered(self, delivery: Delivery, *, duplicate: bool) -> None:
        """The backend has the window: the outbox forgets it, its activity hears of it."""
        window = delivery.window
        if self._owner is not None:
            self._owner.delivered(window.key)
        listener = self._listeners.get(window.run_id)
        if listener is not None:
            listener.flushed(window, duplicate=duplicate)
        else:
            logger.info(
                "timeback: replayed window of run %s (%d active ms) delivered%s",
                window.run_id,
                window.elapsed_ms,
                " (the backend already had it)" if duplicate else "",
            )

    def failed(self, delivery: Delivery, error: DeliveryError, *, will_retry: bool) -> None:
        """An attempt failed: a final failure is forgotten by the outbox (every window of
        an `UndeliveredError`); the activity (or, for a replayed window, the client) hears
        of it."""
        window = delivery.window
        if self._owner is not None:
            self._owner.failed(window, error, will_retry=will_retry)
        listener = self._listeners.get(window.run_id)
        if listener is not None:
            listener.problem(window, error, attempts=delivery.attempts, will_retry=will_retry)
            return
        # A replayed window: retries are reported once, at the first failure; a possible
        # double count always is.
        if not will_retry or delivery.attempts <= 1 or isinstance(error, DuplicateRiskError):
            self._report(error, None)

    def held(self, delivery: Delivery, error: ResponseError, *, report: bool) -> None:
        """The backend refused the window, which waits for a fix: the outbox keeps it as
        never received (a replay is no double count); the activity (or, for a replayed
        window, the client) hears of the cause once."""
        window = delivery.window
        if self._owner is not None:
            self._owner.held(window.key)
        if not report:
            return
        listener = self._listeners.get(window.run_id)
        if listener is not None:
            listener.problem(window, error, attempts=delivery.attempts, will_retry=True)
        else:
            self._report(error, None)

    def held_windows(self) -> list[tuple[str, str, bool, int, tuple[Window, ...]]]:
        """This client's held runs: ``(cause, message, credentials, since (timeline ms),
        windows)`` each. Safe to take from any thread."""
        return [
            (hold.cause, str(hold.error), hold.credentials, hold.since_ms, windows)
            for hold, windows in self._sender.held(self.runs)
        ]

    def _answer_locally(self, window: Window) -> None:
        """A disabled client's window: nothing to send it to, so its activity hears of it
        at once (``on_flush``), as it would once a backend had it."""
        logger.debug(
            "timeback window %s+%d of run %s: not sent (the client is disabled)",
            window.started_at,
            window.ended_at_ms - window.started_at_ms,
            window.run_id,
        )
        listener = self._listeners.get(window.run_id)
        if listener is not None:
            listener.flushed(window, duplicate=False)

    # -- flushing, opening and closing -----------------------------------------------------------

    def _replay(self, stored: list[StoredWindow]) -> None:
        """What earlier processes left for this backend and identity, sent again with the
        exact bytes first written: sent-but-unanswered windows first."""
        # The claim has answered: its future (a condition, locks, bound methods: about ten
        # objects the garbage collector walks) need not live as long as the client.
        self._claim = None
        if self._closed:
            return
        now = self.clock.read().timeline_ms
        for row in stored:
            try:
                window = Window.from_json(json.loads(row.body))
            except (ValueError, KeyError, TypeError, TimebackError):
                self._report(
                    TimebackError(f"dropped an unreadable stored window (row {row.row_id})"), None
                )
                if self._owner is not None:
                    self._owner.settled((row.run_id, row.started_at_ms))
                continue
            delivery = Delivery(window=window, endpoint=self.endpoint, listener=self, body=row.body)
            if row.sent_at is not None:
                # Sent by an earlier process and never answered: the server may have it.
                age_ms = max(0, round((time.time() - row.sent_at) * 1000))
                delivery.unanswered_since_ms = now - age_ms
            if self._replayed is None:
                self._replayed = set()
            self._replayed.add(window.run_id)
            self._sender.submit(delivery)
        if stored:
            logger.info(
                "timeback: replaying %d window(s) of %d earlier run(s)",
                len(stored),
                len({row.run_id for row in stored}),
            )

    async def close(self, deadline: float) -> None:
        """Wait (until ``deadline``, in ``anyio.current_time()``) for every window of this
        client to be delivered, report what was not, and leave the outbox, whose file
        keeps what is left for the next start."""
        if self._closed:
            return
        with anyio.CancelScope(shield=True):
            with anyio.CancelScope(deadline=deadline):
                if self._claim is not None:
                    await self._scheduler.wait_for(self._claim)
                    self._claim = None
                self._scheduler.kick()  # the replay, if it was just posted
                await self._sender.settle(self.runs)
            self._closed = True
            self._report_undelivered()
            owner, self._owner = self._owner, None
            if owner is not None:
                left = owner.leave()
                stopped = release_writer(owner.writer)
                # The last writes of this client: waited for a moment even past the
                # deadline, since what they hold is what the next start replays.
                with anyio.CancelScope(deadline=max(deadline, anyio.current_time() + 1.0)):
                    await self._scheduler.wait_for(left)
                    if stopped is not None:
                        await self._scheduler.wait_for(stopped)

    async def flush(self, deadline: float) -> tuple[Window, ...]:
        """Wait (until ``deadline``, in ``anyio.current_time()``) for every window of this
        client so far, replays included, to be delivered, refused for good, or held (for
        new credentials, or the backend's fix); and, if some are left, for the outbox to
        have them on disk (a sleep or a power cut may follow). The client goes on as before.

        Returns the windows still undelivered (the sender keeps trying them).
        """
        if self._closed:
            return ()
        # Asked first, since a server that is down takes the whole wait: the writer
        # commits what it was told (every window cut so far) in the meantime.
        written = None if self._owner is None else self._owner.writer.flush()
        with anyio.CancelScope(deadline=deadline):
            if self._claim is not None:
                await self._scheduler.wait_for(self._claim)
            self._scheduler.kick()  # the replay, and windows posted from other threads
            await self._sender.settle(self.runs)
        left = self.undelivered()
        if left and written is not None:
            # Asked again: what the answers since told the writer (a refused window is
            # never sent after all) is on disk too.
            written = self._owner.writer.flush() if self._owner is not None else written
            with anyio.CancelScope(deadline=deadline):
                await self._scheduler.wait_for(written)
        return left

    def _report_undelivered(self) -> None:
        """Windows still undelivered at close: kept in the outbox for the next start, or
        (without one) lost; either way the app hears of it."""
        kept = self._owner is not None
        causes = {windows[0].run_id: hold.cause for hold, windows in self._sender.held(self.runs)}
        by_run: dict[str, list[Delivery]] = {}
        for delivery in self._sender.discard(self.runs):
            by_run.setdefault(delivery.window.run_id, []).append(delivery)
        for run_id, deliveries in by_run.items():
            fate = "kept in the outbox for the next start" if kept else "lost"
            cause = causes.get(run_id)
            why = "" if cause is None else f" (held: the backend refuses them, {cause})"
            error = UndeliveredError(
                f"{len(deliveries)} window(s) of run {run_id} "
                f"({sum(d.window.elapsed_ms for d in deliveries)} active ms) were not delivered "
                f"before close{why}: {fate}",
                windows=tuple(d.window for d in deliveries),
            )
            context = ErrorContext(
                operation="flush",
                activity_id=deliveries[0].window.activity_id,
                run_id=run_id,
                attempts=max(d.attempts for d in deliveries),
                will_retry=kept,
            )
            listener = self._listeners.get(run_id)
            if listener is None:
                self._report(error, context)
            else:
                listener.problem(
                    deliveries[0].window,
                    error,
                    attempts=context.attempts,
                    will_retry=kept,
                    operation="flush",
                )

    # -- internals --------------------------------------------------------------------

    def _report_soon(self, error: TimebackError) -> None:
        # From the writer's thread: the client's on_error runs in the loop.
        self.call_soon(self._report, error, None)


def call_safely(name: str, callback: Callable[..., object] | None, *args: Any) -> None:
    """Run a user callback; one that raises is logged and never breaks tracking."""
    if callback is None:
        return
    try:
        callback(*args)
    except Exception:
        logger.exception("timeback %s callback raised; tracking goes on", name)
