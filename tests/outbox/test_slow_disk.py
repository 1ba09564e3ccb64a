"""A sign-in never waits for the disk: on an outbox whose every sync is held back (a slow
SD card, taken to its limit), making a client and starting an activity return, and so do
the app's calls, while the writer is still stuck on its first sync; the session's time
is then stored and delivered exactly once the disk answers.

Each case runs in a child process (`slowdisk.py`), since the slow-disk VFS becomes the
process's default SQLite VFS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from powercut import sqlite_library

HERE = Path(__file__).parent

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or sqlite_library() is None,
    reason="the slow-disk VFS wraps the shared libsqlite3 found in /proc/self/maps",
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@pytest.mark.parametrize("client", ["Timeback", "AsyncTimeback"])
def test_a_sign_in_returns_while_the_disk_holds_every_sync(
    tmp_path: Path, client: str, backend: str
) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(HERE / "slowdisk.py"),
            str(tmp_path / "outbox.sqlite3"),
            "--client",
            client,
            "--backend",
            backend,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=HERE,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    # Nothing had reached the disk when the calls returned, though the writer was on it.
    assert report["syncs_done_at_sign_in"] == 0
    # Three sign-ins in a row on the held disk. A client that waited for the outbox at its
    # start would take two seconds each (the longest it ever waited), however fast the
    # machine; these take milliseconds, and even a loaded machine leaves a wide margin.
    assert len(report["sign_in_seconds"]) == 3
    assert sum(report["sign_in_seconds"]) < 2.0, report["sign_in_seconds"]
    assert report["syncs_done_after_app_calls"] == 0
    assert report["syncs_started"] > 0
    # Once the disk answers, the session is delivered whole, once.
    assert report["elapsed_ms"] > 0
    assert report["delivered_ms"] == report["elapsed_ms"]
    assert report["problems"] == []
    assert report["vfs_errors"] == []
