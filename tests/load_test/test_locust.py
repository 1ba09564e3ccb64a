"""Load tests on Locust: real Locust processes against the emulator and the vendor's server.

Locust monkey-patches the process it runs in for gevent, so these tests never import
`timeback_client.locust`: they run ``locust`` in processes of its own, as a user does,
and read what it leaves behind: its exit status, its CSV statistics and
``--timeback-report``.
"""

from __future__ import annotations

import csv
import json
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from timeback_client.tools._emulator_process import EmulatorProcess
from vendor_kit import active_ms_by_run, sent_events, vendor_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXAMPLE = REPO / "examples" / "load_test" / "locustfile.py"
QUICK = HERE / "quick_students.py"
TOKEN = "tok-load"
EMAIL = "load@example.edu"


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    with EmulatorProcess({TOKEN: EMAIL}) as emulator:
        yield emulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _locust(*args: str) -> list[str]:
    return [sys.executable, "-m", "locust", *args]


def _options(host: str, tmp: Path, *, users: int, run_time: str, token: str = TOKEN) -> list[str]:
    return [
        "--headless",
        "--users",
        str(users),
        "--spawn-rate",
        str(users),
        "--run-time",
        run_time,
        "--host",
        host,
        *(("--timeback-token", token) if token else ()),
        "--timeback-interval",
        "1",
        "--timeback-report",
        str(tmp / "report.json"),
        "--csv",
        str(tmp / "stats"),
        "--only-summary",
    ]


