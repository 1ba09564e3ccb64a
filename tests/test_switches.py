"""The switches: a client that is off (``enabled=False``, ``TIMEBACK_DISABLED``), and
``flush(timeout)``, which delivers what is pending without ending the activity."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fake_backend import FakeBackend
from timeback_client import (
    AsyncTimeback,
    LifecycleError,
    NetworkError,
    Timeback,
    TimeOptions,
    Undelivered,
    ValidationError,
    VirtualClock,
)
from timeback_client.emulator import Emulator
from window_invariants import check_windows, total_active_ms

BASE = "https://app.example/api/timeback"
COURSE = {"subject": "Math", "grade": 3}
LESSON: dict[str, Any] = {"id": "lesson-1", "name": "Fractions", "course": COURSE}
AUTH = {"Authorization": "Bearer token-a"}
STUDENTS = {"token-a": "ada@example.edu"}
MINUTE = 60.0


class NoNetwork:
    """A transport that fails the test if a single request reaches it."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.transport = httpx.MockTransport(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        pytest.fail(f"a disabled client sent {request.method} {request.url}")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every per-user directory (home, cache, state, data) under one empty folder, so a
    test can tell that nothing was written anywhere an outbox could live."""
    root = tmp_path / "home"
    root.mkdir()
    monkeypatch.setenv("HOME", str(root))
    for name in ("XDG_CACHE_HOME", "XDG_STATE_HOME", "XDG_DATA_HOME", "LOCALAPPDATA"):
        monkeypatch.setenv(name, str(root / name.lower()))
    return root


def files_under(root: Path) -> list[Path]:
    return sorted(root.rglob("*"))


def switch_off(how: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The client arguments that turn it off ``how``: by argument or by environment."""
    if how == "argument":
        return {"enabled": False}
    monkeypatch.setenv("TIMEBACK_DISABLED", "1")
    return {}


