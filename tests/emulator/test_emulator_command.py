"""``timeback-client emulator`` as a harness's backend: ``--config``, ``--students`` and
``--fail-on-problems``, the last in a real process stopped by a real signal."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from timeback_client.emulator._command import read_students
from timeback_client.emulator._validation import format_instant
from timeback_client.tools._cli import main

SECRET = "s3cr3t-token-value"
NOW = datetime.now(UTC).replace(microsecond=0)
CONFIG: dict[str, Any] = {
    "name": "Harness App",
    "sensor": "https://sensor.harness.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "m3"}},
        {"subject": "Science", "grade": 7},
        {"subject": "Reading", "grade": 5, "ids": {"production": "r5-p"}},
    ],
}


def test_a_students_file_takes_token_email_lines_comments_and_blanks(tmp_path: Path) -> None:
    path = tmp_path / "students.txt"
    path.write_text(
        "# the backend's students\n\ntok-ada=ada@example.edu\n  bG9uZw== = bob@example.edu \n",
        encoding="utf-8",
    )
    # A base64 token keeps its padding: the email follows the last '='.
    assert read_students(path) == {"tok-ada": "ada@example.edu", "bG9uZw==": "bob@example.edu"}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (SECRET, "no '='"),
        (f"{SECRET}=", "no email"),
        (f"{SECRET}=not-an-email", "no email after the last '=': what follows it has no '@'"),
        (f"{SECRET}=ada@example.edu # Ada", "a # comment takes a line of its own"),
        ("=ada@example.edu", "no token"),
        (f"{SECRET} more=ada@example.edu", "a space"),
        ("tok-first=bob@example.edu", "repeats the token of line 2"),
    ],
)
def test_a_bad_students_line_exits_2_naming_file_and_line_never_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, problem: str
) -> None:
    path = tmp_path / "students.txt"
    path.write_text(f"# students\ntok-first=ada@example.edu\n{line}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exited:
        main(["emulator", "--students", str(path)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert last.startswith("timeback-client emulator: error: argument --students")
    assert f"{path} line 3" in last
    assert problem in last
    assert SECRET not in err
    assert "tok-first" not in err


def test_a_token_in_both_student_options_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "students.txt"
    path.write_text(f"{SECRET}=ada@example.edu\n", encoding="utf-8")
    status = main(["emulator", "--students", str(path), "--student", f"{SECRET}=b@example.edu"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--students" in err
    assert SECRET not in err


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ('{"courses": [{"subject": "Math", "grade": "3"}]}', "courses[0].grade"),
        ('{"courses": [{"subject": "Math", "grade": 3}]}', "no effective sensor"),
        ('{"courses": [', "line 1"),
    ],
)
def test_a_config_the_vendor_would_not_start_with_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], config: str, named: str
) -> None:
    path = tmp_path / "timeback.config.json"
    path.write_text(config, encoding="utf-8")
    try:
        status = main(["emulator", "--port", "0", "--config", str(path)])
    except SystemExit as exited:
        status = int(str(exited.code))
    assert status == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("timeback-client emulator: error: argument --config")
    assert named in last


# ── a real process, stopped by a real signal ─────────────────────────────────────────


@contextmanager
def emulator_process(
    tmp_path: Path, *extra: str
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``timeback-client emulator --config --students ...``: the process, its origin, and
    what it announced before serving."""
    config = tmp_path / "timeback.config.json"
    config.write_text(json.dumps(CONFIG), encoding="utf-8")
    students = tmp_path / "students.txt"
    students.write_text(f"# harness\n{SECRET}=ada@example.edu\n", encoding="utf-8")
    command = [sys.executable, "-m", "timeback_client", "emulator", "--port", "0"]
    command += ["--config", str(config), "--students", str(students), *extra]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        first = process.stdout.readline() if ready else ""
        assert first.startswith("Timeback emulator: http://127.0.0.1:"), first
        url = first.split(": ", 1)[1].strip()
        announced = [first]
        while not announced[-1].startswith("  inspect:"):
            announced.append(process.stdout.readline())
        yield process, url.removesuffix("/api/timeback"), "".join(announced)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def beat(run_id: str, start: int, course: dict[str, Any]) -> dict[str, Any]:
    """A 15 s window starting ``start`` seconds from the test's start (a real instant: a
    completion recorded without a time is stamped with the emulator's real "now")."""
    begin = NOW + timedelta(seconds=start)
    return {
        "id": "lesson-1",
        "name": "Fractions",
        "course": course,
        "runId": run_id,
        "startedAt": format_instant(begin),
        "endedAt": format_instant(begin + timedelta(seconds=15)),
        "elapsedMs": 15000,
        "pausedMs": 0,
    }


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str, str]:
    process.send_signal(signum)
    out, err = process.communicate(timeout=30)
    return process.returncode, out, err


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigterm_after_a_run_with_a_problem_prints_it_and_exits_1(tmp_path: Path) -> None:
    with emulator_process(tmp_path, "--fail-on-problems") as (process, origin, announced):
        auth = {"Authorization": f"Bearer {SECRET}"}
        run_id = str(uuid.uuid4())
        math = {"subject": "Math", "grade": 3}
        with httpx.Client(base_url=origin, headers=auth, timeout=10) as client:
            url = "/api/timeback/activity/heartbeat"
            assert client.post(url, json=beat(run_id, -60, math)).status_code == 204
            # A reused runId: its two late windows are one problem.
            record = {
                "user": {"email": "ada@example.edu"},
                "activity": {"id": "lesson-1", "name": "Fractions", "course": math},
                "metrics": {"xp_earned": 1},
                "run_id": run_id,
            }
            assert client.post("/_emulator/record", json=record).status_code == 200
            assert client.post(url, json=beat(run_id, 600, math)).status_code == 204
            assert client.post(url, json=beat(run_id, 615, math)).status_code == 204
            # The config's answers, from the command line.
            never = client.post(
                url, json=beat(str(uuid.uuid4()), 0, {"subject": "Science", "grade": 7})
            )
            assert never.json()["error"]["code"] == "MISSING_SYNCED_COURSE_ID"
            unknown = client.post(
                url, json=beat(str(uuid.uuid4()), 0, {"subject": "Math", "grade": 4})
            )
            assert unknown.json()["error"]["code"] == "UNKNOWN_COURSE"
            nobody = client.post(
                url, json=beat(run_id, 45, math), headers={"Authorization": "Bearer x"}
            )
            assert nobody.status_code == 401
        status, out, err = stop(process, signal.SIGTERM)
    assert status == 1, out + err
    assert "1 problem(s) seen" in out
    assert f"- heartbeat-after-completion on run {run_id} (2 window(s))" in out
    assert "fix: Start a new activity" in out
    assert "3 heartbeats refused (time the app lost):" in out
    assert "  student ada@example.edu\n" in announced
    assert SECRET not in announced + out + err
    assert "Traceback" not in err


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_sigint_after_a_clean_run_exits_0(tmp_path: Path) -> None:
    production = ("--fail-on-problems", "--environment", "production")
    with emulator_process(tmp_path, *production) as (process, origin, announced):
        with httpx.Client(base_url=origin, timeout=10) as client:
            url, auth = "/api/timeback/activity/heartbeat", {"Authorization": f"Bearer {SECRET}"}
            run_id = str(uuid.uuid4())
            reading = {"subject": "Reading", "grade": 5}  # synced for production only
            for start in (0, 15):
                answer = client.post(url, json=beat(run_id, start, reading), headers=auth)
                assert answer.status_code == 204
        time.sleep(0.1)  # uvicorn has installed its handlers: it served requests
        status, out, err = stop(process, signal.SIGINT)
    assert status == 0, out + err
    assert "courses: 3 configured, 1 synced for production" in announced
    assert "no problems seen, no request refused" in out
    assert "Traceback" not in err


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_refused_heartbeats_alone_fail_the_verdict_naming_each_kind(tmp_path: Path) -> None:
    """Runs without a problem, but time the app lost: the emulator refused it."""
    production = ("--fail-on-problems", "--environment", "production")
    with emulator_process(tmp_path, *production) as (process, origin, _):
        with httpx.Client(base_url=origin, timeout=10) as client:
            url, auth = "/api/timeback/activity/heartbeat", {"Authorization": f"Bearer {SECRET}"}
            reading = {"subject": "Reading", "grade": 5}  # synced for production only
            accepted = client.post(url, json=beat(str(uuid.uuid4()), 0, reading), headers=auth)
            assert accepted.status_code == 204
            staging_only = client.post(
                url, json=beat(str(uuid.uuid4()), 0, {"subject": "Math", "grade": 3}), headers=auth
            )
            assert staging_only.status_code == 503
            assert "missing a course ID for production" in staging_only.json()["error"]["message"]
            for _ in range(2):
                unknown = beat(str(uuid.uuid4()), 0, {"subject": "Reading", "grade": 2})
                assert client.post(url, json=unknown, headers=auth).status_code == 400
            stranger = {"Authorization": "Bearer an-unknown-s3cr3t"}
            nobody = client.post(url, json=beat(str(uuid.uuid4()), 0, reading), headers=stranger)
            assert nobody.status_code == 401
            # The operator's own fault is not the app's mistake.
            assert client.post("/_emulator/faults", json={"status": 503}).status_code == 201
            faulted = client.post(url, json=beat(str(uuid.uuid4()), 0, reading), headers=auth)
            assert faulted.status_code == 503
        status, out, err = stop(process, signal.SIGTERM)
    assert status == 1, out + err
    assert "no problems seen in the runs" in out
    assert "4 heartbeats refused (time the app lost):" in out
    assert "- 2 x 400 UNKNOWN_COURSE: Unknown course: " in out
    assert "- 1 x 503 MISSING_SYNCED_COURSE_ID: " in out
    assert "- 1 x 401 UNAUTHORIZED: Unauthorized" in out
    assert "an-unknown-s3cr3t" not in out + err
    assert SECRET not in out + err


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process")
def test_an_emulator_that_cannot_start_exits_2_not_1(tmp_path: Path) -> None:
    """A CI tells "it never served" (2) from "the app made a mistake" (1)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "timeback_client", "emulator", "--fail-on-problems"]
        done = subprocess.run(
            [*command, "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"127.0.0.1:{port} is already in use" in done.stderr
    assert "Timeback emulator: http" not in done.stdout  # it never said it listens


def test_a_port_in_use_says_so_and_how_to_pick_another(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        status = main(["emulator", "--port", str(port)])
    assert status == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"127.0.0.1:{port} is already in use" in last
    assert "--port" in last


@pytest.mark.parametrize(
    ("option", "said"),
    [
        (["--db", "/nonexistent-dir/events.db"], "argument --db: /nonexistent-dir/events.db"),
        # An IPv6 literal: refused for an IPv4 socket without asking DNS.
        (["--host", "::1"], "argument --host: '::1' is no address"),
    ],
)
def test_a_db_or_host_it_cannot_use_is_named(
    capsys: pytest.CaptureFixture[str], option: list[str], said: str
) -> None:
    assert main(["emulator", "--port", "0", *option]) == 2
    assert said in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_db_that_is_no_emulator_store_is_named_as_such(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "app.db"
    path.write_text("the app's own data\n", encoding="utf-8")
    assert main(["emulator", "--port", "0", "--db", str(path)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("timeback-client emulator: error: argument --db: "), last
    assert "--config" not in last


def test_the_help_says_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["emulator", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    assert "exit status: 0 when stopped" in said
    assert "1 when the app made a mistake" in said
    assert "2 when the emulator could not start" in said


# ── the testing guide's CI recipe, run as written ─────────────────────────────────────

APP_TESTS = """#!/bin/sh
# The app under test: one heartbeat to the URL it was given.
exec {python} - "$TIMEBACK_URL" <<'PY'
import json, sys, httpx
body = json.loads({body!r})
answer = httpx.post(sys.argv[1] + "/activity/heartbeat", json=body,
                    headers={{"Authorization": "Bearer harness-ada"}})
