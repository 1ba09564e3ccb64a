"""9-10. The emulator as a load target: its heartbeat throughput, and its inspection cost.

Three modes, each printing one JSON line:

- ``history``: builds a load run's history in an in-memory emulator (N runs of 25
  fifteen-second windows from 4 runs per student, a resume in every third run, a resent
  window in every seventh, a completion per run through ``record()``, a few with time as
  well), then times ``record()``, ``runs()``, ``problems()`` and ``GET /_emulator/runs``
  over it. Whichever ``timeback_client`` is first on ``PYTHONPATH`` is measured, so the
  same script measures an older checkout as the baseline; ``digest`` fingerprints what
  the calls returned, so two checkouts can be shown to agree.
- ``load``: a load generator for any heartbeat endpoint. C keep-alive connections, each a
  student sending its run's windows back to back, hand-written HTTP/1.1 over anyio
  sockets so that the generator costs far less than any server it drives; W warm-up
  heartbeats, then N measured. With ``--server-pid`` it also reads the server's CPU time
  (``/proc/PID/stat``) over the measured stretch.
- ``serve``: starts a server the way the comparison needs it (``emulator``: the
  ``timeback-client emulator`` command; ``vendor``: the vendor's server SDK behind FastAPI,
  ``tests/emulator/parity/vendor_server.py`` in the parity virtualenv), for a manual run.

    python benchmarks/bench_emulator.py history [--runs 1000] [--record-calls 5]
    python benchmarks/bench_emulator.py load URL [--concurrency 50] [--count 5000]
        [--warmup 500] [--server-pid PID]
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
from _bench import EMAIL, HERE, TOKEN, WALL_START_MS, emit, heartbeat_body, percentile

WINDOWS_PER_RUN = 25
RUNS_PER_STUDENT = 4
WINDOW_MS = 15_000
LESSONS = [
    {"id": f"lesson-{n}", "name": f"Lesson {n}", "course": {"subject": "Math", "grade": 3}}
    for n in range(4)
]
VENDOR_SERVER = HERE.parent / "tests" / "emulator" / "parity" / "vendor_server.py"
VENDOR_CONFIG = {
    "name": "Benchmark App",
    "sensor": "https://sensor.benchmark.example",
    "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}}],
}
_STARTUP_TIMEOUT_S = 60.0

# ── history: record(), runs(), problems() ─────────────────────────────────────────────


class _Ticking:
    """A clock one second further on at each reading: every record() gets its own end."""

    def __init__(self, hour: int) -> None:
        self._now = datetime(2026, 11, 25, hour, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self._now += timedelta(seconds=1)
        return self._now


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _plan(runs: int) -> list[dict[str, Any]]:
    """The runs of the history: who, which lesson, how many windows, where it resumes."""
    plan = []
    for index in range(runs):
        timed = index % 25 == 24  # record() with time as well: double counting, on purpose
        plan.append(
            {
                "run_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"bench-run-{index}")),
                "email": f"student-{index // RUNS_PER_STUDENT}@example.edu",
                "token": f"token-{index // RUNS_PER_STUDENT}",
                "lesson": LESSONS[index % len(LESSONS)],
                "windows": WINDOWS_PER_RUN - 1 if timed else WINDOWS_PER_RUN,
                "resume_after": 12 if index % 3 == 0 else None,
                "resend": index % 7 == 0,
                "timed": timed,
                "start_ms": WALL_START_MS + index * 60_000,
            }
        )
    return plan


def _window(run: dict[str, Any], k: int) -> dict[str, Any]:
    start = run["start_ms"] + k * WINDOW_MS
    if run["resume_after"] is not None and k >= run["resume_after"]:
        start += 600_000  # ten minutes away, then the saved runId again
    return {
        **run["lesson"],
        "runId": run["run_id"],
        "startedAt": _iso(start),
        "endedAt": _iso(start + WINDOW_MS),
        "elapsedMs": WINDOW_MS,
        "pausedMs": 0,
    }


def _record_input(run: dict[str, Any], *, with_time: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "user": {"email": run["email"]},
        "activity": run["lesson"],
        "metrics": {"xp_earned": 10, "total_questions": 10, "correct_questions": 8},
        "run_id": run["run_id"],
    }
    if with_time:
        end = run["start_ms"] + run["windows"] * WINDOW_MS
        body["time"] = {
            "started_at": _iso(run["start_ms"]),
            "ended_at": _iso(end),
            "active_ms": run["windows"] * WINDOW_MS,
            "inactive_ms": 0,
        }
    return body


async def _build(emulator: Any, plan: list[dict[str, Any]]) -> int:
    """Send every run's windows, interleaved as a load run sends them; then complete."""
    duplicates = 0
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator" + emulator.mount
    ) as client:
        for k in range(WINDOWS_PER_RUN):
            for run in plan:
                if k >= run["windows"]:
                    continue
                headers = {"Authorization": f"Bearer {run['token']}"}
                body = _window(run, k)
                response = await client.post("/activity/heartbeat", json=body, headers=headers)
                assert response.status_code == 204, response.text
                if run["resend"] and k == 5:
                    again = await client.post("/activity/heartbeat", json=body, headers=headers)
                    assert again.json() == {"duplicate": True}, again.text
                    duplicates += 1
    for run in plan:
        emulator.record(_record_input(run, with_time=run["timed"]))
    return duplicates


