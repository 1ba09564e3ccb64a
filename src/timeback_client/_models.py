"""Immutable values: the course selector, the time options, and the window on the wire.

A window's body is built here and only here: `Window.to_bytes` (from the run's shared
fields, encoded once per run), the run's `body_template` that the outbox keeps beside its
open window, a window made again from that template after a crash (`window_body`), and
two adjacent windows merged when the outbox is full (`merge_bodies`).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal, TypedDict

import attrs

from ._errors import TimebackError, ValidationError

__all__ = [
    "SUBJECTS",
    "Course",
    "CourseFields",
    "ErrorContext",
    "OpenWindow",
    "Subject",
    "TimeOptions",
    "Window",
    "WindowKey",
    "body_template",
    "check_sendable",
    "format_timestamp",
    "merge_bodies",
    "normalize_run_id",
    "run_id_for",
    "window_body",
]

Subject = Literal["Math", "Reading", "Science", "Social Studies", "Writing", "Other"]
SUBJECTS: Final[tuple[str, ...]] = (
    "Math",
    "Reading",
    "Science",
    "Social Studies",
    "Writing",
    "Other",
)
#: A window's identity in the outbox and at the server: ``(run_id, started_at_ms)``.
WindowKey = tuple[str, int]
#: A run's open window as of its last change, in its clock's timeline ms (the outbox
#: writer maps them to wall ms as it writes them):
#: ``(start_ms, as_of_ms, active_ms, counting, suspended_ms at as_of)``.
OpenWindow = tuple[int, int, int, bool, int]
_UUID_SHAPE: Final = re.compile(
    r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE
)
_YEAR_10000: Final = 253_402_300_800  # epoch seconds of 10000-01-01: datetime's limit
# Any fixed namespace works for run_id_for(); this one is ours so that the same app key
# always maps to the same run id, on every machine and in every release.
_RUN_ID_NAMESPACE: Final = uuid.UUID("6f1d3c0e-6b4a-5d0e-9a57-7e3b1f1c2a10")


def _check_subject(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and value not in SUBJECTS:
        raise ValidationError(
            "course.subject",
            f"{value!r} is not a Timeback subject",
            f"Use one of {', '.join(SUBJECTS)}, or give a course code instead.",
        )


def _check_grade(_: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(
            "course.grade",
            f"{value!r} is not an integer",
            "Pass the grade as an int from 0 (kindergarten) to 12.",
        )
    if not 0 <= value <= 12:
        raise ValidationError(
            "course.grade", f"{value} is outside 0..12", "Pass a grade from 0 to 12."
        )


def _check_code(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValidationError(
            "course.code",
            f"{value!r} is not a non-empty string",
            'Pass the course code as text, e.g. "CS-101", or give subject and grade.',
        )
    if value is not None:
        check_sendable("course.code", value)


def check_sendable(field: str, value: str) -> None:
    """Refuse text that cannot go into a heartbeat's JSON as UTF-8: a lone surrogate, which
    is what ``os.fsdecode`` gives for a file name that is not UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise ValidationError(
            field,
            f"{value!r} holds a lone surrogate ({exc.object[exc.start : exc.end]!r} at "
            f"{exc.start}), which cannot be sent as UTF-8",
            "Pass clean text; for a file name, decode it with errors='replace'.",
        ) from None


class CourseFields(TypedDict, total=False):
    """A course as a mapping: ``{"subject": "Math", "grade": 3}`` or ``{"code": "CS-101"}``."""

    subject: Subject
    grade: int
    code: str


@attrs.frozen(kw_only=True)
class Course:
    """Which course an activity belongs to: a subject and grade, or a course code.

    If a non-empty ``code`` is given, the backend selects the course by it, as the
    vendor's server does.
    """

    subject: Subject | None = attrs.field(default=None, validator=_check_subject)
    grade: int | None = attrs.field(default=None, validator=_check_grade)
    code: str | None = attrs.field(default=None, validator=_check_code)

    def __attrs_post_init__(self) -> None:
        if self.code is None and (self.subject is None or self.grade is None):
            raise ValidationError(
                "course",
                "needs a subject and a grade, or a code",
                'Pass {"subject": "Math", "grade": 3} or {"code": "CS-101"}.',
            )

    @classmethod
    def from_value(cls, value: Course | CourseFields | Mapping[str, Any]) -> Course:
        """Accept a `Course` or a mapping such as ``{"subject": "Math", "grade": 3}``."""
        if isinstance(value, Course):
            return value
        if not isinstance(value, Mapping):
            raise ValidationError(
                "course",
                f"{type(value).__name__} is not a course",
                'Pass a Course, {"subject": "Math", "grade": 3} or {"code": "CS-101"}.',
            )
        unknown = set(value) - {"subject", "grade", "code"}
        if unknown:
            raise ValidationError(
                "course",
                f"unknown key(s) {', '.join(sorted(map(str, unknown)))}",
                "A course has only subject and grade, or code.",
            )
        fields = (value.get("subject"), value.get("grade"), value.get("code"))
        try:
            return _course(*fields)  # the same course, one object, however many students
        except TypeError:  # unhashable values: validation says what is wrong
            return cls(subject=fields[0], grade=fields[1], code=fields[2])

    def to_json(self) -> dict[str, Any]:
        """The ``course`` object of a heartbeat body."""
        body: dict[str, Any] = {}
        if self.subject is not None:
            body["subject"] = self.subject
        if self.grade is not None:
            body["grade"] = self.grade
        if self.code is not None:
            body["code"] = self.code
        return body


