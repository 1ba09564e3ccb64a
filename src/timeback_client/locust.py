"""Simulated students as Locust users: load tests on Locust's master and workers.

``pip install 'timeback-client[locust]'``, then in a locustfile::

    from timeback_client.locust import StudentUser

    class Student(StudentUser):
        pass

and run it as any locustfile (``--timeback-token``, ``--timeback-interval`` and
``--timeback-report`` are added to Locust's command line; workers get them from the
master). Importing this module imports Locust, which monkey-patches the process for
gevent: import it only in a locustfile.

Each `StudentUser` is one student of ``timeback-client simulate``: the same plan of steps
(`timeback_client.tools.students.student_plan`: arrive, work, pause, go idle, leave, come
back to the saved runId, sometimes complete through the server's ``record()``), carried
out with the SDK's own `AsyncTimeback` and `AsyncActivity`, so the windows are the SDK's
time accounting and wire bytes, and their delivery (the retry policy, the bounded
sender) is what apps do. Every heartbeat request is a Locust request named
``heartbeat``: its latency, and, when it fails, a `HeartbeatFailed` naming the status and
the backend's error code (``409 USER_RESOLUTION_FAILED``, ``no answer: ConnectTimeout``).

**How gevent and anyio meet.** Locust runs users as greenlets on gevent's hub, and
monkey-patches the process (sockets, ``select``, ``threading``) so that blocking code
yields to the hub. The SDK runs on anyio, and no anyio backend runs on gevent's hub. So
each Locust process (a worker, or a local run) hosts one asyncio event loop in a real OS
thread (started with the thread primitives gevent saved before patching), holding one
`Engine`, one connection pool and every student's `AsyncTimeback`: exactly what
``simulate`` runs in its one process. Asyncio, not trio: gevent removes ``select.epoll``,
which trio needs, while asyncio's default selector under the patch is gevent's own, which
in the SDK's thread runs a second gevent hub of that thread (so the loop's name lookups
and sockets keep working, cooperatively, in that thread). An asyncio loop on the epoll
selector that gevent saved measured no cheaper (per httpx request in a patched process,
both about 1.5 times an unpatched one: the sockets asyncio makes there are gevent's
whichever the selector), and would need an executor of real threads for name lookups.

The SDK's objects live in that thread only. A greenlet never calls them: it hands each
step of its plan to the loop (``call_soon_threadsafe``), which starts, touches, pauses,
resumes or ends the student's activity there. A touch thus reads the clock when the loop
runs it, microseconds after the greenlet decided; the plan's instants are random anyway,
and what is measured (each activity's own ``elapsed_ms``) is read in the same thread that
cuts the windows. The alternative, greenlets calling the activities from the hub's thread
as an app's GUI thread does, would take the SDK's locks from two threads, and gevent makes
``threading.Lock`` a gevent lock, whose use across threads takes a slower and more
intricate path. A greenlet waits only for what it needs (the runId after a start, the end
of a session), through an ``AsyncResult`` that the hub sets.

What comes back (a request's outcome, a result a greenlet waits for) goes through one
queue that the loop thread fills and wakes the hub for with gevent's thread-safe async
watcher; the hub empties it and fires Locust's ``request`` event there, so Locust's
statistics are only ever touched on the hub, as Locust expects.

The cost, measured (``benchmarks/run.py --only locust``: 1,000 students at the default
15 s interval, a Locust worker and ``simulate``'s engine side by side at the same load, on
a shared and loaded 2-core machine): a worker spends about 1.5 times the CPU per heartbeat
of ``simulate`` (2.6 ms against 1.8 ms: gevent's socket wrappers in the SDK's thread, the
hand-over of every step, the greenlets, and Locust's own statistics). One worker process,
which is one core, thus drives about 5,000 students at 15 s (5,700 with the core fully
busy; Locust warns from 90%), where ``simulate`` drives 8,500.

**At the end of a test** the students stop: each ends its activity and closes its client,
which sends its last window and waits (at most ``flush_timeout``) for delivery. The master
asks every worker to stop its students and waits for each worker's runs (they come with
the worker's last statistics, over ``report_to_master``, so Locust's figures include every
last heartbeat); then it writes ``--timeback-report`` and, against the emulator, compares
each run's measured active time with what the emulator recorded, prints the verdict (with
the most common heartbeat failures, if any) and sets a non-zero exit code on a mismatch, or
when no student started a run. Bad ``--timeback-*`` options are refused when Locust starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import sys
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Final, TypeVar

import anyio
import attrs
import gevent
import gevent.event
import gevent.pool
import httpx
from gevent import monkey
from locust import User, events, task
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from ._activity import AsyncActivity
from ._client import AsyncTimeback
from ._delivery_errors import DeliveryError
from ._engine import DEFAULT_TIMEOUT, Engine
from ._errors import ValidationError
from ._models import ErrorContext, TimeOptions
from .tools._report import identity_note
from .tools.students import (
    BUILTIN_LESSONS,
    Behaviour,
    Catalogue,
    Complete,
    Credential,
    End,
    Lesson,
    Pause,
    Resume,
    Roster,
    Start,
    Step,
    Touch,
    Wait,
    completion_body,
    courses_from_specs,
    describe_course,
    read_catalogue,
    read_roster,
    student_plan,
)

__all__ = ["Credentials", "HeartbeatFailed", "StudentUser"]

logger = logging.getLogger("timeback_client")
T = TypeVar("T")

_REPORT_MESSAGE: Final = "timeback_stop"  # master -> workers: stop students, send runs
_REPORT_KEY: Final = "timeback"  # the worker's runs, in its report_to_master data
_DEFAULT_INTERVAL: Final = 15.0
_NO_CREDENTIALS: Final = (
    "--timeback-tokens: give the deployment's students (a bearer token or a session cookie "
    "a line), or --timeback-token for one identity, or override StudentUser.credentials()"
)
# A worker's runs ride on its next statistics report (every 3 s), after its flush.
_REPORT_GRACE_S: Final = 30.0

# The thread primitives gevent saved before patching: the SDK's loop runs in a real thread.
_start_new_thread: Callable[..., int] = monkey.get_original("_thread", "start_new_thread")


# -- what a subclass may change ----------------------------------------------------------


@attrs.frozen(kw_only=True)
class Credentials:
    """What a student sends to be recognised: headers and cookies of every heartbeat.

    ``Credentials(headers={...}, cookies={...})``, or `bearer` and `cookie` for one of each.
    Its repr names the headers and cookies, never their values.

    Attributes:
        headers (dict[str, str]): e.g. ``{"Authorization": "Bearer <token>"}``.
        cookies (dict[str, str]): e.g. ``{"session": "<the app's session id>"}``.
    """

    headers: dict[str, str] = attrs.field(factory=dict)
    cookies: dict[str, str] = attrs.field(factory=dict)

    @classmethod
    def bearer(cls, token: str) -> Credentials:
        """``Authorization: Bearer <token>``."""
        return cls(headers={"Authorization": f"Bearer {token}"})

    @classmethod
    def cookie(cls, name: str, value: str) -> Credentials:
        """One session cookie."""
        return cls(cookies={name: value})

    def __repr__(self) -> str:
        # Never a token or a cookie in a log line or a traceback.
        return f"Credentials(headers={sorted(self.headers)}, cookies={sorted(self.cookies)})"


class HeartbeatFailed(Exception):
    """A heartbeat request that was not accepted, as Locust lists it among failures.

    Its text is the status and the backend's error code (``502 INTERNAL_ERROR``), or,
    with no answer, ``no answer:`` and the httpx error (``no answer: ConnectError``).

    Attributes:
        status: the HTTP status, None when no answer came.
        code: the backend's ``error.code``, or the httpx error's name.
    """

    def __init__(self, status: int | None, code: str) -> None:
        self.status = status
        self.code = code
        super().__init__(f"{status} {code}" if status is not None else f"no answer: {code}")


# -- the backend's courses and students, from the command line ----------------------------


@attrs.frozen(kw_only=True)
class _Setup:
    """The ``--timeback-*`` options that name the backend's students and courses, read."""

    roster: Roster | None  # --timeback-tokens or --timeback-token; None: a subclass's own
    catalogue: Catalogue | None  # --timeback-courses or --timeback-course; None: `lessons`


