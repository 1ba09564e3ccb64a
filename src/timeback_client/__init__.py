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

import types as _types

from ._activity import AsyncActivity
from ._client import AsyncTimeback, Statistics, Undelivered
from ._clock import Clock, Reading, SystemClock, VirtualClock
from ._engine import Engine, EngineStatistics
from ._errors import (
    AuthenticationError,
    BackendConfigurationError,
    DeliveryError,
    DuplicateRiskError,
    HeartbeatRejected,
    InvalidPayloadError,
    LifecycleError,
    NetworkError,
    OutboxError,
    ResponseError,
    ServerUnavailableError,
    TimebackError,
    UndeliveredError,
    UserResolutionError,
    ValidationError,
)
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
from ._writer import OutboxStatistics

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
    "Undelivered",
    "UndeliveredError",
    "UserResolutionError",
    "ValidationError",
    "VirtualClock",
    "Window",
    "run_id_for",
]

# Public names report the public module, so tracebacks and docs point users there.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type | _types.FunctionType):
        _obj.__module__ = __name__
del _name, _obj