@functools.lru_cache(maxsize=1024, typed=True)
def _course(subject: Any, grade: Any, code: Any) -> Course:
    # typed: True == 1, yet a bool grade must reach validation as a bool.
    return Course(subject=subject, grade=grade, code=code)


def _positive_seconds(_: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is None and attribute.name == "idle_timeout":
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        # Time is kept in whole ms: a shorter interval would round to 0 and spin.
        or value < 0.001
    ):
        # idle_timeout defaults to None, which is no example of a number of seconds.
        example = 120.0 if attribute.default is None else attribute.default
        raise ValidationError(
            f"time.{attribute.name}",
            f"{value!r} is not a positive number of seconds (1 ms at least)",
            f"Pass a positive finite number of seconds, e.g. {example!r}.",
        )


@attrs.frozen(kw_only=True)
class TimeOptions:
    """How an activity tracks time. All durations are in seconds.

    Attributes:
        heartbeat_interval: a window is sent this often while the activity is active.
        idle_timeout: without `touch()` for this long, the activity pauses itself; the next
            `touch()` resumes it. None (the default) never pauses for idleness.
        abandon_after: paused (or suspended) for longer than this, tracking restarts from a
            clean slate on resume: the gap is not reported, as the browser SDK does.
        flush_timeout: `end()` and `close()` wait at most this long for delivery.
    """

    heartbeat_interval: float = attrs.field(default=15.0, validator=_positive_seconds)
    idle_timeout: float | None = attrs.field(default=None, validator=_positive_seconds)
    abandon_after: float = attrs.field(default=600.0, validator=_positive_seconds)
    flush_timeout: float = attrs.field(default=5.0, validator=_positive_seconds)