def _read_setup(options: Any) -> _Setup:
    """The students and courses the options name, read by ``simulate``'s own readers.

    Raises:
        ValidationError: naming the option and the fix (never a credential's value).
    """
    token = getattr(options, "timeback_token", None)
    tokens = getattr(options, "timeback_tokens", None)
    courses = getattr(options, "timeback_courses", None)
    specs = getattr(options, "timeback_course", None)
    if token and tokens:
        raise ValidationError(
            "--timeback-token",
            "is given with --timeback-tokens",
            "Give one: a file of the deployment's students, or one token for every student.",
        )
    if courses and specs:
        raise ValidationError(
            "--timeback-course",
            "is given with --timeback-courses",
            "Give one: the backend's timeback.config.json, or the courses it knows.",
        )
    roster = None
    if tokens:
        roster = _option("--timeback-tokens", read_roster, str(tokens))
    elif token:
        roster = Roster(
            credentials=(Credential.bearer(str(token), label="--timeback-token"),),
            source="--timeback-token",
        )
    catalogue = None
    if courses:
        catalogue = _option("--timeback-courses", read_catalogue, str(courses))
    elif specs:
        catalogue = _option("--timeback-course", courses_from_specs, [str(s) for s in specs])
    return _Setup(roster=roster, catalogue=catalogue)


def _option(name: str, reader: Callable[[Any], T], value: Any) -> T:
    try:
        return reader(value)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc.field}", exc.problem, exc.fix) from None


# -- the hub's side of the hand-over -------------------------------------------------------


