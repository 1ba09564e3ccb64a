"""Shared pieces of the outbox fault tests: a wire log in front of the emulator, the
delivery checks every test ends with, child processes, and the tally of figures."""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, Final

import anyio
import attrs
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from timeback_client import AsyncTimeback, Timeback
from timeback_client._models import Window
from timeback_client._options import identity_of
from timeback_client._outbox import CheckpointRow, Outbox, WindowRow
from timeback_client._writer import flush_outbox
from timeback_client.emulator import Emulator
from timeback_client.emulator._serve import serve_in_thread

TOKEN: Final = "tok-ada"
EMAIL: Final = "ada@example.edu"
AUTH: Final = {"Authorization": f"Bearer {TOKEN}"}
STUDENTS: Final = {TOKEN: EMAIL, "tok-ada-2": EMAIL, "tok-ada-3": EMAIL}
COURSE: Final = {"subject": "Math", "grade": 3}
CHILD: Final = Path(__file__).with_name("session_child.py")
# Every wait on another process or thread is bounded, so nothing can hang CI.
CHILD_TIMEOUT: Final = 30.0


# -- the wire log -----------------------------------------------------------------------


@attrs.frozen
class Request:
    """One heartbeat request as it reached the server, and what became of it."""

    token: str
    run_id: str
    started_at: str
    at: float  # time.monotonic() on arrival
    status: int | None  # None: the connection was dropped, or nothing was answered
    duplicate: bool  # the backend answered that it had the window already


