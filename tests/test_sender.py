"""The sender: retries with the same bytes, the response policy, and bounded concurrency."""

from __future__ import annotations

import gc
import itertools
import logging
import random
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from fake_backend import FakeBackend
from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    AuthenticationError,
    Course,
    DeliveryError,
    DuplicateRiskError,
    Engine,
    ErrorContext,
    HeartbeatRejected,
    InvalidPayloadError,
    LifecycleError,
    NetworkError,
    ServerUnavailableError,
    TimeOptions,
    UndeliveredError,
    ValidationError,
    VirtualClock,
    Window,
)
from timeback_client._sender import Backoff, Delivery, Endpoint, HeartbeatSender
from window_invariants import check_windows

pytestmark = pytest.mark.anyio

BASE = "http://127.0.0.1:9/api/timeback"
URL = BASE + "/activity/heartbeat"
COURSE = {"subject": "Math", "grade": 3}
SEED = 20261125
# Room past a real-time deadline for a loaded machine (two cores, several suites): a test
# shows that a wait ends, a benchmark how punctually (benchmarks/RESULTS.md, 5.).
SLACK = 3.0


def error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, json={"error": {"code": code, "message": code.lower()}}
    )


class Listener:
    """Records what a sender tells the owner of a window."""

    def __init__(self) -> None:
        self.first_attempts: list[Window] = []
        self.ok: list[Window] = []
        self.failures: list[tuple[Window, DeliveryError, int, bool]] = []
        self.holds: list[tuple[Window, DeliveryError, int, bool]] = []

    def sending(self, delivery: Delivery) -> None:
        self.first_attempts.append(delivery.window)

    def delivered(self, delivery: Delivery, *, duplicate: bool) -> None:
        self.ok.append(delivery.window)

    def failed(self, delivery: Delivery, error: DeliveryError, *, will_retry: bool) -> None:
        assert error.retryable == will_retry or isinstance(error, DuplicateRiskError)
        self.failures.append((delivery.window, error, delivery.attempts, will_retry))

    def held(self, delivery: Delivery, error: DeliveryError, *, report: bool) -> None:
        assert error.retryable
        self.holds.append((delivery.window, error, delivery.attempts, report))


def window(run_id: str, start_ms: int = 0, length_ms: int = 15_000) -> Window:
    return Window(
        activity_id="lesson-1",
        name="Fractions",
        course=Course(subject="Math", grade=3),
        run_id=run_id,
        started_at_ms=1_767_603_600_000 + start_ms,
        ended_at_ms=1_767_603_600_000 + start_ms + length_ms,
        elapsed_ms=length_ms,
        paused_ms=0,
    )


@asynccontextmanager
async def running_sender(
    backend: FakeBackend, clock: VirtualClock, *, tasks: int = 8
) -> AsyncIterator[HeartbeatSender]:
    """A sender with seeded jitter, its tasks in a task group of the test's own."""
    async with (
        httpx.AsyncClient(transport=backend.transport) as http,
        anyio.create_task_group() as tg,
    ):
        sender = HeartbeatSender(http, clock, task_group=tg, tasks=tasks, rng=random.Random(SEED))
        yield sender
        sender.close()
        tg.cancel_scope.cancel()


def expected_backoffs(count: int) -> list[int]:
    """The waits, in ms, that the seeded jitter gives before attempts 2, 3, ..."""
    rng = random.Random(SEED)
    return [round(Backoff().delay(n, rng) * 1000) for n in range(1, count + 1)]


def gaps(backend: FakeBackend) -> list[int]:
    times = [s.at_ms for s in backend.seen]
    return [b - a for a, b in itertools.pairwise(times)]


# -- the retry policy, sender by sender -----------------------------------------------------------


