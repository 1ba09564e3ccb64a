"""2. Memory per running activity vs a bare sleeping anyio task.

Starts N of one kind and divides the growth of the Python heap (``tracemalloc``, current
traced size) or of the resident set size (``/proc/self/statm``) by N:

- ``task``: N anyio tasks, each ``await anyio.sleep(3600)`` (the baseline);
- ``holder``: N tasks, each waiting on one shared event: what holding a client open costs
  this benchmark (an app holds its one client in a task it has anyway), subtracted below;
- ``sdk``: N students, each a holder task with its own `AsyncTimeback` (``outbox=None``,
  all on one shared `Engine`) and one running activity: the client, its pipeline, the
  activity, its timekeeper and ledger, and its entry in the scheduler's heap;
- ``sdk-outbox``: the same with the default durable outbox (a file in a temporary
  directory, written by the process's one outbox writer: each client adds an owner and
  its activity a checkpoint slot there);
- ``sdk-own-engines``: the default outbox, each client on the shared
  ``httpx.AsyncClient`` with an engine of its own (``http_client=`` alone: a task group
  and a scheduler task per client).

Measured before the first heartbeat is due (15 s default interval), so nothing is queued.

    python benchmarks/bench_memory.py KIND N [--rss]
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import httpx
from _bench import LESSON, emit, rss_bytes

from timeback_client import AsyncTimeback, Engine


def _usage(rss: bool) -> int:
    gc.collect()
    return rss_bytes() if rss else tracemalloc.get_traced_memory()[0]


async def measure(kind: str, n: int, rss: bool) -> dict[str, Any]:
    stop = anyio.Event()
    ready = 0
    wanted = 1
    all_ready = anyio.Event()

    def one_ready() -> None:
        nonlocal ready
        ready += 1
        if ready == wanted:
            all_ready.set()

    def accept(request: httpx.Request) -> httpx.Response:
        return httpx.Response(204)  # only the last windows, after the measurement

    with tempfile.TemporaryDirectory() as tmp:
        outbox = None if kind == "sdk" else Path(tmp) / "outbox.sqlite3"
        async with (
            httpx.AsyncClient(transport=httpx.MockTransport(accept)) as http,
            Engine(http_client=http) as engine,
        ):
            shared = {"http_client": http} if kind == "sdk-own-engines" else {"engine": engine}

            async def sleeper() -> None:
                one_ready()
                await anyio.sleep(3600)

            async def holder() -> None:
                one_ready()
                await stop.wait()

            async def student() -> None:
                async with AsyncTimeback(
                    "http://127.0.0.1:9/api/timeback", outbox=outbox, **shared
                ) as tb:
                    tb.activity.start(**LESSON)
                    one_ready()
                    await stop.wait()

            spawn = {"task": sleeper, "holder": holder}.get(kind, student)
            async with anyio.create_task_group() as tg:
                # One of the kind first, so lazily built module state is not counted.
                tg.start_soon(spawn)
                await all_ready.wait()
                before = _usage(rss)
                wanted, all_ready = n + 1, anyio.Event()
                started = time.perf_counter()
                for _ in range(n):
                    tg.start_soon(spawn)
                await all_ready.wait()
                await anyio.sleep(1.5)  # the outbox writer has taken every owner and activity
                after = _usage(rss)
                elapsed = time.perf_counter() - started
                stop.set()
                tg.cancel_scope.cancel()
    return {
        "kind": kind,
        "n": n,
        "method": "rss" if rss else "tracemalloc",
        "bytes_per_item": (after - before) / n,
        "start_s": round(elapsed, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["task", "holder", "sdk", "sdk-outbox", "sdk-own-engines"])
    parser.add_argument("n", type=int)
    parser.add_argument("--rss", action="store_true", help="RSS growth instead of tracemalloc")
    args = parser.parse_args()
    if not args.rss:
        tracemalloc.start()
    emit(anyio.run(measure, args.kind, args.n, args.rss))


if __name__ == "__main__":
    main()
