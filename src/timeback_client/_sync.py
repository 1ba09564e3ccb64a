"""`Timeback`: the blocking face of `AsyncTimeback`, for GUI threads, notebooks and scripts.

The async client runs in the SDK's event loop, a background thread that every blocking
client of the process shares (`_loop`), through anyio's blocking portal, so there is one
implementation. `start`, `pause`, `resume` and
`touch` act on the calling thread, at its instant, and hand the rest to that loop without
waiting for it; only `end()`, `flush()` and `close()` wait, and never longer than their
timeout (``end(wait=False)`` does not wait at all).
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import ParamSpec, TypeVar

import anyio.from_thread
import httpx

from ._activity import (
    AsyncActivity,
    ErrorCallback,
    FlushCallback,
    StateCallback,
    await_delivery,
    end_in_background,
    end_now,
)
from ._client import (
    DEFAULT_OUTBOX,
    AsyncTimeback,
    ClientErrorCallback,
    Statistics,
    Undelivered,
    _Default,
    deliver_soon,
    start_flush,
    undelivered_now,
)
from ._clock import Clock
from ._delivery_errors import DeliveryError
from ._errors import LifecycleError, ValidationError
from ._loop import SdkLoop, sdk_loop
from ._models import Course, CourseFields, TimeOptions
from ._sender import DEFAULT_HOLD_FOR

__all__ = ["Activity", "SyncActivityNamespace", "Timeback"]

P = ParamSpec("P")
T = TypeVar("T")

logger = logging.getLogger("timeback_client")


class Activity:
    """A running activity (blocking API). Thread-safe: call it from any thread.

    `pause`, `resume` and `touch` take effect at the instant of the call, on the calling
    thread, and return at once: they never wait for the SDK's thread, the disk or the
    network. Only `end()` waits, at most ``flush_timeout``.

    Attributes:
        id: the activity's slug, as given to ``start()``.
        name: its display name.
        course: its course.
        run_id: the run, always a lowercase UUID string: save it to resume the run later.
        started_at: when the activity started (aware, UTC).
        options: how it tracks time.
    """

    def __init__(self, loop: SdkLoop, activity: AsyncActivity, client: Timeback) -> None:
        self._loop = loop
        self._activity = activity
        # A running activity keeps its client alive, as a running thread does.
        self._client = client
        self.id: str = activity.id
        self.name: str = activity.name
        self.course: Course = activity.course
        self.run_id: str = activity.run_id
        self.started_at: datetime = activity.started_at
        self.options: TimeOptions = activity.options

    @property
    def is_paused(self) -> bool:
        """Whether time currently counts as paused (by `pause()` or for idleness)."""
        return self._activity.is_paused

    @property
    def is_idle(self) -> bool:
        """Whether the activity paused itself for lack of `touch()`."""
        return self._activity.is_idle

    @property
    def is_ended(self) -> bool:
        """Whether `end()` was called."""
        return self._activity.is_ended

    @property
    def elapsed_ms(self) -> int:
        """Active milliseconds in this session so far."""
        return self._activity.elapsed_ms

    @property
    def delivery_problem(self) -> DeliveryError | None:
        """The last delivery problem of this activity's windows, or None once a window is
        delivered after it (for a status display; `on_error` tells each problem)."""
        return self._activity.delivery_problem

    def pause(self) -> None:
        """Stop counting active time; returns at once."""
        self._loop.check_process()
        self._activity.pause()

    def resume(self) -> None:
        """Count active time again; returns at once."""
        self._loop.check_process()
        self._activity.resume()

    def touch(self) -> None:
        """Record user input (resets the idle timer); returns at once."""
        self._loop.check_process()
        self._activity.touch()

    def end(self, *, wait: bool = True) -> None:
        """Send the last window; never records completion. Idempotent.

        The activity ends at the instant of the call, on the calling thread.

        Args:
            wait: wait (at most ``flush_timeout``) for delivery. A GUI thread passes
                False: delivery goes on in the background, and `Timeback.close()` waits.
        """
        self._loop.check_process()
        if not wait:
            end_in_background(self._activity)
            return
        if self._loop.in_loop:
            self._loop.wait(self._activity.end)  # raises: a callback cannot wait
        if end_now(self._activity):
            self._loop.wait(functools.partial(await_delivery, self._activity))

    def __enter__(self) -> Activity:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end()

    def __repr__(self) -> str:
        return repr(self._activity)


class SyncActivityNamespace:
    """``timeback.activity``: start an activity, or find the running one."""

    def __init__(self, timeback: Timeback) -> None:
        self._timeback = timeback
        self._wrapped: Activity | None = None

    @property
    def current(self) -> Activity | None:
        """The running activity, or None."""
        runtime = self._timeback._runtime()
        current = runtime.client.activity.current
        if current is None:
            return None
        wrapped = self._wrapped
        if wrapped is None or wrapped._activity is not current:
            wrapped = self._wrapped = Activity(runtime.loop, current, self._timeback)
        return wrapped

    def start(
        self,
        *,
        id: str,  # noqa: A002 - the contract's name for the activity slug
        name: str,
        course: Course | CourseFields,
        run_id: str | uuid.UUID | None = None,
        time: bool | TimeOptions = True,
        on_error: ErrorCallback | None = None,
        on_flush: FlushCallback | None = None,
        on_pause: StateCallback | None = None,
        on_resume: StateCallback | None = None,
    ) -> Activity:
        """Start tracking an activity; see `AsyncTimeback.activity.start` for the arguments.

        It starts at the instant of the call and returns at once. Callbacks run on the
        SDK's background thread: a GUI hands them to its own thread (Tk:
        ``root.after(0, ...)``; Qt: a queued signal).
        """
        runtime = self._timeback._open_runtime()
        started = runtime.client.activity.start(
            id=id,
            name=name,
            course=course,
            run_id=run_id,
            time=time,
            on_error=on_error,
            on_flush=on_flush,
            on_pause=on_pause,
            on_resume=on_resume,
        )
        self._wrapped = Activity(runtime.loop, started, self._timeback)
        return self._wrapped


class _Runtime:
    """The async client, open in the process's SDK loop (`_loop.sdk_loop`)."""

    def __init__(self, make_client: Callable[[], AsyncTimeback], backend: str) -> None:
        # Validate before reaching for the loop, so bad arguments leave nothing behind.
        self.client = make_client()
        self.loop = sdk_loop(backend)
        # Opening waits for the loop to take the client, never for the disk or the network
        # (the outbox writer joins and replays on its own thread).
        self._client_cm: AbstractContextManager[AsyncTimeback] = (
            self.loop.portal.wrap_async_context_manager(self.client)
        )
        self._client_cm.__enter__()

    def close(self) -> None:
        self._client_cm.__exit__(None, None, None)