class _HubInbox:
    """Work for gevent's hub, from any thread: a queue and gevent's thread-safe wake-up.

    The SDK's thread appends and wakes the hub (``async_().send()``, libev's thread-safe
    watcher, which coalesces wake-ups); the hub runs the work in order, never waiting.
    """

    def __init__(self) -> None:
        self._work: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._watcher = gevent.get_hub().loop.async_(ref=False)
        self._watcher.start(self._run)

    def put(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` on the hub soon (safe from any thread)."""
        self._work.append((func, args))
        self._watcher.send()

    def _run(self) -> None:
        work = self._work
        while work:
            func, args = work.popleft()
            try:
                func(*args)
            except Exception:
                logger.exception("timeback: work handed to Locust's hub raised")


def _settle(result: Any, ok: bool, value: Any) -> None:
    if ok:
        result.set(value)
    else:
        result.set_exception(value)


# -- the SDK's side: one event loop in a real thread -------------------------------------


@attrs.define(eq=False)
class _Run:
    """One run as the students measured it (kept in the SDK's thread)."""

    run_id: str
    active_ms: int = 0
    windows: int = 0
    sessions: int = 0


@attrs.frozen
class _Answer:
    """One heartbeat request's outcome, for Locust's statistics."""

    started: float  # epoch seconds
    latency_ms: float
    length: int
    url: str
    status: int | None
    duplicate: bool
    failure: HeartbeatFailed | None


class _RecordingTransport(httpx.AsyncBaseTransport):
    """Times every heartbeat request and hands its outcome to the hub."""

    def __init__(self, inner: httpx.AsyncBaseTransport, hear: Callable[[_Answer], None]) -> None:
        self._inner = inner
        self._hear = hear

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started, clock = time.time(), time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
            # Small bodies: an error, or {"duplicate": true}; a 204 has none.
            body = b"" if response.status_code == 204 else await response.aread()
        except Exception as exc:
            self._hear(
                _Answer(
                    started,
                    (time.perf_counter() - clock) * 1000,
                    0,
                    str(request.url),
                    None,
                    False,
                    HeartbeatFailed(None, type(exc).__name__),
                )
            )
            raise
        latency_ms = (time.perf_counter() - clock) * 1000
        status = response.status_code
        fields = _json_object(body)
        failure = None
        if not 200 <= status < 300:
            error = fields.get("error")
            code = error.get("code") if isinstance(error, dict) else None
            failure = HeartbeatFailed(status, code if isinstance(code, str) else "error")
        duplicate = fields.get("duplicate") is True and failure is None
        self._hear(
            _Answer(started, latency_ms, len(body), str(request.url), status, duplicate, failure)
        )
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class _SdkThread:
    """One asyncio loop in a real OS thread: the `Engine` every student of the process shares.

    Greenlets hand it work (`post`, `call`, `spawn`): a queue, and a wake-up of the loop
    (``call_soon_threadsafe``); one task of the loop runs what arrives, in order, inside
    the loop's task group (anyio can only start tasks from a task). Results come back
    through the hub's inbox. Created and used on the hub only.
    """

    def __init__(self, inbox: _HubInbox, hear: Callable[[_Answer], None]) -> None:
        self.inbox = inbox
        self._hear = hear
        self.runs: dict[str, _Run] = {}  # owned by the SDK's thread
        self.engine: Engine | None = None
        self.hook: httpx.AsyncClient | None = None  # the server-side record() hook
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self._work: deque[_Work] = deque()
        self._stopping = False
        self._jobs = 0
        self._idle: anyio.Event | None = None
        self.finished = gevent.event.AsyncResult()

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and wait (cooperatively) until its loop runs."""
        # Imported here, on the hub's thread: imports inside the SDK's thread would run
        # gevent's patched subprocess (trio, which httpcore imports, looks for libpthread)
        # on a hub that cannot watch children.
        import anyio._backends._asyncio  # noqa: F401
        import httpcore  # noqa: F401

        ready = gevent.event.AsyncResult()
        _start_new_thread(self._thread, (ready,))
        ready.get(timeout=timeout)

    def _thread(self, ready: Any) -> None:
        try:
            anyio.run(self._main, ready, backend="asyncio")
        except BaseException as exc:
            self.inbox.put(_settle, ready, False, exc)
            self.inbox.put(_settle, self.finished, False, exc)
        else:
            self.inbox.put(_settle, self.finished, True, None)

    async def _main(self, ready: Any) -> None:
        transport = _RecordingTransport(httpx.AsyncHTTPTransport(), self._hear)
        self._arrived = asyncio.Event()
        async with (
            httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT) as http,
            httpx.AsyncClient(timeout=60.0) as hook,
            Engine(http_client=http) as engine,
            anyio.create_task_group() as task_group,
        ):
            self.engine, self.hook = engine, hook
            self._loop = asyncio.get_running_loop()
            self.inbox.put(_settle, ready, True, None)
            await self._dispatch(task_group)
            task_group.cancel_scope.cancel()

    # -- from greenlets ---------------------------------------------------------------

    def post(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` in the loop; nothing comes back (a raise is logged)."""
        self._hand_over(_Work(func, args, None, run=True))

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in the loop and wait (cooperatively) for its result."""
        result = gevent.event.AsyncResult()
        self._hand_over(_Work(func, args, result, run=True))
        value: T = result.get()
        return value

    def spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> Any:
        """Run ``await func(*args)`` as a task of the loop; an ``AsyncResult`` of its end.

        The task goes on if the greenlet stops waiting (a student stopped by Locust):
        `idle` waits for it.
        """
        result = gevent.event.AsyncResult()
        self._hand_over(_Work(func, args, result, counted=True))
        return result

    def call_async(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``spawn`` and wait (cooperatively) for the result."""
        value: T = self.spawn(func, *args).get()
        return value

    def idle(self) -> None:
        """Wait (cooperatively) until every spawned task has finished."""
        result = gevent.event.AsyncResult()
        self._hand_over(_Work(self._wait_idle, (), result))
        result.get()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (its tasks are cancelled) and wait for the thread to end."""
        if self._loop is None:
            return
        self._stopping = True
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            self._wake()
        with contextlib.suppress(Exception):
            self.finished.get(timeout=timeout)

    def _hand_over(self, work: _Work) -> None:
        assert self._loop is not None, "the SDK's thread has not started"
        self._work.append(work)
        self._wake()

    def _wake(self) -> None:
        assert self._loop is not None
        assert self._arrived is not None
        self._loop.call_soon_threadsafe(self._arrived.set)

    # -- in the loop ------------------------------------------------------------------

    async def _dispatch(self, task_group: anyio.abc.TaskGroup) -> None:
        assert self._arrived is not None
        work = self._work
        while not self._stopping:
            await self._arrived.wait()
            self._arrived.clear()
            while work:
                item = work.popleft()
                if item.run:
                    self._run(item)
                    continue
                if item.counted:
                    if self._jobs == 0:
                        self._idle = anyio.Event()
                    self._jobs += 1
                task_group.start_soon(self._job, item)

    def _run(self, item: _Work) -> None:
        try:
            value = item.func(*item.args)
        except Exception as exc:
            if item.result is None:
                logger.exception("timeback: a student's step raised")
            else:
                self.inbox.put(_settle, item.result, False, exc)
        else:
            if item.result is not None:
                self.inbox.put(_settle, item.result, True, value)

    async def _job(self, item: _Work) -> None:
        try:
            value = await item.func(*item.args)
        except Exception as exc:
            self.inbox.put(_settle, item.result, False, exc)
        else:
            self.inbox.put(_settle, item.result, True, value)
        finally:
            if item.counted:
                self._jobs -= 1
                if self._jobs == 0 and self._idle is not None:
                    self._idle.set()

    async def _wait_idle(self) -> None:
        if self._jobs and self._idle is not None:
            await self._idle.wait()


@attrs.frozen
class _Work:
    """A greenlet's work for the SDK's thread: run now (``run``) or as a task."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    result: Any  # an AsyncResult the hub sets, or None
    run: bool = False
    counted: bool = False  # a task that `idle` waits for


class _WindowCount:
    """``on_flush`` of one session: counts the run's windows the backend accepted."""

    def __init__(self) -> None:
        self.run: _Run | None = None

    def __call__(self, _elapsed_ms: int) -> None:
        if self.run is not None:
            self.run.windows += 1


class _Seat:
    """One student's SDK client, in the SDK's thread: carries out the plan's steps there."""

    def __init__(self, sdk: _SdkThread, client: AsyncTimeback, options: TimeOptions) -> None:
        self._sdk = sdk
        self._client = client
        self._options = options
        self.activity: AsyncActivity | None = None
        self.errors = 0

    @classmethod
    async def open(
        cls, sdk: _SdkThread, base_url: str, credentials: Credentials, options: TimeOptions
    ) -> _Seat:
        # No durable outbox: on a real machine each student's app has its own file, and
        # thousands of students sharing this process's one file would measure lock
        # contention on a disk nobody has. Sending is what a load test is for, whatever
        # TIMEBACK_DISABLED says.
        client = AsyncTimeback(
            base_url,
            headers=credentials.headers,
            cookies=credentials.cookies or None,
            engine=sdk.engine,
            outbox=None,
            enabled=True,
        )
        await client.__aenter__()
        return cls(sdk, client, options)

    def start(self, lesson: Lesson, run_id: str | None) -> str:
        count = _WindowCount()
        activity = self._client.activity.start(
            id=lesson.id,
            name=lesson.name,
            course=lesson.course,
            run_id=run_id,
            time=self._options,
            on_error=self._on_error,
            on_flush=count,
        )
        # In this thread, no window of the activity can be delivered before this line.
        count.run = self._sdk.runs.setdefault(activity.run_id, _Run(activity.run_id))
        self.activity = activity
        return activity.run_id

    def act(self, step: type[Step]) -> None:
        if self.activity is not None:
            _ACTIONS[step](self.activity)

    async def end(self) -> None:
        activity, self.activity = self.activity, None
        if activity is None:
            return
        await activity.end()
        run = self._sdk.runs[activity.run_id]
        run.active_ms += activity.elapsed_ms
        run.sessions += 1

    async def leave(self) -> None:
        await self.end()
        await self._client.aclose()

    def _on_error(self, error: DeliveryError, context: ErrorContext) -> None:
        # Each failed request is in Locust's statistics already; this only keeps the SDK
        # from logging every one of them.
        self.errors += 1


_ACTIONS: Final[dict[type[Step], Callable[[AsyncActivity], object]]] = {
    Touch: AsyncActivity.touch,
    Pause: AsyncActivity.pause,
    Resume: AsyncActivity.resume,
}


async def _record(hook: httpx.AsyncClient, origin: str, lesson: Lesson, run_id: str) -> bool:
    """The emulator's ``record()``, as the app's server would call it for ``run_id``."""
    found = await hook.get(f"{origin}/_emulator/runs/{run_id}")
    students = found.json().get("students") if found.status_code == 200 else None
    if not students:
        return False  # no window of the run arrived: the server knows no student for it
    body = completion_body(students[0], lesson, run_id)
    response = await hook.post(f"{origin}/_emulator/record", json=body)
    return response.status_code == 200


async def _offers_record(hook: httpx.AsyncClient, origin: str) -> bool:
    """Whether ``origin`` is the emulator, whose ``record()`` hook students can use."""
    try:
        response = await hook.get(f"{origin}/_emulator/faults")
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "faults" in _json_object(response.content)


def _origin(base_url: str) -> str:
    url = httpx.URL(base_url)
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}"


# -- one Locust process's students ---------------------------------------------------------


@attrs.define(eq=False)
class _Heartbeats:
    sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, int]:
        return attrs.asdict(self)


