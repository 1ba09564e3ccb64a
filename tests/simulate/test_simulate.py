"""`timeback-client simulate`: a small school, against the emulator in its own process."""

from __future__ import annotations

import gc
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from timeback_client.tools._cli import main
from timeback_client.tools._emulator_process import EmulatorProcess
from timeback_client.tools._report import render_text
from timeback_client.tools._simulate import Simulation, run_simulation, simulate
from timeback_client.tools.students import courses_from_specs, read_roster


def test_every_simulated_millisecond_reaches_the_emulator_exactly_once() -> None:
    report = simulate(
        Simulation(students=20, minutes=3, speed=90, seed=7), progress_out=io.StringIO()
    )

    assert report.against_emulator
    assert report.emulator is not None
    assert report.simulated_active_ms > 0
    assert report.flushed_active_ms == report.simulated_active_ms
    assert report.emulator.active_ms == report.simulated_active_ms
    assert report.differing_runs == []
    assert report.emulator.problems == {}
    assert report.final_errors == 0
    assert report.requests == report.delivered == report.emulator.windows
    assert report.statuses == {"204": report.requests}
    assert report.sessions >= 20
    assert report.emulator.sessions == report.sessions  # each session one contiguous chain
    assert len(report.latencies_ms) == report.requests
    assert report.ok


class _Terminal(io.StringIO):
    """A terminal that notes, at each redraw of the progress line, how many objects the
    garbage collector has frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.frozen: list[int] = []

    def isatty(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.frozen.append(gc.get_freeze_count())
        return super().write(text)


def test_students_are_frozen_out_of_the_collector_once_arrived_and_thawed_at_the_end() -> None:
    terminal = _Terminal()
    report = simulate(Simulation(students=3, minutes=10, speed=300, seed=3), progress_out=terminal)

    assert report.ok
    # Frozen once every student had arrived (a full collection then walks only what is
    # made later), and the process's collector as it was after the run.
    assert terminal.frozen[0] == 0
    assert max(terminal.frozen) > 0
    assert gc.get_freeze_count() == 0


def test_the_cli_prints_a_json_report_and_exits_0_when_everything_adds_up() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "timeback_client",
            "simulate",
            "--students",
            "20",
            "--minutes",
            "1",
            "--speed",
            "60",
            "--seed",
            "3",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True
    assert report["config"]["students"] == 20
    assert report["config"]["seed"] == 3
    time = report["time"]
    assert time["simulatedActiveMs"] == time["flushedActiveMs"] == time["emulatorActiveMs"] > 0
    assert report["emulator"]["problems"] == {}
    assert report["heartbeats"]["latencyMs"]["p50"] is not None
    assert "[" in done.stderr  # the progress bar went to stderr, not into the JSON


def test_against_a_server_of_ones_own_completions_are_skipped_and_said_so() -> None:
    out, err = io.StringIO(), io.StringIO()
    with EmulatorProcess({"school-token": "everyone@example.edu"}) as server:
        status = run_simulation(
            Simulation(
                students=10,
                minutes=2,
                speed=120,
                seed=1,
                server=server.base_url,
                token="school-token",
            ),
            out=out,
            err=err,
        )
        recorded = server.get_json("/_emulator/runs")["runs"]

    text = out.getvalue()
    assert status == 0, text
    assert "completions skipped" in text
    assert not any(run["completed"] for run in recorded)
    assert "Emulator" not in text  # no emulator totals for a server we did not start


def test_delivery_errors_are_counted_by_kind_and_fail_the_run() -> None:
    # The emulator does not know this token: every window is held back (401).
    with EmulatorProcess({"known": "a@example.edu"}) as server:
        report = simulate(
            Simulation(
                students=3,
                minutes=1,
                speed=120,
                seed=1,
                server=server.base_url,
                token="unknown",
                flush_timeout=0.5,
            ),
            progress_out=io.StringIO(),
        )

    assert report.statuses.get("401", 0) > 0
    assert any("AuthenticationError 401" in kind for kind in report.errors)
    assert report.flushed_active_ms == 0 < report.simulated_active_ms
    assert not report.ok


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--token", "t"], "--token and --tokens only go with --server"),
        (["--server", "http://127.0.0.1:9/api/timeback"], "--server needs --token"),
        (["--speed", "0"], "argument --speed: 0 is not a positive, finite number"),
        (["--speed", "inf"], "argument --speed: inf is not a positive, finite number"),
    ],
)
def test_the_cli_refuses_inconsistent_options(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        status = main(["simulate", "--students", "1", "--minutes", "1", *argv])
    except SystemExit as exit_:  # argparse's own refusal of a value
        status = exit_.code

    assert status == 2
    assert message in capsys.readouterr().err


def test_credentials_the_backend_does_not_know_are_named_by_line_never_shown(
    tmp_path: Path,
) -> None:
    """Three students a line each; the backend knows two. The report groups the 401s,
    names the third line and says what to pass instead, and shows no token."""
    tokens = tmp_path / "students.txt"
    tokens.write_text("tok-ada\ntok-bob\nsecret-nobody-knows\n", encoding="utf-8")
    known = {"tok-ada": "ada@example.edu", "tok-bob": "bob@example.edu"}
    with EmulatorProcess(known) as server:
        report = simulate(
            Simulation(
                students=6,
                minutes=1,
                speed=120,
                seed=2,
                server=server.base_url,
                roster=read_roster(tokens),
                flush_timeout=0.5,
            ),
            progress_out=io.StringIO(),
        )

    assert [(r.status, r.code) for r in report.refusals] == [(401, "UNAUTHORIZED")]
    (refusal,) = report.refusals
    assert refusal.credentials == (f"{tokens} line 3",)
    assert refusal.given_up == 0  # held for new credentials, not dropped
    assert not report.ok
    assert (
        report.identity_note
        == f"3 identities from {tokens} for 6 students, round-robin: some students share one"
    )
    text = render_text(report)
    assert f"NOT OK: the backend knows no student by {tokens} line 3: pass --tokens FILE" in text
    everything = text + json.dumps(report.to_json())
    assert "secret-nobody-knows" not in everything
    assert "tok-ada" not in everything


def test_students_take_only_the_courses_given() -> None:
    catalogue = courses_from_specs(["Writing:2", "code:ART-1"])
    with EmulatorProcess({"school-token": "everyone@example.edu"}) as server:
        report = simulate(
            Simulation(
                students=6,
                minutes=1,
                speed=120,
                seed=4,
                server=server.base_url,
                token="school-token",
                catalogue=catalogue,
            ),
            progress_out=io.StringIO(),
        )
        runs = server.get_json("/_emulator/runs")["runs"]

    assert report.ok
    assert report.courses == ("Writing grade 2", 'code "ART-1"')
    assert {slug for run in runs for slug in run["activities"]} == {"writing-grade-2", "art-1"}
    assert "all 6 students share one identity (--token)" in render_text(report)
