"""What every benchmark shares: the machine, medians, child processes, heartbeat bodies.

Each benchmark module is also a script: run in a fresh interpreter it measures one thing
once and prints one JSON object as its last line. `run.py` starts those children (so no
measurement inherits another's heap, threads or warm caches) and takes medians.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TOKEN = "bench-token"
EMAIL = "bench@example.edu"
LESSON: dict[str, Any] = {
    "id": "fractions-1",
    "name": "Fractions: halves and quarters",
    "course": {"subject": "Math", "grade": 3},
}
WALL_START_MS = 1_767_603_600_000


def cpu_model() -> str:
    """The CPU's model name, as the kernel reports it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str]:
    """The machine and software a result was measured on."""
    versions = {name: metadata.version(name) for name in ("httpx", "anyio", "uvicorn")}
    return {
        "cpu": cpu_model(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": f"{platform.system()} {platform.release()}",
        **versions,
    }


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (NaN for no values)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def quiet_sdk_logs() -> None:
    """Delivery problems the benchmarks provoke on purpose are counted, not logged."""
    logging.getLogger("timeback_client").addHandler(logging.NullHandler())


def emit(result: dict[str, Any]) -> None:
    """A child's answer: one JSON line on stdout."""
    print(json.dumps(result), flush=True)


def child(
    script: str, *args: str, timeout: float = 900.0, pythonpath: str | None = None
) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh interpreter and return its JSON answer.

    ``pythonpath`` replaces ``PYTHONPATH`` for the child: an older checkout's sources,
    to measure them as a baseline.
    """
    env = None if pythonpath is None else {**os.environ, "PYTHONPATH": pythonpath}
    done = subprocess.run(
        [sys.executable, str(HERE / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"{script} {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-4000:]}"
        )
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


def heartbeat_body(run_id: str, started_at_ms: int, elapsed_ms: int) -> bytes:
    """The bytes the SDK sends for a window, built the way a hand-written client would."""
    from timeback_client._models import format_timestamp

    body = {
        **LESSON,
        "runId": run_id,
        "startedAt": format_timestamp(started_at_ms),
        "endedAt": format_timestamp(started_at_ms + elapsed_ms),
        "elapsedMs": elapsed_ms,
        "pausedMs": 0,
    }
    return json.dumps(body, separators=(",", ":")).encode()


def new_run_id() -> str:
    """A fresh runId."""
    return str(uuid.uuid4())


def rss_bytes() -> int:
    """This process's resident set size now (Linux: /proc/self/statm)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")