class _Students:
    """Everything one Locust process's students share, on the hub."""

    def __init__(self, environment: Environment) -> None:
        self.environment = environment
        self._sdk: _SdkThread | None = None
        self.inbox: _HubInbox | None = None
        self._starting: Any = None  # an AsyncResult while the SDK's thread starts
        self._offers: dict[str, bool] = {}
        self.completing = gevent.pool.Group()
        self.seed = random.SystemRandom().randrange(2**31)
        self._setup: _Setup | None = None
        self._reset()

    def _reset(self) -> None:
        self.heartbeats = _Heartbeats()
        self.failures: dict[str, int] = {}  # a HeartbeatFailed's text -> how many
        self.students = 0
        self.completions = 0
        self.cpu_started = time.process_time()
        self.report: dict[str, Any] | None = None  # the final one, once flushed
        if self._sdk is not None:
            self._sdk.post(self._sdk.runs.clear)

    def test_started(self) -> None:
        self._reset()

    # -- options ----------------------------------------------------------------------

    def option(self, name: str, default: Any = None) -> Any:
        options = self.environment.parsed_options
        value = getattr(options, name, None) if options is not None else None
        return default if value is None else value

    def setup(self) -> _Setup:
        """The students and courses of the options, read once (a worker reads the files
        at the paths the master gives)."""
        if self._setup is None:
            self._setup = _read_setup(self.environment.parsed_options)
        return self._setup

    # -- the SDK's thread -------------------------------------------------------------

    def sdk(self) -> _SdkThread:
        """The SDK's thread, started by the first student to need it."""
        if self._sdk is not None:
            return self._sdk
        if self._starting is None:
            self._starting = gevent.event.AsyncResult()
            self.inbox = _HubInbox()
            sdk = _SdkThread(self.inbox, self.hear)
            try:
                sdk.start()
            except BaseException as exc:
                self._starting.set_exception(exc)
                self._starting = None
                raise
            self._sdk = sdk
            self._starting.set(sdk)
            return sdk
        started: _SdkThread = self._starting.get()
        return started

    def offers_record(self, base_url: str) -> bool:
        origin = _origin(base_url)
        if origin not in self._offers:
            sdk = self.sdk()
            assert sdk.hook is not None
            self._offers[origin] = sdk.call_async(_offers_record, sdk.hook, origin)
        return self._offers[origin]

    def stop_sdk(self) -> None:
        if self._sdk is not None:
            self._sdk.stop()

    # -- on the hub: Locust's statistics ----------------------------------------------

    def hear(self, answer: _Answer) -> None:
        """In the SDK's thread: hand a heartbeat's outcome to the hub."""
        assert self.inbox is not None  # made before the SDK's thread starts
        self.inbox.put(self._heard, answer)

    def _heard(self, answer: _Answer) -> None:
        counts = self.heartbeats
        counts.sent += 1
        if answer.failure is not None:
            counts.failed += 1
            kind = str(answer.failure)
            self.failures[kind] = self.failures.get(kind, 0) + 1
        elif answer.duplicate:
            counts.duplicates += 1
        else:
            counts.accepted += 1
        request: Any = self.environment.events.request  # Locust's hooks are untyped
        request.fire(
            request_type="POST",
            name="heartbeat",
            response_time=answer.latency_ms,
            response_length=answer.length,
            response=None,
            context={},
            exception=answer.failure,
            start_time=answer.started,
            url=answer.url,
        )

    # -- the end of a test ------------------------------------------------------------

    def worker_name(self) -> str:
        runner = self.environment.runner
        return str(getattr(runner, "client_id", "local"))

    def flush(self) -> dict[str, Any]:
        """After the students stopped: wait for their last windows, and report the runs."""
        if self.report is not None:
            return self.report
        runs: list[dict[str, Any]] = []
        self.completing.join(timeout=_REPORT_GRACE_S)
        if self._sdk is not None:
            self._sdk.idle()
            worker = self.worker_name()
            runs = self._sdk.call(_runs_json, self._sdk.runs, worker)
        self.report = {
            "worker": self.worker_name(),
            "students": self.students,
            "completions": self.completions,
            "heartbeats": self.heartbeats.to_json(),
            "failures": dict(self.failures),
            "cpuSeconds": round(time.process_time() - self.cpu_started, 3),
            "runs": runs,
        }
        return self.report