def format_timestamp(epoch_ms: int) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2026-11-25T10:00:00.000Z``."""
    seconds, ms = divmod(epoch_ms, 1000)
    if 0 <= seconds < _YEAR_10000:
        # A heartbeat formats two of these: time.gmtime is three times datetime's speed.
        t = time.gmtime(seconds)
        return (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}.{ms:03d}Z"
        )
    moment = datetime.fromtimestamp(seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def _shared_fields(activity_id: str, name: str, course: Course, run_id: str) -> str:
    """The fields every window of a run shares, as compact JSON."""
    shared = {"id": activity_id, "name": name, "course": course.to_json(), "runId": run_id}
    return json.dumps(shared, separators=(",", ":"), ensure_ascii=False)


@functools.lru_cache(maxsize=256)
def _body_prefix(activity_id: str, name: str, course: Course, run_id: str) -> str:
    """The fields every window of a run shares, as JSON without its closing brace (kept
    for the runs that send now: each of their windows starts with it)."""
    return _shared_fields(activity_id, name, course, run_id)[:-1]


def body_template(activity_id: str, name: str, course: Course, run_id: str) -> bytes:
    """The fields every window of a run shares (id, name, course, runId), as the JSON
    object the outbox keeps beside a run's open window: `window_body` makes a window's
    exact bytes from it after a crash."""
    # Not through _body_prefix's cache: a run that starts sends nothing yet, and a
    # thousand starts would fill the cache with prefixes no window needs.
    return _shared_fields(activity_id, name, course, run_id).encode()


def normalize_run_id(run_id: object) -> str:
    """Check that ``run_id`` is UUID-shaped and return it in lowercase."""
    if isinstance(run_id, uuid.UUID):
        return str(run_id)
    if not isinstance(run_id, str) or not _UUID_SHAPE.match(run_id):
        raise ValidationError(
            "run_id",
            f"{run_id!r} is not a UUID (8-4-4-4-12 hex digits)",
            "Pass the run_id of an earlier session as saved, or None for a new run. "
            "To derive a stable run id from your own key, use "
            "timeback_client.run_id_for('student-42/lesson-1/attempt-1').",
        )
    return run_id.lower()


def run_id_for(key: str) -> str:
    """A run id derived from an app's own key (a UUIDv5): the same key, the same run id.

    Useful when an app already names its attempts, e.g. ``"student-42/lesson-1/attempt-3"``.
    """
    if not isinstance(key, str) or not key:
        raise ValidationError("key", f"{key!r} is not a non-empty string", "Pass a text key.")
    return str(uuid.uuid5(_RUN_ID_NAMESPACE, key))


def _non_negative_int(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, not {value!r}")


@attrs.frozen(kw_only=True)
class Window:
    """One heartbeat: the time spent in an activity between two instants.

    Invariant: ``ended_at_ms - started_at_ms == elapsed_ms + paused_ms``. Timestamps are
    epoch milliseconds on the client's anchored wall clock.
    """

    activity_id: str
    name: str
    course: Course
    run_id: str
    started_at_ms: int
    ended_at_ms: int
    elapsed_ms: int = attrs.field(validator=_non_negative_int)
    paused_ms: int = attrs.field(validator=_non_negative_int)

    def __attrs_post_init__(self) -> None:
        if self.ended_at_ms - self.started_at_ms != self.elapsed_ms + self.paused_ms:
            raise ValueError(f"window arithmetic does not add up: {self!r}")

    @property
    def key(self) -> WindowKey:
        """``(run_id, started_at_ms)``: what the server dedupes on, and the outbox keys by."""
        return (self.run_id, self.started_at_ms)

    @property
    def started_at(self) -> str:
        """``startedAt`` as sent."""
        return format_timestamp(self.started_at_ms)

    @property
    def ended_at(self) -> str:
        """``endedAt`` as sent."""
        return format_timestamp(self.ended_at_ms)

    def to_json(self) -> dict[str, Any]:
        """The heartbeat body, in the contract's camelCase."""
        return {
            "id": self.activity_id,
            "name": self.name,
            "course": self.course.to_json(),
            "runId": self.run_id,
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "elapsedMs": self.elapsed_ms,
            "pausedMs": self.paused_ms,
        }

    def to_bytes(self) -> bytes:
        """The exact bytes sent, and sent again on every retry: `to_json` as compact JSON
        (built from the run's shared fields, which are encoded once per run)."""
        prefix = _body_prefix(self.activity_id, self.name, self.course, self.run_id)
        return (
            f'{prefix},"startedAt":"{format_timestamp(self.started_at_ms)}",'
            f'"endedAt":"{format_timestamp(self.ended_at_ms)}",'
            f'"elapsedMs":{self.elapsed_ms},"pausedMs":{self.paused_ms}}}'
        ).encode()

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Window:
        """Read back a heartbeat body written by `to_json`."""
        started = _parse_timestamp(body["startedAt"])
        ended = _parse_timestamp(body["endedAt"])
        return cls(
            activity_id=body["id"],
            name=body["name"],
            course=Course.from_value(body["course"]),
            run_id=body["runId"],
            started_at_ms=started,
            ended_at_ms=ended,
            elapsed_ms=body["elapsedMs"],
            paused_ms=body["pausedMs"],
        )


def window_body(
    template: bytes, started_at_ms: int, ended_at_ms: int, elapsed_ms: int
) -> bytes | None:
    """The exact body of a window made from a checkpoint (None: an unreadable template)."""
    try:
        fields = json.loads(template)
        window = Window(
            activity_id=fields["id"],
            name=fields["name"],
            course=Course.from_value(fields["course"]),
            run_id=fields["runId"],
            started_at_ms=started_at_ms,
            ended_at_ms=ended_at_ms,
            elapsed_ms=elapsed_ms,
            paused_ms=ended_at_ms - started_at_ms - elapsed_ms,
        )
    except (ValueError, KeyError, TypeError, TimebackError):
        return None
    return window.to_bytes()


def merge_bodies(first: bytes, second: bytes) -> bytes | None:
    """One window covering two adjacent ones of a run, or None if they differ in anything
    else (windows are additive, so the merged one keeps every invariant)."""
    a, b = Window.from_json(json.loads(first)), Window.from_json(json.loads(second))
    same = (a.activity_id, a.name, a.course, a.run_id) == (
        b.activity_id,
        b.name,
        b.course,
        b.run_id,
    )
    if not same or a.ended_at_ms != b.started_at_ms:
        return None
    merged = attrs.evolve(
        a,
        ended_at_ms=b.ended_at_ms,
        elapsed_ms=a.elapsed_ms + b.elapsed_ms,
        paused_ms=a.paused_ms + b.paused_ms,
    )
    return merged.to_bytes()


def _parse_timestamp(text: str) -> int:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without a zone: {text!r}")
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


@attrs.frozen(kw_only=True)
class ErrorContext:
    """What an ``on_error`` callback is told besides the error itself.

    Attributes:
        operation: ``"heartbeat"`` (a window was not delivered), ``"flush"`` (a deadline
            passed with windows undelivered) or ``"callback"``.
        activity_id: the activity's id.
        run_id: the run concerned.
        attempts: how many times the window was sent so far (0 when none was sent).
        will_retry: whether the SDK goes on trying to deliver it.
    """

    operation: str
    activity_id: str
    run_id: str
    attempts: int = 0
    will_retry: bool = False
