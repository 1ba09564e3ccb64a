"""The simulated student, shared by ``timeback-client simulate`` and the Locust users.

A student is a *plan*: a generator of steps (`Wait`, `Start`, `Touch`, `Pause`,
`Resume`, `End`, `Complete`) drawn from a seeded random mind and a `Behaviour`. The plan
knows nothing of clocks, event loops or HTTP: a driver carries each step out with the
SDK's real `Activity` (an anyio task in ``simulate``, a gevent greenlet under Locust),
sends the run id back after each `Start`, and stops asking for steps when lesson time is
up, ending the open activity itself. Both tools therefore drive the very same behaviour,
and what they send is what apps send.

    plan = student_plan(index=7, seed=42, behaviour=Behaviour(), lessons=BUILTIN_LESSONS)
    step = next(plan)
    while True:
        ...  # carry `step` out; for a Start, reply = activity.run_id, else None
        step = plan.send(reply)

The plan's own sense of time is the sum of the waits it asked for, so a driver must wait
exactly as long as a `Wait` says (in lesson time), or stop.

Against a real deployment, the students take the backend's own courses and log in as the
deployment's students:

    catalogue = read_catalogue("timeback.config.json")   # or courses_from_specs(["Math:3"])
    roster = read_roster("students.txt")                  # a bearer token or cookie a line
    credential = roster.for_student(7)                    # round-robin
    AsyncTimeback(url, headers=credential.headers, cookies=credential.cookies, ...)

Both read files at the door: bad input is a `ValidationError` naming the file, the line
or field, and the fix. Credentials are secrets: no repr, message or report shows them.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Generator, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from .._backend_config import ConfiguredCourse, read_backend_config, read_text
from .._errors import ValidationError
from .._models import SUBJECTS, Course, CourseFields

__all__ = [
    "BUILTIN_CATALOGUE",
    "BUILTIN_LESSONS",
    "Behaviour",
    "Catalogue",
    "Complete",
    "Credential",
    "End",
    "Lesson",
    "Pause",
    "Plan",
    "Resume",
    "Roster",
    "Start",
    "Step",
    "Touch",
    "Wait",
    "completion_body",
    "courses_from_specs",
    "describe_course",
    "parse_course",
    "parse_credential",
    "read_catalogue",
    "read_roster",
    "student_plan",
]


@attrs.frozen(kw_only=True)
class Lesson:
    """One activity a student can take: the arguments of ``activity.start``."""

    id: str
    name: str
    course: CourseFields


BUILTIN_LESSONS: Final[tuple[Lesson, ...]] = (
    Lesson(
        id="fractions-1",
        name="Fractions: halves and quarters",
        course={"subject": "Math", "grade": 3},
    ),
    Lesson(
        id="main-idea-2",
        name="Finding the main idea",
        course={"subject": "Reading", "grade": 4},
    ),
    Lesson(
        id="cells-1",
        name="Cells and what they do",
        course={"subject": "Science", "grade": 6},
    ),
    Lesson(id="loops-1", name="Loops", course={"code": "CS-101"}),
)
"""The lessons of the built-in catalogue: what the emulator's open catalogue accepts."""


@attrs.frozen(kw_only=True)
class Behaviour:
    """How simulated students behave, in lesson seconds (chances are per step)."""

    arrival_spread: float = 60.0  # arrivals are spread over this (or one interval, if longer)
    session_mean: float = 480.0  # a session lasts this long on average, then they leave
    work_mean: float = 90.0  # a stretch of work lasts this long on average
    touch_every: tuple[float, float] = (3.0, 12.0)  # input while working
    break_chance: float = 0.10
    break_length: tuple[float, float] = (20.0, 120.0)
    idle_chance: float = 0.08
    idle_timeout: float = 60.0
    idle_extra: tuple[float, float] = (5.0, 60.0)  # how long past idle_timeout they stay away
    away_length: tuple[float, float] = (60.0, 300.0)  # between sessions
    complete_chance: float = 0.03  # a session ends with the lesson completed
    record_after: float = 2.0  # the server records the completion this long after end()


@attrs.frozen
class Wait:
    """Let ``seconds`` of lesson time pass (stop instead if lesson time runs out first)."""

    seconds: float


@attrs.frozen
class Start:
    """Start ``lesson`` (resuming ``run_id`` when given); reply with the run id."""

    lesson: Lesson
    run_id: str | None


@attrs.frozen
class Touch:
    """The student gives input: ``activity.touch()``."""


@attrs.frozen
class Pause:
    """The student takes a break: ``activity.pause()``."""


@attrs.frozen
class Resume:
    """Back from the break: ``activity.resume()``."""


@attrs.frozen
class End:
    """The student leaves: ``activity.end()`` (time flushed, nothing completed)."""


