"""The simulation report: percentiles, the verdict, text and JSON, the progress line."""

from __future__ import annotations

import io
from typing import Any

import attrs
import pytest

from timeback_client.tools._report import (
    EmulatorTotals,
    ProgressLine,
    Refusal,
    Report,
    percentile,
    render_text,
)


def _report(**changes: Any) -> Report:
    values: dict[str, Any] = {
        "students": 2,
        "lesson_minutes": 1.0,
        "interval_s": 15.0,
        "speed": 10.0,
        "seed": 1,
        "server": "emulator",
        "against_emulator": True,
        "wall_s": 6.0,
        "client_cpu_s": 0.6,
        "sessions": 2,
        "resumed_sessions": 0,
        "pauses": 1,
        "idle_pauses": 0,
        "completions": 1,
        "requests": 6,
        "delivered": 6,
        "statuses": {"204": 6},
        "latencies_ms": [1.0, 2.0, 3.0, 4.0, 5.0, 9.0],
        "errors": {},
        "final_errors": 0,
        "simulated_active_ms": 90_000,
        "flushed_active_ms": 90_000,
        "run_simulated_ms": {"run-a": 60_000, "run-b": 30_000},
        "emulator": EmulatorTotals(
            runs=2,
            windows=6,
            sessions=2,
            completed=1,
            active_ms=90_000,
            inactive_ms=5_000,
            run_active_ms={"run-a": 60_000, "run-b": 30_000},
            problems={},
            problem_examples=(),
        ),
    }
    values.update(changes)
    return Report(**values)


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7
    assert percentile([], 0.5) is None


def test_a_run_that_adds_up_is_ok() -> None:
    report = _report()
    assert report.ok
    assert report.heartbeats_per_s == 1.0
    assert report.cpu_ms_per_heartbeat == 100.0
    assert "OK: every simulated millisecond" in render_text(report)


def test_retried_errors_alone_do_not_fail_a_run_that_adds_up() -> None:
    assert _report(errors={"heartbeat: ServerUnavailableError 502 (retried)": 3}).ok


@pytest.mark.parametrize(
    "changes",
    [
        {"final_errors": 1, "errors": {"heartbeat: InvalidPayloadError 400": 1}},
        {"flushed_active_ms": 89_999},
        {"run_simulated_ms": {"run-a": 60_001, "run-b": 29_999}},
    ],
)
def test_anything_lost_or_misplaced_fails_the_run(changes: dict[str, Any]) -> None:
    report = _report(**changes)
    assert not report.ok
    assert "NOT OK" in render_text(report)


def test_a_problem_the_emulator_found_fails_the_run() -> None:
    totals = _report().emulator
    assert totals is not None
    flagged = attrs.evolve(
        totals,
        problems={"double-counting": 1},
        problem_examples=("double-counting on run run-a: ...",),
    )
    report = _report(emulator=flagged)
    assert not report.ok
    assert "double-counting: 1" in render_text(report)


def test_the_json_report_carries_the_figures() -> None:
    data = _report().to_json()
    assert data["ok"] is True
    assert data["heartbeats"]["latencyMs"] == {"p50": 3.0, "p99": 9.0, "max": 9.0}
    assert data["time"]["emulatorActiveMs"] == 90_000
    assert data["emulator"]["completed"] == 1


def test_against_another_server_the_report_says_completions_were_skipped() -> None:
    report = _report(against_emulator=False, emulator=None, completions=0)
    assert report.ok
    assert "completions skipped" in render_text(report)
    assert report.to_json()["behaviour"]["completions"] is None


def _refusal(status: int, code: str | None, **changes: Any) -> Refusal:
    values: dict[str, Any] = {
        "status": status,
        "code": code,
        "count": 5,
        "given_up": 5,
        "courses": (),
        "fields": (),
        "credentials": ("students.txt line 2",),
        "example": f"{status} {code}: a message",
    }
    values.update(changes)
    return Refusal(**values)


