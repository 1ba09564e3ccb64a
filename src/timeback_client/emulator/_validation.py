"""Vendor-identical validation of the heartbeat body and of ``record()`` input.

Every check, its order, its field name and its message are those of ``timeback-sdk``
0.4.0 (``handlers/activity/schema.py`` and ``namespaces/activity/schema.py``), including
the quirks: regexes anchored with ``$`` (which also matches before a trailing newline),
``\\d`` matching any Unicode digit, ids and names stripped in heartbeats but not in
``record()``, and ``"code": ""`` meaning "no code" in a heartbeat but "invalid" in
``record()``. The differential parity suite holds this module to the vendor's behaviour.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from ._catalog import REQUEST_SUBJECTS, Catalog, Course, CourseCode, Selector, SubjectGrade

_ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.IGNORECASE)
_SUBJECT_CHOICES = " | ".join(repr(s) for s in sorted(REQUEST_SUBJECTS))
_RECORD_SUBJECT_CHOICES = ", ".join(repr(s) for s in sorted(REQUEST_SUBJECTS))
_RECORD_DATETIME = "Must be a valid ISO 8601 datetime (e.g., 2024-01-15T10:00:00Z)"


@attrs.frozen(kw_only=True)
class Rejection:
    """An error answer: HTTP status plus the vendor's ``{"error": ...}`` body.

    Attributes:
        status: HTTP status code.
        code: Vendor error code, e.g. ``"INVALID_PAYLOAD"``.
        message: Vendor error message.
        field: ``details.field`` when the vendor names the offending field.
        reason: ``details.message`` alongside ``field``.
    """

    status: int
    code: str
    message: str
    field: str | None = None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The response body exactly as the vendor's ``error_response`` builds it."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["details"] = {"field": self.field, "message": self.reason}
        return {"error": error}


def invalid(field: str, reason: str) -> Rejection:
    """A heartbeat ``INVALID_PAYLOAD`` rejection naming one field."""
    return Rejection(
        status=400, code="INVALID_PAYLOAD", message="Invalid payload", field=field, reason=reason
    )


def internal_error(exc: BaseException) -> Rejection:
    """The vendor's catch-all answer: 502 ``INTERNAL_ERROR`` carrying the exception text."""
    return Rejection(status=502, code="INTERNAL_ERROR", message=str(exc) or "Unknown error")


@attrs.frozen(kw_only=True)
class Heartbeat:
    """A heartbeat body that passed validation, with its course resolved."""

    activity_id: str
    name: str
    selector: Selector
    run_id: str
    started_at: str
    ended_at: str
    elapsed_ms: int
    paused_ms: int
    course: Course
    sensor: str


