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

__all__ = [
    "EmulatorTotals",
    "ProgressLine",
    "Refusal",
    "Report",
    "identity_note",
    "percentile",
    "render_text",
]


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
class Refusal:
    """The backend's error answers to heartbeats, of one HTTP status and error code.

    Attributes:
        status: the HTTP status.
        code: the backend's error code (``"UNKNOWN_COURSE"`` ...), None without one.
        count: how many answers.
        given_up: after how many the SDK gave the window up (the rest were retried or
            held for new credentials).
        courses: the courses of the windows refused, as the backend names them.
        fields: the fields the backend named (``error.details.field``).
        credentials: where the credentials of the students refused came from (a file's
            line, ``--token``), never the credentials themselves.
        example: one of the messages, as the SDK reported it.
    """

    status: int
    code: str | None
    count: int
    given_up: int
    courses: tuple[str, ...]
    fields: tuple[str, ...]
    credentials: tuple[str, ...]
    example: str

    @property
    def kind(self) -> str:
        """``"400 UNKNOWN_COURSE"``."""
        return f"{self.status} {self.code or '(no code)'}"

    def why(self, catalogue: str) -> str | None:
        """One line on why, and the fix, when the catalogue or the credentials are the
        cause; None for any other refusal."""
        courses, who = _some(self.courses), _some(self.credentials)
        if self.code == "UNKNOWN_COURSE":
            source = (
                "the built-in courses"
                if catalogue == "built-in"
                else "the courses given"
                if catalogue == "given"
                else catalogue
            )
            return (
                f"the backend does not know {courses} (from {source}): give simulate the "
                "backend's own courses, --courses path/to/its/timeback.config.json, or "
                "--course for each course it knows."
            )
        if self.code == "MISSING_SYNCED_COURSE_ID":
            return (
                f"the backend has {courses} but not synced for its environment: sync them, "
                "or leave them out (--courses leaves out courses with no ids)."
            )
        if self.code == "AMBIGUOUS_COURSE_SELECTOR":
            return f"the backend's own config lists {courses} twice: fix its timeback.config.json."
        if self.status == 401:
            return (
                f"the backend knows no student by {who}: pass --tokens FILE with the "
                "deployment's students' bearer tokens or session cookies (name=value), one a "
                "line."
            )
        if self.code == "USER_RESOLUTION_FAILED":
            return (
                f"the backend found no single Timeback user for {who}: use students that "
                "exist in Timeback, one a line in --tokens FILE."
            )
        return None

    def to_json(self) -> dict[str, Any]:
        """This group, for ``--json``."""
        return {
            "status": self.status,
            "code": self.code,
            "count": self.count,
            "givenUp": self.given_up,
            "courses": list(self.courses),
            "fields": list(self.fields),
            "credentials": list(self.credentials[:20]),
            "example": self.example,
        }


def _some(names: Sequence[str], shown: int = 3) -> str:
    """``a, b, c and 4 more``."""
    if not names:
        return "the ones refused"
    head = ", ".join(names[:shown])
    return head if len(names) <= shown else f"{head} and {len(names) - shown} more"


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
    refusals: Sequence[Refusal] = ()  # most frequent first
    catalogue: str = "built-in"  # where the courses came from
    courses: Sequence[str] = ()  # the courses students took
    left_out: Sequence[str] = ()  # courses of the catalogue no heartbeat could use
    identities: int | None = None  # credentials students used; None: one emulator student each
    identities_source: str | None = None  # "--token" or the roster file

    @property
    def identity_note(self) -> str:
        """Who the students were to the backend, plainly."""
        if self.identities is None:
            return f"{self.students} emulator students, one identity each"
        return identity_note(self.students, self.identities, self.identities_source or "")

    @property
    def why(self) -> list[str]:
        """One line each for refusals the catalogue or the credentials explain, with the fix."""
        lines = (refusal.why(self.catalogue) for refusal in self.refusals)
        return list(dict.fromkeys(line for line in lines if line is not None))

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
                "courses": {
                    "source": self.catalogue,
                    "taken": list(self.courses),
                    "leftOut": list(self.left_out),
                },
                "identities": {
                    "source": self.identities_source,
                    "count": self.identities,
                    "note": self.identity_note,
                },
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
            "refusals": [refusal.to_json() for refusal in self.refusals],
            "why": self.why,
            "time": {
                "simulatedActiveMs": self.simulated_active_ms,
                "flushedActiveMs": self.flushed_active_ms,
                "emulatorActiveMs": None if self.emulator is None else self.emulator.active_ms,
                "runs": len(self.run_simulated_ms),
                "runActiveMs": dict(self.run_simulated_ms),
                "differingRuns": self.differing_runs[:20],
            },
            "emulator": emulator,
        }


