"""`AsyncTimeback`: the client, its activity namespace, and the pipeline it owns."""

from __future__ import annotations

import concurrent.futures
import datetime
import enum
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Final

import anyio
import attrs
import httpx

from ._activity import AsyncActivity, ErrorCallback, FlushCallback, StateCallback, end_now
from ._clock import Clock
from ._delivery_errors import DeliveryError
from ._engine import DEFAULT_TIMEOUT, Engine, EngineStatistics
from ._errors import LifecycleError, TimebackError, ValidationError
from ._models import (
    Course,
    CourseFields,
    ErrorContext,
    TimeOptions,
    Window,
    normalize_run_id,
)
from ._options import (
    DISABLED_ENV,
    check_base_url,
    check_outbox_file,
    check_text,
    hold_for_ms,
    identity_of,
    is_enabled,
    time_options,
    valid_auth,
    valid_cookies,
    valid_headers,
)
from ._outbox_home import default_outbox_path
from ._pipeline import Pipeline, call_safely
from ._sender import DEFAULT_HOLD_FOR, Endpoint, header_pairs
from ._wire import heartbeat_url, short_reason
from ._writer import OutboxStatistics

__all__ = [
    "DEFAULT_OUTBOX",
    "DEFAULT_TIMEOUT",
    "ActivityNamespace",
    "AsyncTimeback",
    "ClientErrorCallback",
    "HeldWindows",
    "Statistics",
    "Undelivered",
    "deliver_soon",
    "start_flush",
    "undelivered_now",
]

logger = logging.getLogger("timeback_client")


class _Default(enum.Enum):
    OUTBOX = "the user's state directory"


DEFAULT_OUTBOX: Final = _Default.OUTBOX
ClientErrorCallback = Callable[[TimebackError, ErrorContext], object]


@attrs.frozen(kw_only=True)
class HeldWindows:
    """Windows of a client that the backend refuses for one cause someone can fix, and
    that wait for that fix (`Statistics.held`).

    Attributes:
        cause: the backend's code: ``"MISSING_SYNCED_COURSE_ID"``, ``"UNKNOWN_COURSE"``,
            ``"AMBIGUOUS_COURSE_SELECTOR"``, ``"MISSING_SENSOR"``,
            ``"USER_RESOLUTION_FAILED"``, or ``"UNAUTHORIZED"`` (a 401, which waits for
            ``update_credentials()``).
        reason: a few words for a status line, e.g. ``"course not synced"``.
        message: the backend's last refusal, with its own fix, e.g. ``"503
            MISSING_SYNCED_COURSE_ID: ... Run `timeback resources push` first."``.
        windows: how many windows wait.
        active_ms: the active milliseconds they carry.
        since: when the first of them was refused (aware, UTC).
        credentials: True when they wait for the app's new credentials (a 401), False
            when they wait for the backend's operator (tried again every few minutes).
    """

    cause: str
    reason: str
    message: str
    windows: int
    active_ms: int
    since: datetime.datetime
    credentials: bool = False


@attrs.frozen(kw_only=True)
class Statistics:
    """A snapshot of a client, as ``statistics()`` gives it.

    Attributes:
        engine: the engine's queues and work (shared with its other clients, if any).
        outbox: the outbox writer's (shared by every client of the process on the same
            file), or None for ``outbox=None`` and for a disabled client.
        enabled: False for a disabled client, which sends and stores nothing.
        held: this client's windows that the backend refuses until someone fixes what it
            names, one entry per cause, oldest first; empty while nothing is held. What an
            app shows as "Not saving: course not synced".
    """

    engine: EngineStatistics
    outbox: OutboxStatistics | None
    enabled: bool = True
    held: tuple[HeldWindows, ...] = ()


