"""The client against the emulator over real HTTP on the loopback interface, through
bursts of faults and a restart of the emulator, with the outbox on disk."""

from __future__ import annotations

import collections
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from outbox_kit import (
    AUTH,
    COURSE,
    STUDENTS,
    TALLY,
    WireLog,
    check_delivery,
    serve,
    serve_again,
    stored_windows,
    wait_until,
)

from timeback_client import AsyncTimeback, ErrorContext, TimebackError, TimeOptions
from timeback_client.emulator import Emulator

pytestmark = [
    pytest.mark.anyio,
    # On trio, a request whose body the server did not take (it closed a kept-alive
    # connection as the emulator stopped) leaves httpx's own body generator unfinished,
    # which trio reports when it is collected: encode/httpx#3686, not ours to fix.
    pytest.mark.filterwarnings(
        "ignore:Exception ignored in. <async_generator object ByteStream.__aiter__"
        ":pytest.PytestUnraisableExceptionWarning"
    ),
]

# Answers slower than this are timeouts (the emulator's injected delays are longer).
CLIENT_TIMEOUT = 0.3

# Each burst is queued once the previous one was used up, so backoff never grows past a
# second or two: (name for the figures, fault fields).
BURSTS: list[tuple[str, dict[str, Any]]] = [
    ("HTTP 502 INTERNAL_ERROR", {"count": 3, "status": 502, "code": "INTERNAL_ERROR"}),
    ("timeout (answer after 0.6 s, client timeout 0.3 s)", {"count": 2, "delay": 0.6}),
    ("dropped connection", {"count": 2, "drop": True}),
    ("response lost after the backend stored the window", {"drop": True, "after_processing": True}),
    ("HTTP 503 with Retry-After: 1", {"status": 503, "retry_after": 1}),
    ("HTTP 502 with a non-JSON body", {"status": 502}),
    (
        "HTTP 200 with a 10 MB JSON body",
        {"status": 200, "body": "x" * 10_000_000, "after_processing": True},
    ),
]


async def one_more(flushed: list[int]) -> None:
    """Wait for the next window the backend accepts (``flushed`` is on_flush's list)."""
    before = len(flushed)
    await wait_until(lambda: len(flushed) > before, "a window through")


async def stop(server: AbstractContextManager[str]) -> None:
    """Stop a served emulator without blocking the event loop (uvicorn drains in a thread)."""
    await anyio.to_thread.run_sync(server.__exit__, None, None, None)


async def test_bursts_of_faults_and_a_restart_lose_and_double_nothing(tmp_path: Path) -> None:
    """502 bursts, timeouts, dropped connections, a lost response, Retry-After, garbage and
    huge bodies, then the emulator stopped for a second and restarted on the same port from
    its database: the emulator has every active ms the client measured, once."""
    wire = WireLog()
    database = tmp_path / "emulator.sqlite3"
    outbox = tmp_path / "outbox.sqlite3"
    errors: list[TimebackError] = []
    flushed: list[int] = []

    def note(error: TimebackError, context: ErrorContext) -> None:
        errors.append(error)

    first = Emulator(students=STUDENTS, db=database)
    serving = serve(first, wire)
    url = serving.__enter__()
    server: AbstractContextManager[str] | None = serving
    port = httpx.URL(url).port
    assert port is not None
    second: Emulator | None = None
    try:
        with anyio.fail_after(45):
            async with AsyncTimeback(
                url, headers=AUTH, timeout=CLIENT_TIMEOUT, outbox=outbox, on_error=note
            ) as timeback:
                activity = timeback.activity.start(
                    id="lesson-1",
                    name="Fractions",
                    course=COURSE,
                    time=TimeOptions(heartbeat_interval=0.2, flush_timeout=10),
                    on_error=note,
                    on_flush=flushed.append,
                )
                for _, fault in BURSTS:
                    # One window takes a whole burst (the others wait behind it); the next
                    # burst comes once it got through, so each burst starts from a fresh
                    # backoff.
                    first.faults.add(**fault)
                    await wait_until(lambda: not first.faults.pending(), "the faults to be used")
                    await one_more(flushed)
                await wait_until(
                    lambda: first.run(activity.run_id).active_ms > 0, "a delivered window"
                )
                # The emulator goes away for a second, then comes back from its database.
                await stop(serving)
                server = None
                first.close()
                stopped_at = time.monotonic()
                await anyio.sleep(1.0)
                second = Emulator(students=STUDENTS, db=database)
                serving = serve_again(second, wire, port)
                assert serving.__enter__() == url
                server = serving
                await wait_until(
                    lambda: any(r.at > stopped_at and r.status == 204 for r in wire.requests),
                    "a window after the restart",
                )
                await anyio.sleep(0.3)
                await activity.end()
            assert stored_windows(outbox) == 0
            delivery = check_delivery(second, {activity.run_id: activity.elapsed_ms}, wire=wire)
            run = second.run(activity.run_id)
            assert run.sessions == 1
    finally:
        if server is not None:
            await stop(server)
        if second is not None:
            second.close()
        first.close()

    requests = wire.requests
    # Retry-After: 1 was honoured.
    after_503 = [i for i, r in enumerate(requests) if r.status == 503]
    assert after_503
    for i in after_503:
        assert requests[i + 1].at - requests[i].at >= 1.0
    # The window whose answer was lost after the backend stored it went again, and the
    # backend said it had it: that is the dedupe at work, not a window counted twice.
    assert any(r.duplicate for r in requests)
    TALLY.add(
        delivery,
        **{name: int(fault.get("count", 1)) for name, fault in BURSTS},
        emulator_stopped_and_restarted_from_its_database=1,
    )
    kinds = collections.Counter(type(e).__name__ for e in errors)
    print(
        f"\nHTTP faults: {len(requests)} requests, {delivery.windows} windows, "
        f"{sum(r.duplicate for r in requests)} answered as duplicates, on_error: {dict(kinds)}"
    )