class WireLog:
    """An ASGI wrapper that notes every heartbeat request in front of the emulator (its
    faults included), so a test can tell who sent what, and how often."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: list[Request] = []

    @property
    def requests(self) -> list[Request]:
        """Every heartbeat request so far, in order of arrival."""
        with self._lock:
            return sorted(self._requests, key=lambda r: r.at)

    def wrap(self, app: ASGIApp) -> ASGIApp:
        async def logged(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http" or not scope["path"].endswith("/activity/heartbeat"):
                await app(scope, receive, send)
                return
            arrived = time.monotonic()
            # Read the body first (the emulator answers 401 without reading it), then
            # hand it on whole.
            body = b""
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False) and message["type"] == "http.request"
            status: list[int] = []
            answer = b""
            given = False

            async def replay() -> Message:
                nonlocal given
                if given:
                    return await receive()
                given = True
                return {"type": "http.request", "body": body, "more_body": False}

            async def noted(message: Message) -> None:
                nonlocal answer
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                elif len(answer) < 64:
                    answer += message.get("body", b"")[:64]
                await send(message)

            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
            dropped = False
            try:
                await app(scope, replay, noted)
            except Exception:
                dropped = True
                raise
            finally:
                fields = _fields(body)
                with self._lock:
                    self._requests.append(
                        Request(
                            token=token,
                            run_id=fields.get("runId", ""),
                            started_at=fields.get("startedAt", ""),
                            at=arrived,
                            status=None if dropped or not status else status[0],
                            duplicate=_fields(answer).get("duplicate") is True,
                        )
                    )

        return logged


def _fields(body: bytes) -> dict[str, Any]:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def waiting_windows(timeback: AsyncTimeback | Timeback) -> int:
    """How many windows wait in the client's outbox (its statistics), 0 without one."""
    outbox = timeback.statistics().outbox
    return 0 if outbox is None else outbox.stored


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll state kept by another thread (no event to wait on), for 10 s at most."""
    with anyio.fail_after(10):
        while not condition():  # noqa: ASYNC110 - polling another thread's state
            await anyio.sleep(0.02)


def serve(emulator: Emulator, wire: WireLog, port: int = 0) -> AbstractContextManager[str]:
    """Serve the emulator behind the wire log on a loopback port; yields the base URL."""
    return serve_in_thread(wire.wrap(emulator.app), mount=emulator.mount, port=port)


def serve_again(emulator: Emulator, wire: WireLog, port: int) -> AbstractContextManager[str]:
    """Serve on the same port again (the one a client's outbox is keyed by)."""
    deadline = time.monotonic() + 5
    while True:
        try:
            return serve(emulator, wire, port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- the checks every test ends with ------------------------------------------------------


@attrs.frozen
class Delivery:
    """What the emulator made of a test's runs."""

    windows: int  # windows accepted
    lost: int  # windows seen on the wire that never were accepted
    twice: int  # windows counted more than once (a startedAt twice, or overlapping)
    lost_ms: int  # active ms measured by the client and not at the emulator


def check_delivery(
    emulator: Emulator,
    measured: Mapping[str, int],
    *,
    wire: WireLog | None = None,
    may_lose_ms: int = 0,
    early_ms: int = 0,
) -> Delivery:
    """Every run's active time reached the emulator (less at most ``may_lose_ms``, for a
    SIGKILL; ``early_ms`` more for a measurement a few ms late), every window seen on the
    wire was accepted, and nothing was counted twice: each startedAt once per run, and no
    problem found."""
    windows = twice = lost_ms = 0
    accepted: set[tuple[str, str]] = set()
    for run_id, active_ms in measured.items():
        run = emulator.run(run_id)
        starts = [w.started_at for w in run.windows]
        accepted.update((run_id, start) for start in starts)
        twice += len(starts) - len(set(starts))
        windows += len(run.windows)
        lost_ms += active_ms - run.active_ms
        assert run.students == (EMAIL,), run.students
        assert -early_ms <= active_ms - run.active_ms <= may_lose_ms, (
            f"run {run_id}: measured {active_ms} ms, delivered {run.active_ms} ms"
        )
    on_wire = {(r.run_id, r.started_at) for r in wire.requests} if wire is not None else set()
    lost = len({key for key in on_wire if key[0] in measured} - accepted)
    problems = emulator.problems()
    twice += sum(1 for p in problems if p.rule == "overlapping-windows")
    assert problems == (), problems
    assert (lost, twice) == (0, 0)
    return Delivery(windows=windows, lost=lost, twice=twice, lost_ms=lost_ms)


def stored_windows(path: Path) -> int:
    """Windows left in an outbox file, read without registering as an owner (0 while the
    writer has not made the file and its tables yet; never made here)."""
    if not path.exists():
        return 0
    db = sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True)
    try:
        made = db.execute("SELECT count(*) FROM sqlite_master WHERE name = 'windows'").fetchone()
        if not made[0]:
            return 0  # the writer is still making the file
        return int(db.execute("SELECT count(*) FROM windows").fetchone()[0])
    finally:
        db.close()


async def synced(path: Path) -> None:
    """Wait until this process's outbox writer has put on disk all it was told so far."""
    flushed = flush_outbox(path)
    if flushed is not None:
        await anyio.to_thread.run_sync(flushed.result, 10.0)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll (blocking) until ``condition()``; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# -- child processes --------------------------------------------------------------------


class Child:
    """A `session_child.py` process; reads its JSON lines, ends it with a bounded wait."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(CHILD), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: collections.deque[str] = collections.deque()
        self._errors: list[str] = []
        # Both pipes are drained all along, so a chatty child never blocks on a full pipe.
        self._readers = [
            threading.Thread(target=self._drain, args=(pipe, sink), daemon=True)
            for pipe, sink in (
                (self.process.stdout, self._lines),
                (self.process.stderr, self._errors),
            )
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _drain(pipe: IO[str] | None, sink: collections.deque[str] | list[str]) -> None:
        assert pipe is not None
        with pipe:
            for line in pipe:
                sink.append(line)

    def message(self, timeout: float = CHILD_TIMEOUT) -> dict[str, Any]:
        """The next JSON line the child printed."""
        wait_for(lambda: bool(self._lines) or self.process.poll() is not None, timeout, "the child")
        if not self._lines:
            self._readers[0].join(1)
        assert self._lines, f"the child exited: {self.finish()}"
        value = json.loads(self._lines.popleft())
        assert isinstance(value, dict)
        return value

    def kill(self) -> None:
        """SIGKILL, and reap it (a zombie would still look alive to the outbox)."""
        self.process.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self, timeout: float = CHILD_TIMEOUT) -> str:
        """Wait for the exit (killing it past ``timeout``); what it wrote to stderr."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        for reader in self._readers:
            reader.join(5)
        return "".join(self._errors)


@contextmanager
def children(*specs: tuple[str, ...]) -> Iterator[list[Child]]:
    """Start child processes together; whatever happens, none outlives the block."""
    started: list[Child] = []
    try:
        for spec in specs:
            started.append(Child(*spec))
        yield started
    finally:
        for child in started:
            if child.process.returncode is None:
                child.process.kill()
            child.finish()


def boottime_ms() -> int:
    """The timeline `SystemClock` reads on Linux (it counts through suspend)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // 1_000_000


# -- an outbox used directly, as the writer uses it ------------------------------------------

BACKEND: Final = "https://app.example/api/timeback"
IDENTITY: Final = identity_of(
    BACKEND, {"Authorization": "Bearer secret-token"}, {"sid": "cookie-value"}
)
# Every outbox a test opens through these helpers; tests/outbox/conftest.py closes them
# after each test (Python 3.13 warns of an unclosed connection, and warnings fail).
OPENED: Final[list[Outbox]] = []


class Owner:
    """One client's use of the file, as the outbox writer makes it: an owner row, and its
    windows and checkpoints, each change in a transaction of its own."""

    def __init__(
        self, path: Path, backend: str = BACKEND, identity: str = IDENTITY, **options: int
    ) -> None:
        self.outbox = Outbox(path, **options)  # type: ignore[arg-type]
        OPENED.append(self.outbox)
        self.owner = uuid.uuid4().hex
        self.backend = backend
        self.identity = identity
        with self.outbox.transaction():
            self.outbox.leases.register(self.owner)

    def add(self, w: Window, *, sent: bool = False) -> None:
        row = WindowRow(
            owner=self.owner,
            backend=self.backend,
            identity=self.identity,
            run_id=w.run_id,
            started_at_ms=w.started_at_ms,
            ended_at_ms=w.ended_at_ms,
            elapsed_ms=w.elapsed_ms,
            body=w.to_bytes(),
            sent_at=time.time() if sent else None,
        )
        with self.outbox.transaction():
            self.outbox.add([row])

    def mark_sent(self, w: Window) -> None:
        with self.outbox.transaction():
            self.outbox.mark_sent([(time.time(), w.run_id, w.started_at_ms)])

    def checkpoint(
        self, w: Window, *, running: bool = False, suspended_ms: int = 0, stamp: str | None = None
    ) -> None:
        template = json.dumps(
            {"id": w.activity_id, "name": w.name, "course": w.course.to_json(), "runId": w.run_id}
        ).encode()
        row = CheckpointRow(
            owner=self.owner,
            backend=self.backend,
            identity=self.identity,
            run_id=w.run_id,
            started_at_ms=w.started_at_ms,
            ended_at_ms=w.ended_at_ms,
            elapsed_ms=w.elapsed_ms,
            template=template,
            running=running,
            suspended_ms=suspended_ms,
            stamp=stamp,
        )
        with self.outbox.transaction():
            self.checkpoint_row = self.outbox.put_checkpoint(row)

    def claim(
        self, identity: str | None = None, backend: str | None = None
    ) -> list[tuple[str, int, bytes]]:
        """(run_id, elapsed_ms, body) of each window taken over, in replay order (for the
        owner's own backend and identity unless told others)."""
        with self.outbox.transaction():
            self.outbox.leases.forget_dead_owners()
            rows = self.outbox.claim_orphans(
                self.owner, backend or self.backend, identity or self.identity
            )
        return [(r.run_id, r.elapsed_ms, r.body) for r in rows]

    def leave(self) -> None:
        with self.outbox.transaction():
            self.outbox.leases.release(self.owner)

    def make_room(self) -> int:
        with self.outbox.transaction():
            return self.outbox.make_room(self.backend)

    def pending(self) -> list[dict[str, object]]:
        return [json.loads(r.body) for r in self.outbox.pending(self.owner)]


# -- the figures for the issue note ------------------------------------------------------


class Tally:
    """Figures gathered across the tests, printed at the end of the session."""

    def __init__(self) -> None:
        self.faults: collections.Counter[str] = collections.Counter()
        self.windows_sent = 0
        self.windows_lost = 0
        self.windows_twice = 0
        self.kill_losses_ms: list[int] = []
        self.offline_attempts: list[int] = []
        self.power_cuts: list[str] = []
        self.power_cuts_normal: list[str] = []

    def add(self, delivery: Delivery, **faults: int) -> None:
        self.windows_sent += delivery.windows
        self.windows_lost += delivery.lost
        self.windows_twice += delivery.twice
        self.faults.update(
            {name if " " in name else name.replace("_", " "): n for name, n in faults.items()}
        )

    def lines(self) -> list[str]:
        cuts = self.power_cuts + self.power_cuts_normal
        if not self.windows_sent and not self.faults:
            return cuts
        worst = max(self.kill_losses_ms, default=None)
        return [
            "faults tried: "
            + ", ".join(f"{name} x{count}" for name, count in sorted(self.faults.items())),
            f"windows sent (accepted by the emulator): {self.windows_sent}",
            f"windows lost: {self.windows_lost}",
            f"windows counted twice: {self.windows_twice}",
            f"loss on SIGKILL, ms: {self.kill_losses_ms} (worst {worst})",
            f"attempts during an hour offline: {self.offline_attempts}",
            *cuts,
        ]


TALLY: Final = Tally()


def free_port() -> int:
    """A loopback port nothing listens on (yet): connections to it are refused."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def url_at(port: int) -> str:
    return f"http://127.0.0.1:{port}/api/timeback"


def corrupt_outbox(path: Path) -> None:
    """A real outbox whose pages were torn in the middle (a disk that lied about a write)."""
    outbox = Outbox(path)
    with outbox.transaction():
        outbox.add(
            WindowRow(
                owner="o",
                backend=BACKEND,
                identity=IDENTITY,
                run_id=f"run-{i}",
                started_at_ms=i,
                ended_at_ms=i + 1,
                elapsed_ms=1,
                body=b"x" * 2000,
            )
            for i in range(40)
        )
    outbox.close()
    raw = bytearray(path.read_bytes())
    assert len(raw) > 16384
    raw[8192:16384] = b"\xde\xad\xbe\xef" * 2048
    path.write_bytes(bytes(raw))


def untouched(path: Path) -> tuple[bytes, int, list[str]]:
    """What must not change about a file the SDK does not own: bytes, mode, and the
    folder around it (nothing renamed, nothing made beside it)."""
    return path.read_bytes(), stat.S_IMODE(path.stat().st_mode), sorted(os.listdir(path.parent))
