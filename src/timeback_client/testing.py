"""A pytest plugin for apps that use timeback-client (registered when the package is installed).

It gives a test an in-process backend emulator, a clock that moves only when the test
says so, and clients bound to both, so a two-hour stateful session runs in milliseconds
with exact, repeatable totals:

```python
def test_a_lesson_with_a_break(timeback, advance, timeback_emulator):
    activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                       course={"subject": "Math", "grade": 3})
    advance(30 * 60)
    activity.pause(); advance(10 * 60); activity.resume()
    advance(20 * 60)
    activity.end()
    assert timeback_emulator.run(activity.run_id).active_ms == 50 * 60 * 1000
    assert timeback_emulator.problems() == ()


@pytest.mark.anyio
async def test_async(async_timeback, virtual_clock):
    activity = async_timeback.activity.start(...)
    await virtual_clock.advance(60)
    await activity.end()
```

Fixtures:
    - ``virtual_clock``: a `VirtualClock`.
    - ``timeback_emulator``: an `Emulator` (needs the ``emulator`` extra) whose own "now"
      follows the virtual clock, with one student, `STUDENT_TOKEN` -> `STUDENT_EMAIL`.
    - ``timeback``: a blocking `Timeback` bound to both, closed after the test.
    - ``advance``: ``advance(seconds)`` moves the virtual clock inside ``timeback``'s
      event loop.
    - ``async_timeback``: an open `AsyncTimeback` bound to both (for
      ``@pytest.mark.anyio`` tests).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

import pytest

from ._client import AsyncTimeback
from ._clock import VirtualClock
from ._sync import Timeback

if TYPE_CHECKING:
    from .emulator import Emulator

__all__ = [
    "BASE_URL",
    "STUDENT_EMAIL",
    "STUDENT_TOKEN",
    "advance",
    "async_timeback",
    "timeback",
    "timeback_emulator",
    "virtual_clock",
]

STUDENT_TOKEN: Final = "test-student-token"  # noqa: S105 - the emulator's test student
STUDENT_EMAIL: Final = "student@example.edu"
# Any host works with an in-process transport; .localhost keeps it off every network.
BASE_URL: Final = "http://emulator.localhost/api/timeback"


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A clock that moves only when the test advances it."""
    return VirtualClock()


@pytest.fixture
def timeback_emulator(virtual_clock: VirtualClock) -> Iterator[Emulator]:
    """An in-process backend emulator whose "now" follows the virtual clock."""
    from .emulator import Emulator

    def now() -> datetime:
        return datetime.fromtimestamp(virtual_clock.wall_now_ms() / 1000, UTC)

    with Emulator(students={STUDENT_TOKEN: STUDENT_EMAIL}, clock=now) as emulator:
        yield emulator


@pytest.fixture
def timeback(timeback_emulator: Emulator, virtual_clock: VirtualClock) -> Iterator[Timeback]:
    """A blocking client bound to the emulator and the virtual clock."""
    with Timeback(
        BASE_URL,
        headers={"Authorization": f"Bearer {STUDENT_TOKEN}"},
        transport=timeback_emulator.transport(),
        clock=virtual_clock,
        outbox=None,
        enabled=True,  # bound to the emulator: TIMEBACK_DISABLED is for real backends
    ) as client:
        yield client


@pytest.fixture
def advance(timeback: Timeback, virtual_clock: VirtualClock) -> Callable[[float], None]:
    """``advance(seconds)``: move the virtual clock, running every due heartbeat in order."""

    def move(seconds: float) -> None:
        timeback.portal.call(virtual_clock.advance, seconds)

    return move


@pytest.fixture
async def async_timeback(
    timeback_emulator: Emulator, virtual_clock: VirtualClock
) -> AsyncIterator[AsyncTimeback]:
    """An open async client bound to the emulator and the virtual clock."""
    async with AsyncTimeback(
        BASE_URL,
        headers={"Authorization": f"Bearer {STUDENT_TOKEN}"},
        transport=timeback_emulator.transport(),
        clock=virtual_clock,
        outbox=None,
        enabled=True,  # bound to the emulator: TIMEBACK_DISABLED is for real backends
    ) as client:
        yield client
