"""The heartbeat route: identity, validation, dedupe and the TimeSpentEvent it stores."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from emulator_bodies import ADA, BOB, new_run, window

from timeback_client.emulator import SESSION_COOKIE, Course, Emulator

pytestmark = pytest.mark.anyio

HEARTBEAT = "/activity/heartbeat"


async def test_a_valid_window_is_accepted_with_an_empty_204(client: httpx.AsyncClient) -> None:
    response = await client.post(HEARTBEAT, json=window(new_run()))
    assert response.status_code == 204
    assert response.content == b""


async def test_the_time_spent_event_is_the_vendors(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await client.post(HEARTBEAT, json=window(run_id, elapsed_ms=12000, paused_ms=3000))
    (event,) = emulator.events()
    caliper = event.caliper
    assert caliper["type"] == "TimeSpentEvent"
    assert caliper["action"] == "SpentTime"
    assert caliper["session"] == f"urn:uuid:{run_id}"
    assert caliper["eventTime"] == "2026-11-25T10:00:15.000Z"
    assert caliper["generated"]["items"] == [
        {"type": "active", "value": 12.0},
        {"type": "inactive", "value": 3.0},
    ]
    assert caliper["actor"]["email"] == ADA
    assert caliper["object"]["id"].endswith("/activities/Math/g3/lesson-1")
    assert caliper["object"]["course"]["name"] == "Math G3"
    assert caliper["extensions"] == {"courseId": "emulator-math-g3"}
    assert (event.kind, event.run_id, event.student) == ("heartbeat", run_id, ADA)


async def test_inactive_time_is_left_out_when_zero(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    await client.post(HEARTBEAT, json=window(new_run(), paused_ms=0))
    (event,) = emulator.events()
    assert event.caliper["generated"]["items"] == [{"type": "active", "value": 15.0}]


async def test_without_identity_the_answer_is_401_before_the_body_is_read(
    emulator: Emulator,
) -> None:
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator/api/timeback"
    ) as anonymous:
        response = await anonymous.post(HEARTBEAT, content=b"{not json")
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "UNAUTHORIZED", "message": "Unauthorized"}}


async def test_an_unknown_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post(
        HEARTBEAT, json=window(new_run()), headers={"Authorization": "Bearer nobody"}
    )
    assert response.status_code == 401


async def test_the_session_cookie_identifies_the_student(emulator: Emulator) -> None:
    async with httpx.AsyncClient(
        transport=emulator.transport(),
        base_url="http://emulator/api/timeback",
        cookies={SESSION_COOKIE: "tok-bob"},
    ) as bob:
        response = await bob.post(HEARTBEAT, json=window(new_run()))
    assert response.status_code == 204
    assert emulator.events()[0].student == BOB


async def test_students_can_be_added_and_removed(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    headers = {"Authorization": "Bearer tok-new"}
    assert (
        await client.post(HEARTBEAT, json=window(new_run()), headers=headers)
    ).status_code == 401
    emulator.add_student("tok-new", "new@example.edu")
    assert (
        await client.post(HEARTBEAT, json=window(new_run()), headers=headers)
    ).status_code == 204
    emulator.remove_student("tok-new")
    assert (
        await client.post(HEARTBEAT, json=window(new_run()), headers=headers)
    ).status_code == 401


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"id": "  "}, "id", "Required"),
        (
            {"course": {"subject": "Math", "grade": 13}},
            "course.grade",
            "Number must be between 0 and 12",
        ),
        ({"course": {"subject": "Math", "grade": 3.0}}, "course.grade", "Expected integer"),
        ({"runId": "run-1"}, "runId", "Expected UUID"),
        ({"startedAt": "2026-11-25T10:00:00"}, "startedAt", "Invalid datetime"),
        ({"elapsedMs": True}, "elapsedMs", "Expected nonnegative integer"),
        ({"pausedMs": -1}, "pausedMs", "Expected nonnegative integer"),
    ],
)
async def test_invalid_fields_are_400_with_the_vendors_details(
    client: httpx.AsyncClient,
    emulator: Emulator,
    changes: dict[str, Any],
    field: str,
    reason: str,
) -> None:
    response = await client.post(HEARTBEAT, json=window(new_run(), **changes))
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "code": "INVALID_PAYLOAD",
            "message": "Invalid payload",
            "details": {"field": field, "message": reason},
        }
    }
    assert emulator.events() == ()


async def test_malformed_json_is_400(client: httpx.AsyncClient) -> None:
    response = await client.post(HEARTBEAT, content=b'{"id": ')
    assert response.status_code == 400
    assert response.json()["error"] == {
        "code": "INVALID_PAYLOAD",
        "message": "Malformed JSON in request body",
    }


async def test_a_json_array_is_502_like_the_vendors_crash(client: httpx.AsyncClient) -> None:
    response = await client.post(HEARTBEAT, json=[])
    assert response.status_code == 502
    assert response.json()["error"]["message"] == "'list' object has no attribute 'get'"


async def test_a_repeated_window_is_a_duplicate(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    body = window(new_run())
    assert (await client.post(HEARTBEAT, json=body)).status_code == 204
    again = await client.post(HEARTBEAT, json=body)
    assert again.status_code == 200
    assert again.json() == {"duplicate": True}
    assert len(emulator.events()) == 1


async def test_dedupe_is_on_the_start_instant_not_its_spelling(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await client.post(HEARTBEAT, json=window(run_id))
    same_instant = window(run_id, startedAt="2026-11-25T11:00:00+01:00", elapsedMs=1)
    assert (await client.post(HEARTBEAT, json=same_instant)).status_code == 200
    next_window = window(run_id, start="10:00:15.000", end="10:00:30.000")
    assert (await client.post(HEARTBEAT, json=next_window)).status_code == 204
    assert len(emulator.events()) == 2


async def test_an_empty_window_takes_the_key_of_the_window_after_it(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """The vendor's key is the start instant only: after a zero-length window at T, the
    real window starting at T is a "duplicate", and its time is never counted."""
    run_id = new_run()
    empty = window(run_id, "10:00:00.000", "10:00:00.000", 0, 0)
    real = window(run_id, "10:00:00.000", "10:00:15.000", 15000, 0)
    assert (await client.post(HEARTBEAT, json=empty)).status_code == 204
    assert (await client.post(HEARTBEAT, json=real)).status_code == 200
    assert emulator.run(run_id).active_ms == 0


async def test_dedupe_keys_on_the_run_id_as_sent(client: httpx.AsyncClient) -> None:
    run_id = new_run()
    await client.post(HEARTBEAT, json=window(run_id))
    response = await client.post(HEARTBEAT, json=window(run_id.upper()))
    assert response.status_code == 204


async def test_open_catalog_accepts_any_course_selector(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    body = window(new_run(), course={"code": "CS-101"})
    assert (await client.post(HEARTBEAT, json=body)).status_code == 204
    assert emulator.events()[0].caliper["extensions"] == {"courseId": "emulator-cs-101"}


async def test_a_configured_catalog_rejects_unknown_and_unsynced_courses() -> None:
    courses = [
        Course(subject="Math", grade=3, staging_id="math-3"),
        Course(subject="Science", grade=7),
    ]
    with Emulator(students={"t": ADA}, courses=courses) as emulator:
        async with httpx.AsyncClient(
            transport=emulator.transport(),
            base_url="http://emulator/api/timeback",
            headers={"Authorization": "Bearer t"},
        ) as client:
            unknown = await client.post(
                HEARTBEAT, json=window(new_run(), course={"subject": "Math", "grade": 4})
            )
            unsynced = await client.post(
                HEARTBEAT, json=window(new_run(), course={"subject": "Science", "grade": 7})
            )
            known = await client.post(HEARTBEAT, json=window(new_run()))
    assert unknown.status_code == 400
    assert unknown.json()["error"] == {
        "code": "UNKNOWN_COURSE",
        "message": "Unknown course: Math grade 4",
    }
    assert unsynced.status_code == 503
    assert unsynced.json()["error"]["code"] == "MISSING_SYNCED_COURSE_ID"
    assert known.status_code == 204


async def test_framework_errors_are_shaped_like_fastapis(client: httpx.AsyncClient) -> None:
    wrong_method = await client.get(HEARTBEAT)
    assert wrong_method.status_code == 405
    assert wrong_method.json() == {"detail": "Method Not Allowed"}
    assert wrong_method.headers["allow"] == "POST"
    missing = await client.post("/activity/submit", json={})
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Not Found"}


async def test_a_custom_mount_moves_the_route() -> None:
    with Emulator(students={"t": ADA}, mount="/backend/tb/") as emulator:
        assert emulator.mount == "/backend/tb"
        async with httpx.AsyncClient(
            transport=emulator.transport(),
            base_url="http://emulator",
            headers={"Authorization": "Bearer t"},
        ) as client:
            moved = await client.post("/backend/tb/activity/heartbeat", json=window(new_run()))
            default = await client.post("/api/timeback/activity/heartbeat", json=window(new_run()))
    assert moved.status_code == 204
    assert default.status_code == 404


def test_a_mount_must_be_a_path() -> None:
    with pytest.raises(ValueError, match="mount must start with '/'"):
        Emulator(mount="api")
