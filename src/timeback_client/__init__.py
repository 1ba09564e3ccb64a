"""timeback-client: Timeback activity time tracking for desktop, kiosk, Jupyter and tests.

```python
from timeback_client import Timeback

with Timeback("https://app.example/api/timeback", headers={"Authorization": "Bearer ..."}) as tb:
    activity = tb.activity.start(id="lesson-1", name="Fractions",
                                 course={"subject": "Math", "grade": 3})
    save_progress(activity.run_id)   # resume later with run_id=...
    ...
    activity.end()                   # flushes time; completion is recorded by the server
```
"""

import logging as _logging
import types as _types

from ._activity import AsyncActivity
from ._client import AsyncTimeback, HeldWindows, Statistics, Undelivered
from ._clock import Clock, Reading, SystemClock, VirtualClock
from ._delivery_errors import (
    AuthenticationError,
    BackendConfigurationError,
    DeliveryError,
    DuplicateRiskError,
    HeartbeatRejected,
    HoldExpiredError,
    InvalidPayloadError,
    NetworkError,
    ResponseError,
    ServerUnavailableError,
    UndeliveredError,
    UserResolutionError,
)
from ._engine import Engine, EngineStatistics
from ._errors import LifecycleError, OutboxError, TimebackError, TimebackWarning, ValidationError
from ._models import (
    SUBJECTS,
    Course,
    CourseFields,
    ErrorContext,
    Subject,
    TimeOptions,
    Window,
    run_id_for,
)
from ._sync import Activity, Timeback
from ._version import VERSION as _VERSION
from ._writer import OutboxStatistics

__version__: str = _VERSION
"""The installed version (from the package's metadata; ``"0+unknown"`` if not installed)."""

__all__ = [
    "SUBJECTS",
    "Activity",
    "AsyncActivity",
    "AsyncTimeback",
    "AuthenticationError",
    "BackendConfigurationError",
    "Clock",
    "Course",
    "CourseFields",
    "DeliveryError",
    "DuplicateRiskError",
    "Engine",
    "EngineStatistics",
    "ErrorContext",
    "HeartbeatRejected",
    "HeldWindows",
    "HoldExpiredError",
    "InvalidPayloadError",
    "LifecycleError",
    "NetworkError",
    "OutboxError",
    "OutboxStatistics",
    "Reading",
    "ResponseError",
    "ServerUnavailableError",
    "Statistics",
    "Subject",
    "SystemClock",
    "TimeOptions",
    "Timeback",
    "TimebackError",
    "TimebackWarning",
    "Undelivered",
    "UndeliveredError",
    "UserResolutionError",
    "ValidationError",
    "VirtualClock",
    "Window",
    "run_id_for",
]

# A library leaves output to the app (the logging HOWTO): without a handler of its own, the
# SDK's records would reach Python's last-resort handler, which prints warnings on stderr,
# over a kiosk's terminal or under a notebook cell. An app that configures logging sees them.
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

# Public names report the public module, so tracebacks and docs point users there.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type | _types.FunctionType):
        _obj.__module__ = __name__
del _name, _obj
