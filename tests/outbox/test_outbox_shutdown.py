"""Shutdown with the backend unreachable or silent: end() and close() keep their
deadline, the windows wait in the outbox, and the next client delivers them."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
from outbox_kit import (
    AUTH,
    COURSE,
    STUDENTS,
    TALLY,
    WireLog,
    check_delivery,
    free_port,
    serve,
    stored_windows,
    url_at,
)

from timeback_client import AsyncTimeback, Timeback, TimeOptions
from timeback_client.emulator import Emulator

FLUSH_TIMEOUT = 0.5
# Past flush_timeout: room for a machine running several test suites at once. How close
# to the deadline the calls come is a benchmark figure (benchmarks/RESULTS.md, 5.: p99
# 2.6 ms past it); what these tests show is that they do not wait for the network, whose
# timeout (the client's default, 10 s) is twenty times this.
MARGIN = 3.0
OPTIONS = TimeOptions(heartbeat_interval=0.1, flush_timeout=FLUSH_TIMEOUT)


def timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def replay_and_check(port: int, outbox: Path, measured: dict[str, int], **faults: int) -> None:
    """Serve the emulator where the backend was, open a client on the outbox, and check
    that it delivered every window left there, once."""
    wire = WireLog()
    with Emulator(students=STUDENTS) as emulator, serve(emulator, wire, port) as url:
        with Timeback(url, headers=AUTH, outbox=outbox):
            pass
        delivery = check_delivery(emulator, measured, wire=wire)
    assert stored_windows(outbox) == 0
    TALLY.add(delivery, **faults)


@pytest.mark.anyio
async def test_end_and_close_keep_their_deadline_with_the_backend_unreachable(
    tmp_path: Path,
) -> None:
    """Connections refused: end() and aclose() each return within flush_timeout, the
    windows stay in the outbox, and the next client (on the same URL) delivers them."""
    port = free_port()
    outbox = tmp_path / "outbox.sqlite3"
    timeback = AsyncTimeback(url_at(port), headers=AUTH, outbox=outbox)
    with anyio.fail_after(10):
        async with timeback:
            activity = timeback.activity.start(
                id="lesson-1", name="Fractions", course=COURSE, time=OPTIONS
            )
            await anyio.sleep(0.35)
            started = time.monotonic()
            await activity.end()
            took_end = time.monotonic() - started
            started = time.monotonic()
            await timeback.aclose()
            took_close = time.monotonic() - started
    assert took_end <= FLUSH_TIMEOUT + MARGIN, took_end
    assert took_close <= FLUSH_TIMEOUT + MARGIN, took_close
    assert stored_windows(outbox) >= 3
    replay_and_check(
        port, outbox, {activity.run_id: activity.elapsed_ms}, backend_unreachable_at_close=1
    )
    print(f"\nunreachable: end() {took_end:.3f} s, close() {took_close:.3f} s")


def test_a_server_that_never_answers_blocks_nothing(tmp_path: Path) -> None:
    """A server that accepts connections and never answers: the blocking client's calls
    return at once, end() and close() within flush_timeout; the window sent without an
    answer and the ones behind it are delivered once by the next client."""
    outbox = tmp_path / "outbox.sqlite3"
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)  # the kernel completes the handshakes; nobody ever reads
        port = silent.getsockname()[1]
        timeback = Timeback(url_at(port), headers=AUTH, outbox=outbox)
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=OPTIONS
        )
        time.sleep(0.35)
        quick = [timed(activity.pause), timed(activity.resume), timed(activity.touch)]
        time.sleep(0.2)
        took_end = timed(activity.end)
        took_close = timed(timeback.close)
    assert max(quick) < MARGIN, quick  # not a wait on the network (see MARGIN)
    assert took_end <= FLUSH_TIMEOUT + MARGIN, took_end
    assert took_close <= FLUSH_TIMEOUT + MARGIN, took_close
    assert stored_windows(outbox) >= 3
    replay_and_check(
        port, outbox, {activity.run_id: activity.elapsed_ms}, server_that_never_answers=1
    )
    print(f"\nsilent server: end() {took_end:.3f} s, close() {took_close:.3f} s")