def _runs_json(runs: dict[str, _Run], worker: str) -> list[dict[str, Any]]:
    return [
        {
            "runId": run.run_id,
            "activeMs": run.active_ms,
            "windows": run.windows,
            "sessions": run.sessions,
            "worker": worker,
        }
        for run in runs.values()
    ]


_STUDENTS: weakref.WeakKeyDictionary[Environment, _Students] = weakref.WeakKeyDictionary()


def _students(environment: Environment) -> _Students:
    found = _STUDENTS.get(environment)
    if found is None:
        found = _STUDENTS[environment] = _Students(environment)
    return found


# -- the user ------------------------------------------------------------------------------


class StudentUser(User):
    """A simulated student: ``simulate``'s behaviour, as a Locust user.

    Subclass it in a locustfile (a subclass is what Locust runs; this one is abstract).
    Class attributes and methods a subclass may change:

    - `lessons` (or `catalogue`): what students take;
    - `behaviour`: the mix of work, breaks, idling and sessions (lesson seconds, real time);
    - `credentials`: what student `student_index` sends (a bearer token, a cookie, or
      what a login call returned);
    - `offers_record` and `record_completion`: completions through the server;
    - `flush_timeout`: how long a leaving student waits for its last windows.

    Attributes:
        student_index (int): the student's number, distinct across workers
            (``worker index + workers x the n-th student of the worker``).
    """

    abstract = True
    #: The catalogue students take lessons from (the first by student number).
    lessons: ClassVar[Sequence[Lesson]] = BUILTIN_LESSONS
    #: How students behave. Arrivals are Locust's spawn rate, so no spread of its own.
    behaviour: ClassVar[Behaviour] = Behaviour(arrival_spread=0.0)
    #: Seconds a leaving student waits for its last windows (at the test's end, all at once).
    flush_timeout: ClassVar[float] = 30.0

    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self._students = _students(environment)
        self._seat: _Seat | None = None
        self.student_index = self._number()

    def _number(self) -> int:
        students = self._students
        runner = self.environment.runner
        workers = (
            int(students.option("expect_workers", 1)) if isinstance(runner, WorkerRunner) else 1
        )
        index = max(0, int(getattr(runner, "worker_index", 0)))
        number = students.students * max(1, workers) + index
        students.students += 1
        return number

    # -- what a subclass may override -------------------------------------------------

    def catalogue(self) -> Sequence[Lesson]:
        """The lessons this student takes (default: the courses of ``--timeback-courses``
        or ``--timeback-course``, else `lessons`)."""
        catalogue = self._students.setup().catalogue
        return self.lessons if catalogue is None else catalogue.lessons

    def credentials(self) -> Credentials:
        """What this student sends (default: its line of ``--timeback-tokens``, by
        `student_index` round-robin, else the bearer ``--timeback-token``).

        Override for one identity per student of your own, e.g. a session cookie, or the
        result of a login call (it runs in the student's greenlet, where blocking I/O
        yields to other students).
        """
        roster = self._students.setup().roster
        if roster is None:
            raise ValueError(_NO_CREDENTIALS)
        credential = roster.for_student(self.student_index)
        return Credentials(headers=credential.headers, cookies=credential.cookies)

    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats (default: ``--timeback-interval``, else 15)."""
        return float(self._students.option("timeback_interval", _DEFAULT_INTERVAL))

    def offers_record(self) -> bool:
        """Whether the target records completions (default: it is the emulator)."""
        return self._students.offers_record(self._base_url())

    def record_completion(self, lesson: Lesson, run_id: str) -> bool:
        """The app's server records the completion of ``run_id`` (default: the
        emulator's ``POST /_emulator/record``); never the client.

        Returns:
            Whether the server recorded it (the report counts those).
        """
        sdk = self._students.sdk()
        assert sdk.hook is not None
        recorded: bool = sdk.call_async(
            _record, sdk.hook, _origin(self._base_url()), lesson, run_id
        )
        return recorded

    def _complete(self, lesson: Lesson, run_id: str) -> None:
        if self.record_completion(lesson, run_id):
            self._students.completions += 1

    # -- Locust's side ----------------------------------------------------------------

    def _base_url(self) -> str:
        if not self.host:
            raise ValueError(
                "--host: give the backend's mount, e.g. http://127.0.0.1:8787/api/timeback"
            )
        return str(self.host)

    def on_start(self) -> None:
        """Open the student's client in the SDK's thread."""
        sdk = self._students.sdk()
        options = TimeOptions(
            heartbeat_interval=self.heartbeat_interval(),
            idle_timeout=self.behaviour.idle_timeout,
            flush_timeout=self.flush_timeout,
        )
        self._seat = sdk.call_async(_Seat.open, sdk, self._base_url(), self.credentials(), options)

    def on_stop(self) -> None:
        """End the open activity and close the client: its last window is sent."""
        seat, self._seat = self._seat, None
        if seat is not None:
            # The leaving goes on in the SDK's thread if this greenlet is killed meanwhile,
            # and the end of the test waits for it there.
            leaving = self._students.sdk().spawn(seat.leave)
            leaving.wait(timeout=self.flush_timeout + 5)
            if leaving.ready() and not leaving.successful():
                logger.error("timeback: a student's leaving raised: %r", leaving.exception)

    @task
    def attend(self) -> None:
        """Follow the student's plan for as long as the test runs."""
        plan = student_plan(
            index=self.student_index,
            seed=self._students.seed,
            behaviour=self.behaviour,
            lessons=self.catalogue(),
            can_complete=self.offers_record(),
        )
        reply: str | None = None
        try:
            while True:
                reply = self._carry_out(plan.send(reply))
        finally:
            plan.close()

    def _carry_out(self, step: Step) -> str | None:
        """Do one step of the plan; a Start's run id for the plan, else None."""
        seat = self._seat
        assert seat is not None
        sdk = self._students.sdk()
        if isinstance(step, Wait):
            gevent.sleep(step.seconds)
        elif isinstance(step, Start):
            run_id: str = sdk.call(seat.start, step.lesson, step.run_id)
            return run_id
        elif isinstance(step, End):
            sdk.spawn(seat.end).get()
        elif isinstance(step, Complete):
            # In a greenlet of its own, which a stopping test does not kill: a completion
            # the server recorded is always counted.
            self._students.completing.spawn(self._complete, step.lesson, step.run_id).join()
        else:
            sdk.post(seat.act, type(step))
        return None


