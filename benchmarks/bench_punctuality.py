"""3. Heartbeat punctuality and scale, measured from outside: by what the server received.

N activities (one `AsyncTimeback` each, all on one `Engine`, with the default durable
outbox in a temporary directory, or ``outbox=None`` with ``--no-outbox``) start staggered
evenly over one interval, run for SECONDS each, and end. Then every run
is read back from the emulator (``GET /_emulator/runs/{runId}``). An activity that never
pauses should cut window k at exactly ``startedAt(first) + k * interval``; its lateness
is how much later its ``endedAt`` is. A missed window is a beat that never came: the SDK
skips one only when it wakes more than a whole interval late, and then keeps its cadence
from that late beat, as this analysis does. The last window of a
run, cut by ``end()``, is not a heartbeat and is left out. Delivery delay is the server's
``receivedAt`` minus ``endedAt``.

    python benchmarks/bench_punctuality.py URL ORIGIN [--activities N] [--interval S]
        [--seconds T] [--no-outbox] [--freeze]
"""

from __future__ import annotations

import argparse
import gc
import math
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
from _bench import LESSON, TOKEN, emit, heartbeat_body, new_run_id, percentile, quiet_sdk_logs

from timeback_client import AsyncTimeback, Engine, TimeOptions


class GcWatch:
    """Full (generation 2) garbage collections while the activities ran, and their pauses."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


async def drive(
    url: str,
    n: int,
    interval: float,
    seconds: float,
    outbox: Path | None,
    freeze: bool = False,
    bare: bool = False,
) -> tuple[list[str], float]:
    """Run the activities; their run ids and this process's CPU share meanwhile.

    ``freeze``: once every activity has started, move everything allocated so far out of
    the cyclic garbage collector's reach (``gc.freeze()``, as ``simulate`` and a Locust
    worker do), to show how much of the lateness is full collections walking a large heap.
    """
    options = TimeOptions(heartbeat_interval=interval, flush_timeout=60.0)
    run_ids: list[str] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    watch = GcWatch()
    async with httpx.AsyncClient(timeout=30) as http, Engine(http_client=http) as engine:
        send, receive = anyio.create_memory_object_stream[bytes](max_buffer_size=math.inf)
        endpoint = url + "/activity/heartbeat"
        headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}

        async def bare_one(index: int) -> None:
            """The floor: a task per activity cuts its window on schedule, at the wall
            instant it wakes, and hands it to 8 sender tasks."""
            await anyio.sleep(index * interval / n)
            run_id = new_run_id()
            run_ids.append(run_id)
            started_ms = time.time_ns() // 1_000_000
            due = time.monotonic()
            stop = due + seconds
            while True:
                due += interval
                if due > stop:
                    break
                await anyio.sleep(max(0.0, due - time.monotonic()))
                ended_ms = time.time_ns() // 1_000_000
                send.send_nowait(heartbeat_body(run_id, started_ms, ended_ms - started_ms))
                started_ms = ended_ms
            ended_ms = time.time_ns() // 1_000_000  # the last window, as end() would cut it
            send.send_nowait(heartbeat_body(run_id, started_ms, ended_ms - started_ms))

        async def bare_sender() -> None:
            async for body in receive:
                await http.post(endpoint, content=body, headers=headers)

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / n)
            async with AsyncTimeback(
                url, headers={"Authorization": f"Bearer {TOKEN}"}, engine=engine, outbox=outbox
            ) as tb:
                activity = tb.activity.start(**LESSON, time=options)
                run_ids.append(activity.run_id)
                await anyio.sleep(seconds)
                await activity.end()

        async def freezer() -> None:
            # As simulate and a Locust worker do: no collection first, which would be
            # the very pause over every student's objects that freezing avoids.
            await anyio.sleep(interval + 0.5)
            gc.freeze()

        async def census() -> None:
            # Once every activity has started: the objects the collector tracks, per
            # student (what a full collection walks), without collecting (no extra pause).
            await anyio.sleep(interval + 0.4)
            DIAGNOSIS["tracked_per_student"] = round((len(gc.get_objects()) - tracked0) / n, 1)

        gc.collect()
        tracked0 = len(gc.get_objects())
        async with anyio.create_task_group() as tg:
            tg.start_soon(census)
            if freeze:
                tg.start_soon(freezer)
            if bare:
                async with anyio.create_task_group() as senders:
                    for _ in range(8):
                        senders.start_soon(bare_sender)
                    async with anyio.create_task_group() as activities:
                        for index in range(n):
                            activities.start_soon(bare_one, index)
                    send.close()
            else:
                for index in range(n):
                    tg.start_soon(one, index)
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    gc.callbacks.remove(watch)
    DIAGNOSIS["full_gcs"] = len(watch.pauses_ms)
    DIAGNOSIS["full_gc_max_ms"] = round(max(watch.pauses_ms, default=0.0), 1)
    return run_ids, cpu_share


async def read_back(origin: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Every run as the emulator recorded it (a few requests at a time)."""
    runs: list[dict[str, Any]] = []
    limiter = anyio.CapacityLimiter(8)
    async with httpx.AsyncClient(base_url=origin, timeout=60) as http:

        async def fetch(run_id: str) -> None:
            async with limiter:
                response = await http.get(f"/_emulator/runs/{run_id}")
            response.raise_for_status()
            runs.append(response.json())

        async with anyio.create_task_group() as tg:
            for run_id in run_ids:
                tg.start_soon(fetch, run_id)
    return runs


