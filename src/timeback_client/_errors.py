"""The exceptions of timeback_client, all rooted at `TimebackError`.

```
TimebackError
├── ValidationError (also ValueError)        bad input; the message names the field
├── LifecycleError (also RuntimeError)       a call that does not fit the activity's state
├── OutboxError                              the outbox file is unusable (on_error; in memory)
└── DeliveryError                            a window did not reach the backend (on_error only)
    ├── ResponseError                        the backend answered with an error status
    │   ├── HeartbeatRejected                refused for good: the window is dropped
    │   │   └── InvalidPayloadError          400 INVALID_PAYLOAD: the window is wrong
    │   ├── BackendConfigurationError        held for the operator's fix: 400 UNKNOWN_COURSE,
    │   │                                    500, 503 MISSING_SYNCED_COURSE_ID
    │   ├── UserResolutionError              404: retried a few times, then held; 409: held
    │   ├── AuthenticationError              401: held until update_credentials()
    │   └── ServerUnavailableError           502, 503, 504, 429: retried
    ├── NetworkError                         no answer (connection failed, timeout): retried
    ├── DuplicateRiskError                   unanswered for over 5 minutes: may count twice
    └── UndeliveredError                     windows still undelivered when a flush deadline passed
        └── HoldExpiredError                 windows held past hold_for: dropped

TimebackWarning (a UserWarning)              an avoidable mistake in how the SDK is called
```

Every `DeliveryError` says in ``retryable`` whether the SDK sends the window concerned
again, and the retry policy (`_wire.classify` and the sender) is what sets it, so the two
cannot disagree. A refusal that the backend's operator can fix (its configuration, a
course sync, its roster) *holds* the window: it is kept, in the outbox too, tried again
every few minutes and at each client start, and dropped (`HoldExpiredError`) only past
the client's ``hold_for``. Delivery errors never escape a public method: they reach the app through
``on_error(error, context)`` (or, without one, the ``timeback_client`` logger), and
tracking goes on. httpx exceptions are converted to `NetworkError` in one place, the sender.

A call that works but is probably a mistake (a plain-http ``base_url`` to another machine)
issues a `TimebackWarning` through `warnings`, pointing at the app's line, so the app's
warning filters decide what becomes of it (``-W error`` in its tests).
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._models import Window

__all__ = [
    "AuthenticationError",
    "BackendConfigurationError",
    "DeliveryError",
    "DuplicateRiskError",
    "HeartbeatRejected",
    "HoldExpiredError",
    "InvalidPayloadError",
    "LifecycleError",
    "NetworkError",
    "OutboxError",
    "ResponseError",
    "ServerUnavailableError",
    "TimebackError",
    "TimebackWarning",
    "UndeliveredError",
    "UserResolutionError",
    "ValidationError",
    "warn",
]

# Frames from here down are the SDK's own; a warning is meant for the first frame above.
_PACKAGE_DIR: Final = os.path.dirname(__file__) + os.sep


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
    """The outbox file cannot be used (corrupt, foreign, unwritable, full, locked).

    Reported through ``on_error``, never raised by a public method: windows stay in memory
    and tracking goes on.
    """


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

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        code: str | None = None,
        field: str | None = None,
        window: Window | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, code=code, field=field, window=window)
        self.retryable = True


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


class TimebackWarning(UserWarning):
    """A call that works but is probably a mistake (e.g. a plain-http ``base_url`` to a
    host that is not this machine). Issued through `warnings`; filter it as any other."""


def warn(message: str) -> None:
    """Issue a `TimebackWarning` attributed to the app's line that called the SDK.

    The SDK's own frames are skipped however deep the call began (``Timeback`` builds an
    ``AsyncTimeback``, which checks its arguments), as Python 3.12's ``skip_file_prefixes``
    would, on every supported Python.
    """
    frame = sys._getframe(1)
    stacklevel = 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
        stacklevel += 1
    warnings.warn(message, TimebackWarning, stacklevel=stacklevel)
