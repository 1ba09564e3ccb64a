"""The simulated student, shared by ``timeback-client simulate`` and the Locust users.

A student is a *plan*: a generator of steps (`Wait`, `Start`, `Touch`, `Pause`,
`Resume`, `End`, `Complete`) drawn from a seeded random mind and a `Behaviour`. The plan
knows nothing of clocks, event loops or HTTP: a driver carries each step out with the
SDK's real `Activity` (an anyio task in ``simulate``, a gevent greenlet under Locust),
sends the run id back after each `Start`, and stops asking for steps when lesson time is
up, ending the open activity itself. Both tools therefore drive the very same behaviour,
and what they send is what apps send.

    plan = student_plan(index=7, seed=42, behaviour=Behaviour(), lessons=BUILTIN_LESSONS)
    step = next(plan)
    while True:
        ...  # carry `step` out; for a Start, reply = activity.run_id, else None
        step = plan.send(reply)

The plan's own sense of time is the sum of the waits it asked for, so a driver must wait
exactly as long as a `Wait` says (in lesson time), or stop.
"""

from __future__ import annotations

import random
from collections.abc import Generator, Sequence
from typing import Final

import attrs

from .._models import CourseFields

__all__ = [
    "BUILTIN_LESSONS",
    "Behaviour",
    "Complete",
    "End",
    "Lesson",
    "Pause",
    "Plan",
    "Resume",
    "Start",
    "Step",
    "Touch",
    "Wait",
    "student_plan",
]


@attrs.frozen(kw_only=True)
class Lesson:
    """One activity a student can take: the arguments of ``activity.start``."""

    id: str
    name: str
    course: CourseFields


BUILTIN_LESSONS: Final[tuple[Lesson, ...]] = (
    Lesson(
        id="fractions-1",
        name="Fractions: halves and quarters",
        course={"subject": "Math", "grade": 3},
    ),
    Lesson(
        id="main-idea-2",
        name="Finding the main idea",
        course={"subject": "Reading", "grade": 4},
    ),
    Lesson(
        id="cells-1",
        name="Cells and what they do",
        course={"subject": "Science", "grade": 6},
    ),
    Lesson(id="loops-1", name="Loops", course={"code": "CS-101"}),
)


@attrs.frozen(kw_only=True)
class Behaviour:
    """How simulated students behave, in lesson seconds (chances are per step)."""

    arrival_spread: float = 60.0  # arrivals are spread over this (or one interval, if longer)
    session_mean: float = 480.0  # a session lasts this long on average, then they leave
    work_mean: float = 90.0  # a stretch of work lasts this long on average
    touch_every: tuple[float, float] = (3.0, 12.0)  # input while working
    break_chance: float = 0.10
    break_length: tuple[float, float] = (20.0, 120.0)
    idle_chance: float = 0.08
    idle_timeout: float = 60.0
    idle_extra: tuple[float, float] = (5.0, 60.0)  # how long past idle_timeout they stay away
    away_length: tuple[float, float] = (60.0, 300.0)  # between sessions
    complete_chance: float = 0.03  # a session ends with the lesson completed
    record_after: float = 2.0  # the server records the completion this long after end()


@attrs.frozen
class Wait:
    """Let ``seconds`` of lesson time pass (stop instead if lesson time runs out first)."""

    seconds: float


@attrs.frozen
class Start:
    """Start ``lesson`` (resuming ``run_id`` when given); reply with the run id."""

    lesson: Lesson
    run_id: str | None


@attrs.frozen
class Touch:
    """The student gives input: ``activity.touch()``."""


@attrs.frozen
class Pause:
    """The student takes a break: ``activity.pause()``."""


@attrs.frozen
class Resume:
    """Back from the break: ``activity.resume()``."""


@attrs.frozen
class End:
    """The student leaves: ``activity.end()`` (time flushed, nothing completed)."""


@attrs.frozen
class Complete:
    """The app's server records the completion of ``run_id`` (never the client)."""

    lesson: Lesson
    run_id: str


Step = Wait | Start | Touch | Pause | Resume | End | Complete
Plan = Generator[Step, str | None, None]
_MS: Final = 1000


def student_plan(
    *,
    index: int,
    seed: int,
    behaviour: Behaviour,
    lessons: Sequence[Lesson],
    can_complete: bool = True,
) -> Plan:
    """The steps of student ``index``: arrive, work, break, idle, leave, come back, complete.

    Args:
        index: the student's number; picks the first lesson and seeds the mind with ``seed``.
        seed: the run's seed: the same seed and index give the same plan.
        behaviour: the mix of work, breaks, idling and sessions.
        lessons: the catalogue (at least one lesson); a completion moves to the next one.
        can_complete: whether the target records completions; without it no `Complete`
            step is planned (and the mind draws no number for one).

    A driver sends the run id back after each `Start`, ``None`` after any other step.
    """
    if not lessons:
        raise ValueError("lessons: give at least one lesson for students to take")
    rng = random.Random(seed * 1_000_003 + index)  # noqa: S311 - behaviour, not secrets
    yield Wait(rng.uniform(0, behaviour.arrival_spread))
    lesson_index = index % len(lessons)
    run_id: str | None = None
    while True:
        lesson = lessons[lesson_index]
        started = yield Start(lesson, run_id)
        if started is None:
            raise ValueError("a driver must send the run id back after a Start step")
        run_id = started
        yield from _session(rng, behaviour)
        yield End()
        if can_complete and rng.random() < behaviour.complete_chance:
            yield Wait(behaviour.record_after)
            yield Complete(lesson, run_id)
            # A new attempt needs a fresh runId: the next lesson, a new run.
            lesson_index = (lesson_index + 1) % len(lessons)
            run_id = None
        yield Wait(rng.uniform(*behaviour.away_length))


def _session(rng: random.Random, behaviour: Behaviour) -> Generator[Step, str | None, None]:
    """One sitting: stretches of work, breaks and idling until the student leaves."""
    left_ms = round(rng.expovariate(1 / behaviour.session_mean) * _MS)
    while left_ms > 0:
        step = rng.random()
        if step < behaviour.break_chance:
            seconds = rng.uniform(*behaviour.break_length)
            yield Pause()
            yield Wait(seconds)
            yield Resume()
        elif step < behaviour.break_chance + behaviour.idle_chance:
            # No input at all: the SDK pauses the activity itself after idle_timeout.
            seconds = behaviour.idle_timeout + rng.uniform(*behaviour.idle_extra)
            yield Wait(seconds)
            yield Touch()
        else:
            work_ms = min(round(rng.expovariate(1 / behaviour.work_mean) * _MS), left_ms)
            while work_ms > 0:
                seconds = min(rng.uniform(*behaviour.touch_every), work_ms / _MS)
                yield Wait(seconds)
                yield Touch()
                work_ms -= round(seconds * _MS)
                left_ms -= round(seconds * _MS)
            continue
        left_ms -= round(seconds * _MS)
