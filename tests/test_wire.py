"""`classify()`: every row of the contract's response table, and hostile bodies."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from timeback_client import (
    AuthenticationError,
    BackendConfigurationError,
    HeartbeatRejected,
    InvalidPayloadError,
    ServerUnavailableError,
    UserResolutionError,
)
from timeback_client._wire import (
    MAX_ERROR_BODY,
    USER_LOOKUP_ATTEMPTS,
    Delivered,
    Held,
    Rejected,
    Retry,
    classify,
    heartbeat_url,
    parse_retry_after,
    short_reason,
)

NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC).timestamp()


def error_body(code: str, message: str = "nope", field: str | None = None) -> bytes:
    error: dict[str, object] = {"code": code, "message": message}
    if field is not None:
        error["details"] = {"field": field, "message": "bad"}
    return json.dumps({"error": error}).encode()


def test_the_heartbeat_route_is_under_the_mount() -> None:
    assert heartbeat_url("https://app.example/api/timeback") == (
        "https://app.example/api/timeback/activity/heartbeat"
    )
    assert heartbeat_url("https://app.example/api/timeback/") == (
        "https://app.example/api/timeback/activity/heartbeat"
    )


# -- success ------------------------------------------------------------------------------------


def test_204_is_delivered() -> None:
    assert classify(204, {}, b"") == Delivered(duplicate=False)


def test_200_duplicate_is_delivered_as_a_duplicate() -> None:
    assert classify(200, {}, b'{"duplicate": true}') == Delivered(duplicate=True)


@pytest.mark.parametrize("body", [b"", b"ok", b"[]", b'{"duplicate": "yes"}', b"\xff\xfe"])
def test_any_other_2xx_body_is_delivered(body: bytes) -> None:
    assert classify(200, {}, body) == Delivered(duplicate=False)


# -- do not retry ---------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["INVALID_PAYLOAD", "SOMETHING_NEW", None])
def test_400_is_rejected_as_an_invalid_payload(code: str | None) -> None:
    """The window itself is wrong: the same bytes will never be accepted."""
    body = error_body(code, "runId must be a UUID", field="runId") if code else b""
    outcome = classify(400, {}, body)
    assert isinstance(outcome, Rejected)
    error = outcome.error
    assert type(error) is InvalidPayloadError
    assert (error.status_code, error.code) == (400, code)
    assert not error.retryable
    if code:
        assert error.field == "runId"
        assert "runId must be a UUID" in str(error)
        assert code in str(error)


def test_400_unknown_course_is_held_for_the_operator() -> None:
    """A course not yet in the app's config: the operator adds it, the window waits."""
    outcome = classify(400, {}, error_body("UNKNOWN_COURSE", "no course for Math 3", "course"))
    assert isinstance(outcome, Held)
    assert (outcome.cause, outcome.credentials) == ("UNKNOWN_COURSE", False)
    assert type(outcome.error) is BackendConfigurationError
    assert outcome.error.retryable
    assert outcome.error.field == "course"


def test_401_is_held_until_new_credentials() -> None:
    outcome = classify(401, {}, error_body("UNAUTHORIZED"))
    assert isinstance(outcome, Held)
    assert (outcome.cause, outcome.credentials) == ("UNAUTHORIZED", True)
    assert type(outcome.error) is AuthenticationError
    assert outcome.error.code == "UNAUTHORIZED"


def test_404_user_resolution_is_retried_a_limited_number_of_times() -> None:
    outcome = classify(404, {}, error_body("USER_RESOLUTION_FAILED"))
    assert isinstance(outcome, Retry)
    assert type(outcome.error) is UserResolutionError
    assert outcome.max_attempts == USER_LOOKUP_ATTEMPTS
    assert 1 < USER_LOOKUP_ATTEMPTS <= 5
    # Then the student is taken as missing from the roster: held for the operator.
    assert outcome.then_hold == "USER_RESOLUTION_FAILED"


def test_404_without_the_vendor_code_is_a_wrong_mount_and_not_retried() -> None:
    outcome = classify(404, {}, b'{"detail":"Not Found"}')
    assert isinstance(outcome, Rejected)
    assert type(outcome.error) is HeartbeatRejected
    assert "base_url" in str(outcome.error)


def test_409_user_resolution_is_held_for_the_roster() -> None:
    outcome = classify(409, {}, error_body("USER_RESOLUTION_FAILED", "ambiguous"))
    assert isinstance(outcome, Held)
    assert (outcome.cause, outcome.credentials) == ("USER_RESOLUTION_FAILED", False)
    assert type(outcome.error) is UserResolutionError
    assert outcome.error.status_code == 409
    assert outcome.error.retryable