DIAGNOSIS: dict[str, Any] = {}


def analyse(runs: list[dict[str, Any]], interval_ms: int) -> dict[str, Any]:
    lateness: list[float] = []
    delays: list[float] = []
    missed = 0
    for run in runs:
        windows = sorted(run["windows"], key=lambda w: _ms(w["startedAt"]))
        events = {e["endedAt"]: e for e in run["events"] if e["kind"] == "heartbeat"}
        if not windows:
            continue
        # Follow the SDK's own schedule: every interval from the start, and after a beat
        # more than a whole interval late (a missed beat), every interval from that beat.
        due = _ms(windows[0]["startedAt"]) + interval_ms
        for window in windows[:-1]:  # the last one was cut by end()
            ended = _ms(window["endedAt"])
            late = ended - due
            lateness.append(late)
            missed += max(0, late) // interval_ms
            due += interval_ms
            if due <= ended:
                due = ended + interval_ms
        for window in windows:
            event = events.get(window["endedAt"])
            if event is not None:
                delays.append(_ms(event["receivedAt"]) - _ms(window["endedAt"]))
    return {
        "runs": len(runs),
        "heartbeats": len(lateness),
        "missed": missed,
        "lateness_p50_ms": percentile(lateness, 0.50),
        "lateness_p99_ms": percentile(lateness, 0.99),
        "lateness_max_ms": max(lateness, default=float("nan")),
        "delivery_p50_ms": percentile(delays, 0.50),
        "delivery_p99_ms": percentile(delays, 0.99),
    }


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("origin")
    parser.add_argument("--activities", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--freeze", action="store_true", help="gc.freeze() after the starts")
    parser.add_argument("--no-outbox", action="store_true", help="outbox=None")
    parser.add_argument("--bare", action="store_true", help="the floor: no SDK, see bare_one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        outbox = None if args.no_outbox else Path(tmp) / "outbox.sqlite3"
        run_ids, cpu_share = anyio.run(
            drive,
            args.url,
            args.activities,
            args.interval,
            args.seconds,
            outbox,
            args.freeze,
            args.bare,
        )
    runs = anyio.run(read_back, args.origin, run_ids)
    result = analyse(runs, round(args.interval * 1000))
    result.update(
        activities=args.activities,
        interval=args.interval,
        seconds=args.seconds,
        client_cpu_share=round(cpu_share, 3),
        freeze=args.freeze,
        outbox=not args.no_outbox and not args.bare,
        bare=args.bare,
        **DIAGNOSIS,
    )
    emit(result)


if __name__ == "__main__":
    main()
