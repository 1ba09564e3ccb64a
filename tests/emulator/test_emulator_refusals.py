"""The app's requests the emulator refused: counted by route, status and error, in the
verdict of ``--fail-on-problems``; the operator's injected faults never counted."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import httpx
import pytest
from emulator_bodies import ADA, STUDENTS, completion, new_run, window

from timeback_client.emulator import Course, Emulator, RecordRejected, Refusal
from timeback_client.emulator._command import _verdict

HEARTBEAT = "/api/timeback/activity/heartbeat"
SECRET = "s3cr3t-unknown-token"
NOW = datetime(2026, 11, 25, 12, 30, tzinfo=UTC)


@pytest.fixture
async def configured() -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    """An emulator with the backend's courses (Math 3 synced, Science 7 not) and Ada."""
    courses = [
        Course(subject="Math", grade=3, staging_id="m3"),
        Course(subject="Science", grade=7),
    ]
    with Emulator(students=STUDENTS, courses=courses, roster=[ADA], clock=lambda: NOW) as emu:
        async with httpx.AsyncClient(
            transport=emu.transport(),
            base_url="http://emulator",
            headers={"Authorization": "Bearer tok-ada"},
        ) as client:
            yield emu, client


async def _refuse_some(emulator: Emulator, client: httpx.AsyncClient) -> None:
    reading = window(new_run(), course={"subject": "Reading", "grade": 2})
    for _ in range(2):
        assert (await client.post(HEARTBEAT, json=reading)).status_code == 400
    science = window(new_run(), course={"subject": "Science", "grade": 7})
    assert (await client.post(HEARTBEAT, json=science)).status_code == 503
    stranger = {"Authorization": f"Bearer {SECRET}"}
    beat = window(new_run())
    assert (await client.post(HEARTBEAT, json=beat, headers=stranger)).status_code == 401
    bob = {"Authorization": "Bearer tok-bob"}  # known token, not in the roster
    assert (await client.post(HEARTBEAT, json=beat, headers=bob)).status_code == 404
    assert (await client.post(HEARTBEAT, json={**beat, "elapsedMs": -1})).status_code == 400
    assert (await client.post(HEARTBEAT, content=b"{")).status_code == 400
    # record(): over HTTP and in Python, each counted once.
    never_synced = completion(None)
    never_synced["activity"]["course"] = {"subject": "Science", "grade": 7}
    assert (await client.post("/_emulator/record", json=never_synced)).status_code == 503
    with pytest.raises(RecordRejected):
        emulator.record(completion(None, metrics={}))


@pytest.mark.anyio
async def test_refused_requests_are_counted_by_route_status_and_code(
    configured: tuple[Emulator, httpx.AsyncClient],
) -> None:
    emulator, client = configured
    await _refuse_some(emulator, client)
    # Accepted and duplicate heartbeats are no refusal.
    beat = window(new_run())
    assert (await client.post(HEARTBEAT, json=beat)).status_code == 204
    assert (await client.post(HEARTBEAT, json=beat)).status_code == 200
    found = {(r.route, r.status, r.code): r for r in emulator.refusals()}
    counts: dict[tuple[str, int, str], int] = {}
    for refusal in emulator.refusals():
        key = (refusal.route, refusal.status, refusal.code)
        counts[key] = counts.get(key, 0) + refusal.count
    assert counts == {
        ("heartbeat", 400, "UNKNOWN_COURSE"): 2,
        ("heartbeat", 503, "MISSING_SYNCED_COURSE_ID"): 1,
        ("heartbeat", 401, "UNAUTHORIZED"): 1,
        ("heartbeat", 404, "USER_RESOLUTION_FAILED"): 1,
        ("heartbeat", 400, "INVALID_PAYLOAD"): 2,
        ("record", 503, "MISSING_SYNCED_COURSE_ID"): 1,
        ("record", 400, "INVALID_PAYLOAD"): 1,
    }
    assert emulator.refusals()[0] == Refusal(
        route="heartbeat",
        status=400,
        code="UNKNOWN_COURSE",
        message=found["heartbeat", 400, "UNKNOWN_COURSE"].message,
        count=2,
    )
    assert "Reading" in found["heartbeat", 400, "UNKNOWN_COURSE"].message
    # Kinds with one code but another message are kept apart, the field named.
    payload = sorted(r.message for r in emulator.refusals() if r.code == "INVALID_PAYLOAD")
    assert payload == [
        "Invalid payload (field elapsedMs: Expected nonnegative integer)",
        "Malformed JSON in request body",
        "Validation error on 'metrics.xp_earned': Required",
    ]
    emulator.reset()
    assert emulator.refusals() == ()


@pytest.mark.anyio
async def test_the_verdict_names_refusals_exits_1_and_never_shows_a_token(
    configured: tuple[Emulator, httpx.AsyncClient],
) -> None:
    emulator, client = configured
    await _refuse_some(emulator, client)
    said: list[str] = []
    assert _verdict(emulator.problems(), emulator.refusals(), said.append) == 1
    text = "\n".join(said)
    assert said[0] == "timeback-client emulator: no problems seen in the runs"
    assert "timeback-client emulator: 7 heartbeats refused (time the app lost):" in said
    assert "- 2 x 400 UNKNOWN_COURSE: Unknown course: " in text
    assert "- 1 x 401 UNAUTHORIZED: Unauthorized" in said
    assert "timeback-client emulator: 2 record() calls refused (completions the app lost):" in said
    assert SECRET not in text
    assert "tok-ada" not in text
    assert "tok-bob" not in text


@pytest.mark.anyio
async def test_the_operator_s_faults_are_no_refusal_of_the_app(
    configured: tuple[Emulator, httpx.AsyncClient],
) -> None:
    emulator, client = configured
    emulator.faults.add(status=503, retry_after=1)
    emulator.faults.add(status=401, code="UNAUTHORIZED")
    emulator.faults.add(drop=True)
    for _ in range(2):
        assert (await client.post(HEARTBEAT, json=window(new_run()))).status_code >= 400
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(HEARTBEAT, json=window(new_run()))
    # A delay lets the backend answer: what it accepts is no refusal either.
    emulator.faults.add(delay=0)
    assert (await client.post(HEARTBEAT, json=window(new_run()))).status_code == 204
    assert emulator.refusals() == ()
    said: list[str] = []
    assert _verdict(emulator.problems(), emulator.refusals(), said.append) == 0
    assert said == ["timeback-client emulator: no problems seen, no request refused"]
