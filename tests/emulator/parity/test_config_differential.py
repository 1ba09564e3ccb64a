"""The backend's own config, differentially: ``timeback-client emulator --config FILE
--students FILE`` in a process of its own, and the vendor's server (``timeback-sdk``
0.4.0 behind FastAPI, ``vendor_server.py``) reading the very same ``timeback.config.json``,
answer each case with the same status and the same error body.

The cases are what a harness meets with a deployment's config: a synced course by subject
and grade, one by code, one never synced, one not in the config, an unknown token, and a
student missing from the roster (both servers' OneRoster knows only Ada).
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from vendor_kit import vendor_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        sys.platform == "win32",
        reason="the vendor's venv comes from a bash script, and select() waits on a pipe",
    ),
]

ADA, BOB = "ada@example.edu", "bob@example.edu"
STUDENTS = {"tok-ada": ADA, "tok-bob": BOB}
#: A deployment's config, as its server SDK reads it.
CONFIG: dict[str, Any] = {
    "name": "Differential App",
    "sensor": "https://sensor.differential.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}},
        {"subject": "Reading", "grade": 5, "courseCode": "READ-5", "ids": {"staging": "r5"}},
        {"subject": "Other", "courseCode": "CS-101", "ids": {"staging": "course-cs-101"}},
        {"subject": "Science", "grade": 7},
        {"subject": "Writing", "grade": 2, "ids": {"production": "only-in-production"}},
    ],
}

#: name -> (course selector, bearer token, the vendor's expected status)
CASES: dict[str, tuple[dict[str, Any], str, int]] = {
    "synced-grade-course": ({"subject": "Math", "grade": 3}, "tok-ada", 204),
    "course-by-code": ({"code": "CS-101"}, "tok-ada", 204),
    "grade-course-with-a-code-by-code": ({"code": "READ-5"}, "tok-ada", 204),
    "never-synced-course": ({"subject": "Science", "grade": 7}, "tok-ada", 503),
    "synced-for-another-environment": ({"subject": "Writing", "grade": 2}, "tok-ada", 503),
    "course-not-in-config": ({"subject": "Math", "grade": 4}, "tok-ada", 400),
    "code-not-in-config": ({"code": "NOPE"}, "tok-ada", 400),
    "unknown-token": ({"subject": "Math", "grade": 3}, "tok-nobody", 401),
    "student-missing-from-roster": ({"subject": "Math", "grade": 3}, "tok-bob", 404),
}


def beat(label: str, course: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "lesson-1",
        "name": "Fractions",
        "course": course,
        "runId": str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{label}.differential.timeback")),
        "startedAt": "2026-11-25T10:00:00.000Z",
        "endedAt": "2026-11-25T10:00:15.000Z",
        "elapsedMs": 15000,
        "pausedMs": 0,
    }


@contextmanager
def emulator_command(config: Path, students: Path) -> Iterator[str]:
    """``timeback-client emulator --config --students`` on a free port; its origin."""
    command = [sys.executable, "-m", "timeback_client", "emulator", "--port", "0"]
    command += ["--config", str(config), "--students", str(students)]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 60)
        first = process.stdout.readline() if ready else ""
        assert first.startswith("Timeback emulator: http://"), first
        yield first.split(": ", 1)[1].strip().removesuffix("/api/timeback")
    finally:
        process.terminate()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def answer(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json() if response.content else None


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Any]]:
    workdir = tmp_path_factory.mktemp("differential")
    students = workdir / "students.txt"
    students.write_text(
        "# the deployment's students\n" + "".join(f"{t}={e}\n" for t, e in STUDENTS.items()),
        encoding="utf-8",
    )
    with vendor_server(workdir, CONFIG, STUDENTS, roster=[ADA]) as vendor:
        # The very file the vendor's server read.
        config = workdir / "timeback.config.json"
        assert json.loads(config.read_text(encoding="utf-8")) == CONFIG
        with emulator_command(config, students) as emulator, httpx.Client(timeout=30) as http:
            roster = http.put(f"{emulator}/_emulator/roster", json={"emails": [ADA]})
            assert roster.status_code == 200
            found = {}
            for name, (course, token, _) in CASES.items():
                headers = {"Authorization": f"Bearer {token}"}
                both = [
                    answer(
                        http.post(
                            f"{origin}/api/timeback/activity/heartbeat",
                            json=beat(name, course),
                            headers=headers,
                        )
                    )
                    for origin in (vendor, emulator)
                ]
                found[name] = (both[0], both[1])
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_the_emulator_with_the_backend_s_config_answers_as_the_vendor(
    case: str, answers: dict[str, tuple[Any, Any]]
) -> None:
    vendor, emulated = answers[case]
    assert vendor[0] == CASES[case][2], f"the vendor itself answered {vendor}"
    assert emulated == vendor
