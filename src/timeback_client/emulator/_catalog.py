"""The course catalog: what the vendor reads from ``timeback.config.json``.

The vendor resolves the course selector of every heartbeat against the app's configured
courses (``UNKNOWN_COURSE`` when none matches) and needs a synced course id for the
environment (``MISSING_SYNCED_COURSE_ID`` otherwise). The emulator keeps the same rules for
an explicit list of courses, and by default runs an *open* catalog in which every
well-formed selector names a synced course, so an app works against it with no setup.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import attrs

from .._backend_config import (
    BackendConfig,
    ConfiguredCourse,
    parse_backend_config,
    read_backend_config,
)
from .._errors import ValidationError

Environment = Literal["staging", "production"]

#: Subjects a heartbeat's ``course.subject`` may name (the vendor's request validation).
REQUEST_SUBJECTS = frozenset({"Math", "Reading", "Science", "Social Studies", "Writing", "Other"})

#: Subjects a configured course may carry (the Caliper ``TimebackSubject`` literal): the
#: vendor builds the activity context from the course's subject, and Caliper rejects others.
CALIPER_SUBJECTS = frozenset(
    {
        "Reading",
        "Language",
        "Vocabulary",
        "Social Studies",
        "Writing",
        "Science",
        "FastMath",
        "Math",
        "None",
        "Other",
    }
)


@attrs.frozen(kw_only=True)
class SubjectGrade:
    """A grade-based course selector: ``{"subject": ..., "grade": ...}``."""

    subject: str
    grade: int

    def describe(self) -> str:
        """The selector as the vendor spells it in error messages."""
        return f"{self.subject} grade {self.grade}"


@attrs.frozen(kw_only=True)
class CourseCode:
    """A grade-less course selector: ``{"code": ...}``."""

    code: str

    def describe(self) -> str:
        """The selector as the vendor spells it in error messages."""
        return f'code "{self.code}"'


Selector = SubjectGrade | CourseCode


def _check_subject(_instance: object, _attribute: object, value: str) -> None:
    if value not in CALIPER_SUBJECTS:
        raise ValueError(f"subject must be one of {sorted(CALIPER_SUBJECTS)}, not {value!r}")


def _check_identity(instance: Course, _attribute: object, value: str | None) -> None:
    if instance.grade is None and not value:
        raise ValueError("a course needs a 'grade' or a 'code'")


@attrs.frozen(kw_only=True)
class Course:
    """One configured course, like an entry of ``courses`` in ``timeback.config.json``.

    Attributes:
        subject: Caliper subject of the course (``"Math"``, ``"Reading"``, ...).
        grade: Grade 0..12 for a grade-based course.
        code: Course code for a grade-less course (``courseCode`` in the vendor config).
        staging_id: Synced OneRoster course id for staging (``ids.staging``).
        production_id: Synced OneRoster course id for production (``ids.production``).
        sensor: Caliper sensor URL of this course; the emulator's sensor when None.
    """

    subject: str = attrs.field(default="Other", validator=_check_subject)
    grade: int | None = None
    code: str | None = attrs.field(default=None, validator=_check_identity)
    staging_id: str | None = None
    production_id: str | None = None
    sensor: str | None = None

    def course_id(self, env: Environment) -> str | None:
        """The synced course id for ``env``, or None when the course was never synced."""
        return self.staging_id if env == "staging" else self.production_id

    @property
    def identifier(self) -> str:
        """How the vendor names the course in ``MISSING_SYNCED_COURSE_ID`` messages."""
        if self.code:
            return self.code
        if self.grade is not None:
            return f"{self.subject} grade {self.grade}"
        return self.subject

    @property
    def name(self) -> str:
        """The course name the vendor puts in the Caliper activity context."""
        if self.code:
            return self.code
        if self.grade is not None:
            return f"{self.subject} G{self.grade}"
        return self.subject

    def matches(self, selector: Selector) -> bool:
        """Whether a request's selector names this course (the vendor's equality rules)."""
        if isinstance(selector, SubjectGrade):
            return self.subject == selector.subject and self.grade == selector.grade
        return self.code == selector.code


class Catalog:
    """The courses a backend knows, open (every selector known) or explicit.

    Args:
        courses: Configured courses; None for the open catalog.
        sensor: The app's default sensor URL (top-level ``sensor`` in the vendor config).

    Raises:
        ValueError: When the configuration would be rejected by the vendor at start-up
            (duplicate selectors, or a course without an effective sensor).
    """

    def __init__(self, courses: Sequence[Course] | None, *, sensor: str | None) -> None:
        self._courses = None if courses is None else tuple(courses)
        self.sensor = sensor
        if self._courses is not None:
            _check_config(self._courses, sensor)

    def matches(self, selector: Selector) -> tuple[Course, ...]:
        """All courses the selector names: none, one, or (misconfigured) several."""
        courses = self._courses  # read once: the operator may replace it meanwhile
        if courses is None:
            return (_open_course(selector),)
        return tuple(course for course in courses if course.matches(selector))

    @property
    def courses(self) -> tuple[Course, ...] | None:
        """The configured courses; None for the open catalog."""
        return self._courses

    # The operator's fixes. Each replaces the tuple whole, never mutates it, so a request
    # handled on the server's thread sees the catalog before or after, never halfway.

    def replace(self, courses: Sequence[Course] | None) -> None:
        """The app's config is replaced (None: the open catalog).

        Raises:
            ValueError: the config would not boot (a duplicate selector, no sensor).
        """
        self.reconfigure(courses, sensor=self.sensor)

    def reconfigure(self, courses: Sequence[Course] | None, *, sensor: str | None) -> None:
        """The app's config is replaced, its default sensor with its courses.

        Raises:
            ValueError: the config would not boot (a duplicate selector, no sensor).
        """
        new = None if courses is None else tuple(courses)
        if new is not None:
            _check_config(new, sensor)
        # Two writes: a request in flight may pair the old courses with the new sensor,
        # as one may reach the real server halfway through its redeploy.
        self.sensor = sensor
        self._courses = new

    def add(self, course: Course) -> None:
        """A course is added to the app's config (and the backend redeployed).

        Raises:
            ValueError: the catalog is open (it knows every course already), or the
                config would not boot with it (a duplicate selector, no sensor).
        """
        if self._courses is None:
            raise ValueError("the open catalog knows every course already")
        courses = (*self._courses, course)
        _check_config(courses, self.sensor)
        self._courses = courses

    def sync(self, selector: Selector, *, staging_id: str, production_id: str) -> Course:
        """A configured course is synced (``timeback resources push``): it gets its ids.

        Raises:
            ValueError: the catalog is open, or no single configured course is
                ``selector``.
        """
        if self._courses is None:
            raise ValueError("the open catalog has every course synced already")
        matched = [course for course in self._courses if course.matches(selector)]
        if len(matched) != 1:
            found = "no" if not matched else f"{len(matched)}"
            raise ValueError(f"{found} configured course(s) match {selector.describe()}")
        synced = attrs.evolve(matched[0], staging_id=staging_id, production_id=production_id)
        self._courses = tuple(synced if c is matched[0] else c for c in self._courses)
        return synced


def _check_config(courses: tuple[Course, ...], sensor: str | None) -> None:
    # The same start-up checks as the vendor's `_validate_config`, so a catalog the
    # emulator accepts is one the real server would also boot with.
    grade_keys: set[tuple[str, int]] = set()
    codes: set[str] = set()
    for course in courses:
        if course.grade is not None:
            key = (course.subject, course.grade)
            if key in grade_keys:
                raise ValueError(
                    f"Duplicate (subject, grade) pair found: {course.subject} grade {course.grade}"
                )
            grade_keys.add(key)
        if course.code:
            if course.code in codes:
                raise ValueError(f"Duplicate course_code found: {course.code}")
            codes.add(course.code)
        if not course.sensor and not sensor:
            raise ValueError(f"Course '{course.identifier}' has no effective sensor.")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "course"


def _open_course(selector: Selector) -> Course:
    """The course an open catalog makes up for a selector, synced in both environments."""
    if isinstance(selector, SubjectGrade):
        course_id = f"emulator-{_slug(selector.subject)}-g{selector.grade}"
        return Course(
            subject=selector.subject,
            grade=selector.grade,
            staging_id=course_id,
            production_id=course_id,
        )
    course_id = f"emulator-{_slug(selector.code)}"
    return Course(code=selector.code, staging_id=course_id, production_id=course_id)


ConfigSource = str | os.PathLike[str] | Mapping[str, Any] | BackendConfig
"""A backend's ``timeback.config.json``: its path, its decoded JSON, or as read."""