@attrs.frozen
class Complete:
    """The app's server records the completion of ``run_id`` (never the client)."""

    lesson: Lesson
    run_id: str


def completion_body(email: str, lesson: Lesson, run_id: str) -> dict[str, Any]:
    """What the app's server passes to ``record()`` for a `Complete` step (the emulator's
    ``POST /_emulator/record``): the student, the lesson, fixed metrics, the run."""
    return {
        "user": {"email": email},
        "activity": {"id": lesson.id, "name": lesson.name, "course": lesson.course},
        "metrics": {
            "total_questions": 10,
            "correct_questions": 8,
            "xp_earned": 10,
            "pct_complete": 100,
            "mastered_units": 1,
        },
        "run_id": run_id,
    }


Step = Wait | Start | Touch | Pause | Resume | End | Complete
"""One thing a student does next."""
Plan = Generator[Step, str | None, None]
"""A student's steps: send the run id back after a `Start`, None after any other step."""
_MS: Final = 1000


def student_plan(
    *,
    index: int,
    seed: int,
    behaviour: Behaviour,
    lessons: Sequence[Lesson],
    can_complete: bool = True,
) -> Plan:
    """The steps of student ``index``: arrive, work, break, idle, leave, come back, complete.

    Args:
        index: the student's number; picks the first lesson and seeds the mind with ``seed``.
        seed: the run's seed: the same seed and index give the same plan.
        behaviour: the mix of work, breaks, idling and sessions.
        lessons: the catalogue (at least one lesson); a completion moves to the next one.
        can_complete: whether the target records completions; without it no `Complete`
            step is planned (and the mind draws no number for one).

    A driver sends the run id back after each `Start`, ``None`` after any other step.
    """
    if not lessons:
        raise ValueError("lessons: give at least one lesson for students to take")
    rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - behaviour, not secrets
    yield Wait(rng.uniform(0, behaviour.arrival_spread))
    lesson_index = index % len(lessons)
    run_id: str | None = None
    while True:
        lesson = lessons[lesson_index]
        started = yield Start(lesson, run_id)
        if started is None:
            raise ValueError("a driver must send the run id back after a Start step")
        run_id = started
        yield from _session(rng, behaviour)
        yield End()
        if can_complete and rng.random() < behaviour.complete_chance:
            yield Wait(behaviour.record_after)
            yield Complete(lesson, run_id)
            # A new attempt needs a fresh runId: the next lesson, a new run.
            lesson_index = (lesson_index + 1) % len(lessons)
            run_id = None
        yield Wait(rng.uniform(*behaviour.away_length))


def _session(rng: random.Random, behaviour: Behaviour) -> Generator[Step, str | None, None]:
    """One sitting: stretches of work, breaks and idling until the student leaves."""
    left_ms = round(rng.expovariate(1 / behaviour.session_mean) * _MS)
    while left_ms > 0:
        step = rng.random()
        if step < behaviour.break_chance:
            seconds = rng.uniform(*behaviour.break_length)
            yield Pause()
            yield Wait(seconds)
            yield Resume()
        elif step < behaviour.break_chance + behaviour.idle_chance:
            # No input at all: the SDK pauses the activity itself after idle_timeout.
            seconds = behaviour.idle_timeout + rng.uniform(*behaviour.idle_extra)
            yield Wait(seconds)
            yield Touch()
        else:
            work_ms = min(round(rng.expovariate(1 / behaviour.work_mean) * _MS), left_ms)
            while work_ms > 0:
                seconds = min(rng.uniform(*behaviour.touch_every), work_ms / _MS)
                yield Wait(seconds)
                yield Touch()
                work_ms -= round(seconds * _MS)
                left_ms -= round(seconds * _MS)
            continue
        left_ms -= round(seconds * _MS)


# ── the backend's courses ─────────────────────────────────────────────────────────────


@attrs.frozen(kw_only=True)
class Catalogue:
    """The lessons students take, and where their courses came from.

    Attributes:
        lessons: one lesson per course, in the order given (at least one).
        source: where the courses came from: ``"built-in"``, a file, or ``"given"``.
        left_out: the courses of the source that no heartbeat can use, each with why.
    """

    lessons: tuple[Lesson, ...]
    source: str
    left_out: tuple[str, ...] = ()


BUILTIN_CATALOGUE: Final = Catalogue(lessons=BUILTIN_LESSONS, source="built-in")
"""`BUILTIN_LESSONS` as a catalogue: what students take unless told the backend's courses."""

_SPEC_FIX: Final = 'Write subject:grade, e.g. "Math:3", or code:COURSE, e.g. "code:CS-101".'


def describe_course(course: CourseFields | Course) -> str:
    """A course as the backend's server SDK names it: ``Math grade 3``, ``code "CS-101"``."""
    course = Course.from_value(course)
    if course.code:
        return f'code "{course.code}"'
    return f"{course.subject} grade {course.grade}"


