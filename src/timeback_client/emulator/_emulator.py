"""The ``Emulator`` facade: configuration, the app, inspection, serving."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

import httpx
from starlette.types import ASGIApp

from ._app import build_app
from ._backend import Backend
from ._catalog import (
    Catalog,
    ConfigSource,
    Course,
    CourseCode,
    Environment,
    Selector,
    SubjectGrade,
    courses_from_config,
    load_config,
)
from ._faults import Faults
from ._problems import Problem, find_problems
from ._refusals import Refusal, Refusals
from ._runs import Run, UnknownRun, build_run
from ._serve import DEFAULT_HOST, serve_in_thread
from ._store import EventFacts, SentEvent, Store
from ._transport import EmulatorTransport
from ._validation import RecordRejected

DEFAULT_MOUNT = "/api/timeback"
DEFAULT_APP_NAME = "Timeback Emulator"
DEFAULT_SENSOR = "https://sensor.timeback-emulator.invalid"


def _utc_now() -> datetime:
    return datetime.now(UTC)


Fact = TypeVar("Fact", bound=EventFacts)


def _by_run(events: Iterable[Fact]) -> dict[str, list[Fact]]:
    """Each run's events in arrival order, runs in order of first appearance.

    One pass over the events: the cost grows with the events, not runs x events.
    """
    by_run: dict[str, list[Fact]] = {}
    for event in events:
        if event.run_id is not None:
            by_run.setdefault(event.run_id, []).append(event)
    return by_run


def _normalize_mount(mount: str) -> str:
    stripped = mount.rstrip("/")
    if stripped and not stripped.startswith("/"):
        raise ValueError(f"mount must start with '/', not {mount!r}")
    return stripped


class Emulator:
    """An app backend running the vendor's server SDK, emulated and inspectable.

    It serves ``POST {mount}/activity/heartbeat`` exactly as ``timeback-sdk`` 0.4.0
    does (validation, status codes, error bodies, Caliper ``TimeSpentEvent``), with a
    durable dedupe, plus ``/_emulator/...`` routes for ``record()``, inspection and fault
    injection.

    Students are identified by ``Authorization: Bearer <token>`` or the
    ``timeback_session=<token>`` cookie. The roster resolves every email, to the
    OneRoster sourcedId ``uuid5(NAMESPACE_URL, "mailto:" + email)``, unless ``roster``
    names the only emails it knows.

    The backend's configuration can change while clients run, to test how an app rides
    out a misconfigured backend and recovers once the operator fixes it: `set_courses`
    and `set_roster` break it, `sync_course`, `add_course` and `add_to_roster` fix it
    (also over ``/_emulator/courses``, ``/_emulator/courses/sync`` and
    ``/_emulator/roster``).

    Args:
        students: Token -> student email.
        roster: The emails OneRoster knows; others are answered 404
            ``USER_RESOLUTION_FAILED``, as the vendor answers a student missing from the
            roster. None (the default): every email.
        mount: Path the vendor routes are mounted at.
        db: SQLite file that keeps events and dedupe keys across restarts, created if
            missing; None keeps everything in memory. A file that is not an emulator's
            store (the app's own database, say) is refused with a `ValidationError` and
            left exactly as it is.
        courses: The configured courses (``timeback.config.json``); None accepts every
            well-formed course selector as a synced course.
        config: The backend's own ``timeback.config.json`` instead of ``courses``: its
            path, or its decoded JSON. Its courses, ``name`` and ``sensor`` are the
            emulator's, and heartbeats are answered as the vendor's server answers them
            with it in ``env``. Refused with a `ValidationError` naming the field when the
            vendor's server would not start with it.
        app_name: App name in the Caliper activity context (default: the config's
            ``name``, else ``"Timeback Emulator"``).
        sensor: Default Caliper sensor URL (default: the config's ``sensor``, else one
            of the emulator's).
        env: The backend's Timeback environment: which synced course ids (``ids.staging``
            or ``ids.production``) and OneRoster host events use.
        clock: Current time (aware), for stamps and ``record()``'s default end time.

    Example:
        >>> emulator = Emulator(students={"tok": "ada@example.edu"})
        >>> client = httpx.AsyncClient(transport=emulator.transport(),
        ...                            base_url="http://emulator" + emulator.mount)
    """

    def __init__(
        self,
        students: Mapping[str, str] | None = None,
        *,
        roster: Iterable[str] | None = None,
        mount: str = DEFAULT_MOUNT,
        db: str | os.PathLike[str] | None = None,
        courses: Sequence[Course] | None = None,
        config: ConfigSource | None = None,
        app_name: str | None = None,
        sensor: str | None = None,
        env: Environment = "staging",
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._mount = _normalize_mount(mount)
        if env not in ("staging", "production"):
            raise ValueError(f"env must be 'staging' or 'production', not {env!r}")
        self._env: Environment = env
        if config is not None:
            if courses is not None:
                raise TypeError("give the emulator courses or a config, not both")
            loaded = load_config(config)
            courses = courses_from_config(loaded, env)
            app_name = app_name or loaded.name
            sensor = sensor or loaded.sensor
        else:
            sensor = sensor or DEFAULT_SENSOR
        # Replaced, never mutated, so request handlers on the server thread always see a
        # consistent map without a lock.
        self._students: Mapping[str, str] = MappingProxyType(dict(students or {}))
        self._store = Store(db)
        self._catalog = Catalog(courses, sensor=sensor)
        self._backend = Backend(
            store=self._store,
            catalog=self._catalog,
            app_name=app_name or DEFAULT_APP_NAME,
            env=env,
            clock=clock,
        )
        self.set_roster(roster)
        self._faults = Faults()
        self._refusals = Refusals()
        # Counts resets, so that what a page saw before one never looks current after.
        self._resets = 0
        self._app = build_app(
            emulator=self,
            backend=self._backend,
            faults=self._faults,
            refusals=self._refusals,
            identify=self._students_get,
            mount=self._mount,
            version=self._version,
        )

    def _students_get(self, token: str) -> str | None:
        return self._students.get(token)

    def _version(self) -> str:
        count, last = self._store.version()
        return f"{self._resets}.{count}.{last}"

    # ── configuration ──────────────────────────────────────────────────────────────────

    @property
    def app(self) -> ASGIApp:
        """The ASGI app."""
        return self._app

    @property
    def mount(self) -> str:
        """The mount path of the vendor routes, e.g. ``/api/timeback``."""
        return self._mount

    @property
    def faults(self) -> Faults:
        """The fault queue for the next heartbeats."""
        return self._faults

    @property
    def students(self) -> Mapping[str, str]:
        """Token -> email of the known students (read-only)."""
        return self._students

    def add_student(self, token: str, email: str) -> None:
        """Make one more token known (for example after a re-login)."""
        self._students = MappingProxyType({**self._students, token: email})

    def remove_student(self, token: str) -> None:
        """Forget a token: its requests get 401 from now on (an expired session)."""
        self._students = MappingProxyType(
            {known: email for known, email in self._students.items() if known != token}
        )

    # ── the operator's fixes ───────────────────────────────────────────────────────────

    @property
    def courses(self) -> tuple[Course, ...] | None:
        """The configured courses as they are now; None for the open catalog."""
        return self._catalog.courses

    @property
    def roster(self) -> frozenset[str] | None:
        """The emails OneRoster knows; None when it knows every email (the default)."""
        return self._backend.roster

    def set_roster(self, emails: Iterable[str] | None) -> None:
        """Know only these students in OneRoster (the others get 404
        ``USER_RESOLUTION_FAILED``); None: every student."""
        if isinstance(emails, str):
            raise TypeError("roster must be a list of emails, not one string")
        self._backend.roster = None if emails is None else frozenset(emails)

    def add_to_roster(self, email: str) -> None:
        """A student is added to the roster: their windows are accepted from now on."""
        roster = self._backend.roster
        if roster is not None:
            self._backend.roster = roster | {email}

    def set_courses(self, courses: Sequence[Course] | None) -> None:
        """Replace the app's configured courses, as a redeploy with another
        ``timeback.config.json`` would; None: the open catalog (every course synced).

        Raises:
            ValueError: the config would not boot (a duplicate selector, no sensor).
        """
        self._catalog.replace(courses)

    @property
    def env(self) -> Environment:
        """The backend's Timeback environment: ``"staging"`` or ``"production"``."""
        return self._env

    def set_config(self, config: ConfigSource) -> None:
        """Redeploy the app with another ``timeback.config.json`` (a path or its decoded
        JSON): its courses, ``name`` and ``sensor`` replace the emulator's.

        Raises:
            ValidationError: the vendor's server would not start with it (the field named).
        """
        loaded = load_config(config)
        courses = courses_from_config(loaded, self._env)
        self._catalog.reconfigure(courses, sensor=loaded.sensor)
        self._backend.app_name = loaded.name

    def add_course(self, course: Course) -> None:
        """A course is added to the app's config (it was ``UNKNOWN_COURSE`` until now).

        Raises:
            ValueError: the catalog is open (``courses=None``), or the config would not
                boot with this course (a duplicate selector, no sensor).
        """
        self._catalog.add(course)

    def sync_course(
        self,
        *,
        subject: str | None = None,
        grade: int | None = None,
        code: str | None = None,
        course_id: str | None = None,
    ) -> Course:
        """A configured course is synced (``timeback resources push``): it gets a course
        id in both environments and stops being ``MISSING_SYNCED_COURSE_ID``.

        Name the course as a heartbeat does: by ``subject`` and ``grade``, or by ``code``.

        Args:
            subject: The course's subject, with ``grade``.
            grade: The course's grade, with ``subject``.
            code: The course's code, instead of both.
            course_id: The synced id (default: a new one).

        Returns:
            The course as it is now configured.

        Raises:
            ValueError: the catalog is open, or no single configured course is named so.
        """
        selector: Selector
        if code is not None:
            selector = CourseCode(code=code)
        elif subject is not None and grade is not None:
            selector = SubjectGrade(subject=subject, grade=grade)
        else:
            raise ValueError("name the course by subject and grade, or by code")
        synced_id = course_id or f"synced-{uuid.uuid4().hex[:12]}"
        return self._catalog.sync(selector, staging_id=synced_id, production_id=synced_id)

    # ── connecting ─────────────────────────────────────────────────────────────────────

    def transport(self) -> httpx.AsyncBaseTransport:
        """An httpx transport into the app with no socket, faults included.

        Use with ``httpx.AsyncClient(transport=..., base_url="http://emulator/api/timeback")``
        (any host will do). An injected drop raises ``httpx.RemoteProtocolError`` and the
        client's read timeout applies, as over a network.
        """
        return EmulatorTransport(self._app)

    def serve_in_thread(
        self, port: int = 0, *, host: str = DEFAULT_HOST
    ) -> AbstractContextManager[str]:
        """Serve on a real loopback socket, with uvicorn in a background thread.

        Example:
            >>> with emulator.serve_in_thread() as base_url:
            ...     httpx.post(base_url + "/activity/heartbeat", ...)

        Args:
            port: Port to bind; 0 picks a free one.
            host: Address to bind.

        Returns:
            A context manager yielding the base URL, e.g.
            ``http://127.0.0.1:54321/api/timeback``; the server stops on exit.
        """
        return serve_in_thread(self._app, mount=self._mount, host=host, port=port)

    # ── the server side ────────────────────────────────────────────────────────────────

    def record(self, input_data: Mapping[str, Any]) -> tuple[SentEvent, ...]:
        """The vendor's ``timeback.activity.record()``, as the app's server calls it.

        Args:
            input_data: snake_case input: ``user`` (``email``, optional ``timeback_id``),
                ``activity`` (``id``, ``name``, ``course``), ``metrics`` (``xp_earned``
                required; ``total_questions``, ``correct_questions``, ``mastered_units``,
                ``pct_complete``), optional ``time`` (``started_at``, ``ended_at``,
                ``active_ms``, ``inactive_ms``) and optional ``run_id``.

        Returns:
            The stored ActivityCompletedEvent, and the TimeSpentEvent when ``time`` was
            given (the vendor sends one then, whether or not heartbeats already did).

        Raises:
            RecordRejected: For input the vendor refuses (same field and message);
                counted in `refusals`.
        """
        try:
            return self._backend.record(input_data)
        except RecordRejected as exc:
            self._refusals.note_rejection("record", exc.rejection)
            raise

    # ── inspection ─────────────────────────────────────────────────────────────────────

    def run(self, run_id: str) -> Run:
        """What was recorded for one run.

        Raises:
            UnknownRun: no heartbeat and no ``record()`` ever named this runId (a mistyped
                or unsent runId, not a run with no time).
        """
        events = self._store.events(run_id)
        if not events:
            raise UnknownRun(run_id, known=self._store.run_ids())
        return build_run(run_id, events)

    def runs(self) -> tuple[Run, ...]:
        """Every run, in order of first appearance."""
        return tuple(
            build_run(run_id, events) for run_id, events in _by_run(self._store.events()).items()
        )

    def events(self) -> tuple[SentEvent, ...]:
        """Every Caliper event sent, in arrival order."""
        return self._store.events()

    def problems(self) -> tuple[Problem, ...]:
        """Integration mistakes seen so far, run by run (see ``RULES``)."""
        # The rules read no Caliper payload: decoding none of them halves the time.
        return tuple(
            problem
            for run_id, facts in _by_run(self._store.facts()).items()
            for problem in find_problems(run_id, facts)
        )

    def refusals(self) -> tuple[Refusal, ...]:
        """The app's requests refused so far (heartbeats and ``record()``), by route,
        status and error, most frequent first: time or completions the app lost.

        Only the backend's own answers count, never a queued `Fault`'s. Kept in memory,
        not in ``db``: since the emulator started or was last reset.
        """
        return self._refusals.all()

    def reset(self) -> None:
        """Forget every event, dedupe key, refusal and pending fault."""
        self._store.clear()
        self._faults.clear()
        self._refusals.clear()
        self._resets += 1

    def close(self) -> None:
        """Close the database."""
        self._store.close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
