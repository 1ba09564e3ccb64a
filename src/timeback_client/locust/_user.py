"""The simulated student as a Locust user, and what one Locust process's students share.

Each `StudentUser` is one student of ``timeback-client simulate``: the same plan of steps
(`timeback_client.tools.students.student_plan`), carried out with the SDK's own
`AsyncTimeback` and `AsyncActivity` in the process's SDK thread (`._bridge`), so the
windows are the SDK's time accounting and wire bytes, and their delivery is what apps do.
A greenlet hands each step to that thread, which starts, touches, pauses, resumes or ends
the student's activity there: a touch reads the clock when the loop runs it, microseconds
after the greenlet decided (the plan's instants are random anyway), and what is measured
(each activity's own ``elapsed_ms``) is read in the thread that cuts the windows.

Every heartbeat request is a Locust request named ``heartbeat``: its latency, and, when it
fails, a `HeartbeatFailed` naming the status and the backend's error code. The outcome of
each request comes back to the hub, where Locust's ``request`` event fires.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Final

import attrs
import gevent
import gevent.event
import gevent.pool
import httpx
from locust import User, task
from locust.env import Environment
from locust.runners import WorkerRunner

from .._activity import AsyncActivity
from .._client import AsyncTimeback
from .._delivery_errors import DeliveryError
from .._engine import Engine
from .._models import ErrorContext, TimeOptions
from ..tools.students import (
    BUILTIN_LESSONS,
    Behaviour,
    Complete,
    End,
    Lesson,
    Pause,
    Resume,
    Start,
    Step,
    Touch,
    Wait,
    completion_body,
    student_plan,
)
from ._bridge import HubInbox, SdkThread, pooled_transport
from ._options import DEFAULT_INTERVAL, NO_CREDENTIALS, Setup, read_setup

__all__ = ["Credentials", "HeartbeatFailed", "StudentUser"]

logger = logging.getLogger("timeback_client")

# A worker's runs ride on its next statistics report (every 3 s), after its flush.
REPORT_GRACE_S: Final = 30.0


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
        fields = json_object(body)
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


def json_object(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body) if body else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class _WindowCount:
    """``on_flush`` of one session: counts the run's windows the backend accepted."""

    def __init__(self) -> None:
        self.run: _Run | None = None

    def __call__(self, _elapsed_ms: int) -> None:
        if self.run is not None:
            self.run.windows += 1


class _Seat:
    """One student's SDK client, in the SDK's thread: carries out the plan's steps there."""

    def __init__(self, runs: dict[str, _Run], client: AsyncTimeback, options: TimeOptions) -> None:
        self._runs = runs
        self._client = client
        self._options = options
        self.activity: AsyncActivity | None = None
        self.errors = 0

    @classmethod
    async def open(
        cls,
        engine: Engine | None,
        runs: dict[str, _Run],
        base_url: str,
        credentials: Credentials,
        options: TimeOptions,
    ) -> _Seat:
        # No durable outbox: on a real machine each student's app has its own file, and
        # thousands of students sharing this process's one file would measure lock
        # contention on a disk nobody has. Sending is what a load test is for, whatever
        # TIMEBACK_DISABLED says.
        client = AsyncTimeback(
            base_url,
            headers=credentials.headers,
            cookies=credentials.cookies or None,
            engine=engine,
            outbox=None,
            enabled=True,
        )
        await client.__aenter__()
        return cls(runs, client, options)

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
        count.run = self._runs.setdefault(activity.run_id, _Run(activity.run_id))
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
        run = self._runs[activity.run_id]
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
    return response.status_code == 200 and "faults" in json_object(response.content)


def origin_of(base_url: str) -> str:
    url = httpx.URL(base_url)
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}"