def read_catalogue(
    path: str | os.PathLike[str],
    *,
    environment: Literal["staging", "production"] | None = None,
) -> Catalogue:
    """The backend's courses, from the ``timeback.config.json`` its server SDK reads.

    Each configured course becomes one lesson, named as the backend names the course, and
    selected as a heartbeat can select it: by ``courseCode`` when it has one, else by
    subject and grade. A course the backend could take no heartbeat for is left out and
    said so in `Catalogue.left_out`: one never synced (no ``ids`` for ``environment``, or,
    without one, no id at all), or one whose subject a heartbeat cannot name.

    Args:
        path: the backend's ``timeback.config.json``.
        environment: the backend's Timeback environment; None keeps every course synced
            in any environment.

    Raises:
        ValidationError: the file cannot be read, is not such a config (the field named,
            e.g. ``courses[2].grade``), or leaves no course a heartbeat can use.
    """
    config = read_backend_config(path)
    lessons: list[Lesson] = []
    left_out: list[str] = []
    for configured in config.courses:
        lesson, reason = _configured_lesson(configured, environment)
        if lesson is not None:
            lessons.append(lesson)
        elif reason is not None:
            left_out.append(reason)
    if not lessons:
        raise ValidationError(
            config.source,
            f"names no course a heartbeat can use ({'; '.join(left_out)})",
            "Sync the courses (ids.staging, ids.production), or name courses the backend "
            'knows instead, e.g. "Math:3".',
        )
    return Catalogue(lessons=tuple(lessons), source=config.source, left_out=tuple(left_out))


def _configured_lesson(
    configured: ConfiguredCourse, environment: Literal["staging", "production"] | None
) -> tuple[Lesson | None, str | None]:
    """One configured course: its lesson, or (None, why it is left out)."""
    name = configured.name
    synced = (
        configured.course_id(environment) is not None
        if environment is not None
        else configured.synced_anywhere()
    )
    if not synced:
        where = f"ids.{environment}" if environment else "ids"
        return None, f"{name}: not synced (no {where})"
    if configured.code:
        course: CourseFields = {"code": configured.code}
    elif configured.subject in SUBJECTS:
        course = {"subject": configured.subject, "grade": configured.grade}  # type: ignore[typeddict-item]
    else:
        return (
            None,
            f"{name}: a heartbeat cannot name the subject {configured.subject!r} "
            "(give it a courseCode)",
        )
    try:
        Course.from_value(course)
    except ValidationError as exc:
        raise ValidationError(configured.field, exc.problem, exc.fix) from None
    return Lesson(id=_slug(name), name=name, course=course), None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "lesson"


def parse_course(spec: str) -> Lesson:
    """A lesson of the course ``spec``: ``"Math:3"`` (subject:grade) or ``"code:CS-101"``.

    The subject may be written in any case (``"social studies:5"``).

    Raises:
        ValidationError: ``spec`` names no course a heartbeat can carry.
    """
    field = f"course {spec!r}"
    text = spec.strip() if isinstance(spec, str) else ""
    course: CourseFields
    if text.lower().startswith("code:"):
        code = text[len("code:") :].strip()
        if not code:
            raise ValidationError(field, "has no code after 'code:'", _SPEC_FIX)
        course = {"code": code}
    else:
        head, colon, tail = text.rpartition(":")
        subject = next((s for s in SUBJECTS if s.lower() == head.strip().lower()), None)
        if not colon or subject is None:
            problem = f"names no subject ({', '.join(SUBJECTS)})" if colon else "is not a course"
            raise ValidationError(field, problem, _SPEC_FIX)
        grade = tail.strip()
        if not grade.isdigit() or not 0 <= int(grade) <= 12:
            raise ValidationError(field, f"{grade!r} is not a grade from 0 to 12", _SPEC_FIX)
        course = {"subject": subject, "grade": int(grade)}  # type: ignore[typeddict-item]
    try:
        Course.from_value(course)
    except ValidationError as exc:
        raise ValidationError(field, exc.problem, exc.fix) from None
    name = course.get("code") or f"{course.get('subject')} grade {course.get('grade')}"
    return Lesson(id=_slug(name), name=name, course=course)


def courses_from_specs(specs: Iterable[str]) -> Catalogue:
    """A catalogue of the courses ``specs`` name (see `parse_course`), each once.

    Raises:
        ValidationError: a spec names no course, or there is none.
    """
    lessons: dict[str, Lesson] = {}
    for spec in specs:
        lesson = parse_course(spec)
        lessons.setdefault(lesson.id, lesson)
    if not lessons:
        raise ValidationError("courses", "none given", _SPEC_FIX)
    return Catalogue(lessons=tuple(lessons.values()), source="given")


# ── the deployment's students ─────────────────────────────────────────────────────────

