"""1. CPU per delivered heartbeat: the SDK vs a bare ``httpx.AsyncClient.post`` loop.

Both send one window per activity per interval, starts staggered evenly over the first
interval, through one ``httpx.AsyncClient`` to the same server (the emulator, in its own
process). Only this process's CPU time (``time.process_time``: user + system, all threads)
is counted, over a steady stretch after one interval of warm-up, and divided by the
windows the server accepted in that stretch.

    python benchmarks/bench_cpu.py MODE URL [--activities K] [--interval S] [--seconds T]

MODE: ``bare`` (the floor), ``sdk`` (``outbox=None``), ``sdk-outbox`` (the default
durable outbox, in a temporary directory).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from _bench import LESSON, TOKEN, emit, heartbeat_body, new_run_id, quiet_sdk_logs

from timeback_client import AsyncTimeback, TimeOptions

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


class Tally:
    """Windows accepted so far."""

    def __init__(self) -> None:
        self.delivered = 0

    def flushed(self, _elapsed_ms: int) -> None:
        self.delivered += 1


async def bare(url: str, k: int, interval: float, tally: Tally, stop: anyio.Event) -> None:
    """The floor: each activity is a loop posting its window on schedule."""
    endpoint = url + "/activity/heartbeat"
    interval_ms = round(interval * 1000)
    async with httpx.AsyncClient(headers=HEADERS) as http:

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / k)
            run_id = new_run_id()
            started_ms = time.time_ns() // 1_000_000
            due = time.monotonic()
            while not stop.is_set():
                due += interval
                await anyio.sleep(max(0.0, due - time.monotonic()))
                body = heartbeat_body(run_id, started_ms, interval_ms)
                started_ms += interval_ms
                response = await http.post(
                    endpoint, content=body, headers={"content-type": "application/json"}
                )
                if response.status_code == 204:
                    tally.delivered += 1

        async with anyio.create_task_group() as tg:
            for index in range(k):
                tg.start_soon(one, index)
            await stop.wait()
            tg.cancel_scope.cancel()


async def sdk(
    url: str, k: int, interval: float, tally: Tally, stop: anyio.Event, outbox: Path | None
) -> None:
    """The SDK: one client and one activity per student, all on one connection pool."""
    options = TimeOptions(heartbeat_interval=interval)
    async with httpx.AsyncClient() as http:

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / k)
            async with AsyncTimeback(url, headers=HEADERS, http_client=http, outbox=outbox) as tb:
                activity = tb.activity.start(**LESSON, time=options, on_flush=tally.flushed)
                await stop.wait()
                await activity.end()

        async with anyio.create_task_group() as tg:
            for index in range(k):
                tg.start_soon(one, index)


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    stop = anyio.Event()
    result: dict[str, Any] = {}

    async def clock_it() -> None:
        # One interval to stagger the starts, one of warm-up, then the measured stretch.
        await anyio.sleep(2 * args.interval)
        cpu0, count0, wall0 = time.process_time(), tally.delivered, time.perf_counter()
        await anyio.sleep(args.seconds)
        cpu1, count1, wall1 = time.process_time(), tally.delivered, time.perf_counter()
        delivered = count1 - count0
        result.update(
            mode=args.mode,
            activities=args.activities,
            interval=args.interval,
            seconds=round(wall1 - wall0, 3),
            delivered=delivered,
            rate=delivered / (wall1 - wall0),
            cpu_s=cpu1 - cpu0,
            cpu_ms_per_heartbeat=(cpu1 - cpu0) * 1000 / delivered if delivered else None,
        )
        stop.set()

    with tempfile.TemporaryDirectory() as tmp:
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock_it)
            if args.mode == "bare":
                await bare(args.url, args.activities, args.interval, tally, stop)
            else:
                outbox = Path(tmp) / "outbox.sqlite3" if args.mode == "sdk-outbox" else None
                await sdk(args.url, args.activities, args.interval, tally, stop, outbox)
    return result


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "sdk", "sdk-outbox"])
    parser.add_argument("url")
    parser.add_argument("--activities", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    emit(anyio.run(measure, args))


if __name__ == "__main__":
    main()
