"""The exceptions of timeback_client, all rooted at `TimebackError`.

```
TimebackError
├── ValidationError (also ValueError)        bad input; the message names the field
├── LifecycleError (also RuntimeError)       a call that does not fit the activity's state
├── OutboxError                              the outbox file is unusable (on_error; in memory)
└── DeliveryError                            a window did not reach the backend (on_error only)
    ├── HeartbeatRejected                    the backend answered with an error status
    │   ├── InvalidPayloadError              400: the window is wrong; never retried
    │   ├── AuthenticationError              401: no student identity; kept until re-auth
    │   ├── UserResolutionError              404 / 409: the student could not be resolved
    │   ├── BackendConfigurationError        500, 503 MISSING_SYNCED_COURSE_ID: misconfigured
    │   └── ServerUnavailableError           502, 503, 504, 429: retried
    ├── NetworkError                         no answer (connection failed, timeout): retried
    ├── DuplicateRiskError                   unanswered for over 5 minutes: may count twice
    └── UndeliveredError                     windows still undelivered when a flush deadline passed
```

Delivery errors never escape a public method: they reach the app through the activity's
`on_error(error, context)` callback (and the `timeback_client` logger), and tracking goes on.
httpx exceptions are converted to `NetworkError` in one place, the sender, with `raise ... from`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._models import Window

__all__ = [
    "AuthenticationError",
    "BackendConfigurationError",
    "DeliveryError",
    "DuplicateRiskError",
    "HeartbeatRejected",
    "InvalidPayloadError",
    "LifecycleError",
    "NetworkError",
    "OutboxError",
    "ServerUnavailableError",
    "TimebackError",
    "UndeliveredError",
    "UserResolutionError",
    "ValidationError",
]


class TimebackError(Exception):
    """The root of every error this package raises or reports."""


class ValidationError(TimebackError, ValueError):
    """An argument or option is not acceptable.

    Attributes:
        field: the name of the argument, as the caller wrote it (e.g. ``"course.grade"``).
        fix: what to do instead, in one sentence.
    """

    def __init__(self, field: str, problem: str, fix: str) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(f"{field}: {problem}. {fix}")


class LifecycleError(TimebackError, RuntimeError):
    """A call that the activity's or client's current state does not allow."""


class OutboxError(TimebackError):
    """The outbox file cannot be used (corrupt, foreign, unwritable, full).

    Reported through ``on_error``, never raised by a public method: windows stay in memory
    and tracking goes on.
    """


class DeliveryError(TimebackError):
    """A window could not be delivered (yet). Reported through ``on_error``, never raised.

    Attributes:
        window: the window concerned, or None when the error covers several.
    """

    def __init__(self, message: str, *, window: Window | None = None) -> None:
        super().__init__(message)
        self.window = window


class HeartbeatRejected(DeliveryError):
    """The backend answered a heartbeat with an error status.

    Attributes:
        status_code: the HTTP status.
        code: the backend's error code (``"INVALID_PAYLOAD"`` ...), or None without one.
        field: the field the backend named in ``error.details``, if any.
        retryable: whether the sender retries this window.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        field: str | None = None,
        window: Window | None = None,
    ) -> None:
        super().__init__(message, window=window)
        self.status_code = status_code
        self.code = code
        self.field = field


class InvalidPayloadError(HeartbeatRejected):
    """400: the backend rejected the window's content (``INVALID_PAYLOAD``, ``UNKNOWN_COURSE``)."""


class AuthenticationError(HeartbeatRejected):
    """401: the backend found no student identity in the request.

    The window is kept and sent again after ``update_credentials()``.
    """


class UserResolutionError(HeartbeatRejected):
    """404 / 409 ``USER_RESOLUTION_FAILED``: the student was not found, or is ambiguous."""


class BackendConfigurationError(HeartbeatRejected):
    """500, or 503 ``MISSING_SYNCED_COURSE_ID``: the backend is misconfigured; not retried."""


class ServerUnavailableError(HeartbeatRejected):
    """502, or 503 / 504 / 429 from a proxy: a transient failure; the window is retried.

    Attributes:
        retry_after: seconds the server asked to wait (``Retry-After``), or None.
    """

    retryable = True

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        retry_after: float | None = None,
        window: Window | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, window=window)
        self.retry_after = retry_after


class NetworkError(DeliveryError):
    """No answer from the backend: the same window is retried.

    Attributes:
        maybe_received: False when no connection was made (the request never left);
            True when the server may have received, and accepted, the window.
    """

    retryable = True

    def __init__(
        self, message: str, *, maybe_received: bool = True, window: Window | None = None
    ) -> None:
        super().__init__(message, window=window)
        self.maybe_received = maybe_received


class DuplicateRiskError(DeliveryError):
    """A window sent without an answer is still being retried more than 5 minutes later.

    The real server remembers accepted windows for 5 minutes only: if it did accept the
    unanswered send, this retry may be counted a second time. Reported once per window,
    so the possible double count is visible rather than silent.
    """


class UndeliveredError(DeliveryError):
    """Windows were still undelivered when a flush deadline (``flush_timeout``) passed.

    Attributes:
        windows: the windows concerned.
        active_ms: the active milliseconds they carry.
    """

    def __init__(self, message: str, *, windows: tuple[Window, ...]) -> None:
        super().__init__(message)
        self.windows = windows
        self.active_ms = sum(w.elapsed_ms for w in windows)