@pytest.mark.parametrize("code", ["AMBIGUOUS_COURSE_SELECTOR", "MISSING_SENSOR", None])
def test_500_is_a_backend_misconfiguration_held_for_the_operator(code: str | None) -> None:
    body = b"" if code is None else error_body(code)
    outcome = classify(500, {}, body)
    assert isinstance(outcome, Held)
    assert outcome.cause == (code or "HTTP 500")
    assert not outcome.credentials
    assert type(outcome.error) is BackendConfigurationError
    assert outcome.error.code == code
    assert outcome.error.retryable


def test_503_missing_synced_course_id_is_held_not_retried_on_retry_after() -> None:
    outcome = classify(503, {"retry-after": "5"}, error_body("MISSING_SYNCED_COURSE_ID"))
    assert isinstance(outcome, Held)
    assert outcome.cause == "MISSING_SYNCED_COURSE_ID"
    assert type(outcome.error) is BackendConfigurationError
    assert outcome.error.code == "MISSING_SYNCED_COURSE_ID"


def test_each_known_cause_has_a_short_reason_for_a_status_line() -> None:
    assert short_reason("MISSING_SYNCED_COURSE_ID") == "course not synced"
    assert short_reason("USER_RESOLUTION_FAILED") == "student not in the roster"
    assert short_reason("UNKNOWN_COURSE") == "course not in the app's config"
    assert short_reason("HTTP 500") == "backend refuses (HTTP 500)"


@pytest.mark.parametrize("status", [301, 403, 405, 422])
def test_other_client_errors_are_rejected(status: int) -> None:
    outcome = classify(status, {}, b"")
    assert isinstance(outcome, Rejected)
    assert type(outcome.error) is HeartbeatRejected


# -- retry ---------------------------------------------------------------------------------


def test_502_internal_error_retries_the_same_window() -> None:
    outcome = classify(502, {}, error_body("INTERNAL_ERROR", "Caliper failed"))
    assert isinstance(outcome, Retry)
    assert type(outcome.error) is ServerUnavailableError
    assert outcome.error.retryable
    assert outcome.error.code == "INTERNAL_ERROR"
    assert outcome.after is None
    assert outcome.max_attempts is None


@pytest.mark.parametrize("status", [503, 504, 429, 502])
def test_proxy_errors_are_retried_honouring_retry_after_seconds(status: int) -> None:
    outcome = classify(status, {"retry-after": "7"}, b"<html>busy</html>")
    assert isinstance(outcome, Retry)
    assert isinstance(outcome.error, ServerUnavailableError)
    assert outcome.after == 7.0
    assert outcome.error.retry_after == 7.0
    assert outcome.error.status_code == status


def test_retry_after_as_an_http_date_is_resolved_against_now() -> None:
    when = format_datetime(datetime.fromtimestamp(NOW + 30, UTC), usegmt=True)
    outcome = classify(503, {"retry-after": when}, b"", now=NOW)
    assert isinstance(outcome, Retry)
    assert outcome.after == pytest.approx(30.0)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("Wed, 25 Nov 2026 10:00:10 GMT", 10.0),
        ("Wed, 25 Nov 2026 09:59:00 GMT", 0.0),  # in the past: at once
        ("soon", None),
        ("-5", None),
        ("1.5", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


# -- hostile or odd bodies -------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"<html>Bad Gateway</html>",
        b"\x00\xff garbage",
        b"[1, 2]",
        b'{"error": "just a string"}',
        b'{"error": {"code": 42, "message": ["x"]}}',
        b'{"detail": "Not Found"}',
    ],
)
def test_non_json_or_odd_error_bodies_classify_by_status_alone(body: bytes) -> None:
    outcome = classify(400, {}, body)
    assert isinstance(outcome, Rejected)
    assert outcome.error.code is None
    assert outcome.error.field is None
    assert str(outcome.error).startswith("400 error: no message")


def test_a_huge_body_is_not_parsed() -> None:
    padding = "x" * MAX_ERROR_BODY
    body = json.dumps({"error": {"code": "MISSING_SYNCED_COURSE_ID", "message": padding}})
    outcome = classify(503, {}, body.encode())
    # Unreadable, so not known to be the vendor's code: a proxy's 503, retried.
    assert isinstance(outcome, Retry)
    assert outcome.error.code is None  # type: ignore[attr-defined]


def test_long_error_messages_are_truncated() -> None:
    outcome = classify(400, {}, error_body("INVALID_PAYLOAD", "m" * 5_000))
    assert isinstance(outcome, Rejected)
    assert len(str(outcome.error)) < 600


def test_error_code_message_and_field_are_extracted() -> None:
    outcome = classify(400, {}, error_body("INVALID_PAYLOAD", "no such course", "course"))
    assert isinstance(outcome, Rejected)
    error = outcome.error
    assert (error.code, error.field) == ("INVALID_PAYLOAD", "course")
    assert str(error) == "400 INVALID_PAYLOAD: no such course"