def vendor_epoch_ms(iso: str) -> int:
    """The dedupe instant of a ``startedAt``, computed as the vendor does.

    The vendor goes through a float (``int(dt.timestamp() * 1000)``), so two start times
    less than a millisecond apart share a key, and a calendar-invalid time that passed
    the regex (``2026-02-30T...``) raises ``ValueError`` here, which the vendor answers
    with 502.

    Raises:
        ValueError: When the text is not a real date and time.
    """
    parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def format_instant(moment: datetime) -> str:
    """``2026-11-25T10:00:00.123Z``: how the emulator writes every instant of its own."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def parse_instant(iso: str) -> datetime | None:
    """An aware datetime for a wire timestamp, or None when it is not a real instant."""
    try:
        parsed = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


# ── heartbeat ──────────────────────────────────────────────────────────────────────────


def validate_heartbeat(body: object, catalog: Catalog) -> Heartbeat | Rejection:
    """Validate a heartbeat body in the vendor's order and resolve its course.

    Args:
        body: The decoded JSON body, any JSON value.
        catalog: The courses the backend knows.

    Returns:
        The validated heartbeat, or the rejection the vendor would answer with.
    """
    if not isinstance(body, dict):
        # The vendor calls `body.get(...)` on whatever JSON value arrived; a non-object
        # dies with AttributeError, which its catch-all turns into 502 INTERNAL_ERROR.
        return Rejection(
            status=502,
            code="INTERNAL_ERROR",
            message=f"'{type(body).__name__}' object has no attribute 'get'",
        )
    activity_id = _require_str(body, "id")
    if isinstance(activity_id, Rejection):
        return activity_id
    name = _require_str(body, "name")
    if isinstance(name, Rejection):
        return name
    course_data = body.get("course")
    if not course_data:
        return invalid("course", "Required")
    if not isinstance(course_data, dict):
        return invalid("course", "Expected object")
    selector = _heartbeat_selector(course_data)
    if isinstance(selector, Rejection):
        return selector
    run_id = body.get("runId")
    if run_id is None:
        return invalid("runId", "Required")
    if not isinstance(run_id, str) or not _UUID.match(run_id):
        return invalid("runId", "Expected UUID")
    # The vendor resolves the course before it looks at the time fields.
    resolved = resolve_course(selector, catalog)
    if isinstance(resolved, Rejection):
        return resolved
    course, sensor = resolved
    started_at = _require_datetime(body, "startedAt")
    if isinstance(started_at, Rejection):
        return started_at
    ended_at = _require_datetime(body, "endedAt")
    if isinstance(ended_at, Rejection):
        return ended_at
    elapsed_ms = _require_nonnegative_int(body, "elapsedMs")
    if isinstance(elapsed_ms, Rejection):
        return elapsed_ms
    paused_ms = _require_nonnegative_int(body, "pausedMs")
    if isinstance(paused_ms, Rejection):
        return paused_ms
    return Heartbeat(
        activity_id=activity_id,
        name=name,
        selector=selector,
        run_id=run_id,
        started_at=started_at,
        ended_at=ended_at,
        elapsed_ms=elapsed_ms,
        paused_ms=paused_ms,
        course=course,
        sensor=sensor,
    )


def resolve_course(selector: Selector, catalog: Catalog) -> tuple[Course, str] | Rejection:
    """The course and effective sensor for a heartbeat selector, or the vendor's error."""
    matches = catalog.matches(selector)
    if not matches:
        return Rejection(
            status=400, code="UNKNOWN_COURSE", message=f"Unknown course: {selector.describe()}"
        )
    if len(matches) > 1:
        return Rejection(
            status=500,
            code="AMBIGUOUS_COURSE_SELECTOR",
            message="Ambiguous course selector in timeback.config.json",
        )
    course = matches[0]
    sensor = course.sensor or catalog.sensor
    if not sensor:
        return Rejection(
            status=500,
            code="MISSING_SENSOR",
            message=f'Course "{selector.describe()}" has no sensor configured.',
        )
    return course, sensor


def _require_str(body: dict[str, Any], field: str) -> str | Rejection:
    value = body.get(field)
    if not isinstance(value, str) or value.strip() == "":
        return invalid(field, "Required")
    return value.strip()


def _require_datetime(body: dict[str, Any], field: str) -> str | Rejection:
    value = body.get(field)
    if value is None:
        return invalid(field, "Required")
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        return invalid(field, "Invalid datetime")
    return value


def _require_nonnegative_int(body: dict[str, Any], field: str) -> int | Rejection:
    # Presence, not None-ness: `"elapsedMs": null` is "Expected nonnegative integer".
    if field not in body:
        return invalid(field, "Required")
    value = body[field]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return invalid(field, "Expected nonnegative integer")
    return value


def _heartbeat_selector(course: dict[str, Any]) -> Selector | Rejection:
    code = course.get("code")
    # A falsy code (`""`, `0`, `null`) means "no code": the grade-based rules apply.
    if code:
        if not isinstance(code, str) or code.strip() == "":
            return invalid("course.code", "Expected non-empty string")
        return CourseCode(code=code.strip())
    subject = course.get("subject")
    if not subject or not isinstance(subject, str):
        return invalid("course.subject", "Required")
    grade = course.get("grade")
    if grade is None:
        return invalid(
            "course", "Must have either 'code' (grade-less) or 'subject'+'grade' (grade-based)"
        )
    if not isinstance(grade, int) or isinstance(grade, bool):
        return invalid("course.grade", "Expected integer")
    if subject not in REQUEST_SUBJECTS:
        return invalid("course.subject", f"Invalid enum value. Expected {_SUBJECT_CHOICES}")
    if not 0 <= grade <= 12:
        return invalid("course.grade", "Number must be between 0 and 12")
    return SubjectGrade(subject=subject, grade=grade)


