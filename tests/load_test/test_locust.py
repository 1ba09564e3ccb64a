"""Load tests on Locust: real Locust processes against the emulator and the vendor's server.

Locust monkey-patches the process it runs in for gevent, so these tests never import
`timeback_client.locust`: they run ``locust`` in processes of its own, as a user does,
and read what it leaves behind: its exit status, its CSV statistics and
``--timeback-report``.
"""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from network_kit import TlsFiles, serve_tls_uvicorn
from timeback_client.emulator import Emulator
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
    locustfile: Path,
    host: str,
    tmp: Path,
    *,
    users: int = 40,
    run_time: str = "10s",
    token: str = TOKEN,
    extra: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """A master and two workers on loopback, as the guide's command lines start them.

    Its stdout is the master's; its stderr, the master's log and then the workers'.
    """
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
            *_options(host, tmp, users=users, run_time=run_time, token=token),
            *extra,
        ),
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
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
        out, err = master.communicate(timeout=120)
        logs = [worker.communicate(timeout=30)[0] for worker in workers]
    finally:
        for process in (master, *workers):
            if process.poll() is None:
                process.kill()
                process.wait()
    for log in logs:
        assert "Traceback" not in log, log[-3000:]
    return subprocess.CompletedProcess(master.args, master.returncode, out, err + "".join(logs))


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

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
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
    # ... and the verdict, Locust's last words, names what the retries recovered from.
    assert (
        done.stdout.rstrip()
        .splitlines()[-1]
        .endswith("; heartbeat failures the SDK's retries recovered from: 502 INTERNAL_ERROR x3")
    ), done.stdout[-2000:]
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
    # One token for every student: the summary says they are one user to the backend.
    assert (
        "timeback: students: all 6 students share one identity (--timeback-token): to the "
        "backend they are one user; give --timeback-tokens FILE, one student a line"
    ) in done.stdout
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
    assert "ERROR/timeback_client: --timeback-tokens: give the deployment's students" in done.stderr
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

