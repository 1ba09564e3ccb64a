"""7. What one kiosk activity writes to disk: transactions and bytes per second.

One blocking `Timeback` with the default durable outbox (a file in a temporary
directory) and the default options (a heartbeat every 15 s), one activity, against the
emulator in this process (in memory, over no socket, so every byte this process writes
is the outbox's). After a warm-up, over SECONDS: the outbox writer's transactions
(``Timeback.statistics()``), the process's ``fsync``/``fdatasync`` calls (``strace``
attached for the stretch, when it is installed), and its own accounting from ``/proc/self/io``:
``wchar`` (bytes handed to write calls), ``syscw`` (write calls) and ``write_bytes``
(bytes sent to the storage layer).

    python benchmarks/bench_disk.py MODE [--seconds T] [--warmup W]

MODE: ``running`` (a student at the lesson), ``paused`` (the lesson paused), or ``bare``:
the floor, a plain ``sqlite3`` loop in WAL mode with a synced commit (``synchronous=FULL``,
the outbox's durability; SQLite's default page size) that does the
least a per-second checkpoint can: update one row a second, and every 15 s insert a
window's row and delete it once "answered".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from _bench import LESSON, emit, quiet_sdk_logs

from timeback_client import Timeback
from timeback_client.emulator import Emulator

TOKEN = "kiosk-token"


class SyncCounter:
    """This process's ``fsync``/``fdatasync`` calls while it runs, counted by ``strace``
    attached to every thread (None when strace is missing or may not attach)."""

    def __init__(self) -> None:
        self._log = Path(tempfile.mkdtemp()) / "syncs.txt"
        self._strace: subprocess.Popen[bytes] | None = None
        if shutil.which("strace") is None:
            return
        self._strace = subprocess.Popen(
            ["strace", "-f", "-qq", "-ttt", "-e", "trace=fsync,fdatasync",
             "-o", str(self._log), "-p", str(os.getpid())],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(1.0)  # attaching to every thread takes a moment: count from now on
        self._since = time.time()
        if self._strace.poll() is not None:
            self._strace = None

    def stop(self) -> int | None:
        """Detach; the calls counted since the counter was made."""
        if self._strace is None:
            return None
        until = time.time()
        self._strace.send_signal(signal.SIGINT)
        self._strace.wait(10)
        text = self._log.read_text() if self._log.exists() else ""
        # Lines: "PID EPOCH.USEC fdatasync(5) = 0" (resumed calls are counted once).
        return sum(
            1
            for line in text.splitlines()
            if "sync(" in line and self._since <= float(line.split()[1]) <= until
        )


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
        db.execute("PRAGMA synchronous=FULL")  # what the outbox promises: synced commits
        db.execute("CREATE TABLE open_window (run TEXT PRIMARY KEY, ended INTEGER)")
        db.execute("CREATE TABLE windows (run TEXT, started INTEGER, body BLOB)")
        db.execute("INSERT INTO open_window VALUES ('run', 0)")
        body = b"x" * 300
        transactions = 0
        start = time.monotonic()
        io0 = t0 = syncs = None
        for second in range(int(warmup + seconds) + 1):
            if io0 is None and second >= warmup:
                syncs = SyncCounter()
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
        assert syncs is not None
        synced = syncs.stop()
        db.close()
    assert io0 is not None
    assert t0 is not None
    wall = t1 - t0
    return {
        "mode": "bare",
        "seconds": round(wall, 3),
        "transactions_per_s": transactions / wall,
        "syncs_per_s": None if synced is None else synced / wall,
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
            syncs = SyncCounter()
            stats0, io0, t0 = timeback.statistics().outbox, io_counters(), time.monotonic()
            time.sleep(seconds)
            stats1, io1, t1 = timeback.statistics().outbox, io_counters(), time.monotonic()
            synced = syncs.stop()
            activity.end()
            delivered = emulator.run(activity.run_id).active_ms
        assert stats0 is not None
        assert stats1 is not None
        wall = t1 - t0
        return {
            "mode": mode,
            "seconds": round(wall, 3),
            "transactions_per_s": (stats1.transactions - stats0.transactions) / wall,
            "syncs_per_s": None if synced is None else synced / wall,
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