def _digest(*parts: Any) -> str:
    """A fingerprint of what the calls returned."""
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _runs_view(runs: Any) -> list[Any]:
    """The runs as served, each event by its seq, kind and start (Caliper ids are random)."""
    return [
        {
            **run.to_json(),
            "events": [[event.seq, event.kind, event.started_at] for event in run.events],
        }
        for run in runs
    ]


def _runs_view_of_json(runs: list[dict[str, Any]]) -> list[Any]:
    """``_runs_view`` of the runs as ``GET /_emulator/runs`` served them."""
    return [
        {
            **run,
            "events": [
                [event["seq"], event["kind"], event["startedAt"]] for event in run["events"]
            ],
        }
        for run in runs
    ]


async def _get_runs(emulator: Any, into: list[bytes]) -> None:
    """The body of ``GET /_emulator/runs``, through the emulator's in-process transport.

    Handed back through ``into``, not returned: when ``asyncio.run()`` restores the SIGINT
    handler it formats the main task, result and all, and the full ``repr()`` of 40 MB
    would be timed as well.
    """
    async with httpx.AsyncClient(transport=emulator.transport(), base_url="http://e") as http:
        response = await http.get("/_emulator/runs")
        response.raise_for_status()
        into.append(response.content)


def _timed(call: Any) -> tuple[Any, float]:
    """``call()`` and its duration, from a heap just collected."""
    gc.collect()
    t0 = time.perf_counter()
    result = call()
    return result, time.perf_counter() - t0


def build(db: Path, runs: int) -> dict[str, Any]:
    """Write the history of ``runs`` runs into a fresh SQLite file."""
    from timeback_client.emulator import Emulator

    plan = _plan(runs)
    students = {run["token"]: run["email"] for run in plan}
    db.unlink(missing_ok=True)
    with Emulator(students=students, db=db, clock=_Ticking(hour=9)) as emulator:
        started = time.perf_counter()
        duplicates = anyio.run(_build, emulator, plan)
        return {
            "runs": runs,
            "events": len(emulator.events()),
            "duplicates": duplicates,
            "build_s": time.perf_counter() - started,
        }