def _fate(refusal: Refusal) -> str:
    """What became of the refused windows: given up, or kept for the fix (held)."""
    kept = refusal.count - refusal.given_up
    if not refusal.given_up:
        return "all kept: held until the backend is fixed, or new credentials"
    if not kept:
        return f"{refusal.given_up} given up"
    return f"{refusal.given_up} given up, {kept} kept"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def identity_note(
    students: int, identities: int, source: str, *, tokens_option: str = "--tokens"
) -> str:
    """Who ``students`` students with ``identities`` credentials from ``source`` were to
    the backend, plainly (one identity for all is one user there)."""
    if identities == 1 and students > 1:
        return (
            f"all {students} students share one identity ({source}): to the backend they "
            f"are one user; give {tokens_option} FILE, one student a line"
        )
    if identities < students:
        return (
            f"{identities} identities from {source} for {students} students, "
            "round-robin: some students share one"
        )
    used = min(identities, students)
    noun = "identity" if used == 1 else "identities"
    return f"{used} {noun} from {source}, one per student"


def _hms(ms: float) -> str:
    seconds = round(ms / 1000)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def render_text(report: Report) -> str:
    """The human-readable report."""
    lines = [
        f"timeback-client simulate: {report.students} students, "
        f"{report.lesson_minutes:g} lesson minute{'' if report.lesson_minutes == 1 else 's'} "
        f"at x{report.speed:g} "
        f"(heartbeat every {report.interval_s:g} s of lesson time), seed {report.seed}",
        f"  backend: {report.server}",
        f"  courses: {', '.join(report.courses) or '-'} ({report.catalogue})",
        *(f"    left out: {reason}" for reason in report.left_out),
        f"  students: {report.identity_note}",
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
        *_refusal_lines(report.refusals),
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
    verdicts = [
        "OK: every simulated millisecond was delivered exactly once."
        if emulator is not None
        else "OK: every simulated millisecond was accepted by the backend (only an emulator's "
        "totals can show that none was counted twice)."
    ]
    if not report.ok:
        verdicts = (
            ["NOT OK: nothing was simulated (give the students more --minutes)."]
            if report.simulated_active_ms == 0
            else [f"NOT OK: {why}" for why in report.why] or ["NOT OK: see above."]
        )
    lines += ["", *verdicts]
    return "\n".join(lines)


def _refusal_lines(refusals: Sequence[Refusal]) -> list[str]:
    """What the backend refused, a group a line, with one example message each."""
    lines = []
    for refusal in refusals:
        involved = []
        if refusal.courses:
            involved.append(f"courses {_some(refusal.courses, 6)}")
        if refusal.fields:
            involved.append(f"fields {_some(refusal.fields, 6)}")
        if refusal.status == 401 or refusal.code == "USER_RESOLUTION_FAILED":
            involved.append(f"credentials {_some(refusal.credentials, 6)}")
        lines += [
            f"  refused {refusal.kind}: {refusal.count} windows ({_fate(refusal)})"
            + "".join(f"; {item}" for item in involved),
            f"    e.g. {refusal.example}",
        ]
    return lines


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
