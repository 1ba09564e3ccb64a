"""The heartbeat on the wire: where it goes, and what each answer means.

Pure functions, no I/O: `classify` maps a status, headers and body to an `Outcome`
exactly as the contract's response table says, so the policy is testable on its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime
from typing import Any, Final

import attrs

from ._errors import (
    AuthenticationError,
    BackendConfigurationError,
    DeliveryError,
    HeartbeatRejected,
    InvalidPayloadError,
    ResponseError,
    ServerUnavailableError,
    UserResolutionError,
)

__all__ = [
    "HEARTBEAT_PATH",
    "MAX_ERROR_BODY",
    "Delivered",
    "Held",
    "Outcome",
    "Rejected",
    "Retry",
    "classify",
    "heartbeat_url",
    "parse_retry_after",
]

HEARTBEAT_PATH: Final = "/activity/heartbeat"
# Error bodies are small JSON objects; anything longer is read no further.
MAX_ERROR_BODY: Final = 64 * 1024
# The contract lets a 404 from the user lookup be retried "a few times".
USER_LOOKUP_ATTEMPTS: Final = 3


def heartbeat_url(base_url: str) -> str:
    """``{base}/activity/heartbeat`` for a backend mount such as ``.../api/timeback``."""
    return base_url.rstrip("/") + HEARTBEAT_PATH


@attrs.frozen
class Delivered:
    """The backend accepted the window (204), or had already accepted it (duplicate)."""

    duplicate: bool = False


@attrs.frozen
class Retry:
    """Send the same window again after a backoff (or after ``after`` seconds).

    ``max_attempts`` bounds the attempts for answers that are only sometimes transient.
    """

    error: DeliveryError
    after: float | None = None
    max_attempts: int | None = None


@attrs.frozen
class Rejected:
    """The window will never be accepted as it is: report it, do not retry."""

    error: ResponseError


@attrs.frozen
class Held:
    """No student identity (401): keep the window until the app updates its credentials."""

    error: AuthenticationError


Outcome = Delivered | Retry | Rejected | Held


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Outcome:
    """What a heartbeat response means, per the contract's response table.

    Args:
        status: the HTTP status code.
        headers: the response headers (for ``Retry-After``).
        body: the response body (at most `MAX_ERROR_BODY` bytes are looked at).
        now: the current epoch seconds, to resolve an HTTP-date ``Retry-After``.
    """
    if 200 <= status < 300:
        return Delivered(duplicate=_json(body).get("duplicate") is True)
    code, message, field = _error_fields(body)
    text = f"{status} {code or 'error'}: {message or 'no message'}"
    kwargs: dict[str, Any] = {"status_code": status, "code": code}
    if status in (502, 503, 504, 429) and code != "MISSING_SYNCED_COURSE_ID":
        after = parse_retry_after(headers.get("retry-after"), now=now)
        return Retry(ServerUnavailableError(text, retry_after=after, **kwargs), after=after)
    if status == 400:
        return Rejected(InvalidPayloadError(text, field=field, **kwargs))
    if status == 401:
        return Held(AuthenticationError(text, field=field, **kwargs))
    if status == 404 and code == "USER_RESOLUTION_FAILED":
        # A passing lookup failure, per the contract: retried a few times (the sender
        # reports the last one as final).
        error = UserResolutionError(text, field=field, **kwargs)
        return Retry(error, max_attempts=USER_LOOKUP_ATTEMPTS)
    if status == 404:
        # No route there: the base URL is not the backend's mount. Retrying cannot help.
        hint = f"{text} (is base_url the mount of the Timeback server SDK?)"
        return Rejected(HeartbeatRejected(hint, field=field, **kwargs))
    if status == 409:
        return Rejected(UserResolutionError(text, field=field, **kwargs))
    if status >= 500:
        # 500 (AMBIGUOUS_COURSE_SELECTOR, MISSING_SENSOR), 503 MISSING_SYNCED_COURSE_ID and
        # any other server error that no proxy produces: misconfiguration, do not spin.
        return Rejected(BackendConfigurationError(text, field=field, **kwargs))
    # Redirects (not followed: a mount URL must be exact) and other client errors.
    return Rejected(HeartbeatRejected(text, field=field, **kwargs))


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, moment.timestamp() - current)


def _json(body: bytes) -> dict[str, Any]:
    if not body or len(body) > MAX_ERROR_BODY:
        return {}
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def _error_fields(body: bytes) -> tuple[str | None, str | None, str | None]:
    """(code, message, details.field) from ``{"error": {...}}``, each None if absent."""
    error = _json(body).get("error")
    if not isinstance(error, dict):
        return None, None, None
    details = error.get("details")
    field = details.get("field") if isinstance(details, dict) else None
    return (
        _text(error.get("code")),
        _text(error.get("message")),
        _text(field),
    )


def _text(value: object) -> str | None:
    return value[:500] if isinstance(value, str) else None