async def test_a_502_is_retried_with_the_same_bytes_after_jittered_backoff() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(error(502, "INTERNAL_ERROR"), error(502, "INTERNAL_ERROR"), httpx.Response(204))
    listener = Listener()
    async with running_sender(backend, clock) as sender:
        sent = window("3b0c2a3e-5a1f-4c55-9f0e-1d2b3c4d5e6f")
        sender.submit(Delivery(window=sent, endpoint=Endpoint(URL), listener=listener))
        await clock.advance(60)
    assert [s.status for s in backend.seen] == [502, 502, 204]
    assert {s.content for s in backend.seen} == {sent.to_bytes()}
    assert gaps(backend) == expected_backoffs(2)
    assert listener.ok == [sent]
    assert [(type(e), n, retry) for _, e, n, retry in listener.failures] == [
        (ServerUnavailableError, 1, True),
        (ServerUnavailableError, 2, True),
    ]


@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("connection refused"), httpx.ReadTimeout("read timed out")],
    ids=["connect-error", "read-timeout"],
)
async def test_a_network_error_is_retried_with_the_same_bytes(failure: Exception) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(failure, httpx.Response(204))
    listener = Listener()
    async with running_sender(backend, clock) as sender:
        sent = window(str(uuid.uuid4()))
        sender.submit(Delivery(window=sent, endpoint=Endpoint(URL), listener=listener))
        await clock.advance(10)
    assert [s.content for s in backend.seen] == [sent.to_bytes()] * 2
    assert gaps(backend) == expected_backoffs(1)
    assert listener.ok == [sent]
    (_, reported, attempts, will_retry) = listener.failures[0]
    assert isinstance(reported, NetworkError)
    assert reported.__cause__ is failure
    assert reported.window == sent
    assert (attempts, will_retry) == (1, True)


@pytest.mark.parametrize("status", [503, 504, 429])
async def test_retry_after_is_honoured_to_the_millisecond(status: int) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(httpx.Response(status, headers={"Retry-After": "7"}), httpx.Response(204))
    listener = Listener()
    async with running_sender(backend, clock) as sender:
        sender.submit(
            Delivery(window=window(str(uuid.uuid4())), endpoint=Endpoint(URL), listener=listener)
        )
        await clock.advance(6.999)
        assert len(backend.seen) == 1
        await clock.advance(0.001)
        assert len(backend.seen) == 2
    assert gaps(backend) == [7_000]
    reported = listener.failures[0][1]
    assert isinstance(reported, ServerUnavailableError)
    assert reported.retry_after == 7.0


async def test_a_404_user_lookup_failure_is_retried_a_few_times_then_held() -> None:
    """A passing lookup failure gets quick retries; then the student is taken as missing
    from the roster: the window is held, tried every few minutes, reported once (the quick
    retries tell the listener nothing: the app hears of the cause once, at its hold)."""
    clock = VirtualClock()
    backend = FakeBackend(clock, responder=lambda _: error(404, "USER_RESOLUTION_FAILED"))
    listener = Listener()
    async with running_sender(backend, clock) as sender:
        sender.submit(
            Delivery(window=window(str(uuid.uuid4())), endpoint=Endpoint(URL), listener=listener)
        )
        await clock.advance(3_600)
    assert listener.failures == []
    assert len(backend.seen) > 3  # the two quick retries were made
    assert [(n, report) for _, _, n, report in listener.holds][:2] == [(3, True), (4, False)]
    assert not any(report for _, _, _, report in listener.holds[1:])
    slow = gaps(backend)[2:]
    assert len(slow) >= 9
    assert all(240_000 <= gap <= 360_000 for gap in slow)  # HOLD_RETRY, with jitter
    assert len(set(slow)) > 1


async def test_backoff_grows_to_its_cap() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock, responder=lambda _: httpx.ConnectError("down"))
    async with running_sender(backend, clock) as sender:
        sender.submit(
            Delivery(window=window(str(uuid.uuid4())), endpoint=Endpoint(URL), listener=Listener())
        )
        await clock.advance(600)
    waits = gaps(backend)
    assert waits == expected_backoffs(len(waits))
    assert all(15_000 <= w <= 30_000 for w in waits[7:])
    assert len({s.content for s in backend.seen}) == 1


