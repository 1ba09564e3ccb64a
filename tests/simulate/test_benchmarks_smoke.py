"""The benchmarks still run: every one at tiny sizes (``run.py --quick``), not timed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


# A fleet of processes (the emulator, the vendor's server, Locust's master and worker, a
# child per figure) for a minute and a half: once, in the e2e session.
@pytest.mark.e2e
@pytest.mark.skipif(
    sys.platform != "linux", reason="the benchmarks read /proc/self and /proc/cpuinfo: Linux only"
)
def test_the_quick_benchmark_run_produces_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "run.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    for heading in (
        "## 1. CPU per delivered heartbeat",
        "## 2. Memory per running student",
        "## 3. Heartbeat punctuality and scale",
        "## 4. Accuracy",
        "## 5. `end()` latency",
        "## 6. Import time",
        "## 7. What one kiosk activity writes",
        "## 8. App calls never wait",
        "## 9. The emulator's heartbeat throughput, beside the vendor's server",
        "## 10. The emulator's `record()`, `runs()` and `problems()`, before and after",
        "## 11. Students per Locust worker core",
    ):
        assert heading in text
    assert "n/a" not in text
    assert (
        "| 4. accuracy, 1 h virtual clock | 3,060,000 ms | 3,060,000 ms planned | exact | met |"
        in text
    )
    assert "<!-- analysis" in text
    # Before and after gave the same runs, problems and attempts (where a before exists).
    assert "(a digest of them): **NO**" not in text


def test_retrying_against_a_dead_server_does_not_keep_a_core_busy() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(BENCHMARKS / "bench_end.py"),
            "down",
            "--n",
            "3",
            "--flush-timeout",
            "0.4",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])

    assert result["p99_ms"] < 400 + 50
    # A busy retry loop used a whole core here (5.4 s of CPU in 6 s); idle waiting, a few %.
    assert result["cpu_share"] < 0.5
