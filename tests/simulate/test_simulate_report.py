"""The simulation report: percentiles, the verdict, text and JSON, the progress line."""

from __future__ import annotations

import io
from typing import Any

import attrs
import pytest

from timeback_client.tools._report import (
    EmulatorTotals,
    ProgressLine,
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