# ── record() ───────────────────────────────────────────────────────────────────────────


class RecordRejected(ValueError):
    """``record()`` input the vendor would refuse.

    Attributes:
        rejection: The status, code, message and field, as ``POST /_emulator/record``
            answers them.
    """

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(rejection.message)
        self.rejection = rejection

    @property
    def field(self) -> str | None:
        """The offending field, e.g. ``"metrics.xp_earned"``, when validation failed."""
        return self.rejection.field

    @property
    def code(self) -> str:
        """The vendor-style error code, e.g. ``"INVALID_PAYLOAD"``."""
        return self.rejection.code


def _record_invalid(field: str, reason: str) -> RecordRejected:
    # The message is the text of the vendor's ActivityRecordValidationError.
    return RecordRejected(
        Rejection(
            status=400,
            code="INVALID_PAYLOAD",
            message=f"Validation error on '{field}': {reason}",
            field=field,
            reason=reason,
        )
    )


@attrs.frozen(kw_only=True)
class RecordInput:
    """``record()`` input that passed validation (the vendor's parsed form)."""

    email: str
    timeback_id: str | None
    activity_id: str
    activity_name: str
    selector: Selector
    selector_text: str
    total_questions: int | None
    correct_questions: int | None
    mastered_units: int | None
    pct_complete: int | float | None
    xp_earned: int | float
    has_time: bool
    started_at: str | None
    ended_at: str | None
    active_ms: int | None
    inactive_ms: int | None
    run_id: str | None


def validate_record(data: Mapping[str, Any]) -> RecordInput:
    """Validate ``record()`` input (snake_case) in the vendor's order.

    Raises:
        RecordRejected: With the vendor's field and message.
    """
    user = _record_dict(data.get("user"), "user")
    email = _record_str(user, "email", "user")
    timeback_id = user.get("timeback_id")
    if timeback_id is not None and not isinstance(timeback_id, str):
        raise _record_invalid("user.timeback_id", "Must be a string")
    activity = _record_dict(data.get("activity"), "activity")
    activity_id = _record_str(activity, "id", "activity")
    activity_name = _record_str(activity, "name", "activity")
    course = _record_dict(activity.get("course"), "activity.course")
    selector, selector_text = _record_selector(course)
    metrics = data.get("metrics")
    if metrics is None:
        raise _record_invalid("metrics", "Required")
    if not isinstance(metrics, dict):
        raise _record_invalid("metrics", "Must be an object")
    xp_earned = metrics.get("xp_earned")
    if xp_earned is None:
        raise _record_invalid("metrics.xp_earned", "Required")
    if not _is_nonnegative_number(xp_earned):
        raise _record_invalid("metrics.xp_earned", "Must be a nonnegative number")
    total = _record_optional_int(metrics, "total_questions", "metrics")
    correct = _record_optional_int(metrics, "correct_questions", "metrics")
    mastered = _record_optional_int(metrics, "mastered_units", "metrics")
    pct = metrics.get("pct_complete")
    if pct is not None and not _is_nonnegative_number(pct):
        raise _record_invalid("metrics.pct_complete", "Must be a nonnegative number")
    if (total is None) != (correct is None):
        raise _record_invalid(
            "metrics", "total_questions and correct_questions must be provided together"
        )
    if total is not None and correct is not None and correct > total:
        raise _record_invalid("metrics.correct_questions", "Cannot exceed total_questions")
    time = data.get("time")
    started_at = ended_at = None
    active_ms = inactive_ms = None
    if time is not None:
        if not isinstance(time, dict):
            raise _record_invalid("time", "Must be an object")
        started_at = _record_optional_datetime(time, "started_at", "time")
        ended_at = _record_optional_datetime(time, "ended_at", "time")
        active_ms = _record_optional_int(time, "active_ms", "time")
        inactive_ms = _record_optional_int(time, "inactive_ms", "time")
    run_id = data.get("run_id")
    if run_id is not None and (not isinstance(run_id, str) or not _UUID.match(run_id)):
        raise _record_invalid("run_id", "Must be a valid UUID")
    return RecordInput(
        email=email,
        timeback_id=timeback_id,
        activity_id=activity_id,
        activity_name=activity_name,
        selector=selector,
        selector_text=selector_text,
        total_questions=total,
        correct_questions=correct,
        mastered_units=mastered,
        pct_complete=pct,
        xp_earned=xp_earned,
        has_time=time is not None,
        started_at=started_at,
        ended_at=ended_at,
        active_ms=active_ms,
        inactive_ms=inactive_ms,
        run_id=run_id,
    )