@pytest.mark.parametrize(
    ("refusal", "catalogue", "why"),
    [
        (
            _refusal(400, "UNKNOWN_COURSE", courses=("Reading grade 4", "Science grade 6")),
            "built-in",
            "the backend does not know Reading grade 4, Science grade 6 (from the built-in "
            "courses): give simulate the backend's own courses, --courses",
        ),
        (
            _refusal(400, "UNKNOWN_COURSE", courses=("CS-101",)),
            "old/timeback.config.json",
            "the backend does not know CS-101 (from old/timeback.config.json)",
        ),
        (
            _refusal(503, "MISSING_SYNCED_COURSE_ID", courses=("Science grade 4",)),
            "given",
            "the backend has Science grade 4 but not synced for its environment: sync them",
        ),
        (
            _refusal(500, "AMBIGUOUS_COURSE_SELECTOR", courses=("Math grade 3",)),
            "given",
            "the backend's own config lists Math grade 3 twice",
        ),
        (
            _refusal(
                401,
                "UNAUTHORIZED",
                given_up=0,
                credentials=tuple(f"f line {n}" for n in range(1, 6)),
            ),
            "given",
            "the backend knows no student by f line 1, f line 2, f line 3 and 2 more: pass "
            "--tokens FILE",
        ),
        (
            _refusal(409, "USER_RESOLUTION_FAILED"),
            "given",
            "the backend found no single Timeback user for students.txt line 2",
        ),
    ],
)
def test_a_refusal_of_the_catalogue_or_the_credentials_is_one_line_with_the_fix(
    refusal: Refusal, catalogue: str, why: str
) -> None:
    report = _report(
        refusals=(refusal,),
        catalogue=catalogue,
        final_errors=refusal.given_up,
        flushed_active_ms=0,
        delivered=0,
    )
    assert not report.ok
    (line,) = report.why
    assert line.startswith(why)
    text = render_text(report)
    assert f"NOT OK: {line}" in text
    fate = (
        f"{refusal.given_up} given up"
        if refusal.given_up
        else "all kept: held until the backend is fixed, or new credentials"
    )
    assert f"refused {refusal.kind}: 5 windows ({fate})" in text
    assert f"    e.g. {refusal.example}" in text
    assert report.to_json()["why"] == [line]
    assert report.to_json()["refusals"][0]["code"] == refusal.code


def test_other_refusals_are_grouped_and_shown_but_not_explained() -> None:
    invalid = _refusal(400, "INVALID_PAYLOAD", fields=("runId",), courses=("Math grade 3",))
    report = _report(refusals=(invalid,), final_errors=5)
    assert report.why == []
    text = render_text(report)
    assert (
        "refused 400 INVALID_PAYLOAD: 5 windows (5 given up); courses Math grade 3; fields runId"
        in text
    )
    assert "NOT OK: see above." in text


@pytest.mark.parametrize(
    ("identities", "students", "note"),
    [
        (None, 2, "2 emulator students, one identity each"),
        (1, 100, "all 100 students share one identity (--token): to the backend they are one user"),
        (3, 10, "3 identities from --token for 10 students, round-robin: some students share one"),
        (40, 10, "10 identities from --token, one per student"),
        (1, 1, "1 identity from --token, one per student"),
    ],
)
def test_the_report_says_who_the_students_were_to_the_backend(
    identities: int | None, students: int, note: str
) -> None:
    report = _report(
        identities=identities,
        identities_source=None if identities is None else "--token",
        students=students,
    )
    assert report.identity_note.startswith(note)
    assert f"  students: {report.identity_note}" in render_text(report)
    assert report.to_json()["config"]["identities"]["note"] == report.identity_note


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_progress_line_is_redrawn_in_place() -> None:
    out = _Terminal()
    line = ProgressLine(out, interval=0)
    line.update(0.5, "halfway")
    line.update(0.75, "later")
    line.done("done")
    text = out.getvalue()
    assert text.count("\r") == 3
    assert text.endswith("\n")
    assert "[##########..........]  50% halfway" in text


def test_elsewhere_the_progress_line_prints_plain_lines_now_and_then() -> None:
    out = io.StringIO()
    line = ProgressLine(out)
    line.update(0.1, "one")
    line.update(0.2, "two")  # too soon after the first: skipped
    line.done("done")
    assert "\r" not in out.getvalue()
    assert out.getvalue().splitlines() == [
        "[##..................]  10% one",
        "[####################] 100% done",
    ]


def test_the_emulator_s_problems_are_named_with_their_run() -> None:
    from timeback_client.tools._simulate import _emulator_totals

    served = {"runId": "run-1", "rule": "window-arithmetic", "evidence": "e", "windows": []}
    totals = _emulator_totals([], [served])
    assert totals.problems == {"window-arithmetic": 1}
    assert totals.problem_examples == ("window-arithmetic on run run-1: e",)
