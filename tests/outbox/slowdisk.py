"""A slow disk for the outbox: every sync of a file under one directory takes ``delay``
seconds (an SD card takes 10-100 ms), or waits until a test opens the ``gate``.

It is the power-cut VFS (`powercut.PowerCutVFS`) with a slower ``xSync``: the same wrap of
the library the ``sqlite3`` module uses, registered as the process's default VFS, so the
outbox's own connections go through it unchanged. One per process, Linux only.

Run as a script, it is the child of `test_slow_disk.py`: a sign-in (a client made, an
activity started) while every sync of the outbox is held at the gate, then the rest of
the session once the gate opens; it prints one JSON object.

    python slowdisk.py OUTBOX --client Timeback|AsyncTimeback --backend asyncio|trio
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import threading
import time
from pathlib import Path
from typing import Any

import anyio
from powercut import PowerCutVFS, sqlite_library


class SlowDiskVFS(PowerCutVFS):
    """Syncs of files under ``root`` take ``delay`` seconds each, and first wait for
    ``gate`` (open at first). ``started`` and ``done`` count syncs begun and finished."""

    def __init__(self, library: ctypes.CDLL, root: Path, *, delay: float = 0.0) -> None:
        super().__init__(library, root, name="slowdisk")
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()
        self.started = 0
        self.done = 0

    def _xSync(self, file: int, flags: int) -> int:
        tracked = self._handles[file].path is not None
        if tracked:
            self.started += 1
            # Outside the VFS's lock: a held sync stops its own connection only.
            self.gate.wait()
            time.sleep(self.delay)
        rc = super()._xSync(file, flags)
        if tracked:
            self.done += 1
        return rc


TOKEN = "tok-ada"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COURSE = {"subject": "Math", "grade": 3}
URL = "http://localhost/api/timeback"
SIGN_INS = 3


def _until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.005)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outbox", type=Path)
    parser.add_argument("--client", choices=["Timeback", "AsyncTimeback"], required=True)
    parser.add_argument("--backend", choices=["asyncio", "trio"], required=True)
    args = parser.parse_args()
    library = sqlite_library()
    assert library is not None
    vfs = SlowDiskVFS(library, args.outbox.parent)
    vfs.install()

    from timeback_client import AsyncTimeback, Timeback
    from timeback_client.emulator import Emulator

    report: dict[str, Any] = {}
    with Emulator(students={TOKEN: "ada@example.edu"}) as emulator:
        options: dict[str, Any] = {
            "headers": AUTH,
            "transport": emulator.transport(),
            "outbox": args.outbox,
        }
        # What a process pays once (importing httpcore, the SDK's loop thread, the TLS
        # context) is paid here, before the timed sign-ins: on a loaded machine it alone
        # can take seconds, and it has nothing to do with the disk.
        with Timeback(URL, backend=args.backend, **{**options, "outbox": None}) as warm:
            warm.activity.start(id="lesson-0", name="Warm-up", course=COURSE).end(wait=False)
        vfs.gate.clear()  # from here on, no sync of the outbox finishes until the gate opens
        if args.client == "Timeback":
            # Students signing in one after another (each signs out at once, with
            # end(wait=False): nothing is delivered or stored while the disk is held).
            took = []
            for _ in range(SIGN_INS - 1):
                started = time.perf_counter()
                other = Timeback(URL, backend=args.backend, **options)
                other.activity.start(id="lesson-0", name="Warm-up", course=COURSE)
                took.append(time.perf_counter() - started)
                other.activity.current.end(wait=False)  # type: ignore[union-attr]
                threading.Thread(target=other.close, daemon=True).start()
            started = time.perf_counter()
            timeback = Timeback(URL, backend=args.backend, **options)
            activity = timeback.activity.start(id="lesson-1", name="Fractions", course=COURSE)
            took.append(time.perf_counter() - started)
            report["sign_in_seconds"] = took
            report["syncs_done_at_sign_in"] = vfs.done
            _until(lambda: vfs.started > 0, "the writer never reached the disk")
            activity.pause()
            activity.resume()
            activity.touch()
            report["syncs_done_after_app_calls"] = vfs.done
            time.sleep(0.3)
            vfs.gate.set()
            activity.end()
            timeback.close()
            elapsed_ms = activity.elapsed_ms
            run_id = activity.run_id
        else:

            async def session() -> tuple[int, str]:
                took = []
                async with contextlib.AsyncExitStack() as clients:
                    for lesson in ("lesson-0", "lesson-1", "lesson-2"):
                        started = time.perf_counter()
                        timeback = await clients.enter_async_context(AsyncTimeback(URL, **options))
                        activity = timeback.activity.start(
                            id=lesson, name="Fractions", course=COURSE
                        )
                        took.append(time.perf_counter() - started)
                    report["sign_in_seconds"] = took
                    report["syncs_done_at_sign_in"] = vfs.done
                    with anyio.fail_after(30):
                        while vfs.started == 0:  # noqa: ASYNC110 - counted on the writer's thread
                            await anyio.sleep(0.005)
                    activity.pause()
                    activity.resume()
                    activity.touch()
                    report["syncs_done_after_app_calls"] = vfs.done
                    await anyio.sleep(0.3)
                    vfs.gate.set()
                    await activity.end()
                return activity.elapsed_ms, activity.run_id

            elapsed_ms, run_id = anyio.run(session, backend=args.backend)
        report["syncs_started"] = vfs.started
        report["elapsed_ms"] = elapsed_ms
        report["delivered_ms"] = emulator.run(run_id).active_ms
        report["problems"] = [p.rule for p in emulator.problems()]
    report["vfs_errors"] = vfs.errors
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
