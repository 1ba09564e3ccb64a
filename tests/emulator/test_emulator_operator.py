"""The operator's fixes at run time: a course synced or added, a student added to the
roster, in Python and over ``/_emulator/...``, answered as the vendor answers."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from timeback_client.emulator import Course, Emulator

pytestmark = pytest.mark.anyio

ADA = {"Authorization": "Bearer tok-ada"}


def beat(course: dict[str, Any], start: str = "2026-11-25T10:00:00.000Z") -> dict[str, Any]:
    return {
        "id": "lesson-1",
        "name": "Fractions",
        "course": course,
        "runId": str(uuid.uuid4()),
        "startedAt": start,
        "endedAt": start.replace("00.000Z", "15.000Z"),
        "elapsedMs": 15000,
        "pausedMs": 0,
    }


MATH_3 = {"subject": "Math", "grade": 3}


async def post(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/activity/heartbeat", json=body, headers=ADA)


def mounted(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator" + emulator.mount
    )


def origin(emulator: Emulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=emulator.transport(), base_url="http://emulator")


async def test_syncing_a_course_turns_503_into_204() -> None:
    with Emulator(
        students={"tok-ada": "ada@example.edu"}, courses=[Course(subject="Math", grade=3)]
    ) as emulator:
        async with mounted(emulator) as client:
            refused = await post(client, beat(MATH_3))
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "MISSING_SYNCED_COURSE_ID"
            assert refused.json()["error"]["message"].endswith(
                "Run `timeback resources push` first."
            )
            synced = emulator.sync_course(subject="Math", grade=3, course_id="math-3")
            assert (synced.staging_id, synced.production_id) == ("math-3", "math-3")
            assert (await post(client, beat(MATH_3))).status_code == 204
        assert emulator.courses == (synced,)


async def test_adding_a_course_turns_unknown_course_into_204() -> None:
    with Emulator(
        students={"tok-ada": "ada@example.edu"},
        courses=[Course(subject="Reading", grade=3, staging_id="r3", production_id="r3")],
    ) as emulator:
        async with mounted(emulator) as client:
            refused = await post(client, beat(MATH_3))
            assert (refused.status_code, refused.json()["error"]["code"]) == (
                400,
                "UNKNOWN_COURSE",
            )
            emulator.add_course(
                Course(subject="Math", grade=3, staging_id="m3", production_id="m3")
            )
            assert (await post(client, beat(MATH_3))).status_code == 204


async def test_a_student_missing_from_the_roster_is_404_until_added() -> None:
    with Emulator(students={"tok-ada": "ada@example.edu"}, roster=[]) as emulator:
        async with mounted(emulator) as client:
            refused = await post(client, beat(MATH_3))
            assert refused.status_code == 404
            assert refused.json() == {
                "error": {
                    "code": "USER_RESOLUTION_FAILED",
                    "message": "Unable to resolve Timeback identity",
                }
            }
            emulator.add_to_roster("ada@example.edu")
            assert emulator.roster == frozenset({"ada@example.edu"})
            assert (await post(client, beat(MATH_3))).status_code == 204


def test_fixes_that_cannot_apply_say_why() -> None:
    with Emulator() as emulator:  # the open catalog: every course synced
        with pytest.raises(ValueError, match="open catalog"):
            emulator.sync_course(subject="Math", grade=3)
        with pytest.raises(ValueError, match="open catalog"):
            emulator.add_course(Course(subject="Math", grade=3))
        emulator.set_courses([Course(subject="Math", grade=3)])
        with pytest.raises(ValueError, match="subject and grade, or by code"):
            emulator.sync_course(subject="Math")
        with pytest.raises(ValueError, match="no configured course"):
            emulator.sync_course(subject="Math", grade=4)
        with pytest.raises(ValueError, match="Duplicate"):
            emulator.add_course(Course(subject="Math", grade=3))
        with pytest.raises(TypeError, match="list of emails"):
            emulator.set_roster("ada@example.edu")
        emulator.add_to_roster("ada@example.edu")  # no roster: everyone is known already
        assert emulator.roster is None


async def test_the_fixes_over_http() -> None:
    with Emulator(students={"tok-ada": "ada@example.edu"}) as emulator:
        async with origin(emulator) as admin, mounted(emulator) as client:
            put = await admin.put(
                "/_emulator/courses", json={"courses": [{"subject": "Math", "grade": 3}]}
            )
            assert put.status_code == 200
            assert put.json()["courses"][0]["stagingId"] is None
            assert (await post(client, beat(MATH_3))).status_code == 503

            synced = await admin.post(
                "/_emulator/courses/sync", json={"subject": "Math", "grade": 3, "courseId": "m3"}
            )
            assert synced.json()["course"]["stagingId"] == "m3"
            assert (await post(client, beat(MATH_3))).status_code == 204

            code = {"code": "CS-101"}
            assert (await post(client, beat(code))).status_code == 400
            added = await admin.post(
                "/_emulator/courses",
                json={"code": "CS-101", "stagingId": "cs", "productionId": "cs"},
            )
            assert added.status_code == 201
            assert (await post(client, beat(code))).status_code == 204
            listed = (await admin.get("/_emulator/courses")).json()["courses"]
            assert [c["code"] for c in listed] == [None, "CS-101"]

            roster = await admin.put("/_emulator/roster", json={"emails": []})
            assert roster.json() == {"emails": []}
            assert (await post(client, beat(MATH_3))).status_code == 404
            added_student = await admin.post("/_emulator/roster", json={"email": "ada@example.edu"})
            assert added_student.json() == {"emails": ["ada@example.edu"]}
            assert (await post(client, beat(MATH_3))).status_code == 204
            everyone = await admin.put("/_emulator/roster", json={"emails": None})
            assert everyone.json() == {"emails": None}
            assert (await admin.get("/_emulator/roster")).json() == {"emails": None}


@pytest.mark.parametrize(
    ("method", "path", "body", "says"),
    [
        ("POST", "/_emulator/courses", {"subject": "Math", "grade": "3"}, "grade"),
        ("POST", "/_emulator/courses", {"subject": "Math", "grade": 3, "ids": {}}, "ids"),
        ("POST", "/_emulator/courses", [1], "JSON object"),
        ("POST", "/_emulator/courses/sync", {"subject": "Math"}, "subject and grade"),
        ("POST", "/_emulator/courses/sync", {"code": 7}, "code"),
        ("PUT", "/_emulator/courses", {"courses": "Math"}, "courses"),
        ("POST", "/_emulator/roster", {"email": ""}, "email"),
        ("PUT", "/_emulator/roster", {"emails": "a@b.c"}, "emails"),
    ],
)
async def test_bad_fixes_over_http_are_400_naming_the_field(
    method: str, path: str, body: Any, says: str
) -> None:
    with Emulator(courses=[Course(subject="Reading", grade=3)]) as emulator:
        async with origin(emulator) as admin:
            answer = await admin.request(method, path, json=body)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "INVALID_PAYLOAD"
    assert says in answer.json()["error"]["message"]


def test_record_resolves_the_student_in_the_roster_too() -> None:
    from timeback_client.emulator import RecordRejected

    with Emulator(roster=[]) as emulator:
        body = {
            "user": {"email": "ada@example.edu"},
            "activity": {"id": "quiz", "name": "Quiz", "course": MATH_3},
            "metrics": {"xp_earned": 10},
        }
        with pytest.raises(RecordRejected) as refused:
            emulator.record(body)
        assert refused.value.rejection.code == "USER_RESOLUTION_FAILED"
        emulator.add_to_roster("ada@example.edu")
        assert emulator.record(body)
