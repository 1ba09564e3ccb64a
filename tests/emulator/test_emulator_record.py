"""The server side: ``Emulator.record()`` and ``POST /_emulator/record``."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from emulator_bodies import ADA, completion, new_run

from timeback_client.emulator import Course, Emulator, RecordRejected

FIXED_NOW = datetime(2026, 11, 25, 12, 0, 0, 123456, tzinfo=UTC)


def test_a_completion_is_an_activity_completed_event(emulator: Emulator) -> None:
    run_id = new_run()
    (event,) = emulator.record(
        completion(
            run_id,
            metrics={
                "xp_earned": 12.5,
                "total_questions": 10,
                "correct_questions": 9,
                "mastered_units": 1,
                "pct_complete": 140,
            },
        )
    )
    caliper = event.caliper
    assert (event.kind, event.run_id, event.student) == ("completion", run_id, ADA)
    assert caliper["type"] == "ActivityEvent"
    assert caliper["action"] == "Completed"
    assert caliper["session"] == f"urn:uuid:{run_id}"
    assert caliper["generated"]["items"] == [
        {"type": "totalQuestions", "value": 10},
        {"type": "correctQuestions", "value": 9},
        {"type": "xpEarned", "value": 12.5},
        {"type": "masteredUnits", "value": 1},
    ]
    assert caliper["generated"]["attempt"] == 1
    # The vendor clamps pctComplete into 0..100 and reports it as an extension.
    assert caliper["generated"]["extensions"] == {"pctCompleteApp": 100}
    assert caliper["object"]["process"] is True


def test_without_time_the_event_time_is_now_and_no_time_is_counted() -> None:
    with Emulator(clock=lambda: FIXED_NOW) as emulator:
        (event,) = emulator.record(completion(new_run()))
    assert event.caliper["eventTime"] == "2026-11-25T12:00:00.123Z"
    assert "session" in event.caliper


def test_time_adds_a_time_spent_event_from_ended_at_and_durations(emulator: Emulator) -> None:
    run_id = new_run()
    time = {
        "started_at": "2026-11-25T10:00:00Z",
        "ended_at": "2026-11-25T10:20:00Z",
        "active_ms": 1_100_000,
        "inactive_ms": 100_000,
    }
    done, spent = emulator.record(completion(run_id, time=time))
    assert done.caliper["eventTime"] == "2026-11-25T10:20:00Z"
    assert spent.kind == "time"
    assert spent.caliper["type"] == "TimeSpentEvent"
    assert spent.caliper["eventTime"] == "2026-11-25T10:20:00Z"
    assert spent.caliper["generated"]["items"] == [
        {"type": "active", "value": 1100.0},
        {"type": "inactive", "value": 100.0},
    ]
    run = emulator.run(run_id)
    assert (run.active_ms, run.inactive_ms, run.completed) == (1_100_000, 100_000, True)


def test_a_given_timeback_id_is_the_actor(emulator: Emulator) -> None:
    data = completion(None, user={"email": ADA, "timeback_id": "tb-42"})
    (event,) = emulator.record(data)
    assert event.caliper["actor"]["id"].endswith("/users/tb-42")
    assert "session" not in event.caliper
    assert event.run_id is None


def test_attempts_count_up_and_a_retry_keeps_its_number(emulator: Emulator) -> None:
    def attempt(ended_at: str) -> int:
        time = {"ended_at": ended_at}
        (done, _) = emulator.record(completion(new_run(), time=time))
        number = done.caliper["generated"]["attempt"]
        assert isinstance(number, int)
        return number

    assert attempt("2026-11-25T10:00:00Z") == 1
    assert attempt("2026-11-26T10:00:00Z") == 2
    assert attempt("2026-11-25T10:00:00Z") == 1  # the same submission, retried


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"user": None}, "user", "Required and must be an object"),
        (
            {"metrics": {"total_questions": 1, "correct_questions": 1}},
            "metrics.xp_earned",
            "Required",
        ),
        (
            {"metrics": {"xp_earned": 1, "total_questions": 3}},
            "metrics",
            "total_questions and correct_questions must be provided together",
        ),
        (
            {"metrics": {"xp_earned": 1, "total_questions": 3, "correct_questions": 4}},
            "metrics.correct_questions",
            "Cannot exceed total_questions",
        ),
        (
            {"time": {"ended_at": "yesterday"}},
            "time.ended_at",
            "Must be a valid ISO 8601 datetime (e.g., 2024-01-15T10:00:00Z)",
        ),
        ({"run_id": "run-1"}, "run_id", "Must be a valid UUID"),
    ],
)
def test_invalid_input_is_rejected_like_the_vendor(
    emulator: Emulator, changes: dict[str, object], field: str, reason: str
) -> None:
    with pytest.raises(RecordRejected) as caught:
        emulator.record({**completion(new_run()), **changes})
    assert caught.value.field == field
    assert caught.value.code == "INVALID_PAYLOAD"
    assert str(caught.value) == f"Validation error on '{field}': {reason}"
    assert isinstance(caught.value, ValueError)
    assert emulator.events() == ()


def test_unknown_and_unsynced_courses_are_rejected() -> None:
    courses = [Course(subject="Math", grade=3, staging_id="m3"), Course(code="CS-9")]
    with Emulator(courses=courses) as emulator:
        with pytest.raises(RecordRejected) as unknown:
            emulator.record(
                completion(
                    None,
                    activity={"id": "a", "name": "A", "course": {"subject": "Math", "grade": 4}},
                )
            )
        with pytest.raises(RecordRejected) as unsynced:
            emulator.record(
                completion(None, activity={"id": "a", "name": "A", "course": {"code": "CS-9"}})
            )
    assert unknown.value.code == "UNKNOWN_COURSE"
    assert str(unknown.value) == "Course resolution failed for Math grade 4: unknown_course"
    assert unsynced.value.rejection.status == 503
    assert str(unsynced.value) == (
        'Course "CS-9" is missing a course ID for staging. Run `timeback resources push` first.'
    )


@pytest.mark.anyio
async def test_record_over_http(emulator: Emulator) -> None:
    run_id = new_run()
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        accepted = await http.post("/_emulator/record", json=completion(run_id))
        refused = await http.post("/_emulator/record", json=completion(run_id, metrics=[]))
        not_object = await http.post("/_emulator/record", json=[1])
    assert accepted.status_code == 200
    (event,) = accepted.json()["events"]
    assert (event["kind"], event["runId"]) == ("completion", run_id)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": {
            "code": "INVALID_PAYLOAD",
            "message": "Validation error on 'metrics': Must be an object",
            "details": {"field": "metrics", "message": "Must be an object"},
        }
    }
    assert not_object.status_code == 400
    assert emulator.run(run_id).completed
