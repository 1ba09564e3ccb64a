"""4. Accuracy: reported vs measured active time.

``real``: S activities run side by side for SECONDS of real time on the system clock,
against the emulator in its own process, each pausing once for a while in the middle.
Measured active time is taken with ``time.monotonic_ns()`` just before each ``start()``,
``pause()``, ``resume()`` and ``end()``; reported time is the sum of ``elapsedMs`` the
emulator recorded for the run (``GET /_emulator/runs/{runId}``).

``virtual``: one 8-hour session on the `VirtualClock` (work, breaks, idle spells), against
an in-process emulator: the recorded active time must equal the planned active time to
the millisecond, with no problem found.

    python benchmarks/bench_accuracy.py real URL ORIGIN [--seconds T] [--sessions S]
    python benchmarks/bench_accuracy.py virtual [--hours H]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import anyio
import httpx
from _bench import EMAIL, LESSON, TOKEN, emit, quiet_sdk_logs

from timeback_client import AsyncTimeback, TimeOptions, VirtualClock

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


async def real(url: str, origin: str, seconds: float, sessions: int) -> dict[str, Any]:
    measured_ns: dict[str, int] = {}

    async def session(index: int, http: httpx.AsyncClient) -> None:
        # Pauses of different lengths at different points, all inside the session.
        pause_at = seconds * (0.2 + 0.5 * index / max(1, sessions))
        pause_for = seconds * 0.1
        options = TimeOptions(heartbeat_interval=5.0)
        async with AsyncTimeback(url, headers=HEADERS, http_client=http, outbox=None) as tb:
            t_start = time.monotonic_ns()
            activity = tb.activity.start(**LESSON, time=options)
            await anyio.sleep(pause_at)
            t_pause = time.monotonic_ns()
            activity.pause()
            await anyio.sleep(pause_for)
            t_resume = time.monotonic_ns()
            activity.resume()
            await anyio.sleep(seconds - pause_at - pause_for)
            t_end = time.monotonic_ns()
            await activity.end()
            measured_ns[activity.run_id] = (t_pause - t_start) + (t_end - t_resume)

    async with httpx.AsyncClient() as http, anyio.create_task_group() as tg:
        for index in range(sessions):
            tg.start_soon(session, index, http)
    errors = []
    async with httpx.AsyncClient(base_url=origin) as inspect:
        for run_id, ns in measured_ns.items():
            run = (await inspect.get(f"/_emulator/runs/{run_id}")).json()
            errors.append(run["activeMs"] - ns / 1_000_000)
    return {
        "mode": "real",
        "seconds": seconds,
        "sessions": sessions,
        "errors_ms": [round(e, 3) for e in errors],
        "max_abs_error_ms": max(abs(e) for e in errors),
    }


async def virtual(hours: float) -> dict[str, Any]:
    from timeback_client.emulator import Emulator

    clock = VirtualClock()
    emulator = Emulator(students={TOKEN: EMAIL})
    # Hour by hour: 25 min of work (a touch every 30 s), an idle spell of 3 min (the SDK
    # pauses itself after idle_timeout=60 s; a touch resumes), 25 min of work, a 7 min break.
    planned_active_ms = 0
    started = time.perf_counter()
    options = TimeOptions(idle_timeout=60.0)
    async with AsyncTimeback(
        "http://emulator.localhost/api/timeback",
        headers=HEADERS,
        transport=emulator.transport(),
        clock=clock,
        outbox=None,
    ) as tb:
        activity = tb.activity.start(**LESSON, time=options)

        async def work(minutes: int) -> None:
            for _ in range(minutes * 2):
                await clock.advance(30)
                activity.touch()

        for _ in range(round(hours)):
            await work(25)
            await clock.advance(180)
            activity.touch()
            await work(25)
            activity.pause()
            await clock.advance(420)
            activity.resume()
            planned_active_ms += (25 + 1 + 25) * 60_000
        await activity.end()
        run = emulator.run(activity.run_id)
    elapsed = time.perf_counter() - started
    problems = emulator.problems()
    emulator.close()
    return {
        "mode": "virtual",
        "hours": round(hours),
        "planned_active_ms": planned_active_ms,
        "reported_active_ms": run.active_ms,
        "windows": len(run.windows),
        "sessions": run.sessions,
        "problems": [p.rule for p in problems],
        "exact": run.active_ms == planned_active_ms and not problems,
        "wall_s": round(elapsed, 2),
    }


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["real", "virtual"])
    parser.add_argument("url", nargs="?")
    parser.add_argument("origin", nargs="?")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sessions", type=int, default=5)
    parser.add_argument("--hours", type=float, default=8.0)
    args = parser.parse_args()
    if args.mode == "real":
        emit(anyio.run(real, args.url, args.origin, args.seconds, args.sessions))
    else:
        emit(anyio.run(virtual, args.hours))


if __name__ == "__main__":
    main()