def test_backoff_is_equal_jitter_under_the_cap() -> None:
    rng = random.Random(1)
    backoff = Backoff(initial=1.0, factor=2.0, cap=10.0)
    for attempts, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (40, 10.0)]:
        for _ in range(50):
            assert ceiling / 2 <= backoff.delay(attempts, rng) <= ceiling


# -- the response policy, seen by the app ------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "error_type"),
    [
        (error(400, "INVALID_PAYLOAD"), InvalidPayloadError),
        (error(400, "NOT_A_CODE_WE_KNOW"), InvalidPayloadError),
        (httpx.Response(403), HeartbeatRejected),
    ],
)
async def test_a_rejected_window_is_reported_once_and_never_retried(
    reply: httpx.Response, error_type: type[DeliveryError]
) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(reply)
    errors: list[tuple[DeliveryError, ErrorContext]] = []
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            on_error=lambda e, c: errors.append((e, c)),
        )
        await clock.advance(15)
        await clock.advance(3_600)
        await activity.end()
    # The rejected first window is never sent again; the later ones go through.
    first = backend.seen[0]
    assert [s.content for s in backend.seen].count(first.content) == 1
    assert len(backend.delivered) == len(backend.seen) - 1
    assert len(errors) == 1
    reported, context = errors[0]
    assert type(reported) is error_type
    assert reported.window is not None
    assert reported.window.to_bytes() == first.content
    assert context == ErrorContext(
        operation="heartbeat",
        activity_id="lesson-1",
        run_id=activity.run_id,
        attempts=1,
        will_retry=False,
    )


async def test_a_401_holds_the_run_until_update_credentials_then_sends_with_new_headers() -> None:
    clock = VirtualClock()
    backend = FakeBackend(
        clock,
        responder=lambda request: (
            httpx.Response(204)
            if request.headers.get("authorization") == "Bearer fresh"
            else error(401, "UNAUTHORIZED")
        ),
    )
    errors: list[tuple[DeliveryError, ErrorContext]] = []
    async with AsyncTimeback(
        BASE, headers={"Authorization": "Bearer stale"}, transport=backend.transport, clock=clock
    ) as timeback:
        activity = timeback.activity.start(
            id="lesson-1",
            name="Fractions",
            course=COURSE,
            on_error=lambda e, c: errors.append((e, c)),
        )
        await clock.advance(60)  # four windows: the first is refused, the rest wait behind it
        assert len(backend.seen) == 1
        assert isinstance(errors[0][0], AuthenticationError)
        assert errors[0][1].will_retry
        await clock.advance(600)
        assert len(backend.seen) == 1  # held, not retried blindly
        timeback.update_credentials(headers={"Authorization": "Bearer fresh"})
        await clock.advance(0)
        await activity.end()
    assert [s.headers["authorization"] for s in backend.seen[1:]] == ["Bearer fresh"] * 44
    assert backend.seen[1].content == backend.seen[0].content
    check_windows(backend.delivered)
    assert sum(b["elapsedMs"] for b in backend.delivered) == 660_000


async def test_windows_of_a_run_go_one_at_a_time_and_in_order() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock, latency_ms=250)
    backend.reply(httpx.ConnectError("down"), error(502, "INTERNAL_ERROR"))
    listener = Listener()
    run_id = str(uuid.uuid4())
    sent = [window(run_id, 15_000 * i) for i in range(6)]
    async with running_sender(backend, clock) as sender:
        for each in sent:
            sender.submit(Delivery(window=each, endpoint=Endpoint(URL), listener=listener))
        await clock.advance(60)
    assert backend.max_in_flight_per_run == 1
    assert listener.ok == sent
    assert backend.delivered == [w.to_json() for w in sent]


async def test_at_most_sender_tasks_requests_are_in_flight_across_many_runs() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock, latency_ms=100)
    listener = Listener()
    runs = [str(uuid.uuid4()) for _ in range(40)]
    async with running_sender(backend, clock, tasks=3) as sender:
        for i in range(3):
            for run_id in runs:
                sender.submit(
                    Delivery(
                        window=window(run_id, 15_000 * i), endpoint=Endpoint(URL), listener=listener
                    )
                )
        await clock.advance(60)
    assert backend.max_in_flight == 3
    assert backend.max_in_flight_per_run == 1
    assert len(listener.ok) == 120
    for run_id in runs:
        mine = [w for w in listener.ok if w.run_id == run_id]
        assert mine == sorted(mine, key=lambda w: w.started_at_ms)
    # 120 requests of 100 ms, 3 at a time: 4 s of virtual time, no idle gaps.
    assert max(s.at_ms for s in backend.seen) == 3_900


