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
from typing import Final

# The DeliveryError branch of the tree above lives in `_delivery_errors`: its errors carry
# the `Window` concerned, while the values in `_models` raise `ValidationError`. The root
# and the usage errors stay here, below both, so no two modules import each other.

__all__ = [
    "LifecycleError",
    "OutboxError",
    "TimebackError",
    "TimebackWarning",
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
