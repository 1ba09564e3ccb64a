"""The blocking `Timeback` facade, against a real HTTP server on the loopback interface."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from loopback_server import LoopbackBackend
from timeback_client import (
    Activity,
    DeliveryError,
    ErrorContext,
    LifecycleError,
    Timeback,
    TimeOptions,
    UndeliveredError,
    ValidationError,
    Window,
)
from window_invariants import check_windows, total_active_ms

COURSE = {"subject": "Math", "grade": 3}
FAST = TimeOptions(heartbeat_interval=0.2, flush_timeout=3.0)


@pytest.fixture
def backend() -> Iterator[LoopbackBackend]:
    server = LoopbackBackend().start()
    yield server
    server.stop()


def sdk_loops() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("timeback-client loop (")}


@pytest.fixture
def no_leftover_threads() -> Iterator[None]:
    """Every thread a test starts is gone at its end, but for the SDK's one event-loop
    thread per backend, which every blocking client of the process shares."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 2
    while set(threading.enumerate()) - before - sdk_loops() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) - before - sdk_loops() == set()
    assert len(sdk_loops()) <= 2  # asyncio's and trio's, at most


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_every_blocking_client_shares_one_loop_thread(
    backend: LoopbackBackend, no_leftover_threads: None, loop: str
) -> None:
    """Clients made one after another, and several at once, run in one SDK thread: a
    sign-in starts no thread of its own, and closing a client leaves nothing behind."""
    threads = set()
    for _ in range(5):
        with Timeback(backend.base_url, backend=loop, outbox=None) as timeback:
            threads.add(timeback.portal.call(threading.get_ident))
    several = [Timeback(backend.base_url, backend=loop, outbox=None) for _ in range(3)]
    threads |= {timeback.portal.call(threading.get_ident) for timeback in several}
    for timeback in several:
        timeback.close()
    assert len(threads) == 1
    assert [t.ident for t in sdk_loops() if t.name.endswith(f"({loop})")] == list(threads)


def timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def test_real_session_windows_over_loopback(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    """A short real session (0.2 s heartbeats, a pause): contiguous windows whose elapsedMs
    add up to the activity's elapsed_ms."""
    with Timeback(backend.base_url) as timeback:
        began = time.monotonic()
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=FAST
        )
        time.sleep(0.5)
        pause_called = time.monotonic()
        activity.pause()
        time.sleep(0.3)
        activity.resume()
        resume_returned = time.monotonic()
        time.sleep(0.45)
        activity.end()
        ended = time.monotonic()
        elapsed = activity.elapsed_ms
    windows = backend.bodies
    print(json.dumps(windows, indent=2))
    check_windows(windows)
    assert abs(total_active_ms(windows) - elapsed) <= 2
    paused = [w for w in windows if w["pausedMs"]]
    assert len(paused) == 1
    paused_ms = paused[0]["pausedMs"]
    # Bounded by what the test slept and by the time it measured around the calls, not by
    # a guess at how late a loaded machine wakes a sleeper.
    assert 280 <= paused_ms <= (resume_returned - pause_called) * 1000 + 2
    assert 900 <= elapsed <= (ended - began) * 1000 - paused_ms + 2
    assert len(windows) >= 5
    assert {w["runId"] for w in windows} == {activity.run_id}