#: The backend's students: token -> email (one more than the test gives Locust: the
#: vendor's server knows students the test never logs in as).
VENDOR_STUDENTS = {f"tok-vendor-{n}": f"student{n}@school.example" for n in range(9)}
#: The backend's own courses; Science 4 was never synced, so no heartbeat may name it.
VENDOR_CONFIG: dict[str, Any] = {
    "name": "Load",
    "sensor": "https://sensor.load.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}},
        {"subject": "Reading", "grade": 3, "ids": {"staging": "course-reading-3"}},
        {"subject": "Other", "courseCode": "CS-101", "ids": {"staging": "course-cs-101"}},
        {"subject": "Science", "grade": 4},
    ],
}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The vendor's server SDK behind FastAPI: its origin and its timeback.config.json."""
    workdir = tmp_path_factory.mktemp("vendor")
    with vendor_server(workdir, VENDOR_CONFIG, VENDOR_STUDENTS) as origin:
        yield origin, workdir / "timeback.config.json"


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="the vendor's venv comes from a bash script")
def test_against_the_vendors_server_with_its_courses_and_students_every_run_agrees(
    vendor: tuple[str, Path], tmp_path: Path
) -> None:
    origin, config = vendor
    tokens = sorted(VENDOR_STUDENTS)[:8]
    roster = tmp_path / "students.txt"
    roster.write_text("# the deployment's students\n" + "\n".join(tokens) + "\n")
    done = run_distributed(
        QUICK,
        origin + "/api/timeback",
        tmp_path,
        users=16,
        token="",
        extra=["--timeback-tokens", str(roster), "--timeback-courses", str(config)],
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    # The course never synced is named once, at the start, by the master.
    assert done.stderr.count("left out of") == 1
    assert "left out of " + str(config) + ": Science grade 4: not synced (no ids)" in done.stderr
    assert "exactness not checked" in done.stdout  # the vendor's server is no emulator
    found = report(tmp_path)
    measured = measured_by_run(found)
    events = sent_events(origin)
    recorded = active_ms_by_run(events)
    assert measured
    # A run the vendor sent no event for has 0 ms there (a session that ended at once).
    runs = measured.keys() | recorded.keys()
    assert {r: recorded.get(r, 0) for r in runs} == {r: measured.get(r, 0) for r in runs}
    # Every student of the file, and only those, reached the backend as itself.
    actors = {json.dumps(event["actor"], sort_keys=True) for event in events}
    assert len(actors) == 8
    assert found["students"]["count"] == 8
    assert found["students"]["note"] == (
        f"8 identities from {roster} for 16 students, round-robin: some students share one"
    )
    assert found["students"]["courses"]["leftOut"] == ["Science grade 4: not synced (no ids)"]
    assert "timeback: students: 8 identities from" in done.stdout
    assert len(found["workers"]) == 2
    assert all(w["students"] > 0 and w["runs"] > 0 for w in found["workers"])
    beats = found["totals"]["heartbeats"]
    assert int(heartbeat_stats(tmp_path)["Request Count"]) == beats["sent"] > 0
    assert beats["sent"] == beats["accepted"] + beats["duplicates"]
    assert beats["failed"] == 0 == int(heartbeat_stats(tmp_path)["Failure Count"])
    # No credential in anything Locust or the students left behind.
    left_behind = [done.stdout, done.stderr]
    left_behind += [path.read_text() for path in tmp_path.iterdir() if path != roster]
    assert not [t for t in tokens if any(t in text for text in left_behind)]
    # The verdict is the last thing the master printed.
    assert done.stdout.rstrip().splitlines()[-1].startswith("timeback: exactness not checked")


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


BRIDGE = """
from gevent import monkey

monkey.patch_all()

import asyncio
import socket

import httpcore

from timeback_client.locust._bridge import _Loop, _ReadableBackend


async def answers(backend):
    with socket.create_server(("127.0.0.1", 0)) as server:
        stream = await backend.connect_tcp("127.0.0.1", server.getsockname()[1])
        peer, _ = server.accept()
        seen = [stream.get_extra_info("is_readable")]  # open and quiet
        peer.sendall(b"x")
        await asyncio.sleep(0.05)
        seen.append(stream.get_extra_info("is_readable"))  # a byte waits
        await stream.read(1)
        peer.close()
        await asyncio.sleep(0.05)
        seen.append(stream.get_extra_info("is_readable"))  # the server hung up
        await stream.aclose()
        seen.append(stream.get_extra_info("is_readable"))  # closed here
        return seen


async def look_up():
    found = await asyncio.get_running_loop().getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    return found == socket.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)


async def connect(host):
    # A connection's socket class, an echo through it, and a refusal once closed.
    loop = asyncio.get_running_loop()
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        reader, writer = await asyncio.open_connection(host, port)
        peer, _ = server.accept()
        kind = type(writer.get_extra_info("socket")._sock)
        writer.write(b"ping")
        echo = peer.recv(4)
        peer.sendall(echo)
        seen = [kind is monkey.get_original("socket", "socket"), await reader.readexactly(4)]
        writer.close()
        peer.close()
    try:
        await loop.create_connection(asyncio.Protocol, host, port)
    except ConnectionRefusedError:
        seen.append("refused")
    return seen


with asyncio.Runner(loop_factory=_Loop) as runner:
    print(runner.run(answers(httpcore.AnyIOBackend())))
    print(runner.run(answers(_ReadableBackend())))
    print(runner.run(look_up()))
    print(runner.run(connect("127.0.0.1")))
    print(runner.run(connect("localhost")))
"""


def test_the_sdk_threads_loop_looks_up_names_and_sees_hang_ups_as_httpcore_does() -> None:
    """The SDK thread's loop (epoll, name lookups in real threads, sockets of the class
    gevent saved) and its pool's check for a dropped connection (the unpatched poll)
    answer as asyncio and httpcore do."""
    done = subprocess.run(
        [sys.executable, "-c", BRIDGE], capture_output=True, text=True, timeout=60, check=True
    )
    assert (
        done.stdout.splitlines()
        == ["[False, True, True, True]"] * 2 + ["True"] + ["[True, b'ping', 'refused']"] * 2
    )


WORKER_POOL = """
from gevent import monkey

monkey.patch_all()

import asyncio
import sys

import httpx

from timeback_client.locust import _bridge

warned = []  # a fallback to httpx's own pool would say so here
_bridge.logger.warning = lambda message, *args: warned.append(message % args)


async def get(url):
    async with httpx.AsyncClient(transport=_bridge.pooled_transport()) as http:
        try:
            response = await http.get(url)
        except httpx.ConnectError as exc:
            return "refused: " + ("CERTIFICATE_VERIFY_FAILED" in str(exc)) * "not verified"
        return response.status_code


with asyncio.Runner(loop_factory=_bridge._Loop) as runner:
    print(runner.run(get(sys.argv[1])), warned)
"""


def test_a_workers_pool_verifies_servers_as_the_sdks_own_pool_does(tmp_path: Path) -> None:
    """The worker's pool (checked with the unpatched poll) takes the SDK's TLS context:
    ``SSL_CERT_FILE`` names the CA that verifies an HTTPS backend, and without it the
    same server is refused."""
    tls = TlsFiles(tmp_path)
    with (
        Emulator(students={TOKEN: EMAIL}) as emulator,
        serve_tls_uvicorn(emulator.app, tls, mount=emulator.mount) as url,
    ):
        seen = []
        for cert_file in (str(tls.ca_pem), None):
            env = {
                k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")
            }
            if cert_file is not None:
                env["SSL_CERT_FILE"] = cert_file
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WORKER_POOL,
                    url.removesuffix(emulator.mount) + "/_emulator/openapi.json",
                ],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=env,
            )
            seen.append(done.stdout.strip())
    assert seen == ["200 []", "refused: not verified []"]