# -- off ------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("how", ["argument", "environment"])
async def test_a_disabled_client_works_locally_and_sends_and_stores_nothing(
    how: str, home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Activities, callbacks, totals and the virtual clock work as usual; no request is
    made and no file is created, neither a named outbox nor the default one."""
    network = NoNetwork()
    clock = VirtualClock()
    outbox = tmp_path / "named" / "outbox.sqlite3"
    flushed: list[int] = []
    events: list[str] = []
    for outbox_argument in (outbox, None, "default"):
        arguments = switch_off(how, monkeypatch)
        if outbox_argument != "default":
            arguments["outbox"] = outbox_argument
        async with AsyncTimeback(
            BASE, headers=AUTH, transport=network.transport, clock=clock, **arguments
        ) as timeback:
            assert timeback.enabled is False
            activity = timeback.activity.start(
                **LESSON,
                time=TimeOptions(heartbeat_interval=15, idle_timeout=60),
                on_flush=flushed.append,
                on_pause=lambda: events.append("pause"),
                on_resume=lambda: events.append("resume"),
            )
            await clock.advance(40)
            activity.pause()
            await clock.advance(10)
            activity.resume()
            await clock.advance(20)  # a heartbeat at 65 s: 15 s active, 10 s paused
            activity.touch()
            assert activity.elapsed_ms == 60_000
            assert await timeback.flush(timeout=1) == Undelivered()
            stats = timeback.statistics()
            assert stats.enabled is False
            assert stats.outbox is None
            assert (stats.engine.queued, stats.engine.attempts) == (0, 0)
            await clock.advance(3)
            await activity.end()
        assert activity.elapsed_ms == 63_000
        # Each window, as it is cut, is answered locally: its active time reaches on_flush.
        assert flushed == [15_000, 15_000, 10_000, 15_000, 5_000, 3_000]
        assert sum(flushed) == activity.elapsed_ms
        assert events == ["pause", "resume"]
        flushed.clear()
        events.clear()
    assert network.requests == []
    assert not outbox.exists()
    assert not outbox.parent.exists()
    assert files_under(home) == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_client_is_off_by_the_environment_too(
    backend: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBACK_DISABLED", "true")
    network = NoNetwork()
    clock = VirtualClock()
    flushed: list[int] = []
    with Timeback(
        BASE, headers=AUTH, transport=network.transport, clock=clock, backend=backend
    ) as timeback:
        assert timeback.enabled is False
        activity = timeback.activity.start(**LESSON, on_flush=flushed.append)
        timeback.portal.call(clock.advance, 20 * MINUTE)
        left = timeback.flush(timeout=2)
        assert not left
        timeback.portal.call(clock.advance, 5)
        activity.end()
        assert timeback.statistics().enabled is False
    assert activity.elapsed_ms == 20 * 60_000 + 5_000
    assert sum(flushed) == activity.elapsed_ms
    assert len(flushed) == 80 + 1  # a window per 15 s heartbeat, and the last one
    assert network.requests == []
    assert files_under(home) == []


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "Yes", " on ", "t", "y"])
def test_these_environment_values_switch_it_off(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMEBACK_DISABLED", value)
    assert AsyncTimeback(BASE).enabled is False


@pytest.mark.parametrize("value", ["", "0", "false", "False", "no", "OFF", "n", "f"])
def test_these_environment_values_leave_it_on(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEBACK_DISABLED", value)
    assert AsyncTimeback(BASE).enabled is True


def test_without_the_variable_it_is_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TIMEBACK_DISABLED", raising=False)
    assert AsyncTimeback(BASE, outbox=None).enabled is True


@pytest.mark.parametrize("value", ["maybe", "disabled", "2", "yes please"])
def test_an_unrecognised_environment_value_is_refused_naming_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Guessing either way loses something silently (a kiosk's time, or a developer's
    test data sent to the real backend): the app hears of it at construction."""
    monkeypatch.setenv("TIMEBACK_DISABLED", value)
    for make in (AsyncTimeback, Timeback):
        with pytest.raises(ValidationError) as raised:
            make(BASE)
        assert raised.value.field == "TIMEBACK_DISABLED"
        assert repr(value) in str(raised.value)
        assert "enabled=" in raised.value.fix


@pytest.mark.parametrize("value", ["no", 0, 1, "False"])
def test_enabled_must_be_a_bool(value: object) -> None:
    with pytest.raises(ValidationError) as raised:
        AsyncTimeback(BASE, enabled=value)  # type: ignore[arg-type]
    assert raised.value.field == "enabled"


@pytest.mark.anyio
async def test_an_explicit_enabled_true_wins_over_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kiosk that pins ``enabled=True`` cannot be switched off by a stray variable."""
    monkeypatch.setenv("TIMEBACK_DISABLED", "1")
    clock = VirtualClock()
    with Emulator(students=STUDENTS) as emulator:
        async with AsyncTimeback(
            BASE,
            headers=AUTH,
            transport=emulator.transport(),
            clock=clock,
            outbox=None,
            enabled=True,
        ) as timeback:
            activity = timeback.activity.start(**LESSON)
            await clock.advance(30)
            await activity.end()
        assert emulator.run(activity.run_id).active_ms == 30_000


@pytest.fixture
def disabled_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEBACK_DISABLED", "1")


@pytest.mark.usefixtures("disabled_everywhere")
def test_the_pytest_plugin_s_clients_send_to_their_emulator_in_a_ci_that_disables(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    """An app's CI sets TIMEBACK_DISABLED for its real runs; the plugin's clients, bound
    to an in-process emulator, still deliver to it."""
    assert timeback.enabled is True
    activity = timeback.activity.start(**LESSON)
    advance(10 * MINUTE)
    activity.end()
    assert timeback_emulator.run(activity.run_id).active_ms == 10 * 60_000


# -- flush ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_flush_delivers_the_time_so_far_then_the_run_adds_up_exactly(
    async_timeback: AsyncTimeback, virtual_clock: VirtualClock, timeback_emulator: Emulator
) -> None:
    """flush() cuts the open window at its instant and delivers it; the activity goes on,
    the next window starts where the cut one ended, and nothing is counted twice."""
    activity = async_timeback.activity.start(**LESSON, time=TimeOptions(heartbeat_interval=15))
    await virtual_clock.advance(7)
    left = await async_timeback.flush(timeout=5)
    assert left == Undelivered()
    assert len(left) == 0
    assert left.active_ms == 0
    run = timeback_emulator.run(activity.run_id)
    assert run.active_ms == 7_000  # delivered, before the first heartbeat was due
    assert not activity.is_ended

    await virtual_clock.advance(20)  # the heartbeat keeps its cadence: due at 15 s, 30 s
    activity.pause()
    await virtual_clock.advance(60)
    assert not await async_timeback.flush(timeout=5)  # paused: nothing new to cut
    activity.resume()
    await virtual_clock.advance(4.5)
    assert not await async_timeback.flush(timeout=5)
    assert not await async_timeback.flush(timeout=5)  # twice in a row: the second cuts nothing
    await virtual_clock.advance(12)
    await activity.end()

    run = timeback_emulator.run(activity.run_id)
    assert activity.elapsed_ms == (7 + 20 + 4.5 + 12) * 1000
    assert run.active_ms == activity.elapsed_ms
    assert run.inactive_ms == 60_000
    assert run.sessions == 1  # every window starts where the previous one ended
    assert [w.elapsed_ms for w in run.windows] == [7_000, 8_000, 12_000, 4_500, 10_500, 1_500]
    assert timeback_emulator.problems() == ()


def test_flush_over_a_real_loopback_server_then_continue_then_end(tmp_path: Path) -> None:
    """The blocking client against the emulator served by uvicorn on 127.0.0.1, with its
    durable outbox and the real clock."""
    with Emulator(students=STUDENTS) as emulator, emulator.serve_in_thread() as url:
        with Timeback(url, headers=AUTH, outbox=tmp_path / "outbox.sqlite3") as timeback:
            activity = timeback.activity.start(**LESSON, time=TimeOptions(heartbeat_interval=60))
            time.sleep(0.3)
            left = timeback.flush(timeout=5)
            assert not left
            delivered = emulator.run(activity.run_id).active_ms
            assert 300 <= delivered <= activity.elapsed_ms
            time.sleep(0.2)
            assert not timeback.flush()  # the activity's flush_timeout
            time.sleep(0.1)
            activity.end()
        run = emulator.run(activity.run_id)
        assert run.active_ms == activity.elapsed_ms >= 600
        assert len(run.windows) == 3
        assert run.sessions == 1
        assert emulator.problems() == ()


def server_down() -> httpx.MockTransport:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    return httpx.MockTransport(refuse)


@pytest.mark.anyio
async def test_flush_with_the_server_down_returns_what_is_undelivered_within_its_timeout(
    tmp_path: Path,
) -> None:
    """No exception: the windows left, with their active time, and they are on disk."""
    clock = VirtualClock()
    outbox = tmp_path / "outbox.sqlite3"
    errors: list[BaseException] = []
    async with AsyncTimeback(
        BASE, headers=AUTH, transport=server_down(), clock=clock, outbox=outbox
    ) as timeback:
        activity = timeback.activity.start(
            **LESSON,
            time=TimeOptions(heartbeat_interval=15, flush_timeout=0.2),
            on_error=lambda error, context: errors.append(error),
        )
        await clock.advance(20)  # a heartbeat at 15 s, retried on the virtual clock
        started = time.monotonic()
        left = await timeback.flush(timeout=0.5)
        took = time.monotonic() - started
        assert 0.5 <= took < 0.5 + 2.0
        assert [w.elapsed_ms for w in left.windows] == [15_000, 5_000]
        assert left.active_ms == activity.elapsed_ms == 20_000
        assert all(w.run_id == activity.run_id for w in left.windows)
        assert any(isinstance(error, NetworkError) for error in errors)
        with contextlib.closing(sqlite3.connect(outbox)) as db:
            ((stored,),) = db.execute("SELECT sum(elapsed_ms) FROM windows").fetchall()
        assert stored == 20_000
        assert timeback.statistics().engine.queued == 2  # the SDK goes on trying
    assert not activity.is_paused


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_the_blocking_flush_with_the_server_down_returns_within_its_timeout(
    backend: str,
) -> None:
    with Timeback(
        BASE, headers=AUTH, transport=server_down(), outbox=None, backend=backend
    ) as timeback:
        activity = timeback.activity.start(**LESSON, time=TimeOptions(flush_timeout=0.2))
        time.sleep(0.1)
        started = time.monotonic()
        left = timeback.flush(timeout=0.4)
        took = time.monotonic() - started
        assert 0.4 <= took < 0.4 + 2.0
        assert len(left) == 1
        assert 100 <= left.active_ms <= activity.elapsed_ms


def test_the_blocking_flush_never_waits_long_past_its_timeout_for_a_blocked_sdk_thread(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app's callback blocks the SDK's thread (waiting for the GUI thread, say): the
    GUI thread's flush still returns near its timeout, with what is known undelivered."""
    release = threading.Event()
    with Emulator(students=STUDENTS) as emulator:
        with Timeback(BASE, headers=AUTH, transport=emulator.transport(), outbox=None) as timeback:
            activity = timeback.activity.start(**LESSON, on_pause=lambda: release.wait(10))
            time.sleep(0.05)
            activity.pause()  # its window goes to the sender, then on_pause blocks the loop
            time.sleep(0.05)
            started = time.monotonic()
            left = timeback.flush(timeout=0.3)
            took = time.monotonic() - started
            release.set()
            assert took < 0.3 + 1.0
            assert len(left) == 1
            assert left.active_ms == activity.elapsed_ms
            assert "did not answer in time" in caplog.text
            activity.end()
        assert emulator.run(activity.run_id).active_ms == activity.elapsed_ms


def test_the_blocking_flush_refuses_to_run_inside_an_sdk_callback() -> None:
    """It would wait for the thread the callback runs on."""
    raised: list[BaseException] = []

    def on_pause() -> None:
        try:
            timeback.flush(timeout=1)
        except LifecycleError as error:
            raised.append(error)

    with (
        Emulator(students=STUDENTS) as emulator,
        Timeback(BASE, headers=AUTH, transport=emulator.transport(), outbox=None) as timeback,
    ):
        activity = timeback.activity.start(**LESSON, on_pause=on_pause)
        activity.pause()
        deadline = time.monotonic() + 5
        while not raised and time.monotonic() < deadline:
            time.sleep(0.01)
        activity.end()
    assert len(raised) == 1
    assert "callback" in str(raised[0])


@pytest.mark.anyio
@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), "5", True])
async def test_a_bad_flush_timeout_names_the_argument(
    async_timeback: AsyncTimeback, bad: object
) -> None:
    with pytest.raises(ValidationError) as raised:
        await async_timeback.flush(timeout=bad)  # type: ignore[arg-type]
    assert raised.value.field == "timeout"


