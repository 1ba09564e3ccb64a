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

from ._delivery_errors import (
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
    "short_reason",
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

    ``max_attempts`` bounds the attempts for answers that are only sometimes transient;
    past it the window is held for ``then_hold`` (a cause, as `Held` has), or, without
    one, dropped.
    """

    error: DeliveryError
    after: float | None = None
    max_attempts: int | None = None
    then_hold: str | None = None


@attrs.frozen
class Rejected:
    """The window will never be accepted as it is: report it, do not retry."""

    error: ResponseError


@attrs.frozen
class Held:
    """Keep the window: the backend refused it for a reason someone other than the window
    can fix.

    ``cause`` is the backend's code. With ``credentials`` (a 401) the window waits for the
    app's ``update_credentials()``; otherwise for the backend's operator (a course not
    synced or not in the app's config, a misconfiguration, a student not in the roster):
    it is tried again at a slow cadence, at each client start, and at once when another
    window held for the same cause is accepted.
    """

    error: ResponseError
    cause: str
    credentials: bool = False


Outcome = Delivered | Retry | Rejected | Held


def classify(
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
) -> Outcome:
    """What a heartbeat response means, per the contract's response table.

    Refusals split by whose fix they need: a window that is wrong (``INVALID_PAYLOAD``)
    is dropped; one that the backend's operator can make acceptable (its config, a course
    sync, its roster) or the app can (its credentials) is held; passing failures are
    retried.

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
    if status == 400 and code == "UNKNOWN_COURSE":
        # A course not (yet) in the app's config: the operator adds it.
        return Held(BackendConfigurationError(text, field=field, **kwargs), cause=code)
    if status == 400:
        return Rejected(InvalidPayloadError(text, field=field, **kwargs))
    if status == 401:
        unauthorized = AuthenticationError(text, field=field, **kwargs)
        return Held(unauthorized, cause=code or "UNAUTHORIZED", credentials=True)
    if status == 404 and code == "USER_RESOLUTION_FAILED":
        # A passing lookup failure, per the contract: retried a few times; after that the
        # student is taken as missing from the roster, which the operator fixes.
        unresolved = UserResolutionError(text, field=field, **kwargs)
        return Retry(unresolved, max_attempts=USER_LOOKUP_ATTEMPTS, then_hold=code)
    if status == 404:
        # No route there: the base URL is not the backend's mount. Retrying cannot help.
        hint = f"{text} (is base_url the mount of the Timeback server SDK?)"
        return Rejected(HeartbeatRejected(hint, field=field, **kwargs))
    if status == 409:
        # Ambiguous in the roster: the operator fixes the roster.
        ambiguous = UserResolutionError(text, field=field, **kwargs)
        return Held(ambiguous, cause=code or "HTTP 409")
    if status >= 500:
        # 500 (AMBIGUOUS_COURSE_SELECTOR, MISSING_SENSOR), 503 MISSING_SYNCED_COURSE_ID and
        # any other server error that no proxy produces: the backend's configuration. Not
        # spun on: held for the operator's fix, tried again every few minutes.
        misconfigured = BackendConfigurationError(text, field=field, **kwargs)
        return Held(misconfigured, cause=code or f"HTTP {status}")
    # Redirects (not followed: a mount URL must be exact) and other client errors.
    return Rejected(HeartbeatRejected(text, field=field, **kwargs))


# A few words for each cause a window is held for, for an app's status line.
_REASONS: Final = {
    "MISSING_SYNCED_COURSE_ID": "course not synced",
    "UNKNOWN_COURSE": "course not in the app's config",
    "AMBIGUOUS_COURSE_SELECTOR": "course ambiguous in the app's config",
    "MISSING_SENSOR": "no sensor in the app's config",
    "USER_RESOLUTION_FAILED": "student not in the roster",
    "UNAUTHORIZED": "signed out",
}


def short_reason(cause: str) -> str:
    """A few words for a status line ("course not synced") for a held window's cause."""
    return _REASONS.get(cause, f"backend refuses ({cause})")


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
