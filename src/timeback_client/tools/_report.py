"""What a load simulation found, and how it is shown: a progress line, text, JSON.

Pure presentation: `Report` is a plain value built by `_simulate`, `render_text` and
`Report.to_json` show it, and `ProgressLine` redraws one ``\\r``-updated line on a
terminal (or prints a line now and then when the output is not one).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final, TextIO

import attrs

__all__ = ["EmulatorTotals", "ProgressLine", "Report", "percentile", "render_text"]


def percentile(sorted_values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of already sorted values; None when there are none."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


@attrs.frozen(kw_only=True)
class EmulatorTotals:
    """What the emulator recorded, from ``GET /_emulator/runs`` and ``/_emulator/problems``."""

    runs: int
    windows: int
    sessions: int
    completed: int
    active_ms: int
    inactive_ms: int
    run_active_ms: Mapping[str, int]
    problems: Mapping[str, int]  # rule -> count
    problem_examples: tuple[str, ...]


@attrs.frozen(kw_only=True)
class Report:
    """The outcome of one simulation."""

    students: int
    lesson_minutes: float
    interval_s: float
    speed: float
    seed: int
    server: str
    against_emulator: bool
    wall_s: float
    client_cpu_s: float  # CPU time of this process (students, SDK, httpx), not the server's
    sessions: int
    resumed_sessions: int
    pauses: int
    idle_pauses: int
    completions: int
    requests: int
    delivered: int
    statuses: Mapping[str, int]
    latencies_ms: Sequence[float]  # sorted
    errors: Mapping[str, int]  # kind -> count; "(retried)" kinds were retried by the SDK
    final_errors: int  # errors after which a window (or a completion) was given up
    simulated_active_ms: int  # sum of activity.elapsed_ms after each end()
    flushed_active_ms: int  # sum of on_flush(elapsed_ms): accepted by the backend
    run_simulated_ms: Mapping[str, int]
    emulator: EmulatorTotals | None

    @property
    def heartbeats_per_s(self) -> float:
        """Windows the backend accepted per second of wall time."""
        return self.delivered / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_ms_per_heartbeat(self) -> float | None:
        """Client CPU per accepted window (the simulated students' own work included)."""
        return self.client_cpu_s * 1000 / self.delivered if self.delivered else None

    @property
    def differing_runs(self) -> list[str]:
        """Runs whose emulator total differs from the time the students spent in them."""
        if self.emulator is None:
            return []
        known = self.emulator.run_active_ms
        return [
            run_id for run_id, ms in self.run_simulated_ms.items() if known.get(run_id, 0) != ms
        ] + [run_id for run_id in known if run_id not in self.run_simulated_ms]

    @property
    def ok(self) -> bool:
        """Something was simulated, nothing given up, every simulated ms delivered, and
        (emulator) no problem. A run that simulated nothing is never OK."""
        if self.simulated_active_ms == 0 or not self.delivered:
            return False
        if self.final_errors or self.flushed_active_ms != self.simulated_active_ms:
            return False
        if self.emulator is None:
            return True
        return (
            not self.emulator.problems
            and not self.differing_runs
            and self.emulator.active_ms == self.simulated_active_ms
        )

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (``--json``)."""
        emulator: dict[str, Any] | None = None
        if self.emulator is not None:
            emulator = {
                "runs": self.emulator.runs,
                "windows": self.emulator.windows,
                "sessions": self.emulator.sessions,
                "completed": self.emulator.completed,
                "activeMs": self.emulator.active_ms,
                "inactiveMs": self.emulator.inactive_ms,
                "problems": dict(self.emulator.problems),
                "problemExamples": list(self.emulator.problem_examples),
            }
        return {
            "ok": self.ok,
            "config": {
                "students": self.students,
                "lessonMinutes": self.lesson_minutes,
                "intervalS": self.interval_s,
                "speed": self.speed,
                "seed": self.seed,
                "server": self.server,
                "againstEmulator": self.against_emulator,
            },
            "wallS": round(self.wall_s, 3),
            "clientCpuS": round(self.client_cpu_s, 3),
            "behaviour": {
                "sessions": self.sessions,
                "resumedSessions": self.resumed_sessions,
                "pauses": self.pauses,
                "idlePauses": self.idle_pauses,
                "completions": self.completions if self.against_emulator else None,
            },
            "heartbeats": {
                "requests": self.requests,
                "delivered": self.delivered,
                "perSecond": round(self.heartbeats_per_s, 1),
                "clientCpuMsEach": _round(self.cpu_ms_per_heartbeat),
                "statuses": dict(self.statuses),
                "latencyMs": {
                    "p50": _round(percentile(self.latencies_ms, 0.50)),
                    "p99": _round(percentile(self.latencies_ms, 0.99)),
                    "max": _round(self.latencies_ms[-1] if self.latencies_ms else None),
                },
            },
            "errors": dict(self.errors),
            "finalErrors": self.final_errors,
            "time": {
                "simulatedActiveMs": self.simulated_active_ms,
                "flushedActiveMs": self.flushed_active_ms,
                "emulatorActiveMs": None if self.emulator is None else self.emulator.active_ms,
                "runs": len(self.run_simulated_ms),
                "differingRuns": self.differing_runs[:20],
            },
            "emulator": emulator,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def _hms(ms: float) -> str:
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def render_text(report: Report) -> str:
    """The human-readable report."""
    lines = [
        f"timeback-client simulate: {report.students} students, "
        f"{report.lesson_minutes:g} lesson minutes at x{report.speed:g} "
        f"(heartbeat every {report.interval_s:g} s of lesson time), seed {report.seed}",
        f"  backend: {report.server}",
        f"  wall time: {report.wall_s:.1f} s, client CPU {report.client_cpu_s:.1f} s",
        "",
        "Behaviour",
        f"  sessions {report.sessions} ({report.resumed_sessions} resumed a saved runId), "
        f"pauses {report.pauses}, idle pauses {report.idle_pauses}, "
        + (
            f"completions {report.completions} (server-side record())"
            if report.against_emulator
            else "completions skipped (--server: no server-side hook to record them)"
        ),
        "",
        "Heartbeats",
        f"  requests {report.requests}, windows accepted {report.delivered}, "
        f"{report.heartbeats_per_s:.1f}/s, client CPU {_ms(report.cpu_ms_per_heartbeat)} each "
        "(students included)",
        f"  client-side latency p50 {_ms(percentile(report.latencies_ms, 0.5))}, "
        f"p99 {_ms(percentile(report.latencies_ms, 0.99))}, "
        f"max {_ms(report.latencies_ms[-1] if report.latencies_ms else None)}",
        "  statuses: "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report.statuses.items())) or "none"),
        "  errors (on_error): "
        + (", ".join(f"{k}: {v}" for k, v in sorted(report.errors.items())) or "none"),
        "",
        "Time",
        f"  simulated (sum of activity.elapsed_ms): {report.simulated_active_ms} ms "
        f"({_hms(report.simulated_active_ms)})",
        f"  delivered (sum of on_flush):            {report.flushed_active_ms} ms"
        + (
            "  = simulated"
            if report.flushed_active_ms == report.simulated_active_ms
            else "  <- differs"
        ),
    ]
    emulator = report.emulator
    if emulator is not None:
        differing = report.differing_runs
        lines += [
            f"  recorded by the emulator:               {emulator.active_ms} ms"
            + (
                "  = simulated"
                if emulator.active_ms == report.simulated_active_ms
                else "  <- differs"
            ),
            f"  runs: {len(report.run_simulated_ms)}, "
            + (
                "every run's total matches"
                if not differing
                else f"{len(differing)} differ, e.g. {differing[0]}"
            ),
            "",
            "Emulator",
            f"  runs {emulator.runs}, windows {emulator.windows}, sessions {emulator.sessions}, "
            f"completed {emulator.completed}, active {_hms(emulator.active_ms)}, "
            f"inactive {_hms(emulator.inactive_ms)}",
            "  problems: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(emulator.problems.items())) or "none"),
            *(f"    {example}" for example in emulator.problem_examples),
        ]
    verdict = "OK: every simulated millisecond was delivered exactly once."
    if not report.ok:
        verdict = (
            "NOT OK: nothing was simulated (give the students more --minutes)."
            if report.simulated_active_ms == 0
            else "NOT OK: see above."
        )
    lines += ["", verdict]
    return "\n".join(lines)


_CLEAR_TO_END: Final = "\x1b[K"  # ANSI: erase from the cursor to the end of the line


class ProgressLine:
    """One status line on stderr: redrawn with ``\\r`` on a terminal, else every few seconds.

    Args:
        out: where it goes (stderr).
        interval: seconds between redraws on a terminal.
    """

    def __init__(self, out: TextIO, *, interval: float = 0.25) -> None:
        self._out = out
        self._tty = out.isatty()
        self._interval = interval if self._tty else 5.0
        self._last = -math.inf
        self._width = 0

    def update(self, fraction: float, text: str, *, force: bool = False) -> None:
        """Redraw with ``fraction`` done (0..1) and ``text`` beside the bar."""
        now = time.monotonic()
        if not force and now - self._last < self._interval:
            return
        self._last = now
        filled = round(max(0.0, min(1.0, fraction)) * 20)
        line = f"[{'#' * filled}{'.' * (20 - filled)}] {fraction:4.0%} {text}"
        if self._tty:
            # Cut to the terminal's width (read again each time: windows are resized) and
            # clear the rest of the line: a line that wrapped would leave a trail.
            self._out.write("\r" + line[: self._columns() - 1] + _CLEAR_TO_END)
            self._width = len(line)
        else:
            self._out.write(line + "\n")
        self._out.flush()

    def _columns(self) -> int:
        try:
            return max(20, os.get_terminal_size(self._out.fileno()).columns)
        except (OSError, AttributeError, ValueError):
            return 80

    def done(self, text: str) -> None:
        """Finish the bar with a last line."""
        self.update(1.0, text, force=True)
        if self._tty:
            self._out.write("\n")
            self._out.flush()

    def note(self, text: str) -> None:
        """A line of its own (a phase: starting the emulator, fetching totals)."""
        if self._tty and self._width:
            self._out.write("\r" + _CLEAR_TO_END)
            self._width = 0
        self._out.write(text + "\n")
        self._out.flush()