# Open clients, closed (with their flush deadline) if the interpreter exits without close().
# Held strongly, as running threads are: an open client is never garbage collected (its
# finalizer would have to wait for its loop thread, on whatever thread collects it).
_open_clients: set[Timeback] = set()


@atexit.register
def _close_open_clients() -> None:
    for client in list(_open_clients):
        if client._pid == os.getpid():
            client.close()


class Timeback:
    """The blocking client, for desktop apps, notebooks and scripts.

    Takes the same arguments as `AsyncTimeback`, plus ``backend`` (``"asyncio"`` or
    ``"trio"``) for its background event loop. Use it as ``with Timeback(...) as timeback:``
    or call `close()`; an interpreter exit closes it too, within its flush deadline.

    After ``os.fork()`` the child never touches the parent's loop thread or connections: its
    first call builds a new loop and client there (a caller-owned ``http_client`` cannot be
    rebuilt: make a new `Timeback` in the child instead).
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | httpx.Cookies | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
        clock: Clock | None = None,
        sender_tasks: int | None = None,
        outbox: str | os.PathLike[str] | _Default | None = DEFAULT_OUTBOX,
        identity: str | None = None,
        on_error: ClientErrorCallback | None = None,
        hold_for: float | timedelta = DEFAULT_HOLD_FOR,
        enabled: bool | None = None,
        backend: str = "asyncio",
    ) -> None:
        if backend not in ("asyncio", "trio"):
            raise ValidationError(
                "backend", f"{backend!r} is not an event loop", 'Pass "asyncio" or "trio".'
            )
        self._make_client = functools.partial(
            AsyncTimeback,
            base_url,
            headers=headers,
            cookies=cookies,
            auth=auth,
            transport=transport,
            http_client=http_client,
            timeout=timeout,
            clock=clock,
            sender_tasks=sender_tasks,
            outbox=outbox,
            identity=identity,
            on_error=on_error,
            hold_for=hold_for,
            enabled=enabled,
        )
        self._backend = backend
        self._shared_pool = http_client is not None
        self._current_runtime = _Runtime(self._make_client, backend)
        self._pid = os.getpid()
        self.base_url = self._current_runtime.client.base_url
        self._lock = threading.Lock()
        self._closed = False
        self.activity = SyncActivityNamespace(self)
        _open_clients.add(self)

    def _runtime(self) -> _Runtime:
        if self._pid != os.getpid():
            self._rebuild_after_fork()
        return self._current_runtime

    def _open_runtime(self) -> _Runtime:
        """The runtime, for a call that needs the client open."""
        runtime = self._runtime()
        if self._closed:
            raise LifecycleError("this Timeback is closed; make a new one")
        return runtime

    def _rebuild_after_fork(self) -> None:
        if self._shared_pool:
            raise LifecycleError(
                "this Timeback uses an http_client of the parent process (before fork()); "
                "make a new Timeback in the child"
            )
        # The lock may have been held by another thread at fork(): the child gets a new one.
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._closed = False
        self._current_runtime = _Runtime(self._make_client, self._backend)
        _open_clients.add(self)

    @property
    def enabled(self) -> bool:
        """Whether the client sends and stores windows (see ``enabled=`` of `AsyncTimeback`)."""
        return self._current_runtime.client.enabled

    def statistics(self) -> Statistics:
        """A snapshot of the client's queues and outbox (see `AsyncTimeback.statistics`)."""
        return self._open_runtime().client.statistics()

    def flush(self, timeout: float | None = None) -> Undelivered:
        """Deliver what is pending now, without ending the activity: before a logout, a
        sleep or a lesson switch (see `AsyncTimeback.flush`).

        The running activity's time so far is cut at the instant of the call, on the
        calling thread; then the call waits for delivery, at most ``timeout`` seconds
        (give or take a quarter of a second for the answer to cross threads), even if an
        SDK callback is blocking the SDK's thread. Never raises for a network failure.

        Args:
            timeout: the most seconds to wait (0: do not wait); None: the activity's
                ``flush_timeout``.

        Returns:
            What is still undelivered (empty, and falsy, when everything was delivered).

        Raises:
            ValidationError: ``timeout`` is not a number of seconds >= 0.
            LifecycleError: the client is closed, or the call comes from an SDK callback
                (which runs on the thread it would wait for).
        """
        runtime = self._open_runtime()
        loop, client = runtime.loop, runtime.client
        loop.check_process()
        if loop.in_loop:
            raise LifecycleError(
                "flush() cannot run inside an SDK callback (it waits for the callback's own "
                "thread); call it from the app's thread"
            )
        deadline = start_flush(client, timeout)
        return loop.wait_until(
            deadline,
            functools.partial(deliver_soon, client, deadline),
            functools.partial(undelivered_now, client),
        )

    @property
    def portal(self) -> anyio.from_thread.BlockingPortal:
        """The portal into the client's event loop (to drive a `VirtualClock` in tests)."""
        return self._runtime().loop.portal

    def update_credentials(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | httpx.Cookies | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        """Replace the credentials; windows held back by a 401 are sent again. Returns at
        once."""
        self._open_runtime().client.update_credentials(headers=headers, cookies=cookies, auth=auth)

    def close(self) -> None:
        """End the running activity, wait (at most ``flush_timeout``) for delivery, and
        release the client (the SDK's loop thread, shared by the process's blocking clients,
        stays for the next one until the interpreter exits). Idempotent."""
        runtime = self._runtime()
        if runtime.loop.in_loop:
            raise LifecycleError(
                "close() cannot run inside an SDK callback (it waits for the callback's own "
                "thread); call it from the app's thread"
            )
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _open_clients.discard(self)
        runtime.close()

    def __enter__(self) -> Timeback:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