def run_distributed(
    locustfile: Path, host: str, tmp: Path, *, users: int = 40, run_time: str = "10s"
) -> subprocess.CompletedProcess[str]:
    """A master and two workers on loopback, as the guide's command lines start them."""
    port = str(_free_port())
    master = subprocess.Popen(
        _locust(
            "-f",
            str(locustfile),
            "--master",
            "--master-bind-host",
            "127.0.0.1",
            "--master-bind-port",
            port,
            "--expect-workers",
            "2",
            *_options(host, tmp, users=users, run_time=run_time),
        ),
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    worker_args = _locust("-f", str(locustfile), "--worker", "--master-port", port)
    workers = [
        subprocess.Popen(
            worker_args, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    try:
        out, _ = master.communicate(timeout=120)
        logs = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
    return subprocess.CompletedProcess(master.args, master.returncode, out, "")


def run_local(
    locustfile: Path,
    host: str,
    tmp: Path,
    *,
    users: int = 6,
    run_time: str = "4s",
    token: str = TOKEN,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """One Locust process: the students and the statistics in one place."""
    options = _options(host, tmp, users=users, run_time=run_time, token=token)
    return subprocess.run(
        _locust("-f", str(locustfile), *options, *extra),
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report(tmp: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((tmp / "report.json").read_text())
    return loaded


def heartbeat_stats(tmp: Path) -> dict[str, str]:
    with (tmp / "stats_stats.csv").open(newline="") as file:
        rows = {row["Name"]: row for row in csv.DictReader(file)}
    return rows["heartbeat"]


def failures(tmp: Path) -> dict[str, int]:
    with (tmp / "stats_failures.csv").open(newline="") as file:
        return {row["Error"]: int(row["Occurrences"]) for row in csv.DictReader(file)}


def measured_by_run(found: dict[str, Any]) -> dict[str, int]:
    runs: dict[str, int] = defaultdict(int)
    for run in found["runs"]:
        runs[run["runId"]] += run["activeMs"]
    return dict(runs)


@pytest.mark.e2e
def test_a_master_and_two_workers_account_for_every_millisecond(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    done = run_distributed(QUICK, emulator.base_url, tmp_path)

    assert done.returncode == 0, done.stdout[-4000:]
    assert "timeback: OK: every run's measured active time equals the emulator's" in done.stdout
    found = report(tmp_path)
    recorded = {run["runId"]: run for run in emulator.get_json("/_emulator/runs")["runs"]}
    measured = measured_by_run(found)
    assert measured, "no run was reported"
    assert measured == {run_id: run["activeMs"] for run_id, run in recorded.items()}
    # Each window the students saw accepted is one the emulator keeps (a retried window
    # that the emulator had already stored is accepted as a duplicate, and kept once).
    beats = found["totals"]["heartbeats"]
    assert sum(r["windows"] for r in found["runs"]) == beats["duplicates"] + sum(
        len(run["windows"]) for run in recorded.values()
    )
    # Both workers ran students, and the plan ran its course: students left and came
    # back to their saved runs, and the server recorded completions.
    assert len(found["workers"]) == 2
    assert all(w["students"] > 0 and w["runs"] > 0 for w in found["workers"])
    assert {run["worker"] for run in found["runs"]} == {w["worker"] for w in found["workers"]}
    assert sum(r["sessions"] for r in found["runs"]) > len(found["runs"])
    assert found["totals"]["completions"] > 0
    assert sum(run["completed"] for run in recorded.values()) == found["totals"]["completions"]
    # Locust's statistics count every heartbeat, and none failed.
    stats = heartbeat_stats(tmp_path)
    assert int(stats["Request Count"]) == beats["sent"] == beats["accepted"] + beats["duplicates"]
    assert beats["accepted"] > 0
    assert int(stats["Failure Count"]) == beats["failed"] == 0
    assert emulator.get_json("/_emulator/problems")["problems"] == []


@pytest.mark.e2e
def test_failed_heartbeats_are_named_by_status_and_code(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    httpx.post(
        emulator.origin + "/_emulator/faults",
        json={"count": 3, "status": 502, "code": "INTERNAL_ERROR"},
    ).raise_for_status()
    done = run_local(EXAMPLE, emulator.base_url, tmp_path)

    # The SDK retried the three windows, which then arrived: the time adds up, yet Locust
    # fails the run for its failed requests, as it does for any.
    assert "timeback: OK:" in done.stdout, done.stderr[-4000:]
    assert done.returncode == 1
    assert failures(tmp_path) == {"HeartbeatFailed('502 INTERNAL_ERROR')": 3}
    beats = report(tmp_path)["totals"]["heartbeats"]
    assert beats["failed"] == 3
    assert beats["sent"] == beats["accepted"] + 3 == int(heartbeat_stats(tmp_path)["Request Count"])


@pytest.mark.e2e
def test_time_the_backend_did_not_record_fails_the_test(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    # A proxy that answers 204 and drops the window: the students count time that the
    # backend never saw.
    httpx.post(emulator.origin + "/_emulator/faults", json={"count": 2, "status": 204})
    done = run_local(EXAMPLE, emulator.base_url, tmp_path)

    assert done.returncode == 1, done.stdout[-4000:]
    assert "timeback: MISMATCH: 2 of 6 runs differ from the emulator" in done.stdout
    check = report(tmp_path)["check"]
    assert check["ok"] is False
    assert len(check["mismatches"]) == 2
    assert all(m["measuredMs"] > m["recordedMs"] for m in check["mismatches"])


@pytest.mark.e2e
@pytest.mark.parametrize(
    "role", [[], ["--master", "--expect-workers", "1"]], ids=["local", "master"]
)
def test_bad_options_are_refused_at_start(role: list[str], tmp_path: Path) -> None:
    # Nothing listens on the host: the options are refused before any student would try.
    done = run_local(
        EXAMPLE,
        "http://127.0.0.1:9/api/timeback",
        tmp_path,
        run_time="30s",
        token="",
        extra=[*role, "--timeback-interval", "0", "--timeback-report", str(tmp_path / "no/r.json")],
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "ERROR/timeback_client: --timeback-token: give the bearer token" in done.stderr
    assert "--timeback-interval: 0 is not a positive number of seconds" in done.stderr
    assert f"--timeback-report: the directory {tmp_path / 'no'} does not exist" in done.stderr
    assert "Run time limit set" not in done.stderr  # no test started


@pytest.mark.e2e
def test_a_test_where_no_student_started_is_not_ok(tmp_path: Path) -> None:
    # A user class with its own credentials needs no --timeback-token; here every
    # student's login fails, so no run starts.
    locustfile = tmp_path / "refused.py"
    locustfile.write_text(
        "from timeback_client.locust import StudentUser\n\n\n"
        "class Refused(StudentUser):\n"
        "    def credentials(self):\n"
        "        raise RuntimeError('login refused')\n",
        encoding="utf-8",
    )
    done = run_local(
        locustfile, "http://127.0.0.1:9/api/timeback", tmp_path, users=2, run_time="1s", token=""
    )

    assert done.returncode == 1, done.stderr[-4000:]
    assert "timeback: NO RUNS: no student started a run" in done.stdout
    assert "timeback: OK" not in done.stdout
    assert report(tmp_path)["check"]["ok"] is False


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("token", "mount", "named"),
    [
        (
            "tok-nobody",
            "/api/timeback",
            "401 UNAUTHORIZED x{n} (the backend knows no student by this token: "
            "check --timeback-token)",
        ),
        (
            TOKEN,
            "",
            "404 error x{n} (is --host the mount of the Timeback server SDK, "
            "e.g. .../api/timeback?)",
        ),
    ],
    ids=["wrong-token", "no-mount"],
)
def test_a_mismatch_names_the_heartbeat_failures_and_their_fix(
    emulator: EmulatorProcess, tmp_path: Path, token: str, mount: str, named: str
) -> None:
    done = run_local(
        EXAMPLE, emulator.origin + mount, tmp_path, users=3, run_time="2s", token=token
    )

    assert done.returncode == 1, done.stderr[-4000:]
    found = report(tmp_path)
    failed = found["totals"]["heartbeats"]["failed"]
    assert failed > 0
    assert found["failures"] == {named.split(" x")[0]: failed}
    verdict = next(line for line in done.stdout.splitlines() if "MISMATCH" in line)
    assert verdict.endswith("; heartbeat failures: " + named.format(n=failed)), verdict


# -- the vendor's own server ------------------------------------------------------------------

#: The built-in lessons' courses, synced (a staging id each) on the vendor's side.
VENDOR_COURSES: Sequence[dict[str, Any]] = (
    {"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}},
    {"subject": "Reading", "grade": 4, "ids": {"staging": "course-reading-4"}},
    {"subject": "Science", "grade": 6, "ids": {"staging": "course-science-6"}},
    {"subject": "Other", "courseCode": "CS-101", "ids": {"staging": "course-cs-101"}},
)


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The vendor's server SDK behind FastAPI: its origin."""
    config = {"name": "Load", "sensor": "https://sensor.load.example", "courses": VENDOR_COURSES}
    with vendor_server(tmp_path_factory.mktemp("vendor"), config, {TOKEN: EMAIL}) as origin:
        yield origin


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="the vendor's venv comes from a bash script")
def test_against_the_vendors_server_every_run_agrees(vendor: str, tmp_path: Path) -> None:
    done = run_distributed(EXAMPLE, vendor + "/api/timeback", tmp_path)

    assert done.returncode == 0, done.stdout[-4000:]
    assert "exactness not checked" in done.stdout  # the vendor's server is no emulator
    found = report(tmp_path)
    measured = measured_by_run(found)
    recorded = active_ms_by_run(sent_events(vendor))
    assert measured
    # A run the vendor sent no event for has 0 ms there (a session that ended at once).
    runs = measured.keys() | recorded.keys()
    assert {r: recorded.get(r, 0) for r in runs} == {r: measured.get(r, 0) for r in runs}
    assert len(found["workers"]) == 2
    beats = found["totals"]["heartbeats"]
    assert int(heartbeat_stats(tmp_path)["Request Count"]) == beats["sent"] > 0
    assert beats["sent"] == beats["accepted"] + beats["duplicates"]
    assert beats["failed"] == 0


# -- without a test run -----------------------------------------------------------------------

SECRETS = """
from timeback_client.locust import Credentials, HeartbeatFailed

print(repr(Credentials.bearer("s3cret-token")))
print(repr(Credentials.cookie("session", "s3cret-cookie")))
print(HeartbeatFailed(409, "USER_RESOLUTION_FAILED"))
print(HeartbeatFailed(None, "ConnectTimeout"))
"""


def test_credentials_never_show_their_values_and_failures_name_status_and_code() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SECRETS], capture_output=True, text=True, timeout=60, check=True
    )
    assert "s3cret" not in done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "Credentials(headers=['Authorization'], cookies=[])",
        "Credentials(headers=[], cookies=['session'])",
        "409 USER_RESOLUTION_FAILED",
        "no answer: ConnectTimeout",
    ]
