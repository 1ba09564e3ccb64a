"""Values: the course selector, run ids, time options and the window on the wire."""

from __future__ import annotations

import json
import math
import re
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timeback_client import (
    SUBJECTS,
    Course,
    TimebackError,
    TimeOptions,
    ValidationError,
    Window,
    run_id_for,
)
from timeback_client._models import format_timestamp, normalize_run_id

UUID_SHAPE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


# -- Course ------------------------------------------------------------------------------------


@pytest.mark.parametrize("subject", SUBJECTS)
def test_every_timeback_subject_is_accepted(subject: str) -> None:
    assert Course.from_value({"subject": subject, "grade": 0}).to_json() == {
        "subject": subject,
        "grade": 0,
    }


@pytest.mark.parametrize("subject", ["math", "Maths", "", "History", None, 3])
def test_an_unknown_subject_is_rejected_naming_the_field(subject: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Course.from_value({"subject": subject, "grade": 3})
    assert caught.value.field in ("course.subject", "course")


@pytest.mark.parametrize("grade", [13, -1, 3.0, True, False, "3", None, 2**70])
def test_a_grade_that_is_not_an_int_from_0_to_12_is_rejected(grade: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Course.from_value({"subject": "Math", "grade": grade})
    assert caught.value.field in ("course.grade", "course")
    assert caught.value.fix


@pytest.mark.parametrize("grade", [0, 12])
def test_grades_0_and_12_are_the_bounds(grade: int) -> None:
    assert Course(subject="Math", grade=grade).grade == grade


@pytest.mark.parametrize("code", ["", "   ", 101])
def test_an_empty_or_non_text_code_is_rejected(code: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Course.from_value({"code": code})
    assert caught.value.field == "course.code"


def test_unknown_course_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match="unknown key") as caught:
        Course.from_value({"subject": "Math", "grade": 3, "level": "hard"})
    assert caught.value.field == "course"
    assert "level" in str(caught.value)


@pytest.mark.parametrize("value", [{}, {"subject": "Math"}, {"grade": 3}])
def test_a_course_needs_subject_and_grade_or_a_code(value: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="subject and a grade, or a code"):
        Course.from_value(value)


@pytest.mark.parametrize("value", ["Math", 3, None, ["Math", 3]])
def test_a_course_that_is_neither_a_mapping_nor_a_course_is_rejected(value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        Course.from_value(value)  # type: ignore[arg-type]
    assert caught.value.field == "course"


def test_a_mapping_and_a_course_value_are_the_same_course() -> None:
    course = Course(subject="Reading", grade=5)
    assert Course.from_value(course) is course
    assert Course.from_value({"subject": "Reading", "grade": 5}) == course


def test_a_code_alone_selects_the_course() -> None:
    assert Course.from_value({"code": "CS-101"}).to_json() == {"code": "CS-101"}


def test_a_code_wins_over_subject_and_grade_and_is_sent_with_them() -> None:
    """With a code, subject and grade are optional, and the backend selects by the code."""
    course = Course.from_value({"code": "CS-101", "subject": "Math"})
    assert course.to_json() == {"subject": "Math", "code": "CS-101"}
    assert Course(code="CS-101", subject="Math", grade=3).to_json()["code"] == "CS-101"


def test_validation_errors_are_value_errors_that_name_the_field_and_a_fix() -> None:
    with pytest.raises(ValueError, match=r"course\.grade") as caught:
        Course(subject="Math", grade=13)
    error = caught.value
    assert isinstance(error, ValidationError)
    assert isinstance(error, TimebackError)
    assert error.field == "course.grade"
    assert "0 to 12" in error.fix
    assert str(error).startswith("course.grade: ")
    assert error.fix in str(error)


# -- run ids -------------------------------------------------------------------------------


def test_an_uppercase_run_id_is_accepted_and_lowercased() -> None:
    upper = "6F1D3C0E-6B4A-4D0E-9A57-7E3B1F1C2A10"
    assert normalize_run_id(upper) == upper.lower()


def test_a_uuid_value_is_accepted_as_a_run_id() -> None:
    value = uuid.uuid4()
    assert normalize_run_id(value) == str(value)


@pytest.mark.parametrize(
    "run_id",
    [
        "",
        "attempt-3",
        "6f1d3c0e6b4a4d0e9a577e3b1f1c2a10",
        "6f1d3c0e-6b4a-4d0e-9a57-7e3b1f1c2a1",
        42,
    ],
)
def test_a_run_id_that_is_not_a_uuid_is_rejected_pointing_at_run_id_for(run_id: object) -> None:
    with pytest.raises(ValidationError) as caught:
        normalize_run_id(run_id)
    assert caught.value.field == "run_id"
    assert "run_id_for" in str(caught.value)


def test_run_id_for_is_stable_and_uuid_shaped() -> None:
    first = run_id_for("student-42/lesson-1/attempt-1")
    assert first == run_id_for("student-42/lesson-1/attempt-1")
    assert first != run_id_for("student-42/lesson-1/attempt-2")
    assert UUID_SHAPE.match(first)
    assert uuid.UUID(first).version == 5
    assert normalize_run_id(first) == first


def test_run_id_for_is_the_same_in_every_release() -> None:
    """Apps store these ids: the namespace must never change."""
    assert run_id_for("student-42/lesson-1/attempt-1") == str(
        uuid.uuid5(
            uuid.UUID("6f1d3c0e-6b4a-5d0e-9a57-7e3b1f1c2a10"), "student-42/lesson-1/attempt-1"
        )
    )


@pytest.mark.parametrize("key", ["", None, 42])
def test_run_id_for_needs_a_non_empty_text_key(key: object) -> None:
    with pytest.raises(ValidationError):
        run_id_for(key)  # type: ignore[arg-type]


# -- TimeOptions -----------------------------------------------------------------------------


def test_time_options_defaults_match_the_browser_sdk() -> None:
    options = TimeOptions()
    assert options.heartbeat_interval == 15.0
    assert options.idle_timeout is None
    assert options.abandon_after == 600.0
    assert options.flush_timeout == 5.0


@pytest.mark.parametrize(
    "name", ["heartbeat_interval", "idle_timeout", "abandon_after", "flush_timeout"]
)
@pytest.mark.parametrize("value", [0, -1, 0.0, -0.5, 0.0004, math.nan, math.inf, True, False, "15"])
def test_time_options_reject_non_positive_nan_infinite_bool_and_text(
    name: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        TimeOptions(**{name: value})  # type: ignore[arg-type]
    assert caught.value.field == f"time.{name}"
    # The fix gives a usable example, never "e.g. None".
    assert re.search(r"e\.g\. \d", caught.value.fix), caught.value.fix


def test_time_options_accept_ints_and_floats_down_to_a_millisecond() -> None:
    options = TimeOptions(heartbeat_interval=1, idle_timeout=0.5, abandon_after=60, flush_timeout=2)
    assert options.idle_timeout == 0.5
    assert TimeOptions(heartbeat_interval=0.001).heartbeat_interval == 0.001


def test_time_options_are_frozen() -> None:
    options = TimeOptions()
    with pytest.raises(AttributeError):
        options.heartbeat_interval = 1.0  # type: ignore[misc]


# -- Window ----------------------------------------------------------------------------------

WALL_MS = 1_795_600_800_000  # 2026-11-25T10:00:00.000Z


def _window(**changes: Any) -> Window:
    values: dict[str, Any] = {
        "activity_id": "lesson-1",
        "name": "Fractions",
        "course": Course(subject="Math", grade=3),
        "run_id": "6f1d3c0e-6b4a-4d0e-9a57-7e3b1f1c2a10",
        "started_at_ms": WALL_MS,
        "ended_at_ms": WALL_MS + 15_007,
        "elapsed_ms": 12_000,
        "paused_ms": 3_007,
    }
    values.update(changes)
    return Window(**values)


def test_a_window_speaks_the_contract_s_camel_case() -> None:
    assert _window().to_json() == {
        "id": "lesson-1",
        "name": "Fractions",
        "course": {"subject": "Math", "grade": 3},
        "runId": "6f1d3c0e-6b4a-4d0e-9a57-7e3b1f1c2a10",
        "startedAt": "2026-11-25T10:00:00.000Z",
        "endedAt": "2026-11-25T10:00:15.007Z",
        "elapsedMs": 12_000,
        "pausedMs": 3_007,
    }


@pytest.mark.parametrize(
    ("epoch_ms", "text"),
    [
        (0, "1970-01-01T00:00:00.000Z"),
        (1, "1970-01-01T00:00:00.001Z"),
        (WALL_MS + 999, "2026-11-25T10:00:00.999Z"),
        (1_767_225_599_999, "2025-12-31T23:59:59.999Z"),
    ],
)
def test_timestamps_are_iso_utc_with_milliseconds_and_z(epoch_ms: int, text: str) -> None:
    window = _window(started_at_ms=epoch_ms, ended_at_ms=epoch_ms + 15_007)
    assert window.started_at == text


def test_the_bytes_are_compact_json_of_the_body() -> None:
    window = _window(name="Brüche")
    assert json.loads(window.to_bytes()) == window.to_json()
    assert b" " not in window.to_bytes().replace(b"Br\xc3\xbcche", b"")
    assert window.to_bytes() == window.to_bytes()


def test_elapsed_and_paused_are_json_integers() -> None:
    body = json.loads(_window().to_bytes())
    assert type(body["elapsedMs"]) is int
    assert type(body["pausedMs"]) is int


def test_from_json_reads_back_what_to_json_wrote() -> None:
    window = _window(course=Course(code="CS-101"))
    assert Window.from_json(window.to_json()) == window
    assert Window.from_json(json.loads(window.to_bytes())) == window


def test_from_json_refuses_a_timestamp_without_a_zone() -> None:
    body = _window().to_json() | {"startedAt": "2026-11-25T10:00:00.000"}
    with pytest.raises(ValueError, match="zone"):
        Window.from_json(body)


@pytest.mark.parametrize(
    "changes",
    [
        {"ended_at_ms": WALL_MS + 15_008},
        {"elapsed_ms": 12_001},
        {"paused_ms": 0},
        {"ended_at_ms": WALL_MS - 1, "elapsed_ms": 0, "paused_ms": 0},
    ],
)
def test_a_window_whose_arithmetic_does_not_add_up_is_refused(changes: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="does not add up"):
        _window(**changes)


def test_negative_durations_are_refused() -> None:
    with pytest.raises(ValueError, match="elapsed_ms"):
        _window(elapsed_ms=-1, paused_ms=15_008)


@given(
    activity_id=st.text(min_size=1),
    name=st.text(min_size=1),
    course=st.one_of(
        st.builds(
            Course,
            subject=st.sampled_from(["Math", "Reading", "Social Studies"]),
            grade=st.integers(0, 12),
        ),
        st.builds(Course, code=st.text(min_size=1).filter(str.strip)),
    ),
    start=st.integers(0, 253_402_300_799_000 - 10**12),
    elapsed=st.integers(0, 10**12 // 2),
    paused=st.integers(0, 10**12 // 2),
)
def test_the_bytes_are_json_dumps_of_the_body_whatever_the_values(
    activity_id: str, name: str, course: Course, start: int, elapsed: int, paused: int
) -> None:
    """`to_bytes` builds the body from parts for speed: byte for byte what ``json.dumps``
    of `to_json` gives, for any text (quotes, controls, emoji, lone surrogates aside)."""
    window = Window(
        activity_id=activity_id,
        name=name,
        course=course,
        run_id="b35c8b69-98f0-4a7b-8cb2-7a1d6b6a2f0e",
        started_at_ms=start,
        ended_at_ms=start + elapsed + paused,
        elapsed_ms=elapsed,
        paused_ms=paused,
    )
    expected = json.dumps(window.to_json(), separators=(",", ":"), ensure_ascii=False)
    try:
        encoded = expected.encode()
    except UnicodeEncodeError:
        return  # a lone surrogate: neither way can encode it (issue of validation, not here)
    assert window.to_bytes() == encoded


@given(st.integers(0, 253_402_300_799_999))
def test_timestamps_match_datetime_for_every_representable_instant(epoch_ms: int) -> None:
    seconds, ms = divmod(epoch_ms, 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    assert format_timestamp(epoch_ms) == f"{moment:%Y-%m-%dT%H:%M:%S}.{ms:03d}Z"


def test_a_window_refuses_a_bool_for_its_durations() -> None:
    with pytest.raises(ValueError, match="elapsed_ms"):
        Window(
            activity_id="lesson-1",
            name="Fractions",
            course=Course(subject="Math", grade=3),
            run_id="b35c8b69-98f0-4a7b-8cb2-7a1d6b6a2f0e",
            started_at_ms=0,
            ended_at_ms=1,
            elapsed_ms=True,
            paused_ms=0,
        )
