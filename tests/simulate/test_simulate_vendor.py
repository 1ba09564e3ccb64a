"""`timeback-client simulate` against the vendor's own server SDK (timeback-sdk 0.4.0).

The server is the parity suite's (``tests/emulator/parity/vendor_server.py``), in its own
Python 3.12 virtualenv, with a ``timeback.config.json`` of its own and three students.
Students that take that server's courses and log in as its students get every window
accepted, and each run's time is what the server turned into Caliper events; a course the
server does not have is named in the report with the backend's code and the fix.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from timeback_client.tools._cli import main
from vendor_kit import active_ms_by_run, sent_events, vendor_server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        sys.platform == "win32",
        reason="the vendor's venv comes from a bash script, and select() waits on a pipe: "
        "POSIX only",
    ),
]

#: The backend's students: token -> email.
STUDENTS = {
    "tok-ada": "ada@example.edu",
    "tok-bob": "bob@example.edu",
    "tok-cy": "cy@example.edu",
}
CONFIG = {
    "name": "Simulated School",
    "sensor": "https://sensor.school.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}},
        {"subject": "Reading", "grade": 3, "ids": {"staging": "course-reading-3"}},
        {"subject": "Other", "courseCode": "CS-101", "ids": {"staging": "course-cs-101"}},
        {"subject": "Science", "grade": 4},  # never synced: MISSING_SYNCED_COURSE_ID
    ],
}


@attrs.frozen
class Vendor:
    mount: str
    origin: str
    config: Path

    def time_spent_ms(self) -> dict[str, int]:
        """Active ms per run, from the TimeSpentEvents the server sent to Caliper."""
        return active_ms_by_run(sent_events(self.origin))

    def actors(self) -> set[str]:
        return {json.dumps(event["actor"], sort_keys=True) for event in sent_events(self.origin)}


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vendor]:
    workdir = tmp_path_factory.mktemp("vendor")
    with vendor_server(workdir, CONFIG, STUDENTS) as origin:
        yield Vendor(
            mount=f"{origin}/api/timeback",
            origin=origin,
            config=workdir / "timeback.config.json",
        )


def _simulate(vendor: Vendor, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    common = ["--minutes", "3", "--speed", "60", "--seed", "5", "--server", vendor.mount]
    status = main(["simulate", *common, *args])
    return status, capsys.readouterr().out


def test_the_backend_s_own_courses_and_students_get_every_window_accepted(
    vendor: Vendor, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--courses`` is the server's own config (its unsynced course left out), and
    ``--tokens`` its three students, one as a session cookie, round-robin over seven."""
    tokens = tmp_path / "students.txt"
    tokens.write_text(
        "# the deployment's students\ntok-ada\nBearer tok-bob\n\ntimeback_session=tok-cy\n",
        encoding="utf-8",
    )
    status, out = _simulate(
        vendor,
        capsys,
        "--students",
        "7",
        "--courses",
        str(vendor.config),
        "--tokens",
        str(tokens),
        "--json",
    )
    report: dict[str, Any] = json.loads(out)

    assert status == 0, out
    assert report["ok"] is True
    courses = report["config"]["courses"]
    assert courses["taken"] == ["Math grade 3", "Reading grade 3", 'code "CS-101"']
    assert courses["leftOut"] == ["Science grade 4: not synced (no ids)"]
    assert report["config"]["identities"]["count"] == 3
    assert "round-robin" in report["config"]["identities"]["note"]
    heartbeats = report["heartbeats"]
    assert heartbeats["statuses"] == {"204": heartbeats["requests"]}
    assert heartbeats["delivered"] == heartbeats["requests"] > 0
    assert report["refusals"] == []
    assert report["errors"] == {}
    # Every run's time is what the vendor sent to Caliper for it, to the millisecond.
    simulated = {run: ms for run, ms in report["time"]["runActiveMs"].items() if ms}
    recorded = vendor.time_spent_ms()
    assert simulated, "no student spent any time"
    assert {run: recorded.get(run, 0) for run in simulated} == simulated
    assert report["time"]["simulatedActiveMs"] == sum(simulated.values())
    # Three students to the backend, not one.
    assert len(vendor.actors()) == 3


def test_a_course_the_backend_does_not_have_is_named_with_its_code_and_the_fix(
    vendor: Vendor, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out = _simulate(
        vendor,
        capsys,
        "--students",
        "4",
        "--course",
        "Math:3",
        "--course",
        "reading:4",
        "--token",
        "tok-ada",
    )

    assert status == 1, out
    refused = [line for line in out.splitlines() if "refused 400" in line]
    assert len(refused) == 1, out
    assert "refused 400 UNKNOWN_COURSE" in refused[0]
    assert "courses Reading grade 4" in refused[0]
    assert "e.g. 400 UNKNOWN_COURSE: Unknown course: Reading grade 4" in out
    assert "NOT OK: the backend does not know Reading grade 4" in out
    assert "--courses path/to/its/timeback.config.json" in out
    assert "all 4 students share one identity (--token)" in out
