"""The backend emulator in a process of its own, for load simulations and benchmarks.

A load generator that served its own backend from its own event loop would measure
itself twice, so `EmulatorProcess` starts ``python -m timeback_client.tools._emulator_process``,
sends it one JSON line of configuration on stdin, and reads back one line with the
loopback URL once uvicorn listens. The child serves until its stdin closes, so it also
goes away when the parent dies. It logs no access lines (uvicorn at ``warning``): a
heartbeat costs the server what it costs, and nothing more.

With ``scaled_time`` the emulator's own "now" (the time of a completion recorded by
``POST /_emulator/record``) runs on the same compressed timeline as the parent's
`ScaledClock`, exactly as the demo's embedded emulator does.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final

import attrs
import httpx

from .._clock import ScaledClock

__all__ = ["EmulatorProcess", "ScaledTime", "main"]

_READY: Final = "ready "
_STARTUP_TIMEOUT_S: Final = 20.0


@attrs.frozen(kw_only=True)
class ScaledTime:
    """Where a `ScaledClock` stands, so another process can read the same compressed time.

    ``time.monotonic_ns()`` is system-wide (CLOCK_MONOTONIC on Linux and macOS), so the
    child reads the same timeline as the parent's clock, within a millisecond.
    """

    origin_ns: int  # the monotonic instant at timeline 0
    origin_wall_ms: int  # the epoch ms at timeline 0
    speed: float

    @classmethod
    def of(cls, clock: ScaledClock) -> ScaledTime:
        """The origin of ``clock``, from its public readings."""
        now_ns = time.monotonic_ns()
        timeline_ms = clock.read().timeline_ms
        return cls(
            origin_ns=now_ns - round(timeline_ms * 1_000_000 / clock.speed),
            origin_wall_ms=clock.wall_ms(0),
            speed=clock.speed,
        )

    def now(self) -> datetime:
        """The compressed wall-clock time now."""
        scaled_ms = (time.monotonic_ns() - self.origin_ns) * self.speed / 1_000_000
        return datetime.fromtimestamp((self.origin_wall_ms + int(scaled_ms)) / 1000, UTC)


class EmulatorProcess:
    """``with EmulatorProcess(students) as emulator:`` serves on ``emulator.base_url``.

    Args:
        students: token -> email of the students the emulator knows.
        scaled_time: the compressed time the emulator's clock follows; None: real time.
        python: the interpreter to run (default: this one).
    """

    def __init__(
        self,
        students: Mapping[str, str],
        *,
        scaled_time: ScaledTime | None = None,
        python: str = sys.executable,
    ) -> None:
        self._config = {
            "students": dict(students),
            "scaled_time": None if scaled_time is None else attrs.asdict(scaled_time),
        }
        self._python = python
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.origin = ""  # scheme://host:port, where /_emulator/... lives

    @property
    def pid(self) -> int:
        """The child's process id."""
        assert self._process is not None
        return self._process.pid

    def start(self) -> EmulatorProcess:
        """Start the child and wait until it listens."""
        process = subprocess.Popen(  # noqa: S603 - our interpreter, our module, fixed args
            [self._python, "-m", "timeback_client.tools._emulator_process"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdin is not None
        assert process.stdout is not None
        try:
            process.stdin.write(json.dumps(self._config) + "\n")
            process.stdin.flush()
            line = _readline_within(process, _STARTUP_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        if not line.startswith(_READY):
            self.stop()
            raise RuntimeError(f"the emulator process did not start (it said {line!r})")
        self.base_url = line[len(_READY) :].strip()
        url = httpx.URL(self.base_url)
        self.origin = f"{url.scheme}://{url.host}:{url.port}"
        return self

    def get_json(self, path: str, *, timeout: float = 300.0) -> Any:
        """GET an ``/_emulator/...`` route (blocking) and decode its JSON."""
        response = httpx.get(self.origin + path, timeout=timeout)
        response.raise_for_status()
        return response.json()

    def stop(self, timeout: float = 10.0) -> None:
        """Close the child's stdin (it stops serving and exits); kill it if it lingers."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _readline_within(process: subprocess.Popen[str], timeout: float) -> str:
    """The child's first line, or an error if it stays silent too long.

    A reader thread, rather than ``select``: pipes cannot be selected on Windows, and a
    plain ``readline`` there would wait for ever on a child that hangs.
    """
    stdout = process.stdout
    assert stdout is not None
    lines: queue.SimpleQueue[str] = queue.SimpleQueue()
    reader = threading.Thread(
        target=lambda: lines.put(stdout.readline()), name="emulator-startup", daemon=True
    )
    reader.start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise RuntimeError(f"the emulator process said nothing within {timeout:g} s") from None


def main() -> None:
    """The child: read the configuration, serve, say where, wait for stdin to close."""
    from ..emulator import Emulator

    config = json.loads(sys.stdin.readline())
    clock: Callable[[], datetime] | None = None
    if config.get("scaled_time"):
        clock = ScaledTime(**config["scaled_time"]).now
    kwargs: dict[str, Any] = {} if clock is None else {"clock": clock}
    with (
        Emulator(students=config["students"], **kwargs) as emulator,
        emulator.serve_in_thread(port=0) as base_url,
    ):
        print(_READY + base_url, flush=True)
        # Serve until the parent closes our stdin (or dies).
        while sys.stdin.readline():
            pass


if __name__ == "__main__":
    main()