# -- the test's end: reports and the exactness check ----------------------------------------


@attrs.define(eq=False)
class _Collection:
    """The master's (or a local run's) reports of the workers, for one test."""

    reports: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    expected: int = 0


_COLLECTIONS: weakref.WeakKeyDictionary[Environment, _Collection] = weakref.WeakKeyDictionary()


def _arguments(parser: Any) -> None:
    # Credentials stay out of Locust's web UI (which renders every UI option's value into
    # its page): workers still get them, with the master's other options.
    parser.add_argument(
        "--timeback-token",
        default=None,
        help="one bearer token for every student (to the backend, one user)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-tokens",
        metavar="FILE",
        default=None,
        help="the deployment's students: a bearer token or a session cookie (name=value) "
        "a line, given round-robin to every student of every worker",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-courses",
        metavar="FILE",
        default=None,
        help="the backend's timeback.config.json: students take its synced courses",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-course",
        metavar="SPEC",
        action="append",
        default=None,
        help='a course the backend knows, "Math:3" or "code:CS-101" (repeatable)',
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-interval",
        type=float,
        default=_DEFAULT_INTERVAL,
        help="heartbeat interval, in seconds (default 15)",
    )
    parser.add_argument(
        "--timeback-report",
        default=None,
        help="write a JSON report of every run here when the test stops (the master's)",
    )


def _init(environment: Environment, **_kwargs: Any) -> None:
    # Locust logs at INFO; httpx's line per request would cost more than the request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        # Refused now, as Locust refuses its own bad options, not by every student later.
        # (A worker gets the master's options, which the master checked.)
        errors = _option_errors(environment)
        if errors:
            for error in errors:
                logger.error(error)
            sys.exit(1)
        _list_courses(_read_setup(environment.parsed_options))
    if not isinstance(runner, MasterRunner):
        # Start the SDK's thread (and its imports) now, not with the first student: the
        # test's time then goes to students, not to a cold start.
        _students(environment).sdk()
    if isinstance(runner, WorkerRunner):
        students = _students(environment)

        def stop_students(environment: Environment, msg: Any, **_kw: Any) -> None:
            environment.runner.stop()  # type: ignore[union-attr]
            students.flush()  # already done at test_stop, unless no test ran

        def attach(client_id: str, data: dict[str, Any]) -> None:
            if students.report is not None:
                data[_REPORT_KEY] = students.report

        runner.register_message(_REPORT_MESSAGE, stop_students, concurrent=True)
        _listen(environment.events.report_to_master, attach)
    elif isinstance(runner, MasterRunner):
        collection = _COLLECTIONS.setdefault(environment, _Collection())

        def heard(client_id: str, data: dict[str, Any]) -> None:
            report = data.get(_REPORT_KEY)
            if report is not None:
                collection.reports[client_id] = report

        _listen(environment.events.worker_report, heard)


