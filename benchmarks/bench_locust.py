"""9. Students per Locust worker core: a worker's CPU per heartbeat beside ``simulate``'s.

The same school in both: N students of the built-in lessons, one heartbeat every
INTERVAL seconds in real time, arriving over one interval, for SECONDS, against the
emulator in its own process with one bearer token.

- ``locust``: a Locust master and one worker (``examples/load_test/locustfile.py``,
  ``--spawn-rate N/INTERVAL``); the worker's process CPU from the start of the test to
  its last window, as ``--timeback-report`` gives it (``cpuSeconds``), divided by the
  heartbeats it sent.
- ``simulate``: ``timeback-client simulate``'s engine in this process at ``--speed 1``
  (arrivals over one interval, as its students always do): its client CPU divided by
  its requests.

- ``steady``: benchmark 3 in a Locust worker (``steady_locustfile.py``: students who only
  work), the lateness of every heartbeat of its runs as the emulator recorded them.

    python benchmarks/bench_locust.py MODE URL [--students N] [--interval S] [--seconds T]
"""

from __future__ import annotations

import argparse
import io
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _bench import HERE, TOKEN, emit, quiet_sdk_logs

LOCUSTFILE = HERE.parent / "examples" / "load_test" / "locustfile.py"
STEADY_LOCUSTFILE = HERE / "steady_locustfile.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def measure_locust(
    url: str, students: int, interval: float, seconds: float, locustfile: Path = LOCUSTFILE
) -> dict[str, Any]:
    port = str(_free_port())
    with tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch, "report.json")
        locust = [sys.executable, "-m", "locust", "-f", str(locustfile)]
        master = subprocess.Popen(
            [
                *locust,
                "--headless",
                "--master",
                "--master-bind-host",
                "127.0.0.1",
                "--master-bind-port",
                port,
                "--expect-workers",
                "1",
                "--users",
                str(students),
                "--spawn-rate",
                f"{students / interval:.3f}",
                "--run-time",
                f"{seconds:.0f}s",
                "--host",
                url,
                "--timeback-token",
                TOKEN,
                "--timeback-interval",
                str(interval),
                "--timeback-report",
                str(report_path),
                "--only-summary",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        worker = subprocess.Popen(
            [*locust, "--worker", "--master-port", port],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            out, _ = master.communicate(timeout=seconds + 180)
            worker.wait(timeout=180)  # its students leave once the master stops them
        finally:
            for process in (master, worker):
                if process.poll() is None:
                    process.kill()
                    process.wait()
        if master.returncode != 0:
            raise RuntimeError(f"locust failed ({master.returncode}):\n{out[-4000:]}")
        report = json.loads(report_path.read_text())
    (worker_report,) = report["workers"]
    sent = worker_report["heartbeats"]["sent"]
    return {
        "mode": "locust",
        "run_ids": [run["runId"] for run in report["runs"]],
        "cpu_s": worker_report["cpuSeconds"],
        "heartbeats": sent,
        "failed": worker_report["heartbeats"]["failed"],
        "exact": report["check"]["ok"],
    }


def measure_steady(url: str, students: int, interval: float, seconds: float) -> dict[str, Any]:
    """Benchmark 3 in a Locust worker: students who only work; the lateness of their
    heartbeats as the emulator recorded them."""
    import anyio
    from bench_punctuality import analyse, read_back

    result = measure_locust(url, students, interval, seconds, STEADY_LOCUSTFILE)
    runs = anyio.run(read_back, url.split("/api/", 1)[0], result["run_ids"])
    result.update(analyse(runs, round(interval * 1000)))
    result.update(mode="steady", client_cpu_share=result["cpu_s"] / seconds)
    return result


def measure_simulate(url: str, students: int, interval: float, seconds: float) -> dict[str, Any]:
    from timeback_client.tools._simulate import Simulation, simulate
    from timeback_client.tools.students import Behaviour

    quiet_sdk_logs()
    report = simulate(
        Simulation(
            students=students,
            minutes=seconds / 60,
            interval=interval,
            speed=1.0,
            server=url,
            token=TOKEN,
            seed=1,
            # Arrivals over one interval (simulate's least), as Locust's spawn rate makes them.
            behaviour=Behaviour(arrival_spread=0.0),
        ),
        progress_out=io.StringIO(),
    )
    return {
        "mode": "simulate",
        "cpu_s": report.client_cpu_s,
        "heartbeats": report.requests,
        "failed": report.requests - report.delivered,
        "exact": report.simulated_active_ms == report.flushed_active_ms,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["locust", "simulate", "steady"])
    parser.add_argument("url")
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=75.0)
    args = parser.parse_args()
    measure = {"locust": measure_locust, "simulate": measure_simulate, "steady": measure_steady}[
        args.mode
    ]
    result = measure(args.url, args.students, args.interval, args.seconds)
    result.pop("run_ids", None)
    result["cpu_per_heartbeat_ms"] = result["cpu_s"] * 1000 / max(1, result["heartbeats"])
    result.update(students=args.students, interval=args.interval, seconds=args.seconds)
    emit(result)


if __name__ == "__main__":
    main()
