"""Fault injection, in process and over a real socket."""

from __future__ import annotations

import time

import httpx
import pytest
from emulator_bodies import new_run, window

from timeback_client.emulator import Emulator, Fault

HEARTBEAT = "/activity/heartbeat"


@pytest.mark.anyio
async def test_a_status_with_a_code_answers_the_vendor_error_body(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(status=404, code="USER_RESOLUTION_FAILED")
    failed = await client.post(HEARTBEAT, json=window(new_run()))
    assert failed.status_code == 404
    assert failed.json() == {
        "error": {
            "code": "USER_RESOLUTION_FAILED",
            "message": "Unable to resolve Timeback identity",
        }
    }
    assert emulator.events() == ()
    assert (await client.post(HEARTBEAT, json=window(new_run()))).status_code == 204


@pytest.mark.anyio
async def test_the_next_n_heartbeats_fail_then_service_resumes(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(status=503, retry_after=2, count=2)
    body = window(new_run())
    first = await client.post(HEARTBEAT, json=body)
    assert first.status_code == 503
    assert first.headers["retry-after"] == "2"
    assert first.text == "Service Unavailable"  # a proxy's answer: no vendor code
    assert emulator.faults.pending() == (Fault(status=503, retry_after=2, count=1),)
    assert (await client.post(HEARTBEAT, json=body)).status_code == 503
    assert (await client.post(HEARTBEAT, json=body)).status_code == 204
    assert emulator.faults.pending() == ()


@pytest.mark.anyio
async def test_a_body_replaces_the_answer(client: httpx.AsyncClient, emulator: Emulator) -> None:
    error = {"error": {"code": "INTERNAL_ERROR", "message": "caliper is down"}}
    emulator.faults.add(status=502, body=error)
    response = await client.post(HEARTBEAT, json=window(new_run()))
    assert (response.status_code, response.json()) == (502, error)


@pytest.mark.anyio
async def test_faults_touch_only_heartbeats(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.add(status=500)
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        assert (await http.get("/_emulator/events")).status_code == 200
    assert len(emulator.faults.pending()) == 1


@pytest.mark.anyio
async def test_a_delay_slows_the_answer_down(client: httpx.AsyncClient, emulator: Emulator) -> None:
    emulator.faults.add(delay=0.2)
    started = time.monotonic()
    response = await client.post(HEARTBEAT, json=window(new_run()))
    assert response.status_code == 204
    assert time.monotonic() - started >= 0.2


@pytest.mark.anyio
async def test_a_delay_past_the_read_timeout_times_out_in_process(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(delay=5)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(HEARTBEAT, json=window(new_run()), timeout=0.1)
    assert emulator.events() == ()


@pytest.mark.anyio
async def test_a_drop_is_a_transport_error_in_process(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(drop=True)
    body = window(new_run())
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(HEARTBEAT, json=body)
    assert emulator.events() == ()
    assert (await client.post(HEARTBEAT, json=body)).status_code == 204


@pytest.mark.anyio
async def test_a_lost_answer_then_a_retry_is_a_duplicate(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(drop=True, after_processing=True)
    body = window(new_run())
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(HEARTBEAT, json=body)
    assert len(emulator.events()) == 1  # the backend did take it
    retry = await client.post(HEARTBEAT, json=body)
    assert (retry.status_code, retry.json()) == (200, {"duplicate": True})


@pytest.mark.anyio
async def test_a_status_after_processing_stores_the_window(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    emulator.faults.add(status=504, after_processing=True)
    assert (await client.post(HEARTBEAT, json=window(new_run()))).status_code == 504
    assert len(emulator.events()) == 1


@pytest.mark.anyio
async def test_faults_over_http(client: httpx.AsyncClient, emulator: Emulator) -> None:
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        added = await http.post(
            "/_emulator/faults", json={"count": 2, "status": 429, "retryAfter": 1.5}
        )
        listed = (await http.get("/_emulator/faults")).json()
        bad = await http.post("/_emulator/faults", json={"status": 503, "drop": True})
        unknown = await http.post("/_emulator/faults", json={"statuz": 503})
        wrong_type = await http.post("/_emulator/faults", json={"status": "503"})
        limited = await client.post(HEARTBEAT, json=window(new_run()))
        cleared = await http.delete("/_emulator/faults")
    assert added.status_code == 201
    assert added.json()["fault"]["status"] == 429
    assert listed["faults"][0]["count"] == 2
    assert bad.status_code == unknown.status_code == wrong_type.status_code == 400
    assert "statuz" in unknown.json()["error"]["message"]
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1.5"
    assert cleared.status_code == 204
    assert emulator.faults.pending() == ()


@pytest.mark.parametrize(
    "fields",
    [
        {"count": 0},
        {"status": 99},
        {"status": 503, "drop": True},
        {"code": "INTERNAL_ERROR"},
        {"delay": -1},
    ],
)
def test_nonsense_faults_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        Fault(**fields)  # type: ignore[arg-type]


def test_a_fault_or_its_fields_not_both(emulator: Emulator) -> None:
    with pytest.raises(TypeError):
        emulator.faults.add(Fault(status=500), status=502)


# ── over a real socket ─────────────────────────────────────────────────────────────────


def test_a_drop_over_a_socket_is_a_protocol_error(emulator: Emulator) -> None:
    with emulator.serve_in_thread() as base_url, httpx.Client(base_url=base_url) as client:
        emulator.faults.add(drop=True, after_processing=True)
        headers = {"Authorization": "Bearer tok-ada"}
        body = window(new_run())
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(HEARTBEAT, json=body, headers=headers)
        retry = client.post(HEARTBEAT, json=body, headers=headers)
    assert retry.status_code == 200
    assert len(emulator.events()) == 1


def test_a_delay_over_a_socket_trips_the_read_timeout(emulator: Emulator) -> None:
    with emulator.serve_in_thread() as base_url, httpx.Client(base_url=base_url) as client:
        emulator.faults.add(delay=0.5)
        with pytest.raises(httpx.ReadTimeout):
            client.post(
                HEARTBEAT,
                json=window(new_run()),
                headers={"Authorization": "Bearer tok-ada"},
                timeout=0.1,
            )
