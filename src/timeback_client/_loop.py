"""The SDK's event loop for blocking clients: one thread per process and event-loop
backend, shared by every `Timeback` of the process.

A `Timeback` runs its `AsyncTimeback` in this loop through anyio's blocking portal. The
first blocking client of a process starts the loop; it then lives until the interpreter
exits (after every open client was closed), so the next student's sign-in on a kiosk
starts no thread and no event loop: it hands its client to a loop that is already there.
One loop serves any number of clients, as one `Engine` serves many activities.

The thread is the SDK's own (a daemon, so a process that exits without closing a client
is not held by it), started and, at exit, stopped and joined here. After ``fork()`` the
child starts a loop of its own when a client first needs one: the parent's thread does
not exist there.

An SDK callback (``on_flush``, ``on_error``...) runs on this thread: one that blocks
delays every client of the process, as it always delayed its own client's heartbeats.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any, Final, TypeVar

import anyio
from anyio.from_thread import BlockingPortal

from ._errors import LifecycleError

__all__ = ["SdkLoop", "sdk_loop"]

T = TypeVar("T")

logger = logging.getLogger("timeback_client")

# How long past its deadline a waiting thread gives the loop's answer to arrive.
ANSWER_GRACE: Final = 0.25
# At interpreter exit, the longest wait for the loop to stop once its clients are closed.
STOP_TIMEOUT: Final = 5.0


class SdkLoop:
    """An event loop in a thread of its own, and ways to reach it from any other thread.

    Get the process's one with `sdk_loop`.

    Args:
        backend: ``"asyncio"`` or ``"trio"``.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.pid = os.getpid()
        self.stopped = False
        ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name=f"timeback-client loop ({backend})", daemon=True
        )
        self._thread.start()
        self.portal = ready.result()
        assert self._thread.ident is not None
        self.thread_id: int = self._thread.ident

    def _run(self, ready: concurrent.futures.Future[BlockingPortal]) -> None:
        async def serve() -> None:
            async with BlockingPortal() as portal:
                ready.set_result(portal)
                await portal.sleep_until_stopped()

        try:
            anyio.run(serve, backend=self.backend)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:  # pragma: no cover - a defect: the loop ended while clients used it
                logger.exception("timeback: the SDK's event loop stopped")

    def check_process(self) -> None:
        """Refuse a call in a child process of the loop's (after ``fork()``)."""
        if os.getpid() != self.pid:
            # After fork() the loop thread exists only in the parent: its activities are
            # the parent's.
            raise LifecycleError(
                "this activity belongs to the parent process (before fork()); in the child, "
                "start a new one from the Timeback client, which rebuilds itself there"
            )

    @property
    def in_loop(self) -> bool:
        """Whether the caller runs on the loop's thread (in an SDK callback)."""
        return threading.get_ident() == self.thread_id

    def wait(self, func: Callable[[], Any]) -> Any:
        """Run a coroutine function in the loop and wait for it."""
        self.check_process()
        if self.in_loop:
            raise LifecycleError(
                "this call waits for the network and cannot run inside an SDK callback; "
                "use end(wait=False) there"
            )
        if self.stopped:
            return None
        return self.portal.call(func)

    def wait_until(
        self,
        deadline: float,
        start: Callable[[], concurrent.futures.Future[T]],
        fallback: Callable[[], T],
    ) -> T:
        """Start work in the loop (``start()`` must not wait for the loop) and wait for
        its answer, but never much past ``deadline`` (``time.monotonic()``): if the loop
        cannot answer by then (an app's SDK callback blocks it), ``fallback()`` answers.

        Not the portal: handing it a task waits for the loop to take it.
        """
        self.check_process()
        future = start()
        try:
            return future.result(timeout=max(0.0, deadline - time.monotonic()) + ANSWER_GRACE)
        except concurrent.futures.TimeoutError:
            logger.warning(
                "timeback: the SDK's thread did not answer in time (an SDK callback may be "
                "blocking it); answering from what is known"
            )
            return fallback()

    def stop(self) -> None:
        """Stop the loop (its clients closed) and join its thread, at most `STOP_TIMEOUT`."""
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(RuntimeError):  # the loop is gone already
            self.portal.call(self.portal.stop, True)
        self._thread.join(STOP_TIMEOUT)


_lock = threading.Lock()
_loops: dict[tuple[int, str], SdkLoop] = {}


def sdk_loop(backend: str) -> SdkLoop:
    """The SDK's loop of this process for ``backend``, started if it is not running."""
    key = (os.getpid(), backend)
    with _lock:
        loop = _loops.get(key)
        if loop is None or loop.stopped:
            loop = _loops[key] = SdkLoop(backend)
        return loop


# Registered on import, before `_sync` registers the closing of open clients: atexit runs
# the latest first, so every client is closed before its loop stops.
@atexit.register
def _stop_loops() -> None:
    with _lock:
        loops = [loop for (pid, _), loop in _loops.items() if pid == os.getpid()]
        _loops.clear()
    for loop in loops:
        loop.stop()
