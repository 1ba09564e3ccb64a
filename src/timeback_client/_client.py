"""`AsyncTimeback`: the client, its activity namespace, and the senders it shares."""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import weakref
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Final

import anyio
import anyio.abc
import httpx

from ._activity import (
    AsyncActivity,
    ErrorCallback,
    FlushCallback,
    StateCallback,
    Tracking,
    call_safely,
)
from ._clock import Clock, system_clock
from ._durability import DurableOutbox, ReplayListener, open_outbox
from ._errors import DeliveryError, LifecycleError, TimebackError, UndeliveredError, ValidationError
from ._models import Course, ErrorContext, TimeOptions, Window, normalize_run_id
from ._outbox import default_outbox_path, identity_of
from ._sender import DEFAULT_SENDER_TASKS, Delivery, DeliveryListener, Endpoint, HeartbeatSender
from ._wire import heartbeat_url

__all__ = ["DEFAULT_OUTBOX", "ActivityNamespace", "AsyncTimeback", "ClientErrorCallback"]

logger = logging.getLogger("timeback_client")

DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)


class _Default(enum.Enum):
    OUTBOX = "the user's cache directory"


DEFAULT_OUTBOX: Final = _Default.OUTBOX
ClientErrorCallback = Callable[[TimebackError, ErrorContext], object]

# One sender per connection pool, shared by every client that uses that pool.
_shared_senders: weakref.WeakKeyDictionary[httpx.AsyncClient, HeartbeatSender] = (
    weakref.WeakKeyDictionary()
)


class ActivityNamespace:
    """``timeback.activity``: start an activity, or find the running one."""

    def __init__(self, client: AsyncTimeback) -> None:
        self._client = client
        self._current: AsyncActivity | None = None

    @property
    def current(self) -> AsyncActivity | None:
        """The running activity, or None."""
        return self._current

    def start(
        self,
        *,
        id: str,  # noqa: A002 - the contract's name for the activity slug
        name: str,
        course: Course | Mapping[str, Any],
        run_id: str | None = None,
        time: bool | TimeOptions = True,
        on_error: ErrorCallback | None = None,
        on_flush: FlushCallback | None = None,
        on_pause: StateCallback | None = None,
        on_resume: StateCallback | None = None,
    ) -> AsyncActivity:
        """Start tracking an activity and return it at once (no network wait).

        Args:
            id: the activity's slug, e.g. ``"lesson-1"``.
            name: its display name, e.g. ``"Fractions"``.
            course: ``{"subject": "Math", "grade": 3}``, ``{"code": "CS-101"}`` or a `Course`.
            run_id: None for a new run (a fresh UUID); the saved ``run_id`` of an earlier
                session to resume that run.
            time: True (default options), False (no heartbeats: the server reports time
                itself), or `TimeOptions`.
            on_error: ``on_error(error, context)`` for each delivery problem.
            on_flush: ``on_flush(elapsed_ms)`` for each window the backend accepted.
            on_pause: called when the activity pauses (by `pause()` or for idleness).
            on_resume: called when it resumes.

        Raises:
            ValidationError: an argument is not acceptable (the message names the fix).
            LifecycleError: another activity is running, or the client is not open.
        """
        _check_text("id", id, '"lesson-1"')
        _check_text("name", name, '"Fractions"')
        checked_course = Course.from_value(course)
        checked_run_id = None if run_id is None else normalize_run_id(run_id)
        options = _time_options(time)
        for label, callback in (
            ("on_error", on_error),
            ("on_flush", on_flush),
            ("on_pause", on_pause),
            ("on_resume", on_resume),
        ):
            if callback is not None and not callable(callback):
                raise ValidationError(label, "is not callable", "Pass a function, or None.")
        if self._current is not None:
            raise LifecycleError(
                f"activity {self._current.id!r} is still running: end() it before starting "
                f"{id!r} (one activity per client at a time)"
            )
        activity = AsyncActivity(
            self._client._tracking(),
            id=id,
            name=name,
            course=checked_course,
            run_id=checked_run_id,
            options=options,
            send_time=time is not False,
            on_error=on_error,
            on_flush=on_flush,
            on_pause=on_pause,
            on_resume=on_resume,
        )
        self._current = activity
        self._client._forget_settled_runs()
        self._client._runs[activity.run_id] = activity
        return activity

    def _ended(self, activity: AsyncActivity) -> None:
        if self._current is activity:
            self._current = None