def history(db: Path, runs: int, record_calls: int) -> dict[str, Any]:
    """Time ``record()``, ``runs()`` and ``problems()`` over a copy of a built history."""
    import timeback_client
    from timeback_client.emulator import Emulator

    plan = _plan(runs)
    with tempfile.TemporaryDirectory() as workdir:
        copy = Path(workdir) / "history.sqlite3"
        copy.write_bytes(db.read_bytes())
        with Emulator(db=copy, clock=_Ticking(hour=12)) as emulator:
            record_s: list[float] = []
            attempts: list[int] = []
            for _ in range(record_calls):
                # A new attempt of the first student's first lesson: numbering it looks
                # through that student's completions among every event stored.
                t0 = time.perf_counter()
                (completion,) = emulator.record(_record_input(plan[0], with_time=False))
                record_s.append(time.perf_counter() - t0)
                attempts.append(completion.caliper["generated"]["attempt"])
            all_runs, runs_s = _timed(emulator.runs)
            runs_view = _runs_view(all_runs)
            del all_runs  # each call starts from the same heap
            problems, problems_s = _timed(emulator.problems)
            found = [problem.to_json() for problem in problems]
            del problems
            # Once more without the cyclic garbage collector: what the calls cost apart
            # from the full collections that a growing heap triggers while they run.
            gc.disable()
            try:
                _, runs_nogc_s = _timed(emulator.runs)
                _, problems_nogc_s = _timed(emulator.problems)
            finally:
                gc.enable()
            # The same runs over HTTP, as a load test's harness reads them at the end.
            bodies: list[bytes] = []
            _, http_runs_s = _timed(lambda: anyio.run(_get_runs, emulator, bodies))
            (served,) = bodies
            http_runs_bytes = len(served)
            if _runs_view_of_json(json.loads(served)["runs"]) != runs_view:
                raise SystemExit("GET /_emulator/runs differs from runs()")
            del served
            bodies.clear()
            events = len(emulator.events())
    return {
        "source": str(Path(timeback_client.__file__).parent.parent),
        "runs": len(runs_view),
        "events": events,
        "record_s": record_s,
        "attempts": attempts,
        "runs_s": runs_s,
        "problems_s": problems_s,
        "runs_nogc_s": runs_nogc_s,
        "problems_nogc_s": problems_nogc_s,
        "http_runs_s": http_runs_s,
        "http_runs_bytes": http_runs_bytes,
        "problems": len(found),
        # Which runs broke which rules: the same before and after problems() grouped the
        # windows of one mistake into one problem (which changed their number and shape).
        "digest": _digest(runs_view, sorted({(p["runId"], p["rule"]) for p in found}), attempts),
    }


# ── load: heartbeats per second ────────────────────────────────────────────────────────


