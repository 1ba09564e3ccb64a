"""1. CPU per delivered heartbeat: the SDK vs a bare ``httpx.AsyncClient.post`` loop.

Both send one window per activity per interval, starts staggered evenly over the first
interval, through one ``httpx.AsyncClient`` to the same server (the emulator, in its own
process), at most 8 requests in flight. Only this process's CPU time
(``time.process_time``: user + system, all threads) is counted, over a steady stretch
after one interval of warm-up, and divided by the windows the server accepted in that
stretch.

    python benchmarks/bench_cpu.py MODE URL [--activities K] [--interval S] [--seconds T]

MODE:

- ``bare``: the floor. Each activity is a task that builds its window's body on schedule
  and hands it to 8 sender tasks that post it (the same funnel as the SDK's sender).
- ``sdk``: one `AsyncTimeback` and one activity per student, every client on one shared
  `Engine` (one scheduler, one sender of 8 tasks), ``outbox=None``.
- ``sdk-outbox``: the same with the default durable outbox (a file in a temporary
  directory, written by the process's one outbox writer).
- ``sdk-own-engines``: each client on the shared ``httpx.AsyncClient`` but with an
  engine of its own (what ``http_client=`` alone gives), default outbox.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import httpx
from _bench import LESSON, TOKEN, emit, heartbeat_body, new_run_id, quiet_sdk_logs

from timeback_client import AsyncTimeback, Engine, TimeOptions

HEADERS = {"Authorization": f"Bearer {TOKEN}"}
SENDER_TASKS = 8  # the SDK's default bound on requests in flight


class Tally:
    """Windows accepted so far."""

    def __init__(self) -> None:
        self.delivered = 0

    def flushed(self, _elapsed_ms: int) -> None:
        self.delivered += 1


async def bare(url: str, k: int, interval: float, tally: Tally, stop: anyio.Event) -> None:
    """The floor: each activity builds its window on schedule; 8 sender tasks post them."""
    endpoint = url + "/activity/heartbeat"
    interval_ms = round(interval * 1000)
    send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=math.inf)
    async with httpx.AsyncClient(headers=HEADERS) as http:

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / k)
            run_id = new_run_id()
            started_ms = time.time_ns() // 1_000_000
            due = time.monotonic()
            while not stop.is_set():
                due += interval
                await anyio.sleep(max(0.0, due - time.monotonic()))
                send.send_nowait(heartbeat_body(run_id, started_ms, interval_ms))
                started_ms += interval_ms

        async def sender() -> None:
            async for body in receive:
                response = await http.post(
                    endpoint, content=body, headers={"content-type": "application/json"}
                )
                if response.status_code == 204:
                    tally.delivered += 1

        async with anyio.create_task_group() as tg:
            for _ in range(SENDER_TASKS):
                tg.start_soon(sender)
            for index in range(k):
                tg.start_soon(one, index)
            await stop.wait()
            tg.cancel_scope.cancel()


async def sdk(
    url: str,
    k: int,
    interval: float,
    tally: Tally,
    stop: anyio.Event,
    outbox: Path | None,
    *,
    shared_engine: bool = True,
) -> None:
    """The SDK: one client and one activity per student, all on one connection pool."""
    options = TimeOptions(heartbeat_interval=interval)
    async with httpx.AsyncClient() as http, Engine(http_client=http) as engine:

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / k)
            shared = {"engine": engine} if shared_engine else {"http_client": http}
            async with AsyncTimeback(url, headers=HEADERS, outbox=outbox, **shared) as tb:
                activity = tb.activity.start(**LESSON, time=options, on_flush=tally.flushed)
                await stop.wait()
                await activity.end()

        async with anyio.create_task_group() as tg:
            for index in range(k):
                tg.start_soon(one, index)


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process so far (Linux: /proc/self/task)."""
    ticks = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    result: dict[str, float] = {}
    for tid, name in names.items():
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, TypeError):
            continue
        label = "loop" if name == "MainThread" else name
        result[label] = result.get(label, 0.0) + (int(fields[11]) + int(fields[12])) / ticks
    return result


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    tally = Tally()
    stop = anyio.Event()
    result: dict[str, Any] = {}

    async def clock_it() -> None:
        # One interval to stagger the starts, one of warm-up, then the measured stretch.
        await anyio.sleep(2 * args.interval)
        cpu0, count0, wall0 = time.process_time(), tally.delivered, time.perf_counter()
        threads0 = thread_cpu()
        await anyio.sleep(args.seconds)
        cpu1, count1, wall1 = time.process_time(), tally.delivered, time.perf_counter()
        threads1 = thread_cpu()
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
            # Where it went, by thread (the event loop's, the outbox writer's).
            thread_cpu_s={
                name: round(threads1.get(name, 0.0) - threads0.get(name, 0.0), 3)
                for name in threads1
            },
        )
        stop.set()

    with tempfile.TemporaryDirectory() as tmp:
        async with anyio.create_task_group() as tg:
            tg.start_soon(clock_it)
            if args.mode == "bare":
                await bare(args.url, args.activities, args.interval, tally, stop)
            else:
                outbox = None if args.mode == "sdk" else Path(tmp) / "outbox.sqlite3"
                await sdk(
                    args.url,
                    args.activities,
                    args.interval,
                    tally,
                    stop,
                    outbox,
                    shared_engine=args.mode != "sdk-own-engines",
                )
    return result


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["bare", "sdk", "sdk-outbox", "sdk-own-engines"])
    parser.add_argument("url")
    parser.add_argument("--activities", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    emit(anyio.run(measure, args))


if __name__ == "__main__":
    main()
