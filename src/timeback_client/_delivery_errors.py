"""The delivery errors: a window did not reach the backend (yet).

The `DeliveryError` branch of the tree drawn in `_errors`, apart from the root because
each carries the window (or windows) concerned: it stands above the values in `_models`,
which themselves raise the root's `ValidationError`.
"""

from __future__ import annotations

from ._errors import TimebackError
from ._models import Window

__all__ = [
    "AuthenticationError",
    "BackendConfigurationError",
    "DeliveryError",
    "DuplicateRiskError",
    "HeartbeatRejected",
    "HoldExpiredError",
    "InvalidPayloadError",
    "NetworkError",
    "ResponseError",
    "ServerUnavailableError",
    "UndeliveredError",
    "UserResolutionError",
]


class DeliveryError(TimebackError):
    """A window could not be delivered (yet). Reported through ``on_error``, never raised.

    Attributes:
        window: the window concerned, or None when the error covers several.
        retryable: whether the SDK sends the window(s) concerned again.
    """

    retryable: bool = False

    def __init__(
        self, message: str, *, window: Window | None = None, retryable: bool | None = None
    ) -> None:
        super().__init__(message)
        self.window = window
        if retryable is not None:
            self.retryable = retryable


class ResponseError(DeliveryError):
    """The backend answered a heartbeat with an error status.

    Attributes:
        status_code: the HTTP status.
        code: the backend's error code (``"INVALID_PAYLOAD"`` ...), or None without one.
        field: the field the backend named in ``error.details``, if any.
    """

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


class HeartbeatRejected(ResponseError):
    """The backend refused the window for good: it is reported and never sent again.

    Raised as such for answers no contract row explains (a redirect, 403, 405, or a 404
    without the backend's error code, which means ``base_url`` is not the mount).
    """

    retryable = False


class InvalidPayloadError(HeartbeatRejected):
    """400 ``INVALID_PAYLOAD`` (or a 400 with no code the SDK knows): the window itself is
    wrong, and the same bytes will never be accepted; it is dropped."""


class BackendConfigurationError(ResponseError):
    """The backend cannot take the window until its operator fixes its configuration:
    400 ``UNKNOWN_COURSE`` (a course not in the app's config), 503
    ``MISSING_SYNCED_COURSE_ID`` (a course not synced: ``timeback resources push``), 500
    ``AMBIGUOUS_COURSE_SELECTOR`` or ``MISSING_SENSOR``.

    The window is held: kept, tried again every few minutes, at each client start, and at
    once when another window held for the same cause is accepted; dropped only past the
    client's ``hold_for`` (`HoldExpiredError`). The message carries the backend's own fix.
    """

    retryable = True


class UserResolutionError(ResponseError):
    """404 / 409 ``USER_RESOLUTION_FAILED``: the student was not found, or is ambiguous.

    A 404 can be a passing lookup failure: it is retried a few times. After that (at once
    for a 409) the student is taken as missing from the roster, which the operator fixes:
    the window is held, like one refused with a `BackendConfigurationError`.
    """

    retryable = True


class AuthenticationError(ResponseError):
    """401: the backend found no student identity in the request.

    The window is kept and sent again after ``update_credentials()``.
    """

    retryable = True


class ServerUnavailableError(ResponseError):
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
    so the possible double count is visible rather than silent. ``retryable`` says whether
    the window is still being sent.
    """


class UndeliveredError(DeliveryError):
    """Windows were still undelivered when a flush deadline (``flush_timeout``) passed.

    ``retryable`` is True when the SDK goes on trying (after ``end()``), False when the
    client closed (then they wait in the outbox for the next start, or are lost without one).

    Attributes:
        windows: the windows concerned.
        active_ms: the active milliseconds they carry.
    """

    def __init__(
        self, message: str, *, windows: tuple[Window, ...], retryable: bool = False
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.windows = windows
        self.active_ms = sum(w.elapsed_ms for w in windows)


class HoldExpiredError(UndeliveredError):
    """Windows held for the backend's fix longer than the client's ``hold_for``: dropped.

    Their time is lost; the message and ``active_ms`` say how much.

    Attributes:
        cause: the backend's code that held them (``"MISSING_SYNCED_COURSE_ID"`` ...).
    """

    def __init__(self, message: str, *, windows: tuple[Window, ...], cause: str) -> None:
        super().__init__(message, windows=windows, retryable=False)
        self.cause = cause