def load_config(config: ConfigSource) -> BackendConfig:
    """The config, read from its file when given a path.

    Raises:
        ValidationError: it cannot be read, or is not such a config (the field named).
    """
    if isinstance(config, BackendConfig):
        return config
    if isinstance(config, Mapping):
        return parse_backend_config(dict(config), source="config")
    if not isinstance(config, str | os.PathLike):
        raise ValidationError(
            "config=",
            f"a {type(config).__name__} is neither a path nor the config's JSON",
            "Pass the path of the backend's timeback.config.json, or its JSON as a dict.",
        )
    return read_backend_config(config)


def courses_from_config(config: BackendConfig, env: Environment) -> tuple[Course, ...]:
    """The emulator's courses for a backend's config in ``env``, checked as the vendor's
    server checks them when it starts.

    Raises:
        ValidationError: a course the vendor's server could not boot with, or no Caliper
            event could carry (the field named).
    """
    courses = tuple(_configured(course, config, env) for course in config.courses)
    try:
        _check_config(courses, config.sensor)
    except ValueError as exc:
        raise ValidationError(
            config.source,
            str(exc).rstrip("."),
            "Set a top-level 'sensor', a course 'sensor', or a 'launchUrl' to derive it from.",
        ) from None
    return courses


def _configured(configured: ConfiguredCourse, config: BackendConfig, env: Environment) -> Course:
    try:
        return Course(
            subject=configured.subject,
            grade=configured.grade,
            code=configured.code,
            staging_id=configured.course_id("staging"),
            production_id=configured.course_id("production"),
            sensor=config.sensor_of(configured, env),
        )
    except ValueError as exc:
        raise ValidationError(
            f"{configured.field}.subject",
            f"{configured.subject!r} is no Caliper subject",
            f"Write one of {', '.join(sorted(CALIPER_SUBJECTS))}.",
        ) from exc
