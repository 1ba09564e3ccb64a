"""The exceptions of timeback_client, all rooted at `TimebackError`.

```
TimebackError
├── ValidationError (also ValueError)        bad input; the message names the field
├── LifecycleError (also RuntimeError)       a call that does not fit the activity's state
├── OutboxError                              the outbox file is unusable (on_error; in memory)
└── DeliveryError                            a window did not reach the backend (on_error only)
    ├── ResponseError                        the backend answered with an error status
    │   ├── HeartbeatRejected                refused for good: the window is never sent again
    │   │   ├── InvalidPayloadError          400: the window is wrong
    │   │   └── BackendConfigurationError    500, 503 MISSING_SYNCED_COURSE_ID: misconfigured
    │   ├── UserResolutionError              404: retried a few times; 409: refused
    │   ├── AuthenticationError              401: kept, sent again after update_credentials()
    │   └── ServerUnavailableError           502, 503, 504, 429: retried
    ├── NetworkError                         no answer (connection failed, timeout): retried
    ├── DuplicateRiskError                   unanswered for over 5 minutes: may count twice
    └── UndeliveredError                     windows still undelivered when a flush deadline passed

TimebackWarning (a UserWarning)              an avoidable mistake in how the SDK is called
```

Every `DeliveryError` says in ``retryable`` whether the SDK sends the window concerned
again, and the retry policy (`_wire.classify` and the sender) is what sets it, so the two
cannot disagree. Delivery errors never escape a public method: they reach the app through
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
    """400: the backend rejected the window's content (``INVALID_PAYLOAD``, ``UNKNOWN_COURSE``)."""


class BackendConfigurationError(HeartbeatRejected):
    """500, or 503 ``MISSING_SYNCED_COURSE_ID``: the backend is misconfigured."""


class UserResolutionError(ResponseError):
    """404 / 409 ``USER_RESOLUTION_FAILED``: the student was not found, or is ambiguous.

    A 404 can be a passing lookup failure: it is retried a few times, and ``retryable`` is
    True until the last of them; a 409 (ambiguous) is not retried.
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
        self.retryable = status_code == 404


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