async def test_a_garbled_response_body_is_retried_and_does_not_crash_the_client() -> None:
    """httpx.MockTransport decodes eagerly: a bad Content-Encoding reads as no answer."""
    clock = VirtualClock()
    answers: list[int] = []

    def garble_once(request: httpx.Request) -> httpx.Response:
        answers.append(1)
        if len(answers) == 1:
            return httpx.Response(204, headers={"Content-Encoding": "gzip"}, content=b"not gzip")
        return httpx.Response(204)

    backend = FakeBackend(clock, responder=garble_once)
    listener = Listener()
    async with running_sender(backend, clock) as sender:
        sender.submit(
            Delivery(window=window(str(uuid.uuid4())), endpoint=Endpoint(URL), listener=listener)
        )
        await clock.advance(5)
    assert len(listener.ok) == 1
    assert isinstance(listener.failures[0][1], NetworkError)


class StreamingTransport(httpx.AsyncBaseTransport):
    """Answers with an unread stream, as a real connection does."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.requests = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        return self.response


# Stopping early leaves httpx's nested stream generators unexhausted, which trio reports
# as a ResourceWarning when they are collected: httpx's internals, not ours.
@pytest.mark.filterwarnings("ignore:Async generator 'httpx.:ResourceWarning")
async def test_a_streamed_body_that_fails_to_decode_is_classified_by_its_status() -> None:
    clock = VirtualClock()
    transport = StreamingTransport(
        httpx.Response(
            204, headers={"Content-Encoding": "gzip"}, stream=httpx.ByteStream(b"not gzip")
        )
    )
    listener = Listener()
    async with httpx.AsyncClient(transport=transport) as http, anyio.create_task_group() as tg:
        sender = HeartbeatSender(http, clock, task_group=tg)
        sender.submit(
            Delivery(window=window(str(uuid.uuid4())), endpoint=Endpoint(URL), listener=listener)
        )
        await clock.advance(1)
        sender.close()
    assert transport.requests == 1
    assert len(listener.ok) == 1
    assert listener.failures == []


# -- shared connection pools ----------------------------------------------------------------


def _start(timeback: AsyncTimeback, **options: Any) -> AsyncActivity:
    return timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE, **options)


async def test_clients_sharing_an_engine_share_one_bounded_sender() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock, latency_ms=100)
    async with httpx.AsyncClient(transport=backend.transport) as http:
        async with (
            Engine(http_client=http, clock=clock, sender_tasks=1) as engine,
            AsyncTimeback(BASE, engine=engine) as first,
            AsyncTimeback(BASE, engine=engine) as second,
        ):
            one, two = _start(first), _start(second)
            await clock.advance(61)
            backend.latency_ms = 0
            await one.end()
            await two.end()
            assert first.statistics().engine == second.statistics().engine == engine.statistics()
            assert engine.statistics().attempts == len(backend.seen)
        assert not http.is_closed  # caller-owned: not closed by the SDK
    assert backend.max_in_flight == 1
    assert len(backend.delivered) == 2 * 4 + 2
    check_windows(backend.delivered)
    assert sum(b["elapsedMs"] for b in backend.delivered) == 2 * 61_000


@pytest.mark.parametrize(
    "setting", ["transport", "http_client", "timeout", "clock", "sender_tasks"]
)
async def test_a_client_on_a_shared_engine_refuses_the_engine_s_settings(setting: str) -> None:
    """Settings of a shared engine are the engine's: passing one to a client raises rather
    than being silently ignored."""
    value: Any = {
        "transport": httpx.MockTransport(lambda request: httpx.Response(204)),
        "http_client": httpx.AsyncClient(),
        "timeout": 3.0,
        "clock": VirtualClock(),
        "sender_tasks": 2,
    }[setting]
    async with Engine() as engine:
        with pytest.raises(ValidationError, match=f"^{setting}: .*Engine") as raised:
            AsyncTimeback(BASE, engine=engine, **{setting: value})
    assert raised.value.field == setting
    if setting == "http_client":
        await value.aclose()


async def test_a_client_on_an_engine_that_is_not_open_says_so() -> None:
    engine = Engine()
    with pytest.raises(LifecycleError, match="Engine"):
        async with AsyncTimeback(BASE, engine=engine):
            pass


async def test_a_caller_owned_http_client_is_released_when_its_last_client_closes() -> None:
    """Nothing of the SDK keeps the caller's client once its clients are closed.

    The clients live and close in a task of their own, checked once it has ended: from
    Python 3.12 on, asyncio keeps the cancellation a task last received (closing an
    engine cancels its task group, the closing task included), and with it the frames of
    its traceback, for as long as that task lives.
    """
    clock = VirtualClock()
    backend = FakeBackend(clock)
    alive: list[weakref.ref[httpx.AsyncClient]] = []

    async def use_and_close() -> None:
        http = httpx.AsyncClient(transport=backend.transport)
        for _ in range(2):  # the same pool serves a new client after the first closed
            async with AsyncTimeback(BASE, http_client=http, clock=clock) as timeback:
                activity = _start(timeback)
                await clock.advance(1)
                await activity.end()
        await http.aclose()
        alive.append(weakref.ref(http))

    async with anyio.create_task_group() as tg:
        tg.start_soon(use_and_close)
    assert len(backend.seen) == 2
    gc.collect()
    assert alive[0]() is None


async def test_closing_one_client_of_an_engine_does_not_touch_the_other_s_sends() -> None:
    """Sender tasks are the engine's: a client leaving interrupts nothing of another's."""
    clock = VirtualClock()
    backend = FakeBackend(clock, latency_ms=500)
    async with (
        httpx.AsyncClient(transport=backend.transport) as http,
        Engine(http_client=http, clock=clock) as engine,
        AsyncTimeback(BASE, engine=engine) as staying,
    ):
        activity = _start(staying)
        async with AsyncTimeback(BASE, engine=engine):
            await clock.advance(15.2)  # the first window is in flight
            assert backend.seen == []
        await clock.advance(30.3)
        backend.latency_ms = 0
        await activity.end()
    check_windows(backend.delivered)
    assert [s.at_ms for s in backend.seen] == [15_000, 30_000, 45_000, 45_500]
    assert [s.status for s in backend.seen] == [204] * 4
    assert sum(b["elapsedMs"] for b in backend.delivered) == 45_500


# -- callbacks --------------------------------------------------------------------------------


async def test_on_flush_gets_the_elapsed_ms_of_each_accepted_window() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(httpx.Response(204), httpx.Response(200, json={"duplicate": True}))
    flushed: list[int] = []
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = _start(timeback, on_flush=flushed.append)
        await clock.advance(15)
        assert flushed == [15_000]
        await clock.advance(10)
        activity.pause()
        await clock.advance(0)
        assert flushed == [15_000, 10_000]
        await activity.end()
    assert flushed == [15_000, 10_000]


async def test_raising_callbacks_are_logged_and_tracking_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock)
    backend.reply(error(502, "INTERNAL_ERROR"))

    def explode(*_: object) -> None:
        raise RuntimeError("app bug")

    with caplog.at_level(logging.ERROR, logger="timeback_client"):
        async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
            activity = _start(
                timeback, on_error=explode, on_flush=explode, on_pause=explode, on_resume=explode
            )
            await clock.advance(45)
            activity.pause()
            activity.resume()
            await clock.advance(15)
            await activity.end()
    assert sum(b["elapsedMs"] for b in backend.delivered) == 60_000
    check_windows(backend.delivered)
    logged = {r.getMessage() for r in caplog.records}
    for name in ("on_error", "on_flush", "on_pause", "on_resume"):
        assert f"timeback {name} callback raised; tracking goes on" in logged


async def test_a_pause_from_on_error_does_not_skip_the_backoff() -> None:
    """A callback that queues a window must not make the failed one go again at once."""
    clock = VirtualClock()
    backend = FakeBackend(clock, latency_ms=100)
    backend.reply(httpx.Response(503, headers={"Retry-After": "30"}))

    def pause_on_error(error: DeliveryError, context: ErrorContext) -> None:
        activity.pause()

    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = _start(timeback, on_error=pause_on_error)
        await clock.advance(15.1)  # answered 503 at 15.1 s: the callback pauses
        assert activity.is_paused
        await clock.advance(29.999)
        assert len(backend.seen) == 1
        await clock.advance(0.001 + 0.2)
        backend.latency_ms = 0
        await activity.end()
    # The failed window again after Retry-After, then the pause's window, then the last.
    assert [s.at_ms for s in backend.seen] == [15_000, 45_100, 45_200, 45_300]
    assert backend.seen[0].content == backend.seen[1].content
    check_windows(backend.delivered)


# -- flush deadlines ---------------------------------------------------------------------------


async def test_end_with_the_server_unreachable_returns_within_flush_timeout() -> None:
    clock = VirtualClock()
    backend = FakeBackend(clock, responder=lambda _: httpx.ConnectError("unreachable"))
    errors: list[tuple[DeliveryError, ErrorContext]] = []
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = _start(
            timeback,
            time=TimeOptions(flush_timeout=0.3),
            on_error=lambda e, c: errors.append((e, c)),
        )
        await clock.advance(20)
        started = time.monotonic()
        await activity.end()
        took = time.monotonic() - started
        # It waited out flush_timeout, then gave up on a server that never answers (on the
        # virtual clock no retry comes due). How close to the deadline it returns is a
        # benchmark figure (benchmarks/RESULTS.md), not something a loaded machine keeps.
        assert 0.25 <= took < 0.3 + SLACK
        flush = [(e, c) for e, c in errors if c.operation == "flush"]
        assert len(flush) == 1
        reported, context = flush[0]
        assert isinstance(reported, UndeliveredError)
        assert reported.active_ms == 20_000
        assert [w.elapsed_ms for w in reported.windows] == [15_000, 5_000]
        assert context.will_retry
        assert all(isinstance(e, NetworkError) for e, c in errors if c.operation == "heartbeat")


@pytest.mark.parametrize("outbox", [None, "outbox.sqlite3"])
async def test_close_reports_every_window_it_could_not_deliver(
    outbox: str | None, tmp_path: Path
) -> None:
    """Without an outbox they are lost; with one they are kept for the next start."""
    clock = VirtualClock()
    backend = FakeBackend(clock, responder=lambda _: error(503, "BUSY"))
    errors: list[tuple[DeliveryError, ErrorContext]] = []
    timeback = AsyncTimeback(
        BASE,
        transport=backend.transport,
        clock=clock,
        outbox=None if outbox is None else tmp_path / outbox,
    )
    async with timeback:
        activity = _start(
            timeback,
            time=TimeOptions(flush_timeout=0.2),
            on_error=lambda e, c: errors.append((e, c)),
        )
        await clock.advance(50)
        started = time.monotonic()
    assert time.monotonic() - started < 0.2 + SLACK  # the backend would answer 503 forever
    assert activity.is_ended
    lost = [(e, c) for e, c in errors if c.operation == "flush"]
    assert len(lost) == 1
    reported, context = lost[0]
    assert isinstance(reported, UndeliveredError)
    assert reported.active_ms == 50_000
    assert [w.elapsed_ms for w in reported.windows] == [15_000, 15_000, 15_000, 5_000]
    assert (context.operation, context.activity_id, context.run_id) == (
        "flush",
        "lesson-1",
        activity.run_id,
    )
    assert context.attempts == len(backend.seen)  # all sent as the first window
    assert context.will_retry is (outbox is not None)
    assert ("kept in the outbox" in str(reported)) is (outbox is not None)
