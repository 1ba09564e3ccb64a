"""Time survives a misconfigured backend, against the vendor's own server.

``timeback-sdk`` 0.4.0 behind FastAPI (``vendor_server.py``), with one course in its
``timeback.config.json`` not synced yet: the client holds the refused windows (the
vendor's own fix text reaches ``on_error``, once); the operator syncs the course and
restarts the server with the fixed config; the held time is then recorded, once.

The client runs on a `ScaledClock` (100 times faster), so a five-minute retry cadence
takes seconds.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from timeback_client import (
    AsyncTimeback,
    BackendConfigurationError,
    ErrorContext,
    TimebackError,
    TimeOptions,
)
from timeback_client._clock import ScaledClock
from timeback_client._sender import HOLD_RETRY
from vendor_kit import vendor_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.anyio,
    pytest.mark.skipif(
        sys.platform == "win32",
        reason="the vendor's venv comes from a bash script, and select() waits on a pipe",
    ),
]

SPEED = 100.0
STUDENTS = {"tok-ada": "ada@example.edu"}
MATH_3 = {"subject": "Math", "grade": 3}


def config(*, synced: bool) -> dict[str, Any]:
    course: dict[str, Any] = {"subject": "Math", "grade": 3}
    if synced:
        course["ids"] = {"staging": "course-math-3"}
    return {"name": "Held App", "sensor": "https://sensor.held.example", "courses": [course]}


@contextmanager
def vendor(workdir: Path, *, synced: bool, port: int = 0) -> Iterator[int]:
    """The vendor's server with this config, on ``port`` (0: a free one); its port."""
    name = f"vendor-{'synced' if synced else 'unsynced'}"
    with vendor_server(workdir, config(synced=synced), STUDENTS, port=port, name=name) as origin:
        yield int(origin.rsplit(":", 1)[1])


async def wait_for(condition: Any, timeout: float) -> None:  # noqa: ASYNC109 - real seconds
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {condition}"
        await anyio.sleep(0.05)


async def test_held_time_reaches_the_vendor_once_after_the_course_is_synced(
    tmp_path: Path,
) -> None:
    reports: list[tuple[TimebackError, ErrorContext]] = []
    with ExitStack() as unsynced:
        port = unsynced.enter_context(vendor(tmp_path, synced=False))
        async with AsyncTimeback(
            f"http://127.0.0.1:{port}/api/timeback",
            headers={"Authorization": "Bearer tok-ada"},
            clock=ScaledClock(SPEED),
            outbox=tmp_path / "outbox.sqlite3",
        ) as timeback:
            activity = timeback.activity.start(
                id="lesson-1",
                name="Fractions",
                course=MATH_3,
                time=TimeOptions(idle_timeout=24 * 3600.0),
                on_error=lambda error, context: reports.append((error, context)),
            )
            # Five minutes of lesson: every window held behind the first refusal.
            await anyio.sleep(5 * 60 / SPEED)
            (held,) = timeback.statistics().held
            assert held.cause == "MISSING_SYNCED_COURSE_ID"
            assert held.windows >= 15
            causes = [e for e, _ in reports if isinstance(e, BackendConfigurationError)]
            assert len(causes) == 1  # once for the cause, however many windows and retries
            assert "Run `timeback resources push` first." in str(causes[0])
            assert causes[0].status_code == 503

            # The operator syncs the course and restarts the server, on the same port.
            unsynced.close()
            with vendor(tmp_path, synced=True, port=port):
                # The next slow retry is accepted, and every held window follows it.
                await wait_for(
                    lambda: not timeback.statistics().held, 1.3 * HOLD_RETRY / SPEED + 10
                )
                await activity.end()
                assert not await timeback.flush(10)
                async with httpx.AsyncClient() as client:
                    answer = await client.get(f"http://127.0.0.1:{port}/_parity/events")
    spent = [
        event
        for event in answer.json()["events"]
        if event["type"] == "TimeSpentEvent" and activity.run_id in event["session"]
    ]
    ends = [event["eventTime"] for event in spent]
    assert len(ends) == len(set(ends))  # each window once
    active_s = sum(
        item["value"]
        for event in spent
        for item in event["generated"]["items"]
        if item["type"] == "active"
    )
    assert round(active_s * 1000) == activity.elapsed_ms
    assert len([e for e, _ in reports if isinstance(e, BackendConfigurationError)]) == 1