@pytest.mark.anyio
async def test_flush_needs_an_open_client() -> None:
    timeback = AsyncTimeback(BASE, outbox=None)
    with pytest.raises(LifecycleError, match="not open"):
        await timeback.flush()
    async with timeback:
        pass
    with pytest.raises(LifecycleError, match="closed"):
        await timeback.flush()


def test_flush_without_an_activity_delivers_what_end_left(
    timeback: Timeback, advance: Callable[[float], None], timeback_emulator: Emulator
) -> None:
    """A lesson switch: ``end(wait=False)`` left the last window in flight; flush waits
    for it."""
    activity = timeback.activity.start(**LESSON)
    advance(40)
    activity.end(wait=False)
    assert timeback.activity.current is None
    assert not timeback.flush(timeout=5)
    assert timeback_emulator.run(activity.run_id).active_ms == 40_000


@pytest.mark.anyio
async def test_flush_of_a_time_false_activity_sends_nothing() -> None:
    network = NoNetwork()
    async with AsyncTimeback(
        BASE, transport=network.transport, clock=VirtualClock(), outbox=None
    ) as timeback:
        timeback.activity.start(**LESSON, time=False)
        assert not await timeback.flush(timeout=1)
    assert network.requests == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.integers(0, 8_000)),
            st.tuples(st.sampled_from(["pause", "resume", "touch", "flush"]), st.just(0)),
        ),
        max_size=30,
    )
)
@pytest.mark.anyio
async def test_flushes_anywhere_keep_windows_contiguous_and_exact(
    ops: list[tuple[str, int]],
) -> None:
    """Flushes between any calls: contiguous, non-empty windows whose active time adds up
    to the activity's, to the millisecond."""
    clock = VirtualClock()
    backend = FakeBackend(clock)
    options = TimeOptions(heartbeat_interval=3, idle_timeout=10)
    async with AsyncTimeback(BASE, transport=backend.transport, clock=clock) as timeback:
        activity = timeback.activity.start(**LESSON, time=options)
        for name, ms in ops:
            if name == "advance":
                await clock.advance(ms / 1000)
            elif name == "flush":
                before = activity.elapsed_ms
                assert not await timeback.flush(timeout=5)
                assert total_active_ms(backend.delivered) == before == activity.elapsed_ms
            else:
                getattr(activity, name)()
        await activity.end()
    check_windows(backend.delivered)
    assert total_active_ms(backend.delivered) == activity.elapsed_ms