# What a header value or a cookie can carry (the client's own checks, `_options.valid_headers`):
# visible ASCII; a token has no space inside, a cookie no ';'.
_TOKEN_TEXT: Final = frozenset(map(chr, range(0x21, 0x7F)))
_COOKIE_TEXT: Final = frozenset(map(chr, range(0x20, 0x7F))) - {";"}
_NAME_TEXT: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_ROSTER_FIX: Final = (
    "Write one student a line: a bearer token as is (or 'Bearer TOKEN'), or a session "
    "cookie as name=value."
)


@attrs.frozen(kw_only=True)
class Credential:
    """One student's login to the backend: a bearer token or a session cookie.

    The value is a secret: it is in no repr, no message and no report; `label` (where it
    came from, e.g. ``"students.txt line 3"``) is what may be shown.
    """

    kind: Literal["bearer", "cookie"]
    name: str  # the cookie's name; "Authorization" for a bearer token
    value: str = attrs.field(repr=False)
    label: str

    @classmethod
    def bearer(cls, token: str, *, label: str) -> Credential:
        """``Authorization: Bearer <token>``."""
        return cls(kind="bearer", name="Authorization", value=token, label=label)

    @classmethod
    def cookie(cls, name: str, value: str, *, label: str) -> Credential:
        """A session cookie ``name=value``."""
        return cls(kind="cookie", name=name, value=value, label=label)

    @property
    def headers(self) -> dict[str, str]:
        """The ``headers=`` of a client (empty for a cookie)."""
        return {"Authorization": f"Bearer {self.value}"} if self.kind == "bearer" else {}

    @property
    def cookies(self) -> dict[str, str]:
        """The ``cookies=`` of a client (empty for a bearer token)."""
        return {self.name: self.value} if self.kind == "cookie" else {}


def parse_credential(line: str, *, label: str) -> Credential:
    """One credential: ``TOKEN``, ``Bearer TOKEN``, or a cookie ``name=value``.

    A line with ``=`` is a cookie when a name comes before the first ``=`` and more than
    ``=`` follows it; so a base64 token, whose ``=`` are only padding at its end, stays a
    token. Write ``Bearer TOKEN`` for any other token holding ``=``.

    Raises:
        ValidationError: naming ``label`` (never the secret) and what is wrong.
    """
    text = line.strip()
    scheme, _, rest = text.partition(" ")
    if scheme.lower() == "bearer" and rest.strip():
        return _token(rest.strip(), label)
    name, equals, value = text.partition("=")
    if equals and value.strip("=") and name and set(name) <= _NAME_TEXT:
        if not set(value) <= _COOKIE_TEXT:
            raise ValidationError(
                label, "holds a cookie value with ';' or a character past ASCII", _ROSTER_FIX
            )
        return Credential.cookie(name, value, label=label)
    return _token(text, label)


def _token(token: str, label: str) -> Credential:
    if not token:
        raise ValidationError(label, "is empty", _ROSTER_FIX)
    if not set(token) <= _TOKEN_TEXT:
        raise ValidationError(
            label, "holds a space or a character past ASCII, which no token has", _ROSTER_FIX
        )
    return Credential.bearer(token, label=label)


@attrs.frozen(kw_only=True)
class Roster:
    """The deployment's students: their credentials, used round-robin.

    Attributes:
        credentials: one per student of the deployment (at least one).
        source: where they came from (a file, ``"--token"``); safe to show.
    """

    credentials: tuple[Credential, ...] = attrs.field(validator=attrs.validators.min_len(1))
    source: str

    def for_student(self, index: int) -> Credential:
        """The credential of simulated student ``index``: round-robin over the roster."""
        return self.credentials[index % len(self.credentials)]

    def __len__(self) -> int:
        return len(self.credentials)


def read_roster(path: str | os.PathLike[str]) -> Roster:
    """The deployment's students from a file: a bearer token or a cookie a line.

    Blank lines and lines starting with ``#`` are skipped. See `parse_credential`.

    Raises:
        ValidationError: the file cannot be read, holds no credential, a line is not one,
            or a line repeats another (its number named; its value never shown).
    """
    where = os.fspath(path)
    text = read_text(where, _ROSTER_FIX)
    credentials: list[Credential] = []
    first_line: dict[tuple[str, str, str], int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        credential = parse_credential(line, label=f"{where} line {number}")
        key = (credential.kind, credential.name, credential.value)
        if key in first_line:
            raise ValidationError(
                f"{where} line {number}",
                f"repeats line {first_line[key]}",
                "List each student once: students are given the lines round-robin when "
                "there are more of them than lines.",
            )
        first_line[key] = number
        credentials.append(credential)
    if not credentials:
        raise ValidationError(where, "holds no credential", _ROSTER_FIX)
    return Roster(credentials=tuple(credentials), source=where)