# -- credentials stay out of Locust's web UI ----------------------------------------------

ARRIVALS = """
from gevent import monkey

monkey.patch_all()

import http.server
import json
import threading

import gevent
from locust.env import Environment

from timeback_client.locust._user import students_of

asked = []


class Emulatorish(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        asked.append(self.path)
        gevent.sleep(0.3)  # a slow answer: more students arrive meanwhile
        body = json.dumps({"faults": []}).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Emulatorish)
threading.Thread(target=server.serve_forever, daemon=True).start()
students = students_of(Environment())
url = f"http://127.0.0.1:{server.server_port}/api/timeback"
arriving = [gevent.spawn(students.offers_record, url) for _ in range(20)]
gevent.joinall(arriving, timeout=30)
later = students.offers_record(url)
print([student.value for student in arriving].count(True), later, asked)
students.stop_sdk()
"""


def test_students_arriving_together_ask_the_backend_once_whether_it_records() -> None:
    """Whether the backend is the emulator (so students may complete lessons through its
    ``record()``) is asked once per origin, however many students arrive meanwhile."""
    done = subprocess.run(
        [sys.executable, "-c", ARRIVALS], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.splitlines() == ["20 True ['/_emulator/faults']"], done.stderr[-3000:]


DEFAULTS = """
from gevent import monkey

monkey.patch_all()

from locust import argument_parser

from timeback_client.locust._options import remember_locust_defaults

parsed = argument_parser.default_args_dict()
built = []
making = argument_parser.get_empty_argument_parser
argument_parser.get_empty_argument_parser = lambda: built.append(1) or making()
remember_locust_defaults()
remember_locust_defaults()  # idempotent
once = len(built)
names = [argument_parser.default_args_dict() for _ in range(70)]
names[0]["mutated"] = True
print(once, len(built), all(found == parsed for found in names[1:]), "mutated" in parsed)
"""


def test_a_worker_parses_locusts_own_options_once_not_per_spawn_message_option() -> None:
    """A worker asks ``default_args_dict()`` once per option of every spawn message
    (Locust's runner); once remembered, those calls build no parser and answer as the
    first parse did, each with a dict of its own."""
    done = subprocess.run(
        [sys.executable, "-c", DEFAULTS], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.split() == ["1", "1", "True", "False"], done.stderr[-3000:]


SECRET_TOKEN = "s3cret-token-of-the-ui-test"
SECRET_COOKIE = "s3cret-cookie-of-the-ui-test"
TWO_KINDS = f"""
from timeback_client.locust import Credentials, StudentUser


class FromTheCommandLine(StudentUser):
    pass


class FromALogin(StudentUser):
    def credentials(self):
        return Credentials.cookie("session", {SECRET_COOKIE!r})
"""
#: Every route of Locust's web UI that answers a GET.
UI_ROUTES = (
    "/",
    "/stats/requests",
    "/stats/report",
    "/stats/requests/csv",
    "/stats/failures/csv",
    "/exceptions",
    "/exceptions/csv",
    "/tasks",
    "/logs",
    "/worker-count",
)


@pytest.mark.e2e
def test_no_credential_reaches_the_web_ui_logs_or_files(tmp_path: Path) -> None:
    locustfile = tmp_path / "two_kinds.py"
    locustfile.write_text(TWO_KINDS, encoding="utf-8")
    web_port, master_port = _free_port(), _free_port()
    with EmulatorProcess({SECRET_TOKEN: EMAIL}) as emulator:
        master = subprocess.Popen(
            _locust(
                "-f", str(locustfile), "--master", "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(master_port), "--expect-workers", "1",
                "--web-host", "127.0.0.1", "--web-port", str(web_port),
                "--autostart", "--autoquit", "0", "--users", "4", "--spawn-rate", "4",
                "--run-time", "6s", "--host", emulator.base_url,
                "--timeback-token", SECRET_TOKEN, "--timeback-interval", "1",
                "--timeback-report", str(tmp_path / "report.json"), "--csv", str(tmp_path / "s"),
            ),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        worker = subprocess.Popen(
            _locust("-f", str(locustfile), "--worker", "--master-port", str(master_port)),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            pages = _read_ui_while_students_run(f"http://127.0.0.1:{web_port}")
            out, err = master.communicate(timeout=90)
            log = worker.communicate(timeout=30)[0]
        finally:
            for process in (master, worker):
                if process.poll() is None:
                    process.kill()
                    process.wait()
    assert set(pages) == set(UI_ROUTES)
    assert '"timeback_interval"' in pages["/"]  # the UI's options are there, but not these
    assert "timeback_token" not in pages["/"]
    files = {path.name: path.read_text() for path in tmp_path.iterdir() if path != locustfile}
    assert "report.json" in files
    assert {"s_stats.csv", "s_failures.csv"} <= files.keys()
    everything = {**pages, "stdout": out, "stderr": err, "worker": log, **files}
    leaks = [
        where for where, text in everything.items() if SECRET_TOKEN in text or SECRET_COOKIE in text
    ]
    assert leaks == []


def _read_ui_while_students_run(ui: str) -> dict[str, str]:
    """Each UI route's text, read once heartbeats of both kinds of student have arrived."""
    with httpx.Client(base_url=ui, timeout=10) as client:
        for _ in range(300):
            try:
                stats = client.get("/stats/requests").json()
            except httpx.HTTPError:
                stats = {}
            if any(row["name"] == "heartbeat" for row in stats.get("stats", [])):
                break
            time.sleep(0.1)
        else:
            pytest.fail("no heartbeat reached Locust's statistics within 30 s")
        return {route: client.get(route).text for route in UI_ROUTES}


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="Locust forks only on POSIX")
def test_forked_workers_each_run_an_sdk_of_their_own_and_every_run_is_exact(
    emulator: EmulatorProcess, tmp_path: Path
) -> None:
    done = run_local(
        QUICK, emulator.base_url, tmp_path, users=20, run_time="6s", extra=["--processes", "2"]
    )

    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "Traceback" not in done.stderr, done.stderr[-4000:]
    assert "timeback: OK: every run's measured active time equals the emulator's" in done.stdout
    found = report(tmp_path)
    recorded = emulator.get_json("/_emulator/runs")["runs"]
    assert measured_by_run(found) == {run["runId"]: run["activeMs"] for run in recorded}
    # Two forked processes, each of which ran students through an SDK of its own.
    workers = found["workers"]
    assert len(workers) == 2
    assert all(w["students"] > 0 and w["runs"] > 0 for w in workers)
    assert len({w["pid"] for w in workers}) == 2
    beats = found["totals"]["heartbeats"]
    assert beats["failed"] == 0 < beats["accepted"]
