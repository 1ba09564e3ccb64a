"""Storage: SQLite keeps everything across restarts; concurrent use is safe."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
from emulator_bodies import STUDENTS, completion, new_run, window

from timeback_client.emulator import Emulator

HEARTBEAT = "/activity/heartbeat"
AUTH = {"Authorization": "Bearer tok-ada"}


def test_a_database_file_keeps_events_and_dedupe_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "emulator.sqlite"
    run_id = new_run()
    body = window(run_id, elapsed_ms=12000, paused_ms=3000)
    with Emulator(students=STUDENTS, db=db) as first:
        with first.serve_in_thread() as base_url:
            assert httpx.post(base_url + HEARTBEAT, json=body, headers=AUTH).status_code == 204
        first.record(completion(run_id))
        before = first.run(run_id)

    with Emulator(students=STUDENTS, db=db) as second, second.serve_in_thread() as base_url:
        again = httpx.post(base_url + HEARTBEAT, json=body, headers=AUTH)
        after = second.run(run_id)
    assert (again.status_code, again.json()) == (200, {"duplicate": True})
    assert after == before
    assert (after.active_ms, after.inactive_ms, after.completed) == (12000, 3000, True)


def test_memory_storage_starts_empty_every_time() -> None:
    body = window(new_run())
    for _ in range(2):
        with Emulator(students=STUDENTS) as emulator, emulator.serve_in_thread() as base_url:
            assert httpx.post(base_url + HEARTBEAT, json=body, headers=AUTH).status_code == 204


def test_milliseconds_past_sqlite_integers_survive(tmp_path: Path) -> None:
    db = tmp_path / "big.sqlite"
    run_id = new_run()
    with Emulator(students=STUDENTS, db=db) as emulator, emulator.serve_in_thread() as url:
        big = window(run_id, elapsed_ms=2**64)
        assert httpx.post(url + HEARTBEAT, json=big, headers=AUTH).status_code == 204
    with Emulator(db=db) as emulator:
        assert emulator.run(run_id).active_ms == 2**64


def test_concurrent_heartbeats_and_inspection_are_safe() -> None:
    """Eight threads send the same 25 windows: each is stored exactly once."""
    run_id = new_run()
    bodies = [
        window(
            run_id,
            startedAt=f"2026-11-25T10:{i:02d}:00.000Z",
            endedAt=f"2026-11-25T10:{i + 1:02d}:00.000Z",
            elapsedMs=60000,
        )
        for i in range(25)
    ]
    statuses: list[int] = []
    lock = threading.Lock()
    with Emulator(students=STUDENTS) as emulator, emulator.serve_in_thread() as base_url:

        def sender() -> None:
            with httpx.Client(base_url=base_url, headers=AUTH) as client:
                for body in bodies:
                    status = client.post(HEARTBEAT, json=body).status_code
                    emulator.run(run_id)  # inspection interleaved with writes
                    with lock:
                        statuses.append(status)

        threads = [threading.Thread(target=sender) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        run = emulator.run(run_id)
        problems = emulator.problems()
    assert statuses.count(204) == 25
    assert statuses.count(200) == 25 * 7
    assert len(run.windows) == 25
    assert run.active_ms == 25 * 60000
    assert run.sessions == 1
    assert problems == ()
