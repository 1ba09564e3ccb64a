"""Nothing the app does breaks tracking, hangs its exit or goes unexplained.

Each test here failed on the engine before these fixes: a client the app let go of,
text the contract cannot carry, a token refreshed after a crash, calls after `end()`,
and errors that spoke another API than the caller's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from timeback_client import (
    AsyncTimeback,
    Engine,
    ErrorContext,
    LifecycleError,
    NetworkError,
    OutboxError,
    Timeback,
    TimebackError,
    TimeOptions,
    ValidationError,
    VirtualClock,
)
from timeback_client.emulator import Emulator

BASE = "http://emulator.localhost/api/timeback"
COURSE = {"subject": "Math", "grade": 3}
STUDENTS = {"token-a": "ada@example.edu", "token-b": "ada@example.edu"}


# -- 1. a client the app lets go of ------------------------------------------------------------


CHILD = textwrap.dedent(
    """
    import gc, json, sys, time
    from timeback_client import Timeback, TimeOptions

    def open_lesson(url):
        # The helper keeps nothing but the activity: the client is let go of.
        timeback = Timeback(url, headers={"Authorization": "Bearer token-a"}, outbox=None)
        return timeback.activity.start(
            id="lesson-1", name="Fractions", course={"subject": "Math", "grade": 3},
            time=TimeOptions(heartbeat_interval=0.2, flush_timeout=5),
        )

    activity = open_lesson(sys.argv[1])
    if sys.argv[2] == "drop-both":
        run_id = activity.run_id
        del activity
    else:
        run_id = activity.run_id
    time.sleep(0.5)
    started = time.monotonic()
    for _ in range(3):
        gc.collect()
    print(json.dumps({"run_id": run_id, "gc_s": time.monotonic() - started}), flush=True)
    time.sleep(0.3)
    # The interpreter exits here without close(): the client must close, within its
    # flush deadline, and its last window must arrive.
    """
)


@pytest.mark.parametrize("dropped", ["client", "drop-both"])
def test_a_client_the_app_lets_go_of_runs_on_and_closes_at_exit(
    tmp_path: Path, dropped: str
) -> None:
    """A kiosk helper made `Timeback(...)` and returned only the activity (or nothing):
    garbage collection never waits for the network, the interpreter exits within the
    flush deadline, and all the time arrives."""
    with Emulator(students=STUDENTS) as emulator, emulator.serve_in_thread() as url:
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-c", CHILD, url, dropped],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        took = time.monotonic() - started
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        assert report["gc_s"] < 1.0  # collecting never waited for the loop or the network
        assert took < 20
        run = emulator.run(report["run_id"])
        assert run.active_ms >= 700  # 0.5 s + 0.3 s of lesson, all of it delivered
        assert run.sessions == 1
        assert emulator.problems() == ()


# -- 2. text the contract cannot carry ------------------------------------------------------


@pytest.mark.parametrize("field", ["id", "name", "course.code"])
def test_a_lone_surrogate_is_refused_at_start_naming_the_field(field: str) -> None:
    """``os.fsdecode`` gives lone surrogates for file names that are not UTF-8: refused
    at `start()`, where the app can fix it, never in the background."""
    bad = "lesson-\udcff"
    arguments: dict[str, Any] = {"id": "lesson-1", "name": "Fractions", "course": COURSE}
    if field == "course.code":
        arguments["course"] = {"code": bad}
    else:
        arguments[field] = bad
    with Timeback(BASE, transport=httpx.MockTransport(lambda r: httpx.Response(204))) as tb:
        with pytest.raises(ValidationError) as raised:
            tb.activity.start(**arguments)
        assert raised.value.field == field
        assert "surrogate" in str(raised.value)
        # The client is unharmed.
        activity = tb.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        activity.end()


def test_identity_with_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"^identity: "):
        Timeback(BASE, identity="student-\udcff", outbox=None)


# -- 3. a token refreshed after a crash -------------------------------------------------------


KILLED = textwrap.dedent(
    """
    import os, sys, time
    from timeback_client import Timeback, TimeOptions

    kwargs = {"identity": sys.argv[3]} if len(sys.argv) > 3 else {}
    timeback = Timeback(sys.argv[1], headers={"Authorization": "Bearer token-a"},
                        outbox=sys.argv[2], **kwargs)
    activity = timeback.activity.start(
        id="lesson-1", name="Fractions", course={"subject": "Math", "grade": 3},
        time=TimeOptions(heartbeat_interval=60),
    )
    time.sleep(2.5)  # a second's stamp or two, then the power goes
    os._exit(9)
    """
)


@pytest.mark.parametrize("identity", [None, "student-42"])
def test_after_a_crash_a_new_token_either_replays_or_is_told_why_not(
    tmp_path: Path, identity: str | None
) -> None:
    """Yesterday's session crashed under token A; today the student signs in with token B.
    With ``identity=`` the time is replayed; without it, the app hears how much waits and
    what to do."""
    outbox = tmp_path / "outbox.sqlite3"
    with Emulator(students=STUDENTS) as emulator, emulator.serve_in_thread() as url:
        args = [sys.executable, "-c", KILLED, url, str(outbox)] + ([identity] if identity else [])
        subprocess.run(args, capture_output=True, timeout=60, check=False)
        reports: list[tuple[TimebackError, ErrorContext]] = []
        kwargs: dict[str, Any] = {"identity": identity} if identity else {}
        with Timeback(
            url,
            headers={"Authorization": "Bearer token-b"},
            outbox=outbox,
            on_error=lambda e, c: reports.append((e, c)),
            **kwargs,
        ) as timeback:
            time.sleep(0.3)
            assert timeback.statistics().outbox is not None
        runs = emulator.runs()
        if identity is not None:
            assert len(runs) == 1
            assert runs[0].active_ms >= 1_000
            assert reports == []
        else:
            assert runs == ()
            told = [e for e, _ in reports if isinstance(e, OutboxError)]
            assert len(told) == 1
            assert "1 window(s)" in str(told[0])
            assert "identity=" in str(told[0])


class _BrokenAuth(httpx.Auth):
    """An app's auth flow with a bug in it, for its first two requests."""

    def __init__(self) -> None:
        self.calls = 0

    def auth_flow(self, request: httpx.Request) -> Any:
        self.calls += 1
        if self.calls <= 2:
            raise KeyError("token")
        request.headers["Authorization"] = "Bearer token-a"
        yield request