def test_start_pause_resume_touch_return_at_once_while_the_server_is_slow(
    no_leftover_threads: None,
) -> None:
    """No SDK call but end() and close() waits on the network; close() gives up after
    flush_timeout and reports what it could not deliver."""
    server = LoopbackBackend(delay=3.0).start()
    lost: list[Window] = []

    def on_error(error: DeliveryError, context: ErrorContext) -> None:
        if isinstance(error, UndeliveredError) and not context.will_retry:
            lost.extend(error.windows)

    try:
        timeback = Timeback(server.base_url, outbox=None)  # without one, close() loses them
        durations: dict[str, float] = {}
        holder: list[Activity] = []
        options = TimeOptions(heartbeat_interval=0.1, flush_timeout=0.5)
        durations["start"] = timed(
            lambda: holder.append(
                timeback.activity.start(
                    id="lesson-1", name="Fractions", course=COURSE, time=options, on_error=on_error
                )
            )
        )
        activity = holder[0]
        time.sleep(0.25)  # heartbeats are now waiting on the slow server
        for name in ("pause", "resume", "touch", "pause", "resume", "touch"):
            durations[name] = max(durations.get(name, 0.0), timed(getattr(activity, name)))
            time.sleep(0.03)
        durations["end(wait=False)"] = timed(lambda: activity.end(wait=False))
        # Not a speed figure: under half the server's 3 s, so no call waited on it (how
        # fast they are is a benchmark's figure, not a test's).
        assert max(durations.values()) < 1.5, durations
        elapsed = activity.elapsed_ms
        close_took = timed(timeback.close)
        assert close_took < 0.5 + 1.5  # gave up at flush_timeout, not at the server's answer
        delivered = server.bodies
        check_windows(delivered)
        assert lost
        # What the server got and what close() reported lost make up the whole session.
        every = {w["startedAt"]: w for w in delivered} | {w.started_at: w.to_json() for w in lost}
        check_windows(sorted(every.values(), key=lambda w: str(w["startedAt"])))
        assert total_active_ms(every.values()) == elapsed
    finally:
        server.stop()


def test_calls_from_another_thread_work(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    with Timeback(backend.base_url) as timeback:
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=FAST
        )
        seen: list[object] = []

        def worker() -> None:
            time.sleep(0.1)
            activity.pause()
            seen.append(activity.is_paused)
            activity.resume()
            activity.touch()
            seen.append(activity.is_paused)
            seen.append(timeback.activity.current is activity)

        thread = threading.Thread(target=worker)
        thread.start()
        thread.join()
        assert seen == [True, False, True]
        activity.end()
    check_windows(backend.bodies)


