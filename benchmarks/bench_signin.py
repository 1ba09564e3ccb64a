"""12. Sign-in: `Timeback(...)` then `activity.start(...)`, on the app's thread, one
student after another.

A kiosk makes a blocking client for each student who signs in, on its GUI thread, and
starts the student's lesson. Each sign-in is timed with ``time.perf_counter`` around those
two calls; the student then signs out (``end(wait=False)`` and ``close()``, not timed)
and the next one signs in. With the durable outbox, every student uses one file in a
temporary directory, as every client of a kiosk shares the default file.

    python benchmarks/bench_signin.py URL --outbox memory|durable --disk normal|slow
        [--sign-ins N] [--sync-delay S]

``--disk slow``: every sync of the outbox's files takes S seconds (default 0.05, an SD
card's), through the test suite's slow-disk VFS (``tests/outbox/slowdisk.py``), which
wraps the SQLite library the ``sqlite3`` module uses (Linux).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _bench import HERE, LESSON, TOKEN, emit, median, percentile, quiet_sdk_logs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--outbox", choices=["memory", "durable"], required=True)
    parser.add_argument("--disk", choices=["normal", "slow"], default="normal")
    parser.add_argument("--sign-ins", type=int, default=40)
    parser.add_argument("--sync-delay", type=float, default=0.05)
    args = parser.parse_args()
    quiet_sdk_logs()
    with tempfile.TemporaryDirectory() as folder:
        vfs = None
        if args.disk == "slow":
            sys.path.insert(0, str(HERE.parent / "tests" / "outbox"))
            from powercut import sqlite_library
            from slowdisk import SlowDiskVFS

            library = sqlite_library()
            if library is None:
                raise SystemExit("the slow disk needs the shared libsqlite3 (Linux)")
            vfs = SlowDiskVFS(library, Path(folder), delay=args.sync_delay)
            vfs.install()

        from timeback_client import Timeback

        outbox = None if args.outbox == "memory" else Path(folder) / "outbox.sqlite3"
        took: list[float] = []
        syncs: list[int] = []
        for _ in range(args.sign_ins):
            before = 0 if vfs is None else vfs.done
            started = time.perf_counter()
            timeback = Timeback(
                args.url, headers={"Authorization": f"Bearer {TOKEN}"}, outbox=outbox
            )
            activity = timeback.activity.start(**LESSON)
            took.append((time.perf_counter() - started) * 1000)
            syncs.append(0 if vfs is None else vfs.done - before)
            activity.end(wait=False)
            timeback.close()
    emit(
        {
            "ms": took,
            "median_ms": median(took),
            "p95_ms": percentile(took, 0.95),
            "max_ms": max(took),
            "syncs_per_sign_in": median(syncs),
        }
    )


if __name__ == "__main__":
    main()
