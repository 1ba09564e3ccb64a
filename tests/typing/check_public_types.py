"""The public types accept what works and reject what fails.

Not a test module: ``scripts/test.sh`` runs ``mypy --strict`` on it. Each line that must
be rejected carries a ``# type: ignore[code]``; were it accepted, mypy (strict warns of
unused ignores) would fail the run.
"""

from __future__ import annotations

import uuid

import timeback_client
from timeback_client import (
    AsyncTimeback,
    Course,
    CourseFields,
    Timeback,
    TimeOptions,
    Undelivered,
)
from timeback_client.emulator import Faults


def accepted(timeback: Timeback, async_timeback: AsyncTimeback) -> None:
    timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course={"subject": "Math", "grade": 3},
        run_id=uuid.uuid4(),
    )
    timeback.activity.start(id="lesson-1", name="Fractions", course={"code": "CS-101"})
    async_timeback.activity.start(
        id="lesson-1", name="Fractions", course=Course(subject="Reading", grade=2), run_id=None
    )
    TimeOptions(heartbeat_interval=15, idle_timeout=None)
    Faults().add(status=502, code="INTERNAL_ERROR", count=2)
    version: str = timeback_client.__version__
    assert issubclass(timeback_client.TimebackWarning, UserWarning), version


def rejected(timeback: Timeback) -> None:
    timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course={"subject": "Math", "grade": "3"},  # type: ignore[arg-type]
    )
    timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course={"subject": "maths", "grade": 3},  # type: ignore[arg-type]
    )
    Course(subject="math", grade=3)  # type: ignore[arg-type]
    Faults().add(status="502")  # type: ignore[arg-type]
    timeback.activity.start(id="lesson-1", name="Fractions", course={}, run_id=42)  # type: ignore[arg-type]


def course_fields_spell_a_course() -> None:
    fields: CourseFields = {"subject": "Reading", "grade": 2}
    Course.from_value(fields)
    wrong: CourseFields = {"subject": "Maths"}  # type: ignore[typeddict-item]
    del wrong


async def the_switches(timeback: Timeback, async_timeback: AsyncTimeback) -> None:
    Timeback("https://app.example/api/timeback", enabled=False)
    AsyncTimeback("https://app.example/api/timeback", enabled=None)
    left: Undelivered = timeback.flush(timeout=2.0)
    left = await async_timeback.flush()
    waiting_ms: int = left.active_ms + len(left.windows)
    del waiting_ms
    timeback.flush(timeout="5")  # type: ignore[arg-type]
    Timeback("https://app.example/api/timeback", enabled="no")  # type: ignore[arg-type]
