"""The scheduler: the one task of an engine's event loop that drives every activity's
deadlines, and runs the work that other threads hand to the loop.

**Deadlines.** Each activity says when it next has something to do (`Scheduled.due`: a
heartbeat, an idle timeout); the scheduler keeps one heap of those instants for every
activity of the loop and sleeps until the earliest, so a thousand activities cost one
sleeping task, not a thousand. A deadline that moves later (a `touch`) changes nothing: its
entry comes up early and is pushed again; one that moves *earlier* (a resume) replaces the
entry, which is marked removed (the ``heapq`` documentation's recipe) and wakes the
scheduler; an ended activity's entry is marked removed, so the heap never holds it.

**Work from other threads.** An app's thread (a GUI's, a notebook's) changes an activity
under the activity's own lock, at the instant it reads, and never waits for the loop: what
follows from the change (a window to send, a callback to run) is `post`-ed here, in order,
and the loop is woken without waiting, through the loop's own thread-safe hand-off
(`LoopDoor`: asyncio's ``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``).
Called from the loop's own thread, `kick` runs the posted work at once, so async callers
see its effects before their call returns.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

import anyio
import anyio.abc

from ._clock import Clock

__all__ = ["LoopDoor", "Scheduled", "Scheduler"]

logger = logging.getLogger("timeback_client")

T = TypeVar("T")


class Scheduled(Protocol):
    """Something with deadlines: an activity, as the scheduler sees it."""

    #: Its heap entry, ``[due, order, item or None once removed]`` (the scheduler's own).
    schedule_entry: list[Any] | None

    def due(self) -> int | None:
        """The next timeline instant at which `fire` has work, or None."""
        ...

    def fire(self) -> None:
        """A deadline passed: do what is due (it reads the clock itself)."""
        ...


class LoopDoor:
    """Hands a function to one event loop's thread, from any thread, without waiting.

    Made on the loop's thread (`here`). `call_soon` is the loop's own thread-safe hand-off:
    asyncio's ``loop.call_soon_threadsafe`` or trio's ``TrioToken.run_sync_soon``, the two
    loops anyio runs on. Once that loop is gone it raises `RuntimeError` (asyncio's "Event
    loop is closed"; trio's ``RunFinishedError`` is one).
    """

    __slots__ = ("call_soon",)

    def __init__(self, call_soon: Callable[[Callable[[], object]], object]) -> None:
        self.call_soon = call_soon

    @classmethod
    def here(cls) -> LoopDoor:
        """The door of the event loop running in this thread."""
        try:
            return cls(asyncio.get_running_loop().call_soon_threadsafe)
        except RuntimeError:
            pass  # no asyncio loop runs here: under anyio, this thread runs trio's
        import trio  # only a trio run gets here: trio is the app's, not a dependency

        return cls(trio.lowlevel.current_trio_token().run_sync_soon)


class Scheduler:
    """Deadlines and cross-thread work for one event loop.

    Run it with ``await task_group.start(scheduler.run)``; until then (and after it stops)
    posted work waits, and `kick` from another thread does nothing.

    Args:
        clock: the clock that deadlines are instants of.
    """

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._heap: list[list[Any]] = []  # [due, order, Scheduled | None]
        self._order = itertools.count()
        self._inbox: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._door: LoopDoor | None = None
        self._thread_id: int | None = None
        self._sleep: anyio.CancelScope | None = None
        self._wake_posted = False
        self._draining = False
        self.fired = 0

    @property
    def in_loop(self) -> bool:
        """Whether the caller runs on this scheduler's event loop thread."""
        return threading.get_ident() == self._thread_id

    @property
    def scheduled(self) -> int:
        """Heap entries, removed ones included (they leave as their instant passes)."""
        return len(self._heap)

    @property
    def posted(self) -> int:
        """Work posted and not run yet."""
        return len(self._inbox)

    # -- the task -----------------------------------------------------------------------

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run deadlines and posted work until cancelled."""
        self._door = LoopDoor.here()
        self._thread_id = threading.get_ident()
        task_status.started()
        try:
            while True:
                self._sleep = None
                self._drain()
                self._fire_due()
                self._drain()
                with anyio.CancelScope() as self._sleep:
                    # Set before looking: a wake-up posted from now on cancels this scope.
                    if self._inbox:
                        continue
                    due = self._heap[0][0] if self._heap else None
                    if due is None:
                        await anyio.sleep_forever()
                    else:
                        await self.clock.sleep_until(due)
        finally:
            self._sleep = None
            self._door = None

    def _fire_due(self) -> None:
        now_ms = self.clock.read().timeline_ms
        heap = self._heap
        while heap and heap[0][0] <= now_ms:
            entry = heapq.heappop(heap)
            item: Scheduled | None = entry[2]
            if item is None:
                continue  # removed: superseded by an earlier deadline, or ended
            item.schedule_entry = None
            self.fired += 1
            try:
                item.fire()
            except Exception:
                # A defect must not stop every other activity's heartbeats.
                logger.exception("timeback: an activity's deadline raised; tracking goes on")
            # The popped entry carries the next deadline: no new object per heartbeat
            # (a list that lives an interval would end up in the collector's old generation).
            self.update(item, reuse=entry)

    # -- deadlines ----------------------------------------------------------------------

    def update(self, item: Scheduled, *, reuse: list[Any] | None = None) -> None:
        """Look at ``item``'s deadline again (in the loop): after a start or a resume.

        A later deadline needs nothing (the old entry comes up early and is pushed again);
        an earlier one pushes a new entry and wakes the sleeping task. ``reuse``: a popped
        entry of the item's to push again.
        """
        due = item.due()
        if due is None:
            return
        entry = item.schedule_entry
        if entry is not None:
            if entry[0] <= due:
                return
            entry[2] = None
        if reuse is not None:
            reuse[0], reuse[1], reuse[2] = due, next(self._order), item
            entry = reuse
        else:
            entry = [due, next(self._order), item]
        item.schedule_entry = entry
        heapq.heappush(self._heap, entry)
        if self._sleep is not None and self._heap[0] is entry:
            self._sleep.cancel()

    def remove(self, item: Scheduled) -> None:
        """Forget ``item``'s deadline (in the loop): it ended."""
        entry, item.schedule_entry = item.schedule_entry, None
        if entry is not None:
            entry[2] = None

    # -- work from any thread -----------------------------------------------------------

    def post(self, func: Callable[..., object], *args: Any) -> None:
        """Queue ``func(*args)`` to run in the loop, after what was posted before.

        Never waits; safe from any thread, also while holding an activity's lock. Call
        `kick` once the lock is released.
        """
        self._inbox.append((func, args))

    def kick(self) -> None:
        """Run posted work: at once on the loop's thread, else soon (never waiting)."""
        if self.in_loop:
            self._drain()
            return
        door = self._door
        if self._wake_posted or door is None:
            return
        self._wake_posted = True
        try:
            door.call_soon(self._wake)
        except RuntimeError:
            self._wake_posted = False  # the loop is gone: nothing will run the work

    def _wake(self) -> None:
        # Runs in the loop thread, outside any task: only cancels the sleep.
        self._wake_posted = False
        if self._sleep is not None:
            self._sleep.cancel()

    def _drain(self) -> None:
        if self._draining:
            return  # posted from a callback of the drain in progress: it runs there
        self._draining = True
        try:
            inbox = self._inbox
            while inbox:
                func, args = inbox.popleft()
                try:
                    func(*args)
                except Exception:
                    logger.exception("timeback: background work raised; tracking goes on")
        finally:
            self._draining = False

    @staticmethod
    async def wait_for(future: concurrent.futures.Future[T]) -> T:
        """Wait in the loop, without blocking it, for a result from another thread."""
        door = LoopDoor.here()
        done = anyio.Event()

        def woken(_: object) -> None:
            # If the loop is gone, nobody waits any more.
            with contextlib.suppress(RuntimeError):
                door.call_soon(done.set)

        future.add_done_callback(woken)
        await done.wait()
        return future.result()
