"""3. Heartbeat punctuality and scale, measured from outside: by what the server received.

N activities (one `AsyncTimeback` each, one shared ``httpx.AsyncClient``, ``outbox=None``)
start staggered evenly over one interval, run for SECONDS each, and end. Then every run
is read back from the emulator (``GET /_emulator/runs/{runId}``). An activity that never
pauses should cut window k at exactly ``startedAt(first) + k * interval``; its lateness
is how much later its ``endedAt`` is. A missed window is a beat that never came: the SDK
skips one only when it wakes more than a whole interval late, and then keeps its cadence
from that late beat, as this analysis does. The last window of a
run, cut by ``end()``, is not a heartbeat and is left out. Delivery delay is the server's
``receivedAt`` minus ``endedAt``.

    python benchmarks/bench_punctuality.py URL ORIGIN [--activities N] [--interval S]
        [--seconds T] [--freeze]
"""

from __future__ import annotations

import argparse
import gc
import time
from datetime import datetime
from typing import Any

import anyio
import httpx
from _bench import LESSON, TOKEN, emit, percentile, quiet_sdk_logs

from timeback_client import AsyncTimeback, TimeOptions


def _ms(text: str) -> int:
    return round(datetime.fromisoformat(text).timestamp() * 1000)


async def drive(
    url: str, n: int, interval: float, seconds: float, freeze: bool = False
) -> tuple[list[str], float]:
    """Run the activities; their run ids and this process's CPU share meanwhile.

    ``freeze``: once every activity has started, move everything allocated so far out of
    the cyclic garbage collector's reach (``gc.freeze()``, an application's choice), to
    show how much of the lateness is full collections walking a large heap.
    """
    options = TimeOptions(heartbeat_interval=interval, flush_timeout=60.0)
    run_ids: list[str] = []
    cpu0, wall0 = time.process_time(), time.perf_counter()
    async with httpx.AsyncClient(timeout=30) as http:

        async def one(index: int) -> None:
            await anyio.sleep(index * interval / n)
            async with AsyncTimeback(
                url, headers={"Authorization": f"Bearer {TOKEN}"}, http_client=http, outbox=None
            ) as tb:
                activity = tb.activity.start(**LESSON, time=options)
                run_ids.append(activity.run_id)
                await anyio.sleep(seconds)
                await activity.end()

        async def freezer() -> None:
            await anyio.sleep(interval + 0.5)
            gc.collect()
            gc.freeze()

        async with anyio.create_task_group() as tg:
            if freeze:
                tg.start_soon(freezer)
            for index in range(n):
                tg.start_soon(one, index)
    cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
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
    args = parser.parse_args()
    run_ids, cpu_share = anyio.run(
        drive, args.url, args.activities, args.interval, args.seconds, args.freeze
    )
    runs = anyio.run(read_back, args.origin, run_ids)
    result = analyse(runs, round(args.interval * 1000))
    result.update(
        activities=args.activities,
        interval=args.interval,
        seconds=args.seconds,
        client_cpu_share=round(cpu_share, 3),
        freeze=args.freeze,
    )
    emit(result)


if __name__ == "__main__":
    main()
