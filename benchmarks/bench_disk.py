"""7. What one kiosk activity writes to disk: transactions and bytes per second.

One blocking `Timeback` with the default durable outbox (a file in a temporary
directory) and the default options (a heartbeat every 15 s), one activity, against the
emulator in this process (in memory, over no socket, so every byte this process writes
is the outbox's). After a warm-up, over SECONDS: the outbox writer's transactions
(``Timeback.statistics()``), and this process's own accounting from ``/proc/self/io``:
``wchar`` (bytes handed to write calls), ``syscw`` (write calls) and ``write_bytes``
(bytes sent to the storage layer).

    python benchmarks/bench_disk.py MODE [--seconds T] [--warmup W]

MODE: ``running`` (a student at the lesson), ``paused`` (the lesson paused), or ``bare``:
the floor, a plain ``sqlite3`` loop in WAL mode (SQLite's default page size) that does the
least a per-second checkpoint can: update one row a second, and every 15 s insert a
window's row and delete it once "answered".
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import LESSON, emit, quiet_sdk_logs

from timeback_client import Timeback
from timeback_client.emulator import Emulator

TOKEN = "kiosk-token"


def io_counters() -> dict[str, int]:
    """This process's I/O accounting (Linux)."""
    fields = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        name, value = line.split(":")
        fields[name] = int(value)
    return fields


def bare(seconds: float, warmup: float) -> dict[str, Any]:
    """The floor: one row updated a second, a window row in and out every 15 s."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "floor.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE open_window (run TEXT PRIMARY KEY, ended INTEGER)")
        db.execute("CREATE TABLE windows (run TEXT, started INTEGER, body BLOB)")
        db.execute("INSERT INTO open_window VALUES ('run', 0)")
        body = b"x" * 300
        transactions = 0
        start = time.monotonic()
        io0 = t0 = None
        for second in range(int(warmup + seconds) + 1):
            if io0 is None and second >= warmup:
                io0, t0, transactions = io_counters(), time.monotonic(), 0
            time.sleep(max(0.0, start + second + 1 - time.monotonic()))
            db.execute("BEGIN")
            db.execute("UPDATE open_window SET ended = ?", (second,))
            if second % 15 == 0:
                db.execute("INSERT INTO windows VALUES ('run', ?, ?)", (second, body))
            if second % 15 == 1:
                db.execute("DELETE FROM windows")
            db.execute("COMMIT")
            transactions += 1
        io1, t1 = io_counters(), time.monotonic()
        db.close()
    assert io0 is not None
    assert t0 is not None
    wall = t1 - t0
    return {
        "mode": "bare",
        "seconds": round(wall, 3),
        "transactions_per_s": transactions / wall,
        "failures": 0,
        "wchar_per_s": (io1["wchar"] - io0["wchar"]) / wall,
        "syscw_per_30s": (io1["syscw"] - io0["syscw"]) * 30 / wall,
        "write_bytes_per_s": (io1["write_bytes"] - io0["write_bytes"]) / wall,
    }


def measure(mode: str, seconds: float, warmup: float) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(students={TOKEN: "kiosk@example.edu"}) as emulator,
    ):
        outbox = Path(tmp) / "outbox.sqlite3"
        with Timeback(
            "http://emulator.localhost/api/timeback",
            headers={"Authorization": f"Bearer {TOKEN}"},
            transport=emulator.transport(),
            outbox=outbox,
        ) as timeback:
            activity = timeback.activity.start(**LESSON)
            if mode == "paused":
                activity.pause()
            time.sleep(warmup)
            stats0, io0, t0 = timeback.statistics().outbox, io_counters(), time.monotonic()
            time.sleep(seconds)
            stats1, io1, t1 = timeback.statistics().outbox, io_counters(), time.monotonic()
            activity.end()
            delivered = emulator.run(activity.run_id).active_ms
        assert stats0 is not None
        assert stats1 is not None
        wall = t1 - t0
        return {
            "mode": mode,
            "seconds": round(wall, 3),
            "transactions_per_s": (stats1.transactions - stats0.transactions) / wall,
            "failures": stats1.failures - stats0.failures,
            "wchar_per_s": (io1["wchar"] - io0["wchar"]) / wall,
            "syscw_per_30s": (io1["syscw"] - io0["syscw"]) * 30 / wall,
            "write_bytes_per_s": (io1["write_bytes"] - io0["write_bytes"]) / wall,
            "delivered_ms": delivered,
            "measured_ms": activity.elapsed_ms,
        }


def main() -> None:
    quiet_sdk_logs()
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["running", "paused", "bare"])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    args = parser.parse_args()
    if args.mode == "bare":
        emit(bare(args.seconds, args.warmup))
    else:
        emit(measure(args.mode, args.seconds, args.warmup))


if __name__ == "__main__":
    main()