def _is_nonnegative_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _record_dict(value: object, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _record_invalid(field, "Required and must be an object")
    return value


def _record_str(obj: dict[str, Any], field: str, parent: str) -> str:
    value = obj.get(field)
    # Unlike the heartbeat, record() neither strips nor rejects whitespace-only text.
    if not value or not isinstance(value, str):
        raise _record_invalid(f"{parent}.{field}", "Required and must be a non-empty string")
    return value


def _record_optional_int(obj: dict[str, Any], field: str, parent: str) -> int | None:
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _record_invalid(f"{parent}.{field}", "Must be a nonnegative integer")
    return value


def _record_optional_datetime(obj: dict[str, Any], field: str, parent: str) -> str | None:
    value = obj.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not _ISO_DATETIME.match(value):
        raise _record_invalid(f"{parent}.{field}", _RECORD_DATETIME)
    return value


def _record_selector(course: dict[str, Any]) -> tuple[Selector, str]:
    # In record() the mere presence of "code" selects the grade-less form, and the code
    # is used unstripped.
    if "code" in course:
        code = course["code"]
        if not isinstance(code, str) or not code:
            raise _record_invalid("activity.course.code", "Must be a non-empty string")
        return CourseCode(code=code), f'code "{code}"'
    subject = course.get("subject")
    if not subject or not isinstance(subject, str):
        raise _record_invalid("activity.course.subject", "Required")
    grade = course.get("grade")
    if grade is None:
        raise _record_invalid(
            "activity.course",
            "Must have either 'code' (grade-less) or 'subject'+'grade' (grade-based)",
        )
    if not isinstance(grade, int) or isinstance(grade, bool):
        raise _record_invalid("activity.course.grade", "Must be an integer")
    if subject not in REQUEST_SUBJECTS:
        raise _record_invalid(
            "activity.course.subject",
            f"Invalid value. Expected one of: {_RECORD_SUBJECT_CHOICES}",
        )
    if not 0 <= grade <= 12:
        raise _record_invalid("activity.course.grade", "Must be between 0 and 12")
    return SubjectGrade(subject=subject, grade=grade), f"{subject} grade {grade}"


def resolve_record_course(record: RecordInput, catalog: Catalog) -> tuple[Course, str]:
    """The course and sensor for ``record()``, with the vendor's record-path errors.

    Raises:
        RecordRejected: ``UNKNOWN_COURSE``, ``AMBIGUOUS_COURSE_SELECTOR`` or
            ``MISSING_SENSOR``, with the text of the vendor's ActivityRecordCourseError.
    """
    matches = catalog.matches(record.selector)
    selector = record.selector_text
    if len(matches) != 1:
        reason = "unknown_course" if not matches else "ambiguous_course"
        raise RecordRejected(
            Rejection(
                status=400 if not matches else 500,
                code="UNKNOWN_COURSE" if not matches else "AMBIGUOUS_COURSE_SELECTOR",
                message=f"Course resolution failed for {selector}: {reason}",
            )
        )
    course = matches[0]
    sensor = course.sensor or catalog.sensor
    if not sensor:
        raise RecordRejected(
            Rejection(
                status=500,
                code="MISSING_SENSOR",
                message=(
                    f"Course resolution failed for {selector}: "
                    f"Course '{selector}' has no sensor configured"
                ),
            )
        )
    return course, sensor