@pytest.mark.anyio
@pytest.mark.parametrize("broken", ["transport", "auth"])
async def test_anything_the_apps_transport_or_auth_raises_is_reported_and_time_arrives(
    broken: str,
) -> None:
    """Not only text: whatever an app's own transport or `httpx.Auth` raises in the
    background is reported through ``on_error`` as a `TimebackError`, never reaches the
    app's tasks, and the window goes again."""
    bodies: list[dict[str, Any]] = []
    raised = 0

    def answer(request: httpx.Request) -> httpx.Response:
        nonlocal raised
        if broken == "transport" and raised < 2:
            raised += 1
            raise ZeroDivisionError("a bug in the app's transport")
        bodies.append(json.loads(request.content))
        return httpx.Response(204)

    reports: list[TimebackError] = []
    clock = VirtualClock()
    auth = _BrokenAuth() if broken == "auth" else None
    async with AsyncTimeback(
        BASE, transport=httpx.MockTransport(answer), auth=auth, clock=clock, outbox=None
    ) as timeback:
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            on_error=lambda error, context: reports.append(error),
        )
        await clock.advance(15)  # the first beat: raises, and is retried with backoff
        await clock.advance(120)
        await activity.end()
    assert sum(body["elapsedMs"] for body in bodies) == 135_000
    assert len(reports) == 2
    assert all(isinstance(report, NetworkError) for report in reports)
    assert all(report.retryable for report in reports)


# -- 4. calls after end() ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_calls_after_end_do_nothing_and_raise_nothing() -> None:
    """A GUI's key and focus handlers keep calling after the lesson ended: nothing happens,
    nothing is raised, nothing is sent."""
    seen: list[bytes] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.content)
        return httpx.Response(204)

    clock = VirtualClock()
    async with AsyncTimeback(
        BASE, transport=httpx.MockTransport(answer), clock=clock, outbox=None
    ) as timeback:
        activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        await clock.advance(5)
        await activity.end()
        sent = len(seen)
        activity.pause()
        activity.resume()
        activity.touch()
        await activity.end()
        await clock.advance(60)
        assert len(seen) == sent == 1
        assert activity.elapsed_ms == 5_000


# -- 6. errors that speak the caller's API --------------------------------------------------------


def test_a_closed_timeback_says_timeback() -> None:
    timeback = Timeback(BASE, outbox=None)
    timeback.close()
    with pytest.raises(LifecycleError, match="this Timeback is closed"):
        timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)


def test_an_unknown_event_loop_backend_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match=r'^backend: .*"asyncio" or "trio"'):
        Timeback(BASE, backend="bogus", outbox=None)


@pytest.mark.parametrize("timeout", [-1, 0, float("nan"), float("inf"), True, "10"])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout: Any) -> None:
    with pytest.raises(ValidationError, match=r"^timeout: "):
        Engine(timeout=timeout)
    with pytest.raises(ValidationError, match=r"^timeout: "):
        Timeback(BASE, timeout=timeout, outbox=None)


@pytest.mark.anyio
async def test_a_read_timeout_says_what_happened() -> None:
    """httpx's ReadTimeout often has no message: the report says what it means."""
    errors: list[TimebackError] = []

    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("", request=request)

    clock = VirtualClock()
    async with AsyncTimeback(
        BASE, transport=httpx.MockTransport(hang), clock=clock, outbox=None
    ) as timeback:
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            time=TimeOptions(heartbeat_interval=1, flush_timeout=0.5),
            on_error=lambda e, c: errors.append(e),
        )
        await clock.advance(1.5)
        await activity.end()
    assert isinstance(errors[0], NetworkError)
    assert str(errors[0]).endswith("ReadTimeout: no answer within the read timeout")


# -- 5. types that accept what works ---------------------------------------------------------


@pytest.mark.anyio
async def test_a_uuid_run_id_works() -> None:
    saved = uuid.UUID("9f4c2a3e-5a1f-4c55-9f0e-1d2b3c4d5e6f")
    async with AsyncTimeback(
        BASE, transport=httpx.MockTransport(lambda r: httpx.Response(204)), outbox=None
    ) as timeback:
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, run_id=saved
        )
        assert activity.run_id == str(saved)
        await activity.end()