class _Connection:
    """One keep-alive HTTP/1.1 connection: a request out, its answer's status back."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def request(self, data: bytes) -> int:
        await self._stream.send(data)
        while b"\r\n\r\n" not in self._buffer:
            self._buffer += await self._stream.receive()
        head, _, rest = self._buffer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
            elif name.strip().lower() == b"transfer-encoding":
                raise RuntimeError("chunked answers are not expected from a heartbeat route")
        while len(rest) < length:
            rest += await self._stream.receive()
        self._buffer = rest[length:]
        return int(head[9:12])

    async def aclose(self) -> None:
        await self._stream.aclose()


def _server_cpu_s(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(
    url: str, token: str, concurrency: int, count: int, warmup: int, server_pid: int | None
) -> dict[str, Any]:
    target = httpx.URL(url)
    path = target.raw_path.decode().rstrip("/") + "/activity/heartbeat"
    host, port = target.host, target.port or 80

    def request(run_id: str, k: int) -> bytes:
        body = heartbeat_body(run_id, WALL_START_MS + k * WINDOW_MS, WINDOW_MS)
        return (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    connections = [_Connection(await anyio.connect_tcp(host, port)) for _ in range(concurrency)]
    run_ids = [str(uuid.uuid4()) for _ in connections]
    sent = [0] * concurrency  # windows each connection's run has sent
    statuses: dict[int, int] = {}
    latencies: list[float] = []

    async def phase(total: int, timed: bool) -> None:
        remaining = total

        async def student(index: int) -> None:
            nonlocal remaining
            connection = connections[index]
            while remaining > 0:
                remaining -= 1
                data = request(run_ids[index], sent[index])
                sent[index] += 1
                t0 = time.perf_counter()
                status = await connection.request(data)
                if timed:
                    latencies.append(time.perf_counter() - t0)
                    statuses[status] = statuses.get(status, 0) + 1

        async with anyio.create_task_group() as tg:
            for index in range(concurrency):
                tg.start_soon(student, index)

    await phase(warmup, timed=False)
    server0, client0, wall0 = _server_cpu_s(server_pid), time.process_time(), time.perf_counter()
    await phase(count, timed=True)
    wall = time.perf_counter() - wall0
    server_cpu = _server_cpu_s(server_pid) - server0
    client_cpu = time.process_time() - client0
    for connection in connections:
        await connection.aclose()
    return {
        "requests": count,
        "concurrency": concurrency,
        "seconds": wall,
        "rps": count / wall,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p90_ms": percentile(latencies, 0.90) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "server_cpu_ms_per_request": server_cpu * 1000 / count if server_pid else None,
        "client_cpu_ms_per_request": client_cpu * 1000 / count,
    }


# ── the two servers ────────────────────────────────────────────────────────────────────


def parity_python() -> str | None:
    """The parity virtualenv's interpreter (the vendor's server SDK), if there is one."""
    configured = os.environ.get("TIMEBACK_PARITY_PYTHON")
    if configured:
        return configured if Path(configured).is_file() else None
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    python = cache / "timeback-client" / "parity-venv" / "bin" / "python"
    return str(python) if python.is_file() else None


def python_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@contextmanager
def serve(kind: str) -> Iterator[tuple[str, int]]:
    """Start a server in a process of its own; yield its mount URL and process id.

    ``emulator`` is ``timeback-client emulator`` itself, its output going to a file as it
    would to a terminal or a log; ``vendor`` is the vendor's server SDK.
    """
    with tempfile.TemporaryDirectory() as workdir:
        out_path = Path(workdir) / "out.log"
        with out_path.open("w") as out:
            if kind == "emulator":
                command = [sys.executable, "-m", "timeback_client.tools._cli", "emulator"]
                command += ["--port", "0", "--student", f"{TOKEN}={EMAIL}"]
            else:
                python = parity_python()
                if python is None:
                    raise RuntimeError("no parity virtualenv (.ci/parity-venv.sh)")
                config = Path(workdir) / "timeback.config.json"
                config.write_text(json.dumps(VENDOR_CONFIG))
                command = [python, str(VENDOR_SERVER), "--config", str(config)]
                command += ["--students", json.dumps({TOKEN: EMAIL})]
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        try:
            url = _wait_for_url(kind, out_path, process)
            yield url, process.pid
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for_url(kind: str, out_path: Path, process: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + _STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = out_path.read_text().splitlines()
        if lines and lines[0].strip():
            first = lines[0].strip()
            if kind == "emulator" and first.startswith("Timeback emulator: "):
                url = first.removeprefix("Timeback emulator: ")
                if _listening(url):
                    return url
            elif kind == "vendor" and first.isdigit():
                url = f"http://127.0.0.1:{first}/api/timeback"
                if _listening(url):
                    return url
        if process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the {kind} server did not start:\n{out_path.read_text()[-2000:]}")


def _listening(url: str) -> bool:
    try:
        httpx.get(url + "/activity/heartbeat", timeout=2.0)
    except httpx.HTTPError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    build_it = modes.add_parser("build")
    build_it.add_argument("db", type=Path)
    build_it.add_argument("--runs", type=int, default=1000)
    hist = modes.add_parser("history")
    hist.add_argument("db", type=Path)
    hist.add_argument("--runs", type=int, default=1000)
    hist.add_argument("--record-calls", type=int, default=5)
    load = modes.add_parser("load")
    load.add_argument("url")
    load.add_argument("--token", default=TOKEN)
    load.add_argument("--concurrency", type=int, default=50)
    load.add_argument("--count", type=int, default=5000)
    load.add_argument("--warmup", type=int, default=500)
    load.add_argument("--server-pid", type=int)
    serve_it = modes.add_parser("serve")
    serve_it.add_argument("kind", choices=["emulator", "vendor"])
    args = parser.parse_args()
    if args.mode == "build":
        emit(build(args.db, args.runs))
    elif args.mode == "history":
        emit(history(args.db, args.runs, args.record_calls))
    elif args.mode == "load":
        emit(
            anyio.run(
                _load,
                args.url,
                args.token,
                args.concurrency,
                args.count,
                args.warmup,
                args.server_pid,
            )
        )
    else:
        with serve(args.kind) as (url, pid):
            print(f"{url} (pid {pid}); Ctrl-C stops it", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