def test_pause_from_inside_a_callback_works(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    """Callbacks run on the SDK's thread; calling back into the activity there works."""
    holder: list[Activity] = []
    errors: list[BaseException] = []
    callback_threads: set[int] = set()

    def on_flush(elapsed_ms: int) -> None:
        callback_threads.add(threading.get_ident())
        if callback_threads and holder[0].is_paused:
            return
        try:
            holder[0].pause()
        except BaseException as exc:  # report to the test, not the SDK's log
            errors.append(exc)

    with Timeback(backend.base_url) as timeback:
        holder.append(
            timeback.activity.start(
                id="lesson-1", name="Fractions", course=COURSE, time=FAST, on_flush=on_flush
            )
        )
        deadline = time.monotonic() + 3
        while not holder[0].is_paused and time.monotonic() < deadline:
            time.sleep(0.01)
        assert holder[0].is_paused
        # The first heartbeat, then the window the pause itself cut: after it, nothing.
        eventually(lambda: len(backend.bodies) >= 2)
        count = len(backend.bodies)
        time.sleep(0.5)  # paused: no more heartbeats
        assert len(backend.bodies) == count
    assert errors == []
    assert threading.get_ident() not in callback_threads
    check_windows(backend.bodies)


def eventually(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Wait (in real time) for something the SDK's thread does."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the SDK's thread did not get to it in time"
        time.sleep(0.005)


def test_end_with_wait_from_a_callback_is_refused_with_advice() -> None:
    errors: list[tuple[DeliveryError, ErrorContext]] = []
    refused: list[BaseException] = []
    holder: list[Activity] = []

    def on_pause() -> None:
        try:
            holder[0].end()
        except LifecycleError as exc:
            refused.append(exc)
        holder[0].end(wait=False)

    with Timeback("http://127.0.0.1:9/api/timeback") as timeback:
        holder.append(
            timeback.activity.start(
                id="lesson-1",
                name="Fractions",
                course=COURSE,
                time=False,
                on_pause=on_pause,
                on_error=lambda e, c: errors.append((e, c)),
            )
        )
        holder[0].pause()  # returns at once; on_pause runs on the SDK's thread
        eventually(lambda: holder[0].is_ended)
    assert len(refused) == 1
    assert "end(wait=False)" in str(refused[0])


def test_close_from_a_callback_is_refused_and_a_later_close_works(
    no_leftover_threads: None,
) -> None:
    refused: list[BaseException] = []
    timeback = Timeback("http://127.0.0.1:9/api/timeback")

    def on_pause() -> None:
        try:
            timeback.close()
        except LifecycleError as exc:
            refused.append(exc)

    activity = timeback.activity.start(
        id="lesson-1", name="Fractions", course=COURSE, time=False, on_pause=on_pause
    )
    activity.pause()  # returns at once; on_pause runs on the SDK's thread
    eventually(lambda: len(refused) == 1)
    assert "callback" in str(refused[0])
    timeback.close()
    assert activity.is_ended


def test_end_without_waiting_returns_at_once_and_close_delivers(
    no_leftover_threads: None,
) -> None:
    # The server takes 1 s over each window, one after the other: the first heartbeat
    # (0.2 s in) is answered 1.2 s in, long after end(wait=False) has returned.
    server = LoopbackBackend(delay=1.0).start()
    try:
        timeback = Timeback(server.base_url)
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            time=TimeOptions(heartbeat_interval=0.2, flush_timeout=10),
        )
        time.sleep(0.5)
        assert timed(lambda: activity.end(wait=False)) < 0.5  # under half the server's 1 s
        assert activity.is_ended
        assert timeback.activity.current is None
        elapsed = activity.elapsed_ms
        assert server.bodies == []  # still on their way
        timeback.close()
        timeback.close()  # idempotent
        windows = server.bodies
        check_windows(windows)
        assert total_active_ms(windows) == elapsed
    finally:
        server.stop()


def test_with_timeback_closes_and_ends_the_activity(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    began = time.monotonic()
    with Timeback(backend.base_url) as timeback:
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=FAST
        )
        time.sleep(0.25)
        assert repr(activity).startswith("<Activity 'lesson-1'")
    closed = time.monotonic()
    windows = backend.bodies
    check_windows(windows)
    assert windows[-1]["elapsedMs"] > 0
    assert 240 <= total_active_ms(windows) <= (closed - began) * 1000


def test_the_sync_facade_runs_on_trio_too(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    with Timeback(backend.base_url, backend="trio") as timeback:
        activity = timeback.activity.start(
            id="lesson-1", name="Fractions", course=COURSE, time=FAST
        )
        time.sleep(0.3)
        activity.pause()
        time.sleep(0.1)
        activity.resume()
        time.sleep(0.15)
        activity.end()
        elapsed = activity.elapsed_ms
    windows = backend.bodies
    check_windows(windows)
    assert abs(total_active_ms(windows) - elapsed) <= 2
    assert any(w["pausedMs"] for w in windows)


@pytest.mark.parametrize(
    "base_url", ["", "app.example/api", "ftp://app.example/api", "https://app.example/?x=1", 42]
)
def test_a_bad_base_url_raises_validation_error_and_leaves_no_thread(
    base_url: Any, no_leftover_threads: None
) -> None:
    with pytest.raises(ValidationError) as caught:
        Timeback(base_url)
    assert caught.value.field == "base_url"


def test_a_bad_activity_raises_in_the_calling_thread(
    backend: LoopbackBackend, no_leftover_threads: None
) -> None:
    with Timeback(backend.base_url) as timeback:
        with pytest.raises(ValidationError) as caught:
            timeback.activity.start(id="lesson-1", name="Fractions", course={"grade": 3})
        assert caught.value.field == "course"
        first = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
        with pytest.raises(LifecycleError):
            timeback.activity.start(id="lesson-2", name="Decimals", course=COURSE)
        first.end()
        ended_at = first.elapsed_ms
        first.pause()  # a late GUI event: nothing to do, nothing raised
        assert first.elapsed_ms == ended_at
    # After close: reading works; pause, resume, touch and end do nothing.
    assert first.is_ended
    assert first.elapsed_ms == ended_at
    first.end()
    first.resume()
    first.touch()
    assert first.elapsed_ms == ended_at
    with pytest.raises(LifecycleError, match="closed"):
        timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
