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
      It answers with the backend's own ``timeback.config.json`` when one is given: for
      every test by the ini option ``timeback_config``, or for some by the fixture's
      parameter (a path or the config's JSON as a dict); a relative path is relative to
      the ini file (else the rootdir), whatever directory pytest runs in::

          @pytest.mark.parametrize("timeback_emulator", ["timeback.config.json"], indirect=True)
          def test_an_unsynced_course_is_held(timeback, timeback_emulator): ...

      The ini option ``timeback_environment`` (``staging``, the default, or
      ``production``) picks which of each course's ``ids`` counts.
    - ``timeback``: a blocking `Timeback` bound to both, closed after the test.
    - ``advance``: ``advance(seconds)`` moves the virtual clock inside ``timeback``'s
      event loop.
    - ``async_timeback``: an open `AsyncTimeback` bound to both (for
      ``@pytest.mark.anyio`` tests).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

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


CONFIG_INI: Final = "timeback_config"
ENVIRONMENT_INI: Final = "timeback_environment"


def pytest_addoption(parser: pytest.Parser) -> None:
    """The plugin's ini options: ``timeback_config`` and ``timeback_environment``."""
    parser.addini(
        CONFIG_INI,
        "the backend's timeback.config.json the timeback_emulator fixture answers with "
        "(relative to the ini file)",
        default="",
    )
    parser.addini(
        ENVIRONMENT_INI,
        "the backend's Timeback environment for timeback_config: staging or production",
        default="staging",
    )


def _emulator_config(
    request: pytest.FixtureRequest,
) -> str | os.PathLike[str] | Mapping[str, Any] | None:
    """The fixture's parameter, else the ini option, else None. A relative path, in
    either, is relative to the ini file (else the rootdir), so that the suite finds the
    config whatever directory pytest is run from."""
    base = request.config.inipath.parent if request.config.inipath else request.config.rootpath
    param = getattr(request, "param", None)
    if param is not None:
        if isinstance(param, Mapping):
            return param
        if not isinstance(param, (str, os.PathLike)):
            raise TypeError(
                "timeback_emulator's parameter is the backend's timeback.config.json: a path "
                f"or its JSON as a dict, not {param!r}"
            )
        return Path(base, param)
    configured = str(request.config.getini(CONFIG_INI) or "")
    if not configured:
        return None
    return Path(base, configured)


@pytest.fixture
def virtual_clock() -> VirtualClock:
    """A clock that moves only when the test advances it."""
    return VirtualClock()


@pytest.fixture
def timeback_emulator(
    virtual_clock: VirtualClock, request: pytest.FixtureRequest
) -> Iterator[Emulator]:
    """An in-process backend emulator whose "now" follows the virtual clock; with the
    backend's config when one is given (the fixture's parameter, or ``timeback_config``)."""
    from .emulator import Emulator

    def now() -> datetime:
        return datetime.fromtimestamp(virtual_clock.wall_now_ms() / 1000, UTC)

    environment = str(request.config.getini(ENVIRONMENT_INI) or "staging")
    if environment not in ("staging", "production"):
        raise pytest.UsageError(
            f"ini option {ENVIRONMENT_INI} = {environment!r}: write staging or production"
        )
    with Emulator(
        students={STUDENT_TOKEN: STUDENT_EMAIL},
        clock=now,
        config=_emulator_config(request),
        env="staging" if environment == "staging" else "production",
    ) as emulator:
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