def _test_start(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _COLLECTIONS.setdefault(environment, _Collection()).reports.clear()
    else:
        _students(environment).test_started()


def _test_stopping(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    collection = _COLLECTIONS.setdefault(environment, _Collection())
    collection.expected = runner.worker_count
    runner.send_message(_REPORT_MESSAGE)
    deadline = time.monotonic() + _flush_timeout(environment) + _REPORT_GRACE_S
    while len(collection.reports) < collection.expected and time.monotonic() < deadline:
        gevent.sleep(0.2)


def _test_stop(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        _students(environment).flush()
        return
    if isinstance(runner, MasterRunner):
        collection = _COLLECTIONS.setdefault(environment, _Collection())
        reports = list(collection.reports.values())
        missing = max(0, collection.expected - len(reports))
    else:
        reports = [_students(environment).flush()]
        missing = 0
    _conclude(environment, reports, missing)


def _quitting(environment: Environment, **_kwargs: Any) -> None:
    found = _STUDENTS.get(environment)
    if found is not None:
        found.stop_sdk()


def _flush_timeout(environment: Environment) -> float:
    """The longest a leaving student of this test waits for its last windows."""
    timeouts = [
        float(user.flush_timeout)
        for user in environment.user_classes
        if isinstance(user, type) and issubclass(user, StudentUser)
    ]
    return max(timeouts, default=StudentUser.flush_timeout)


def _list_courses(setup: _Setup) -> None:
    """Once, at the start: the backend's courses students take, and those left out."""
    catalogue = setup.catalogue
    if catalogue is None:
        return
    named = ", ".join(describe_course(lesson.course) for lesson in catalogue.lessons)
    logger.info("timeback: students take %s (%s)", named, catalogue.source)
    for reason in catalogue.left_out:
        logger.warning("timeback: left out of %s: %s", catalogue.source, reason)


#: The summary of each environment's last test, printed again as Locust's last words.
_SUMMARIES: weakref.WeakKeyDictionary[Environment, str] = weakref.WeakKeyDictionary()


def _conclude(environment: Environment, reports: list[dict[str, Any]], missing: int) -> None:
    """Merge the workers' reports, check them against the emulator, print, write."""
    report = _merge(reports)
    report["students"] = _students_json(environment, report["totals"]["students"])
    verdict = _check(environment, report, missing)
    report["check"] = verdict
    totals = report["totals"]["heartbeats"]
    summary = "\n".join(
        [
            f"timeback: {report['totals']['students']} students, {len(report['runs'])} runs, "
            f"{report['totals']['workers']} worker(s); heartbeats sent {totals['sent']}, "
            f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, "
            f"failed {totals['failed']}",
            f"timeback: students: {report['students']['note']}",
            f"timeback: {verdict['message']}",
        ]
    )
    _SUMMARIES[environment] = summary
    if not _students_option(environment, "headless"):
        print(summary, flush=True)  # again at exit, after Locust's own tables
    if verdict["ok"] is False:
        environment.process_exit_code = 1
    path = _students_option(environment, "timeback_report")
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if _students_option(environment, "csv_prefix"):
        # Locust writes its CSV statistics every second, and not again when it exits: let
        # it write once more, with the students' last windows (all sent at the end).
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def _quit(**_kwargs: Any) -> None:
    # Locust prints its tables just before `quit`: the verdict comes after them, last.
    for summary in list(_SUMMARIES.values()):
        print(summary, flush=True)


def _students_json(environment: Environment, students: int) -> dict[str, Any]:
    """Who the students were to the backend, and the courses they took (no secret)."""
    setup = _read_setup(environment.parsed_options)
    classes = _student_classes(environment)
    roster = setup.roster
    catalogue = setup.catalogue
    courses: dict[str, Any] = {"source": "the user class's lessons", "leftOut": []}
    if catalogue is not None:
        courses = {
            "source": catalogue.source,
            "courses": [describe_course(lesson.course) for lesson in catalogue.lessons],
            "leftOut": list(catalogue.left_out),
        }
    if roster is None or not all(_default_credentials(user) for user in classes):
        names = ", ".join(sorted(user.__name__ for user in classes)) or "StudentUser"
        return {
            "source": f"{names}.credentials()",
            "count": None,
            "note": f"{students} students, with what {names}.credentials() gives each",
            "courses": courses,
        }
    return {
        "source": roster.source,
        "count": len(roster),
        "note": identity_note(
            students, len(roster), roster.source, tokens_option="--timeback-tokens"
        ),
        "courses": courses,
    }


def _students_option(environment: Environment, name: str) -> Any:
    options = environment.parsed_options
    return getattr(options, name, None) if options is not None else None


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    heartbeats = _Heartbeats()
    failures: dict[str, int] = {}
    runs: list[dict[str, Any]] = []
    workers = []
    for report in sorted(reports, key=lambda r: str(r["worker"])):
        for key, value in report["heartbeats"].items():
            setattr(heartbeats, key, getattr(heartbeats, key) + int(value))
        for kind, count in report.get("failures", {}).items():
            failures[kind] = failures.get(kind, 0) + int(count)
        runs.extend(report["runs"])
        workers.append(
            {
                "worker": report["worker"],
                "students": report["students"],
                "runs": len(report["runs"]),
                "heartbeats": report["heartbeats"],
                "cpuSeconds": report["cpuSeconds"],
            }
        )
    return {
        "runs": runs,
        "totals": {
            "heartbeats": heartbeats.to_json(),
            "students": sum(int(r["students"]) for r in reports),
            "completions": sum(int(r["completions"]) for r in reports),
            "activeMs": sum(int(run["activeMs"]) for run in runs),
            "workers": len(reports),
        },
        "failures": dict(sorted(failures.items(), key=lambda item: (-item[1], item[0]))),
        "workers": workers,
    }


def _check(environment: Environment, report: dict[str, Any], missing: int) -> dict[str, Any]:
    """Each run's measured active time against the emulator's (when the host is one)."""
    host = environment.host or _students_option(environment, "host")
    verdict: dict[str, Any] = {"target": None, "ok": None, "runs": len(report["runs"])}
    if missing:
        verdict.update(
            ok=False,
            message=f"MISMATCH: {missing} worker(s) sent no runs within "
            f"{_flush_timeout(environment) + _REPORT_GRACE_S:g} s; their time is unaccounted for",
        )
        return verdict
    if not report["runs"]:
        verdict.update(
            ok=False,
            message="NO RUNS: no student started a run, so nothing was measured"
            + _failures_named(report["failures"])
            + " (see Locust's errors above)",
        )
        return verdict
    if not host:
        verdict["message"] = "exactness not checked: no --host" + _failures_named(
            report["failures"]
        )
        return verdict
    origin = _origin(str(host))
    try:
        probe = httpx.get(f"{origin}/_emulator/faults", timeout=10.0)
        emulator = probe.status_code == 200 and "faults" in _json_object(probe.content)
        found = httpx.get(f"{origin}/_emulator/runs", timeout=300.0) if emulator else None
    except httpx.HTTPError as exc:
        verdict["message"] = f"exactness not checked: {origin} did not answer ({exc!r})"
        return verdict
    if found is None:
        verdict["message"] = (
            f"exactness not checked: {origin} is not the emulator (no /_emulator/ routes)"
            + _failures_named(report["failures"])
        )
        return verdict
    recorded = {str(run["runId"]): int(run["activeMs"]) for run in found.json()["runs"]}
    measured: dict[str, int] = {}
    for run in report["runs"]:
        measured[run["runId"]] = measured.get(run["runId"], 0) + int(run["activeMs"])
    mismatches = [
        {"runId": run_id, "measuredMs": ms, "recordedMs": recorded.get(run_id, 0)}
        for run_id, ms in sorted(measured.items())
        if recorded.get(run_id, 0) != ms
    ]
    total = sum(measured.values())
    verdict.update(target=origin, ok=not mismatches, mismatches=mismatches)
    if mismatches:
        first = mismatches[0]
        verdict["message"] = (
            f"MISMATCH: {len(mismatches)} of {len(measured)} runs differ from the emulator "
            f"at {origin}, e.g. run {first['runId']}: measured {first['measuredMs']} ms, "
            f"recorded {first['recordedMs']} ms" + _failures_named(report["failures"])
        )
    else:
        recovered = _failures_named(report["failures"]).replace(
            "; heartbeat failures:", "; heartbeat failures the SDK's retries recovered from:"
        )
        verdict["message"] = (
            f"OK: every run's measured active time equals the emulator's at {origin} "
            f"({len(measured)} runs, {total} ms)" + recovered
        )
    return verdict


#: Fixes for the heartbeat failures a misconfigured test shows, by the failure's text.
_FIXES: Final = {
    "401 UNAUTHORIZED": "the backend knows no student by this token: check --timeback-token",
    "404 error": "is --host the mount of the Timeback server SDK, e.g. .../api/timeback?",
}


def _failures_named(failures: dict[str, int], most: int = 3) -> str:
    """``; heartbeat failures: 401 UNAUTHORIZED x18 (fix)``, the most common first."""
    if not failures:
        return ""
    common = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    named = []
    for kind, count in common[:most]:
        fix = _FIXES.get(kind)
        named.append(f"{kind} x{count}" + (f" ({fix})" if fix else ""))
    others = len(common) - most
    more = f", and {others} other kind(s)" if others > 0 else ""
    return "; heartbeat failures: " + ", ".join(named) + more


def _option_errors(environment: Environment) -> list[str]:
    """What is wrong with this test's ``--timeback-*`` options (empty when nothing is)."""
    options = environment.parsed_options
    if options is None:
        return []
    errors = []
    students = _student_classes(environment)
    try:
        setup = _read_setup(options)
    except ValidationError as exc:
        errors.append(str(exc))
    else:
        if setup.roster is None and any(_default_credentials(user) for user in students):
            errors.append(_NO_CREDENTIALS)
    interval = getattr(options, "timeback_interval", None)
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        errors.append(
            f"--timeback-interval: {interval:g} is not a positive number of seconds "
            "(e.g. 15, the default)"
        )
    report = getattr(options, "timeback_report", None)
    if report:
        path = Path(report).expanduser()
        folder = path.parent
        if path.is_dir():
            errors.append(f"--timeback-report: {report} is a directory; give a file's path")
        elif not folder.is_dir():
            errors.append(f"--timeback-report: the directory {folder} does not exist")
        elif not os.access(folder, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)
        ):
            errors.append(f"--timeback-report: {report} cannot be written (permission denied)")
    return errors


def _student_classes(environment: Environment) -> list[type[StudentUser]]:
    return [
        user
        for user in environment.user_classes
        if isinstance(user, type) and issubclass(user, StudentUser)
    ]


def _default_credentials(user: type[StudentUser]) -> bool:
    """Whether ``user``'s students send the command line's credentials."""
    return user.credentials is StudentUser.credentials


def _listen(hook: Any, handler: Callable[..., None]) -> None:
    """``hook.add_listener(handler)`` (Locust's event hooks are untyped)."""
    hook.add_listener(handler)


_listen(events.init_command_line_parser, _arguments)
_listen(events.init, _init)
_listen(events.test_start, _test_start)
_listen(events.test_stopping, _test_stopping)
_listen(events.test_stop, _test_stop)
_listen(events.quitting, _quitting)
_listen(events.quit, _quit)
