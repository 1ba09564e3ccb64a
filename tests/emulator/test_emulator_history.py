"""``runs()``, ``problems()`` and ``record()``'s attempts over a varied history.

The emulator groups the events by run in one pass and numbers attempts with an indexed
query of the student's completions. Each test replays a history with several students,
lessons and attempts, resumed runs, duplicates and every kind of problem, and compares
the answers with the plain computation over every stored event: each run built from the
events filtered by its runId, and attempts counted from all completions.
"""

from __future__ import annotations

import random
import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_bodies import ADA, BOB, STUDENTS, completion, window

from timeback_client.emulator import Emulator, Problem, Run, SentEvent
from timeback_client.emulator._problems import find_problems
from timeback_client.emulator._runs import build_run

pytestmark = pytest.mark.anyio

TOKENS = {ADA: "tok-ada", BOB: "tok-bob"}
LESSONS = [
    {"id": "lesson-1", "name": "Fractions", "course": {"subject": "Math", "grade": 3}},
    {"id": "lesson-2", "name": "Decimals", "course": {"subject": "Math", "grade": 3}},
    {"id": "story-1", "name": "A story", "course": {"subject": "Reading", "grade": 5}},
]


class Ticking:
    """A clock a minute further on at each reading (record() without time uses it)."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


# ── the plain computations ─────────────────────────────────────────────────────────────


def reference_runs(events: Sequence[SentEvent]) -> tuple[Run, ...]:
    """Every run, each from all events filtered by its runId, by first appearance."""
    run_ids = dict.fromkeys(event.run_id for event in events if event.run_id is not None)
    return tuple(
        build_run(run_id, [event for event in events if event.run_id == run_id])
        for run_id in run_ids
    )


def reference_problems(events: Sequence[SentEvent]) -> tuple[Problem, ...]:
    return tuple(
        problem
        for run in reference_runs(events)
        for problem in find_problems(run.run_id, run.events)
    )


def reference_attempt(
    events: Sequence[SentEvent], student: str, object_id: str, ended_at: str
) -> int:
    """The same end time as an earlier completion: its number; otherwise the next one."""
    attempts: dict[str, int] = {}
    for event in events:
        same = event.student == student and event.object_id == object_id
        if event.kind == "completion" and same and event.ended_at is not None:
            attempts[event.ended_at] = event.caliper["generated"]["attempt"]
    return attempts.get(ended_at, max(attempts.values(), default=0) + 1)


# ── a varied history ───────────────────────────────────────────────────────────────────


def _at(minute: int, second: int = 0) -> str:
    return f"{10 + minute // 60:02d}:{minute % 60:02d}:{second:02d}.000"


async def replay(
    emulator: Emulator, seed: int, check_record: Callable[[dict[str, Any]], object]
) -> None:
    """Students' runs with every twist, in a shuffled but seeded order."""
    rng = random.Random(seed)
    steps: list[tuple[str, Any]] = []
    for index in range(12):
        student = rng.choice([ADA, BOB])
        lesson = LESSONS[index % len(LESSONS)]
        run_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"history-{seed}-{index}"))
        minute = index * 3
        windows = []
        for k in range(rng.randint(1, 5)):
            start = minute * 60 + k * 15 + (600 if k >= 3 else 0)  # a resume after 3
            windows.append((start, start + 15))
        for start, end in windows:
            twist = rng.random()
            elapsed, paused = 15000, 0
            if twist < 0.1:
                elapsed = 14000  # endedAt - startedAt != elapsedMs + pausedMs
            elif twist < 0.2:
                elapsed, paused = 10000, 5000
            body = window(
                run_id,
                _at(start // 60, start % 60),
                _at(end // 60, end % 60),
                elapsed,
                paused,
                **lesson,
            )
            steps.append(("beat", (student, body)))
            if rng.random() < 0.2:
                steps.append(("beat", (student, body)))  # a retry: a duplicate
            if rng.random() < 0.1:
                overlap = dict(body, startedAt=body["startedAt"].replace(".000Z", ".500Z"))
                steps.append(("beat", (student, overlap)))
        if rng.random() < 0.1:
            stray = window(run_id, _at(minute + 40), _at(minute + 40, 15))
            steps.append(("beat", (student, dict(stray, **LESSONS[(index + 1) % 3]))))
        if rng.random() < 0.15:
            other = BOB if student == ADA else ADA
            steps.append(("beat", (other, window(run_id, _at(minute + 30), _at(minute + 30, 15)))))
        for _ in range(rng.choice([0, 1, 1, 2])):
            record: dict[str, Any] = dict(completion(run_id), activity=lesson)
            record["user"] = {"email": student}
            choice = rng.random()
            if choice < 0.4:  # an explicit end time, sometimes one already used
                day = rng.choice(["25", "26", "27"])
                record["time"] = {"ended_at": f"2026-11-{day}T15:00:00Z"}
                if rng.random() < 0.5:
                    record["time"] |= {"active_ms": 45_000, "inactive_ms": 0}
            elif choice < 0.5:
                record["run_id"] = None
            steps.append(("record", record))
        if rng.random() < 0.2:
            late = window(run_id, _at(minute + 200), _at(minute + 200, 15), **lesson)
            steps.append(("beat", (student, late)))  # after the completion
    # Runs interleave, and each run's own steps come late, early or retried.
    rng.shuffle(steps)
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator" + emulator.mount
    ) as client:
        for kind, payload in steps:
            if kind == "beat":
                student, body = payload
                headers = {"Authorization": f"Bearer {TOKENS[student]}"}
                response = await client.post("/activity/heartbeat", json=body, headers=headers)
                assert response.status_code in (200, 204), response.text
            else:
                check_record(payload)


def record_checker(emulator: Emulator, attempts: list[int]) -> Callable[[dict[str, Any]], object]:
    """record(), with its attempt number checked against the plain count before it."""

    def check(record: dict[str, Any]) -> None:
        before = emulator.events()
        stored = emulator.record(record)
        done = stored[0]
        assert done.kind == "completion"
        assert done.ended_at is not None
        number = done.caliper["generated"]["attempt"]
        assert number == reference_attempt(before, done.student, done.object_id, done.ended_at)
        attempts.append(number)

    return check


SEEDS = [1, 2, 3, 4, 5]


@pytest.mark.parametrize("seed", SEEDS)
async def test_runs_and_problems_are_those_of_the_plain_computation(seed: int) -> None:
    with Emulator(students=STUDENTS, clock=Ticking()) as emulator:
        attempts: list[int] = []
        await replay(emulator, seed, record_checker(emulator, attempts))
        events = emulator.events()

        assert emulator.runs() == reference_runs(events)
        assert emulator.problems() == reference_problems(events)
        # The history is as varied as it claims: it would catch a grouping mistake.
        assert len(emulator.runs()) >= 12
        assert any(run.sessions > 1 for run in emulator.runs())
        assert max(attempts) > 1
        assert len(attempts) > len(set(attempts))


async def test_every_rule_is_in_the_replayed_histories() -> None:
    seen: set[str] = set()
    for seed in SEEDS:
        with Emulator(students=STUDENTS, clock=Ticking()) as emulator:
            await replay(emulator, seed, lambda record: emulator.record(record))
            seen |= {problem.rule for problem in emulator.problems()}
    assert seen == {
        "double-counting",
        "heartbeat-after-completion",
        "completed-twice",
        "overlapping-windows",
        "window-arithmetic",
        "run-shared-by-students",
        "run-shared-by-activities",
    }


async def test_attempts_from_a_database_written_before_the_index(tmp_path: Path) -> None:
    """A file from an earlier version has no index of completions: it gets one on open,
    and attempts go on counting from the completions it already holds."""
    db = tmp_path / "emulator.sqlite3"
    with Emulator(students=STUDENTS, db=db, clock=Ticking()) as emulator:
        await replay(emulator, 7, lambda record: emulator.record(record))
    with sqlite3.connect(db) as connection:
        connection.execute("DROP INDEX completions_by_student")
    connection.close()

    with Emulator(students=STUDENTS, db=db, clock=Ticking()) as emulator:
        attempts: list[int] = []
        check = record_checker(emulator, attempts)
        for lesson in LESSONS:
            for student in (ADA, BOB):
                record = dict(completion(None), activity=lesson, user={"email": student})
                check(record)  # a new end time (the clock): the next attempt
                check(dict(record, time={"ended_at": "2026-11-25T15:00:00Z"}))
        assert max(attempts) > 1
        with sqlite3.connect(db) as connection:
            indexes = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        connection.close()
        assert "completions_by_student" in indexes