@attrs.frozen(kw_only=True)
class Undelivered:
    """What ``flush()`` could not deliver before its timeout: falsy when it delivered all.

    The SDK goes on trying these windows (they are in the outbox, if the client has one):
    those held for the backend's fix every few minutes (`Statistics.held` says why), and
    those held for new credentials after a 401 once ``update_credentials()`` gives them.
    Windows the backend refused for good are not here: they were reported to
    ``on_error``.

    Attributes:
        windows: the windows still undelivered, oldest first per run.
    """

    windows: tuple[Window, ...] = ()

    @property
    def active_ms(self) -> int:
        """The active milliseconds they carry (for a "3 minutes waiting to send")."""
        return sum(window.elapsed_ms for window in self.windows)

    def __len__(self) -> int:
        return len(self.windows)


class ActivityNamespace:
    """``timeback.activity``: start an activity, or find the running one."""

    __slots__ = ("_client", "_current", "_lock", "flush_timeout")

    def __init__(self, client: AsyncTimeback) -> None:
        self._client = client
        self._current: AsyncActivity | None = None
        self._lock = threading.Lock()
        # The latest activity's: how long close() waits for delivery.
        self.flush_timeout = TimeOptions().flush_timeout

    @property
    def current(self) -> AsyncActivity | None:
        """The running activity, or None."""
        return self._current

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
            on_flush: ``on_flush(elapsed_ms)`` for each window the backend accepted (for
                a disabled client, each window as it is cut: there is no backend).
            on_pause: called when the activity pauses (by `pause()` or for idleness).
            on_resume: called when it resumes.

        Raises:
            ValidationError: an argument is not acceptable (the message names the fix).
            LifecycleError: another activity is running, or the client is not open.
        """
        check_text("id", id, '"lesson-1"')
        check_text("name", name, '"Fractions"')
        checked_course = Course.from_value(course)
        checked_run_id = None if run_id is None else normalize_run_id(run_id)
        options = time_options(time)
        for label, callback in (
            ("on_error", on_error),
            ("on_flush", on_flush),
            ("on_pause", on_pause),
            ("on_resume", on_resume),
        ):
            if callback is not None and not callable(callback):
                raise ValidationError(label, "is not callable", "Pass a function, or None.")
        with self._lock:
            pipeline = self._client._running_pipeline()
            if self._current is not None:
                raise LifecycleError(
                    f"activity {self._current.id!r} is still running: end() it before "
                    f"starting {id!r} (one activity per client at a time)"
                )
            activity = self._current = AsyncActivity(
                pipeline,
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
                on_end=self._ended,
            )
            self.flush_timeout = options.flush_timeout
        pipeline.forget_settled(keep=(activity.run_id,))
        return activity

    def _ended(self, activity: AsyncActivity) -> None:
        with self._lock:
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
        engine: an open `Engine` to share with other clients (many students in one
            process); by default the client makes one of its own from the next five
            arguments, which are then the engine's and cannot be combined with ``engine``.
        transport: an httpx async transport, for the client's own connection pool
            (e.g. ``Emulator().transport()`` or ``httpx.MockTransport``).
        http_client: a caller-owned ``httpx.AsyncClient`` (not closed here).
        timeout: the httpx timeout of the client's own connection pool.
        clock: where time comes from (a `VirtualClock` in tests).
        sender_tasks: the most heartbeats in flight at once.
        outbox: the SQLite file that keeps windows until the backend has them, so a crash
            or an hour offline loses nothing (default: ``timeback-client/outbox.sqlite3``
            in the user's state directory: ``$XDG_STATE_HOME`` or ``~/.local/state`` on
            Linux, ``~/Library/Application Support`` on macOS, ``%LOCALAPPDATA%`` on
            Windows); None keeps them in memory only.
        identity: a stable id of the student (e.g. your user id): windows left by a crash
            are replayed only to the same identity. The default, a one-way fingerprint of
            the credentials, changes when a token is refreshed, so a kiosk whose tokens
            expire should pass it.
        on_error: ``on_error(error, context)`` for problems that belong to no running
            activity: windows replayed from earlier sessions, the outbox itself.
        hold_for: how long a window the backend refuses for a reason its operator can
            fix (a course not synced or not in its config, a student not in its roster,
            a misconfiguration) is kept, in seconds or a ``timedelta`` (default: 7 days).
            Held windows are tried again every few minutes and at each client start;
            past this age (from the window's end) they are dropped and reported
            (`HoldExpiredError`).
        enabled: False: send and store nothing (for developers' runs and an app's CI);
            activities, callbacks, totals and the clock work as usual, ``on_flush`` is
            called for each window as it is cut, and no outbox file is opened or made.
            None (the default): enabled unless the environment variable
            ``TIMEBACK_DISABLED`` is a yes (``1``, ``true``, ``yes``, ``on``; case does
            not matter). An explicit True or False wins over the variable.

    Credentials are passed through to httpx and never logged or stored.

    Raises:
        ValidationError: an argument, or ``TIMEBACK_DISABLED``, is not acceptable.
    """

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | httpx.Cookies | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        engine: Engine | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        http_client: httpx.AsyncClient | None = None,
        timeout: httpx.Timeout | float | None = None,
        clock: Clock | None = None,
        sender_tasks: int | None = None,
        outbox: str | os.PathLike[str] | _Default | None = DEFAULT_OUTBOX,
        identity: str | None = None,
        on_error: ClientErrorCallback | None = None,
        hold_for: float | datetime.timedelta = DEFAULT_HOLD_FOR,
        enabled: bool | None = None,
    ) -> None:
        self.base_url = check_base_url(base_url)
        hold_ms = hold_for_ms(hold_for)
        self._enabled = is_enabled(enabled)
        if engine is not None:
            if not isinstance(engine, Engine):
                raise ValidationError("engine", f"{engine!r} is not an Engine", "Pass Engine().")
            for field, value in (
                ("transport", transport),
                ("http_client", http_client),
                ("timeout", timeout),
                ("clock", clock),
                ("sender_tasks", sender_tasks),
            ):
                if value is not None:
                    raise ValidationError(
                        field,
                        "is a setting of the engine, which this client shares",
                        f"Pass {field}= to Engine(...) instead.",
                    )
            self._engine, self._own_engine = engine, False
        else:
            self._engine = Engine(
                http_client=http_client,
                transport=transport,
                timeout=timeout,
                clock=clock,
                sender_tasks=sender_tasks,
            )
            self._own_engine = True
        self.activity = ActivityNamespace(self)
        self._endpoint = Endpoint(
            url=heartbeat_url(self.base_url),
            headers=valid_headers({} if headers is None else headers),
            cookies=None if cookies is None else valid_cookies(cookies),
            auth=valid_auth(auth),
            hold_for_ms=hold_ms,
        )
        if not self._enabled:
            outbox = None  # nothing is stored: not even the default place is looked up
            logger.info(
                "timeback: disabled (%s): nothing is sent or stored",
                "enabled=False" if enabled is False else DISABLED_ENV,
            )
        elif outbox is DEFAULT_OUTBOX:
            outbox = default_outbox_path()
        else:
            check_outbox_file(outbox)
        self._outbox_path = None if outbox is None else os.fspath(outbox)
        if identity is not None:
            check_text("identity", identity, '"student-42"')
        self._explicit_identity = identity is not None
        self._identity = identity or identity_of(
            self.base_url, httpx.Headers(self._endpoint.headers), dict(self._endpoint.cookies or {})
        )
        self._on_error = on_error
        self._pipeline: Pipeline | None = None
        self._state = "new"

    @property
    def clock(self) -> Clock:
        """The clock activities of this client read (its engine's)."""
        return self._engine.clock

    @property
    def enabled(self) -> bool:
        """Whether the client sends and stores windows (see ``enabled=``)."""
        return self._enabled

    @property
    def engine(self) -> Engine:
        """The engine this client runs on (its own, or the one it was given)."""
        return self._engine

    def statistics(self) -> Statistics:
        """A snapshot of the engine's queues and of the outbox (while the client is open).

        A disabled client has no outbox (``outbox`` is None) and says ``enabled=False``;
        it adds nothing to its engine's queues or attempts.
        """
        pipeline = self._running_pipeline()
        return Statistics(
            engine=self._engine.statistics(),
            outbox=pipeline.outbox_statistics(),
            enabled=self._enabled,
            held=self._held(pipeline),
        )

    def _held(self, pipeline: Pipeline) -> tuple[HeldWindows, ...]:
        by_cause: dict[tuple[str, bool], list[tuple[str, int, tuple[Window, ...]]]] = {}
        for cause, message, credentials, since_ms, windows in pipeline.held_windows():
            by_cause.setdefault((cause, credentials), []).append((message, since_ms, windows))
        held = []
        for (cause, credentials), runs in by_cause.items():
            first = min(runs, key=lambda run: run[1])
            latest = max(runs, key=lambda run: run[1])
            since_ms = self.clock.wall_ms(first[1])
            held.append(
                HeldWindows(
                    cause=cause,
                    reason=short_reason(cause),
                    message=latest[0],
                    windows=sum(len(run[2]) for run in runs),
                    active_ms=sum(w.elapsed_ms for run in runs for w in run[2]),
                    since=datetime.datetime.fromtimestamp(since_ms / 1000, datetime.UTC),
                    credentials=credentials,
                )
            )
        return tuple(sorted(held, key=lambda h: h.since))

    async def __aenter__(self) -> AsyncTimeback:
        if self._state != "new":
            raise LifecycleError("an AsyncTimeback can be opened only once")
        self._state = "opening"
        engine = self._engine
        if self._own_engine:
            await engine.__aenter__()
        elif not engine.is_running:
            self._state = "closed"
            raise LifecycleError(
                "the engine is not open: enter `async with Engine() as engine:` first"
            )
        self._pipeline = Pipeline(
            scheduler=engine.scheduler,
            sender=engine.sender,
            task_group=engine.task_group,
            endpoint=self._endpoint,
            backend=self.base_url,
            identity=self._identity,
            outbox=self._outbox_path,
            report=self._report,
            explicit_identity=self._explicit_identity,
            enabled=self._enabled,
        )
        self._state = "open"
        return self

    def _running_pipeline(self) -> Pipeline:
        if self._state == "closed":
            raise LifecycleError("this AsyncTimeback is closed; make a new one")
        if self._state != "open" or self._pipeline is None:
            raise LifecycleError(
                "AsyncTimeback is not open: use `async with AsyncTimeback(...) as timeback:`"
            )
        return self._pipeline

    def _report(self, error: TimebackError, context: ErrorContext | None = None) -> None:
        """A problem that belongs to no running activity: tell ``on_error``, or without
        one, the log (a problem the app is told of is logged only at DEBUG)."""
        level = logging.WARNING if self._on_error is None else logging.DEBUG
        logger.log(level, "timeback: %s", error)
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
        if self._state != "open":
            self._state = "closed"
            return
        self._state = "closed"
        pipeline = self._pipeline
        assert pipeline is not None
        try:
            with anyio.CancelScope(shield=True):
                current = self.activity.current
                if current is not None:
                    end_now(current)
                await pipeline.close(anyio.current_time() + self.activity.flush_timeout)
        finally:
            # Outside the shield: the engine's task group was entered before it.
            if self._own_engine:
                await self._engine.aclose()

    # A timeout argument, not the caller's cancel scope: a cancelled flush could not say
    # what it left undelivered, and the answer is the point.
    async def flush(self, timeout: float | None = None) -> Undelivered:  # noqa: ASYNC109
        """Deliver what is pending now, without ending the activity: before a logout, a
        sleep or a lesson switch.

        The running activity's time so far is cut into a window at the instant of the
        call (the next window starts where it ends: nothing is counted twice), then
        `flush` waits until every window of this client is delivered, or ``timeout``
        passes. Windows held for the backend's fix (`Statistics.held`) are tried again at
        once, not at their next slow retry: after the operator's fix, a `flush` delivers
        them. Windows left undelivered are on disk in the outbox by then, if the timeout
        allows. It never raises for a network failure: it returns what is undelivered,
        and the SDK goes on trying.

        Args:
            timeout: the most seconds to wait (0: cut, and do not wait); None: the
                running (or latest) activity's ``flush_timeout``.

        Returns:
            What is still undelivered (empty, and falsy, when everything was delivered).

        Raises:
            ValidationError: ``timeout`` is not a number of seconds >= 0.
            LifecycleError: the client is not open.
        """
        return await self._deliver(start_flush(self, timeout))

    def _flush_seconds(self, timeout: object) -> float:
        if timeout is None:
            return self.activity.flush_timeout
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout < 0
        ):
            raise ValidationError(
                "timeout",
                f"{timeout!r} is not a number of seconds >= 0",
                "Pass e.g. 5.0, or None for the activity's flush_timeout.",
            )
        return float(timeout)

    def _cut(self) -> None:
        """Cut the running activity's open window at the caller's instant, on its thread."""
        self._running_pipeline()
        current = self.activity.current
        if current is not None:
            current._cut()

    async def _deliver(self, deadline: float) -> Undelivered:
        """The second half of `flush`, in the loop: wait until ``deadline``
        (``time.monotonic()``) for delivery."""
        pipeline = self._running_pipeline()
        pipeline.retry_held()
        remaining = max(0.0, deadline - time.monotonic())
        return Undelivered(windows=await pipeline.flush(anyio.current_time() + remaining))

    def _deliver_soon(self, deadline: float) -> concurrent.futures.Future[Undelivered]:
        """`_deliver`, started from any thread without waiting for the loop (which an
        app's callback may be blocking): the answer comes in the future."""
        pipeline = self._running_pipeline()
        future: concurrent.futures.Future[Undelivered] = concurrent.futures.Future()

        async def deliver() -> None:
            try:
                answer = await self._deliver(deadline)
            except Exception as exc:  # closed meanwhile: the caller's, not the engine's
                future.set_exception(exc)
            except BaseException:
                future.set_result(self._undelivered())  # the engine is closing
                raise
            else:
                future.set_result(answer)

        pipeline.start_soon(deliver)
        return future

    def _undelivered(self) -> Undelivered:
        """What is undelivered now (from any thread; for a flush whose wait was cut short)."""
        pipeline = self._pipeline
        return Undelivered(windows=() if pipeline is None else pipeline.undelivered())

    def update_credentials(
        self,
        *,
        headers: Mapping[str, str] | None = None,
        cookies: dict[str, str] | httpx.Cookies | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
    ) -> None:
        """Replace the credentials sent with heartbeats (after the app re-authenticates).

        Windows held back by a 401 are sent again with the new credentials. Safe to call
        from any thread; returns at once.
        """
        checked_headers = None if headers is None else valid_headers(headers)
        checked_cookies = None if cookies is None else valid_cookies(cookies)
        checked_auth = None if auth is None else valid_auth(auth)
        if checked_headers is not None:
            self._endpoint.headers = header_pairs(checked_headers)
        if cookies is not None:
            self._endpoint.cookies = checked_cookies
        if checked_auth is not None:
            self._endpoint.auth = checked_auth
        self._endpoint.version += 1
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.credentials_changed()


# -- the blocking face's entry points (`_sync.Timeback`) ------------------------------------
# A blocking `flush()` is `AsyncTimeback.flush` in two halves: the cut, at the caller's
# instant on the caller's thread, and the wait for delivery, started in the loop without
# waiting for it (an app's callback may be blocking the loop). Named here, so the blocking
# face calls no private method of the async one.


def start_flush(client: AsyncTimeback, timeout: float | None) -> float:
    """Check ``timeout`` and cut the running activity's window now: the first half of a
    flush. Returns the deadline, in ``time.monotonic()`` seconds.

    Raises:
        ValidationError: ``timeout`` is not a number of seconds >= 0.
        LifecycleError: the client is not open.
    """
    deadline = time.monotonic() + client._flush_seconds(timeout)
    client._cut()
    return deadline


def deliver_soon(client: AsyncTimeback, deadline: float) -> concurrent.futures.Future[Undelivered]:
    """The second half of a flush, started from any thread without waiting for the loop:
    what is still undelivered at ``deadline`` comes in the future."""
    return client._deliver_soon(deadline)


def undelivered_now(client: AsyncTimeback) -> Undelivered:
    """What is undelivered now, from any thread (for a flush whose wait was cut short)."""
    return client._undelivered()
