"""Inspection: runs, windows, sessions, events, over Python and HTTP."""

from __future__ import annotations

import os
import sqlite3
import stat
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import attrs
import httpx
import pytest
from emulator_bodies import ADA, completion, new_run, window
from hypothesis import given, settings
from hypothesis import strategies as st

from timeback_client import ValidationError
from timeback_client.emulator import Emulator, SentEvent, UnknownRun

pytestmark = pytest.mark.anyio

HEARTBEAT = "/activity/heartbeat"


async def send(client: httpx.AsyncClient, *bodies: dict[str, object]) -> None:
    for body in bodies:
        response = await client.post(HEARTBEAT, json=body)
        assert response.status_code == 204, response.text


async def test_a_resumed_run_has_two_sessions_and_exact_totals(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(
        client,
        # Sent out of order on purpose: windows come back ordered by start.
        window(run_id, "10:00:15.000", "10:00:30.000", 10000, 5000),
        window(run_id, "10:00:00.000", "10:00:15.000", 15000, 0),
        # The student left and came back an hour later: a second session.
        window(run_id, "11:00:00.000", "11:00:15.000", 15000, 0),
    )
    run = emulator.run(run_id)
    assert (run.active_ms, run.inactive_ms) == (40000, 5000)
    assert [w.started_at for w in run.windows] == [
        "2026-11-25T10:00:00.000Z",
        "2026-11-25T10:00:15.000Z",
        "2026-11-25T11:00:00.000Z",
    ]
    assert run.sessions == 2
    assert run.students == (ADA,)
    assert run.activities == ("lesson-1",)
    assert not run.completed
    assert len(run.events) == 3


async def test_completion_shows_on_the_run(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    emulator.record(completion(run_id))
    run = emulator.run(run_id)
    assert run.completed
    assert [event.kind for event in run.events] == ["heartbeat", "completion"]


def test_an_unknown_run_is_a_clear_error_not_an_empty_run(emulator: Emulator) -> None:
    """A mistyped runId would otherwise fail a test as ``0 == 5``."""
    with pytest.raises(UnknownRun, match="no heartbeat or record\\(\\) for run 'never-seen'"):
        emulator.run("never-seen")
    with pytest.raises(LookupError):
        emulator.run("a/b/c")


async def test_an_unknown_run_names_the_runs_it_has(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    mistyped = run_id[:-1] + ("1" if run_id.endswith("0") else "0")
    with pytest.raises(UnknownRun, match=run_id):
        emulator.run(mistyped)


async def test_an_unknown_run_is_404_over_http(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        for path in ("/_emulator/runs/never-seen", "/_emulator/runs/a/b/c"):
            response = await http.get(path)
            assert response.status_code == 404, path
        body = (await http.get("/_emulator/runs/never-seen")).json()
    assert body["error"]["code"] == "UNKNOWN_RUN"


async def test_runs_are_frozen_values_with_a_short_repr(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(client, window(run_id, elapsed_ms=15000))
    run = emulator.run(run_id)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        run.active_ms = 5  # type: ignore[misc]
    shown = repr(run)
    assert shown == (
        f"<Run {run_id} active_ms=15000 inactive_ms=0 windows=1 sessions=1 completed=False>"
    )
    assert "caliper" not in shown


async def test_runs_in_order_of_first_appearance(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    first, second = new_run(), new_run()
    await send(client, window(first), window(second), window(first, "10:00:15.000", "10:00:30.000"))
    assert [run.run_id for run in emulator.runs()] == [first, second]


async def test_inspection_over_http(client: httpx.AsyncClient, emulator: Emulator) -> None:
    run_id = new_run()
    await send(client, window(run_id, elapsed_ms=12000, paused_ms=3000))
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        run = (await http.get(f"/_emulator/runs/{run_id}")).json()
        runs = (await http.get("/_emulator/runs")).json()
        events = (await http.get("/_emulator/events")).json()
    assert run["runId"] == run_id
    assert (run["activeMs"], run["inactiveMs"], run["sessions"]) == (12000, 3000, 1)
    assert run["windows"][0]["elapsedMs"] == 12000
    assert run["completed"] is False
    assert [r["runId"] for r in runs["runs"]] == [run_id]
    (event,) = events["events"]
    assert event["caliper"]["session"] == f"urn:uuid:{run_id}"


async def test_inspection_over_http_serves_exactly_what_python_sees(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    """The JSON routes splice each stored Caliper event into the answer as it was stored."""
    run_id = new_run()
    lesson = {"id": "lesson-1", "name": "Fractions \u00bd \u2014 \u00e9t\u00e9 \U0001f4d0"}
    await send(
        client,
        window(run_id, elapsed_ms=12000, paused_ms=3000, **lesson),
        window(run_id, "10:00:15.000", "10:00:30.000", **lesson),
    )
    emulator.record(
        completion(
            run_id,
            activity={**lesson, "course": {"subject": "Math", "grade": 3}},
            time={"started_at": "2026-11-25T10:00:00Z", "active_ms": 27000},
        )
    )
    emulator.record(completion(None))  # an event of no run: in events, in no run
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        answers = [
            await http.get(path)
            for path in ("/_emulator/runs", f"/_emulator/runs/{run_id}", "/_emulator/events")
        ]
    for answer in answers:
        assert (answer.status_code, answer.headers["content-type"]) == (200, "application/json")
    runs, run, events = (answer.json() for answer in answers)
    assert runs == {"runs": [run.to_json() for run in emulator.runs()]}
    assert run == emulator.run(run_id).to_json()
    assert events == {"events": [event.to_json() for event in emulator.events()]}
    assert len(events["events"]) == 5
    assert runs["runs"][0]["events"][0]["caliper"]["object"]["activity"]["name"] == lesson["name"]


async def test_an_events_caliper_is_a_fresh_copy_on_every_read(
    client: httpx.AsyncClient, emulator: Emulator
) -> None:
    run_id = new_run()
    await send(client, window(run_id))
    (heartbeat,) = emulator.events()
    (completed,) = emulator.record(completion(run_id))
    for event in (heartbeat, completed):
        read = event.caliper
        read["type"] = "Changed"
        read["actor"].clear()
        assert event.caliper["type"] in ("TimeSpentEvent", "ActivityEvent")
        assert event.caliper["actor"]["id"]
        assert event.caliper is not event.caliper
    assert emulator.events() == (heartbeat, completed)


def test_a_sent_event_made_by_hand_is_a_value_like_a_stored_one(
    emulator: Emulator,
) -> None:
    (stored,) = emulator.record(completion(new_run()))
    facts = {
        field.name: getattr(stored, field.name)
        for field in attrs.fields(SentEvent)
        if field.name != "_caliper_json"
    }
    made = SentEvent(**facts, caliper=stored.caliper)
    assert made == stored
    assert repr(made) == repr(stored)
    assert made.caliper == stored.caliper
    # Compared as dicts are: the order of keys does not matter, their values do.
    assert SentEvent(**facts, caliper=dict(reversed(stored.caliper.items()))) == stored
    assert SentEvent(**facts, caliper={**stored.caliper, "type": "Other"}) != stored
    assert attrs.evolve(stored, seq=7) == SentEvent(**{**facts, "seq": 7}, caliper=stored.caliper)
    assert repr(made).startswith(f"SentEvent(seq={stored.seq}, kind='completion', ")
    assert repr(made).endswith(f"caliper={stored.caliper!r})")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        made.seq = 3  # type: ignore[misc]


async def test_reset_forgets_everything(client: httpx.AsyncClient, emulator: Emulator) -> None:
    body = window(new_run())
    await send(client, body)
    emulator.faults.add(status=503)
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        assert (await http.post("/_emulator/reset")).status_code == 204
    assert emulator.events() == ()
    assert emulator.faults.pending() == ()
    await send(client, body)  # no longer a duplicate


@settings(max_examples=25, deadline=None)
@given(
    spans=st.lists(
        st.tuples(
            st.integers(1, 60_000),  # active ms (an empty window is another story)
            st.integers(0, 60_000),  # paused ms
            st.booleans(),  # a gap (a new session) before this window
        ),
        min_size=1,
        max_size=12,
    )
)
def test_totals_and_sessions_of_any_well_formed_run(spans: list[tuple[int, int, bool]]) -> None:
    """Whatever the windows, the run adds them up exactly and counts its chains."""
    run_id = new_run()
    start = datetime(2026, 11, 25, 10, tzinfo=UTC)
    bodies = []
    sessions = 0
    for index, (active, paused, gap) in enumerate(spans):
        if gap or index == 0:
            sessions += 1
            start += timedelta(minutes=30) if index else timedelta()
        end = start + timedelta(milliseconds=active + paused)
        bodies.append(
            window(
                run_id, startedAt=_iso(start), endedAt=_iso(end), elapsedMs=active, pausedMs=paused
            )
        )
        start = end

    async def send_all(emulator: Emulator) -> None:
        async with httpx.AsyncClient(
            transport=emulator.transport(),
            base_url="http://e/api/timeback",
            headers={"Authorization": "Bearer t"},
        ) as client:
            for body in bodies:
                assert (await client.post(HEARTBEAT, json=body)).status_code == 204

    with Emulator(students={"t": ADA}) as emulator:
        anyio.run(send_all, emulator)
        run = emulator.run(run_id)
        problems = emulator.problems()
    assert run.active_ms == sum(active for active, _, _ in spans)
    assert run.inactive_ms == sum(paused for _, paused, _ in spans)
    assert len(run.windows) == len(spans)
    assert run.sessions == sessions
    assert problems == ()


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes; Windows has ACLs")
def test_the_database_file_is_private_to_the_user(tmp_path: Path) -> None:
    path = tmp_path / "emulator.sqlite3"
    Emulator(db=path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_db_that_is_not_the_emulator_s_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    """A harness that passes its app's database as ``db=`` hears so at once; the file
    keeps its bytes, mode and name (no emulator tables, no WAL switch, nothing beside)."""
    path = tmp_path / "app.db"
    app = sqlite3.connect(path)
    app.execute("CREATE TABLE progress (lesson TEXT)")
    app.commit()
    app.close()
    path.chmod(0o644)
    before = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode), sorted(os.listdir(tmp_path)))
    with pytest.raises(ValidationError, match="another application's SQLite database") as raised:
        Emulator(db=path)
    assert raised.value.field == "db"
    after = (path.read_bytes(), stat.S_IMODE(path.stat().st_mode), sorted(os.listdir(tmp_path)))
    assert after == before


def test_an_event_store_of_an_earlier_version_still_opens(tmp_path: Path) -> None:
    """Stores made before they carried the emulator's application id keep their events."""
    path = tmp_path / "emulator.sqlite3"
    run_id = new_run()
    with Emulator(db=path, students={"tok": ADA}) as emulator, emulator.serve_in_thread() as url:
        answer = httpx.post(
            f"{url}/activity/heartbeat",
            json=window(run_id),
            headers={"Authorization": "Bearer tok"},
        )
        assert answer.status_code == 204
    db = sqlite3.connect(path)
    db.execute("PRAGMA application_id=0")  # as an earlier version left it
    db.commit()
    db.close()
    with Emulator(db=path) as emulator:
        assert emulator.run(run_id).active_ms == 15_000
