"""8. App calls never wait: `pause()`, `resume()`, `touch()` timed on the app's thread.

A blocking `Timeback` (default durable outbox in a temporary directory, heartbeats every
second) against the emulator in its own process. The app's thread plays a lesson for
SECONDS: a `touch()` every 50 ms, and every 2 s a `pause()` that lasts 0.6 s before its
`resume()`. Each call is timed with ``time.perf_counter`` around it; the time *meant* is
counted from ``time.monotonic`` read on the app's thread just before each `start`,
`pause`, `resume` and `end`, and compared with the active time the emulator recorded.

    python benchmarks/bench_app_calls.py MODE URL ORIGIN [--seconds T] [--lock LOCK]

MODE:

- ``quiet``: nothing in the way (the baseline);
- ``locked``: another process holds the outbox's write lock for LOCK seconds (12), from
  2 s in (what a second copy of the app, a backup tool or an antivirus scan does);
- ``slow-callback``: every ``on_flush`` callback blocks the SDK's thread for 400 ms.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _bench import LESSON, TOKEN, emit, percentile, quiet_sdk_logs

from timeback_client import Timeback, TimeOptions

HOLD_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
"""


def play(mode: str, url: str, seconds: float, lock: float, outbox: Path) -> dict[str, Any]:
    durations: dict[str, list[float]] = {"pause": [], "resume": [], "touch": []}
    on_flush = (lambda _ms: time.sleep(0.4)) if mode == "slow-callback" else None
    locker: subprocess.Popen[str] | None = None
    timeback = Timeback(url, headers={"Authorization": f"Bearer {TOKEN}"}, outbox=outbox)
    try:
        options = TimeOptions(heartbeat_interval=1.0, flush_timeout=30.0)
        meant_s = 0.0
        started = time.monotonic()
        activity = timeback.activity.start(**LESSON, time=options, on_flush=on_flush)
        active_since: float | None = started
        next_pause = started + 2.0
        resume_at: float | None = None
        while time.monotonic() - started < seconds:
            now = time.monotonic()
            if mode == "locked" and locker is None and now - started >= min(2.0, seconds / 4):
                locker = subprocess.Popen(
                    [sys.executable, "-c", HOLD_LOCK, str(outbox), str(lock)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                assert locker.stdout is not None
                assert locker.stdout.readline().strip() == "locked"
                continue
            if resume_at is not None and now >= resume_at:
                active_since = time.monotonic()
                durations["resume"].append(_timed(activity.resume))
                resume_at = None
                next_pause = active_since + 2.0
            elif resume_at is None and now >= next_pause:
                assert active_since is not None
                meant_s += time.monotonic() - active_since
                active_since = None
                durations["pause"].append(_timed(activity.pause))
                resume_at = time.monotonic() + 0.6
            else:
                durations["touch"].append(_timed(activity.touch))
            time.sleep(0.05)
        if active_since is not None:
            meant_s += time.monotonic() - active_since
        activity.end(wait=False)
        run_id = activity.run_id
    finally:
        timeback.close()
        if locker is not None:
            locker.wait(lock + 10)
    return {"durations": durations, "meant_ms": meant_s * 1000, "run_id": run_id}


def _timed(call: Any) -> float:
    before = time.perf_counter()
    call()
    return (time.perf_counter() - before) * 1000


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["quiet", "locked", "slow-callback"])
    parser.add_argument("url")
    parser.add_argument("origin")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--lock", type=float, default=12.0, help="seconds the lock is held")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        played = play(args.mode, args.url, args.seconds, args.lock, Path(tmp) / "outbox.sqlite3")
    run = httpx.get(f"{args.origin}/_emulator/runs/{played['run_id']}", timeout=30).json()
    result: dict[str, Any] = {"mode": args.mode, "seconds": args.seconds}
    for name, values in played["durations"].items():
        result[f"{name}_calls"] = len(values)
        result[f"{name}_max_ms"] = max(values, default=float("nan"))
        result[f"{name}_p99_ms"] = percentile(values, 0.99)
    result["worst_call_ms"] = max(max(v, default=0.0) for v in played["durations"].values())
    result["meant_ms"] = played["meant_ms"]
    result["delivered_ms"] = run["activeMs"]
    result["windows"] = len(run["windows"])
    result["error_ms"] = run["activeMs"] - played["meant_ms"]
    emit(result)


if __name__ == "__main__":
    main()