class AsyncTimeback:
    """The async client. Use it as ``async with AsyncTimeback(base_url) as timeback:``.

    Args:
        base_url: the backend's mount of the Timeback server SDK,
            e.g. ``"https://app.example/api/timeback"``.
        headers: headers sent with every heartbeat (e.g. ``Authorization``).
        cookies: cookies sent with every heartbeat (e.g. the app's session cookie).
        auth: an ``httpx.Auth`` (or anything httpx accepts as ``auth``).
        transport: an httpx async transport, for the client's own connection pool
            (e.g. ``Emulator().transport()`` or ``httpx.MockTransport``).
        http_client: a caller-owned ``httpx.AsyncClient`` (not closed here). Clients that
            share one also share one sender: a few tasks, one queue.
        timeout: the httpx timeout of the client's own connection pool.
        clock: where time comes from (a `VirtualClock` in tests).
        sender_tasks: the most heartbeats in flight at once for the connection pool.
        outbox: the SQLite file that keeps windows until the backend has them, so a crash
            or an hour offline loses nothing (default: in the user's cache directory);
            None keeps them in memory only.
        identity: whose windows these are, for replaying them after a crash only as the
            same student (default: a one-way fingerprint of the credentials).
        on_error: ``on_error(error, context)`` for problems that belong to no running
            activity: windows replayed from earlier sessions, the outbox itself.

    Credentials are passed through to httpx and never logged or stored.
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
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        clock: Clock | None = None,
        sender_tasks: int = DEFAULT_SENDER_TASKS,
        outbox: str | os.PathLike[str] | _Default | None = DEFAULT_OUTBOX,
        identity: str | None = None,
        on_error: ClientErrorCallback | None = None,
    ) -> None:
        if http_client is not None and transport is not None:
            raise ValidationError(
                "transport",
                "cannot be combined with http_client",
                "Set the transport on your httpx.AsyncClient, or pass transport alone.",
            )
        if isinstance(sender_tasks, bool) or not isinstance(sender_tasks, int) or sender_tasks < 1:
            raise ValidationError("sender_tasks", f"{sender_tasks!r} is not >= 1", "Pass e.g. 8.")
        self.base_url = _check_base_url(base_url)
        self.activity = ActivityNamespace(self)
        self._endpoint = Endpoint(
            url=heartbeat_url(self.base_url),
            headers=httpx.Headers(headers or {}),
            cookies=httpx.Cookies(cookies or {}),
            auth=_auth(auth),
        )
        self._http_client = http_client
        self._transport = transport
        self._timeout = timeout
        self._clock = clock or system_clock()
        self._sender_tasks = sender_tasks
        if outbox is DEFAULT_OUTBOX:
            outbox = default_outbox_path()
        self._outbox_path = None if outbox is None else os.fspath(outbox)
        self._identity = identity or identity_of(
            self.base_url, self._endpoint.headers, dict(self._endpoint.cookies)
        )
        self._on_error = on_error
        self._durable: DurableOutbox | None = None
        self._replayed: set[str] = set()
        self._runs: dict[str, AsyncActivity] = {}
        self._sender: HeartbeatSender | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._closed = False

    @property
    def clock(self) -> Clock:
        """The clock activities of this client read."""
        return self._clock

    async def __aenter__(self) -> AsyncTimeback:
        if self._stack is not None or self._closed:
            raise LifecycleError("an AsyncTimeback can be opened only once")
        async with AsyncExitStack() as stack:
            http = self._http_client
            if http is None:
                http = await stack.enter_async_context(
                    httpx.AsyncClient(transport=self._transport, timeout=self._timeout)
                )
                sender = HeartbeatSender(http, self._clock, tasks=self._sender_tasks)
            else:
                sender = _shared_senders.get(http) or HeartbeatSender(
                    http, self._clock, tasks=self._sender_tasks
                )
                _shared_senders[http] = sender
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            sender.attach(self._task_group)
            self._sender = sender
            if self._outbox_path is not None:
                await self._open_outbox(sender, self._task_group)
            self._stack = stack.pop_all()
        return self

    async def _open_outbox(self, sender: HeartbeatSender, task_group: anyio.abc.TaskGroup) -> None:
        assert self._outbox_path is not None
        outbox = await open_outbox(self._outbox_path, backend=self.base_url, report=self._report)
        if outbox is None:
            return
        durable = self._durable = DurableOutbox(
            outbox, identity=self._identity, report=self._report
        )
        for delivery in durable.replay(self._clock, self._endpoint, ReplayListener(self._report)):
            self._replayed.add(delivery.window.run_id)
            sender.submit(delivery)
        if self._replayed:
            logger.info("timeback: replaying windows of %d earlier run(s)", len(self._replayed))
        task_group.start_soon(durable.keep, lambda: self.activity.current)

    def _forget_settled_runs(self) -> None:
        """Drop ended activities with nothing left to deliver (a kiosk runs for months)."""
        sender = self._sender
        for run_id, activity in list(self._runs.items()):
            if activity.is_ended and sender is not None and not sender.undelivered([run_id]):
                del self._runs[run_id]

    def _submit(self, window: Window, listener: DeliveryListener) -> None:
        """A new window: into the outbox first, then to the sender."""
        assert self._sender is not None
        delivery = Delivery(window=window, endpoint=self._endpoint, listener=listener)
        if self._durable is not None:
            self._durable.store(delivery)
        self._sender.submit(delivery)

    def _ended(self, activity: AsyncActivity) -> None:
        self.activity._ended(activity)
        if self._durable is not None:
            self._durable.forget_checkpoint(activity.run_id)

    def _report(self, error: TimebackError, context: ErrorContext | None = None) -> None:
        """A problem that belongs to no running activity: log it and tell ``on_error``."""
        logger.warning("timeback: %s", error)
        if context is None:
            window = error.window if isinstance(error, DeliveryError) else None
            context = ErrorContext(
                operation="replay" if window is not None else "outbox",
                activity_id=window.activity_id if window is not None else "",
                run_id=window.run_id if window is not None else "",
            )
        call_safely("on_error", self._on_error, error, context)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """End the running activity, wait (at most ``flush_timeout``) for every window of
        this client to be delivered, report what was not, and release the client."""
        if self._closed or self._stack is None:
            self._closed = True
            return
        self._closed = True
        sender, task_group, stack = self._sender, self._task_group, self._stack
        assert sender is not None
        assert task_group is not None
        with anyio.CancelScope(shield=True):
            current = self.activity.current
            if current is not None:
                current._finish()
            deadline = max(
                (a.options.flush_timeout for a in self._runs.values()),
                default=TimeOptions().flush_timeout,
            )
            with anyio.move_on_after(deadline):
                await sender.settle([*self._runs, *self._replayed])
            self._report_lost(sender)
            if self._durable is not None:
                self._durable.close()
        # Outside the shield: the task group's scope was entered before it.
        sender.detach(task_group)
        if self._http_client is not None and not sender.clients:
            # The sender holds the pool, so its weak key alone would keep both alive forever.
            _shared_senders.pop(self._http_client, None)
        task_group.cancel_scope.cancel()
        await stack.aclose()

    def _report_lost(self, sender: HeartbeatSender) -> None:
        """Windows still undelivered at close: kept in the outbox for the next start, or
        (without one) lost; either way the app hears of it."""
        kept = self._durable is not None
        by_run: dict[str, list[Delivery]] = {}
        for delivery in sender.discard([*self._runs, *self._replayed]):
            by_run.setdefault(delivery.window.run_id, []).append(delivery)
        for run_id, deliveries in by_run.items():
            on_disk = kept and all(d.row_id is not None for d in deliveries)
            fate = "kept in the outbox for the next start" if on_disk else "lost"
            error = UndeliveredError(
                f"{len(deliveries)} window(s) of run {run_id} were not delivered before "
                f"close: {fate}",
                windows=tuple(d.window for d in deliveries),
            )
            activity = self._runs.get(run_id)
            context = ErrorContext(
                operation="flush",
                activity_id=deliveries[0].window.activity_id,
                run_id=run_id,
                attempts=max(d.attempts for d in deliveries),
                will_retry=on_disk,
            )
            if activity is None:
                self._report(error, context)
            else:
                logger.warning("timeback close: %s (%d active ms)", error, error.active_ms)
                call_safely("on_error", activity._on_error, error, context)

    def update_credentials(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | httpx.Cookies | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        """Replace the credentials sent with heartbeats (after the app re-authenticates).

        Windows held back by a 401 are sent again with the new credentials.
        """
        if headers is not None:
            self._endpoint.headers = httpx.Headers(headers)
        if cookies is not None:
            self._endpoint.cookies = httpx.Cookies(cookies)
        if auth is not None:
            self._endpoint.auth = _auth(auth)
        self._endpoint.version += 1
        if self._sender is not None:
            self._sender.release_held(self._endpoint)

    def _tracking(self) -> Tracking:
        if self._closed:
            raise LifecycleError("this AsyncTimeback is closed; make a new one")
        if self._task_group is None or self._sender is None:
            raise LifecycleError(
                "AsyncTimeback is not open: use `async with AsyncTimeback(...) as timeback:`"
            )
        return Tracking(
            clock=self._clock,
            sender=self._sender,
            submit=self._submit,
            task_group=self._task_group,
            on_end=self._ended,
        )


def _check_text(field: str, value: object, example: str) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            field, f"{value!r} is not a non-empty string", f"Pass e.g. {example}."
        )


def _time_options(time: bool | TimeOptions) -> TimeOptions:
    if isinstance(time, TimeOptions):
        return time
    if time is True or time is False:
        return TimeOptions()
    raise ValidationError(
        "time", f"{time!r} is not True, False or TimeOptions", "Pass TimeOptions(...) to tune."
    )


def _auth(auth: httpx.Auth | tuple[str, str] | None) -> httpx.Auth | None:
    if auth is None or isinstance(auth, httpx.Auth):
        return auth
    if isinstance(auth, tuple) and len(auth) == 2:
        return httpx.BasicAuth(*auth)
    raise ValidationError("auth", f"{type(auth).__name__} is not an httpx.Auth", "Pass httpx.Auth.")


def _check_base_url(base_url: object) -> str:
    fix = 'Pass the backend mount, e.g. "https://app.example/api/timeback".'
    if not isinstance(base_url, str):
        raise ValidationError("base_url", f"{base_url!r} is not a URL", fix)
    try:
        url = httpx.URL(base_url)
    except httpx.InvalidURL as exc:
        raise ValidationError("base_url", f"{base_url!r} is not a URL ({exc})", fix) from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise ValidationError("base_url", f"{base_url!r} is not an absolute http(s) URL", fix)
    if url.query or url.fragment:
        raise ValidationError("base_url", "has a query or fragment", fix)
    if url.scheme == "http" and not _is_loopback(url.host):
        logger.warning(
            "timeback base_url %s is plain http: credentials would cross the network "
            "unencrypted; use https",
            url.host,
        )
    return base_url.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
