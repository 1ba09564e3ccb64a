"""5. ``end()`` latency: how long ``await activity.end()`` takes.

One client (``outbox=None``); N times: start an activity, let it run a moment, time
``end()`` with ``time.perf_counter()``. Against:

- ``loopback``: the emulator in its own process (``URL``): the last window is delivered;
- ``down``: a port where nothing listens (connection refused; the SDK retries with backoff);
- ``hanging``: a socket that accepts connections and never answers.

With the server down or hanging, ``end()`` must give up waiting after ``flush_timeout``,
and retrying must not keep a core busy (``cpu_share``: CPU time over wall time).

    python benchmarks/bench_end.py MODE [URL] [--n N] [--flush-timeout S]
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Any

import anyio
from _bench import LESSON, TOKEN, emit, percentile, quiet_sdk_logs

from timeback_client import AsyncTimeback, TimeOptions


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def measure(mode: str, url: str | None, n: int, flush_timeout: float) -> dict[str, Any]:
    listener: socket.socket | None = None
    if mode == "down":
        url = f"http://127.0.0.1:{_closed_port()}/api/timeback"
    elif mode == "hanging":
        # The kernel completes the handshakes (backlog); nobody ever reads or answers.
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/api/timeback"
    assert url is not None
    options = TimeOptions(flush_timeout=flush_timeout)
    latencies: list[float] = []
    errors = 0

    def on_error(*_: object) -> None:
        nonlocal errors
        errors += 1

    cpu0, wall0 = time.process_time(), time.perf_counter()
    try:
        async with AsyncTimeback(
            url, headers={"Authorization": f"Bearer {TOKEN}"}, outbox=None
        ) as tb:
            for _ in range(n):
                activity = tb.activity.start(**LESSON, time=options, on_error=on_error)
                await anyio.sleep(0.02)
                started = time.perf_counter()
                await activity.end()
                latencies.append((time.perf_counter() - started) * 1000)
            closing = time.perf_counter()
        close_ms = (time.perf_counter() - closing) * 1000
        cpu_share = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    finally:
        if listener is not None:
            listener.close()
    return {
        "mode": mode,
        "n": n,
        "flush_timeout_ms": flush_timeout * 1000,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "max_ms": max(latencies),
        "close_ms": close_ms,
        "errors_reported": errors,
        "cpu_share": cpu_share,  # of one core, while it ran (a busy retry loop shows here)
    }


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["loopback", "down", "hanging"])
    parser.add_argument("url", nargs="?")
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--flush-timeout", type=float, default=1.0)
    args = parser.parse_args()
    emit(anyio.run(measure, args.mode, args.url, args.n, args.flush_timeout))


if __name__ == "__main__":
    main()