print("app got", answer.status_code)
PY
"""


def _recipe() -> str:
    guide = Path(__file__).parents[2] / "docs" / "guides" / "testing.md"
    blocks = re.findall(r"```bash\n(.*?)```", guide.read_text(encoding="utf-8"), re.DOTALL)
    (recipe,) = [block for block in blocks if "--fail-on-problems" in block]
    return recipe


def _run_recipe(tmp_path: Path, course: dict[str, Any], config: object) -> tuple[int, str]:
    """The recipe's exit status and output, the app under test sending one heartbeat."""
    (tmp_path / "backend").mkdir()
    (tmp_path / "ci").mkdir()
    (tmp_path / "backend" / "timeback.config.json").write_text(json.dumps(config))
    (tmp_path / "ci" / "students.txt").write_text("harness-ada=ada@example.edu\n")
    app = tmp_path / "run-app-tests.sh"
    body = json.dumps(beat(str(uuid.uuid4()), 0, course))
    app.write_text(APP_TESTS.format(python=sys.executable, body=body))
    app.chmod(0o755)
    bin_dir = tmp_path / "bin"  # the command, as `pip install` puts it on the PATH
    bin_dir.mkdir()
    command = bin_dir / "timeback-client"
    command.write_text(f'#!/bin/sh\nexec {sys.executable} -m timeback_client "$@"\n')
    command.chmod(0o755)
    script = tmp_path / "ci.sh"
    script.write_text(_recipe().replace("pip install 'timeback-client[emulator]'\n", ""))
    done = subprocess.run(
        ["bash", str(script)],
        cwd=tmp_path,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@pytest.mark.e2e
@pytest.mark.skipif(sys.platform == "win32", reason="bash")
@pytest.mark.parametrize(
    ("course", "config", "status", "said"),
    [
        ({"subject": "Reading", "grade": 2}, CONFIG, 1, "1 x 400 UNKNOWN_COURSE"),
        ({"subject": "Math", "grade": 3}, {"courses": [{}]}, 2, "argument --config"),
    ],
    ids=["a-refused-heartbeat-exits-1", "a-bad-config-exits-2"],
)
def test_the_guide_s_ci_recipe_tells_mistakes_from_no_start(
    tmp_path: Path, course: dict[str, Any], config: object, status: int, said: str
) -> None:
    # Another server already on the emulator's usual port fools nothing: the recipe's
    # emulator has a port of its own and the recipe waits for its own line.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with suppress(OSError):
            other.bind(("127.0.0.1", 8787))
            other.listen(1)
        exited, output = _run_recipe(tmp_path, course, config)
    assert exited == status, output
    assert said in output
    assert ("app got" in output) == (status != 2)  # no start: the app never ran