@attrs.define(eq=False)
class Heartbeats:
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
        self._sdk: SdkThread | None = None
        self.inbox: HubInbox | None = None
        self._starting: Any = None  # an AsyncResult while the SDK's thread starts
        self._offers: dict[str, Any] = {}  # origin -> AsyncResult of the one question
        self.completing = gevent.pool.Group()
        self.seed = random.SystemRandom().randrange(2**31)
        self._setup: Setup | None = None
        self.runs: dict[str, _Run] = {}  # owned by the SDK's thread
        self._pid = os.getpid()
        self._reset()

    def _reset(self) -> None:
        self.heartbeats = Heartbeats()
        self.failures: dict[str, int] = {}  # a HeartbeatFailed's text -> how many
        self.students = 0
        self.completions = 0
        self.cpu_started = time.process_time()
        self.report: dict[str, Any] | None = None  # the final one, once flushed
        if self._sdk is not None:
            self._sdk.post(self.runs.clear)

    def test_started(self) -> None:
        self._reset()

    # -- options ----------------------------------------------------------------------

    def option(self, name: str, default: Any = None) -> Any:
        options = self.environment.parsed_options
        value = getattr(options, name, None) if options is not None else None
        return default if value is None else value

    def setup(self) -> Setup:
        """The students and courses of the options, read once (a worker reads the files
        at the paths the master gives)."""
        if self._setup is None:
            self._setup = read_setup(self.environment.parsed_options)
        return self._setup

    # -- the SDK's thread -------------------------------------------------------------

    def sdk(self) -> SdkThread:
        """The SDK's thread, started by the first student to need it."""
        if self._pid != os.getpid():
            # A forked process (Locust's --processes) has no thread of its parent's: it
            # starts an SDK thread, loop and pool of its own, and owns no parent's run.
            self._pid = os.getpid()
            self._sdk = self._starting = self.inbox = None
            self.runs = {}
        if self._sdk is not None:
            return self._sdk
        if self._starting is None:
            self._starting = gevent.event.AsyncResult()
            self.inbox = HubInbox()
            sdk = SdkThread(self.inbox, self._transport)
            try:
                sdk.start()
            except BaseException as exc:
                self._starting.set_exception(exc)
                self._starting = None
                raise
            self._sdk = sdk
            self._starting.set(sdk)
            return sdk
        started: SdkThread = self._starting.get()
        return started

    def offers_record(self, base_url: str) -> bool:
        """Whether the backend at ``base_url`` is the emulator: asked once per origin;
        students who arrive while it is being asked wait for that one answer."""
        origin = origin_of(base_url)
        while True:
            asking = self._offers.get(origin)
            if asking is None:
                break
            offers: bool | None = asking.get()
            if offers is not None:
                return offers
            # The student who asked was stopped before the answer came: ask again.
        asking = self._offers[origin] = gevent.event.AsyncResult()
        offers = None
        try:
            sdk = self.sdk()
            assert sdk.hook is not None
            offers = sdk.call_async(_offers_record, sdk.hook, origin)
        finally:
            if offers is None:
                del self._offers[origin]
            asking.set(offers)
        assert offers is not None
        return offers

    def stop_sdk(self) -> None:
        if self._sdk is not None:
            self._sdk.stop()

    # -- on the hub: Locust's statistics ----------------------------------------------

    def _transport(self) -> httpx.AsyncBaseTransport:
        """In the SDK's thread: the pool's transport, which times every heartbeat."""
        return _RecordingTransport(pooled_transport(), self.hear)

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
        self.completing.join(timeout=REPORT_GRACE_S)
        if self._sdk is not None:
            self._sdk.idle()
            worker = self.worker_name()
            runs = self._sdk.call(runs_json, self.runs, worker)
        self.report = {
            "worker": self.worker_name(),
            "students": self.students,
            "completions": self.completions,
            "heartbeats": self.heartbeats.to_json(),
            "failures": dict(self.failures),
            "cpuSeconds": round(time.process_time() - self.cpu_started, 3),
            "pid": os.getpid(),
            "runs": runs,
        }
        return self.report


def runs_json(runs: dict[str, _Run], worker: str) -> list[dict[str, Any]]:
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


def students_of(environment: Environment) -> _Students:
    found = _STUDENTS.get(environment)
    if found is None:
        found = _STUDENTS[environment] = _Students(environment)
    return found


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
        self._students = students_of(environment)
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
            raise ValueError(NO_CREDENTIALS)
        credential = roster.for_student(self.student_index)
        return Credentials(headers=credential.headers, cookies=credential.cookies)

    def heartbeat_interval(self) -> float:
        """Seconds between heartbeats (default: ``--timeback-interval``, else 15)."""
        return float(self._students.option("timeback_interval", DEFAULT_INTERVAL))

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
            _record, sdk.hook, origin_of(self._base_url()), lesson, run_id
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
        self._seat = sdk.call_async(
            _Seat.open,
            sdk.engine,
            self._students.runs,
            self._base_url(),
            self.credentials(),
            options,
        )

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


def student_classes(environment: Environment) -> list[type[StudentUser]]:
    return [
        user
        for user in environment.user_classes
        if isinstance(user, type) and issubclass(user, StudentUser)
    ]


def default_credentials(user: type[StudentUser]) -> bool:
    """Whether ``user``'s students send the command line's credentials."""
    return user.credentials is StudentUser.credentials
