"""Detection of the integration mistakes the Timeback docs warn about.

Pure functions over the facts of a run's stored events (their Caliper payloads are never
read). Each problem names its run, a rule (a short stable id, listed in ``RULES``) and
human-readable evidence.

A wall clock set back during a run (a clock that ran ahead, put right) makes the run's
later windows overlap earlier ones in time, since timeback-client labels windows in the
true time: that is reported as ``overlapping-windows``, for the emulator cannot tell it
from a client that really sends one stretch of time twice, and the platform receives the
overlap all the same. A clock set forward leaves a gap between two windows, which no rule
reports: a run has gaps anyway, after a long absence.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

import attrs

from ._runs import Window, windows_of
from ._store import EventFacts
from ._validation import format_instant, parse_instant

DOUBLE_COUNTING = "double-counting"
HEARTBEAT_AFTER_COMPLETION = "heartbeat-after-completion"
COMPLETED_TWICE = "completed-twice"
OVERLAPPING_WINDOWS = "overlapping-windows"
WINDOW_ARITHMETIC = "window-arithmetic"
RUN_SHARED_BY_STUDENTS = "run-shared-by-students"
RUN_SHARED_BY_ACTIVITIES = "run-shared-by-activities"

#: Every rule id and what it means.
RULES: dict[str, str] = {
    DOUBLE_COUNTING: "heartbeats and record() time both count time for the run",
    HEARTBEAT_AFTER_COMPLETION: "a window starts at or after the run's completion "
    "(runId reused for a new attempt)",
    COMPLETED_TWICE: "two completions with different times on one run "
    "(runId reused for a new attempt)",
    OVERLAPPING_WINDOWS: "two windows of the run overlap in time (or the client's wall "
    "clock was set back during the run)",
    WINDOW_ARITHMETIC: "endedAt - startedAt != elapsedMs + pausedMs",
    RUN_SHARED_BY_STUDENTS: "two students sent events on one runId",
    RUN_SHARED_BY_ACTIVITIES: "one runId carries two activities",
}


@attrs.frozen(kw_only=True)
class Problem:
    """One detected mistake.

    Attributes:
        run_id: The run it concerns.
        rule: A stable rule id, one of ``RULES`` (e.g. ``"double-counting"``).
        evidence: What was seen, for a human.
    """

    run_id: str
    rule: str
    evidence: str

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_emulator/problems``."""
        return {"runId": self.run_id, "rule": self.rule, "evidence": self.evidence}


def find_problems(run_id: str, events: Sequence[EventFacts]) -> tuple[Problem, ...]:
    """Every problem of one run, rule by rule."""
    windows = windows_of(events)
    found: list[Problem] = []
    for rule, evidence in (
        *_double_counting(events),
        *_after_completion(events, windows),
        *_completed_twice(events),
        *_overlaps(windows),
        *_arithmetic(windows),
        *_shared(events),
    ):
        found.append(Problem(run_id=run_id, rule=rule, evidence=evidence))
    return tuple(found)


Finding = tuple[str, str]


def _double_counting(events: Sequence[EventFacts]) -> Iterator[Finding]:
    beats = [event for event in events if event.kind == "heartbeat"]
    timed = [event for event in events if event.kind == "time"]
    if beats and timed:
        beat_ms = sum(event.active_ms or 0 for event in beats)
        time_ms = sum(event.active_ms or 0 for event in timed)
        yield (
            DOUBLE_COUNTING,
            f"{len(beats)} heartbeat window(s) with {beat_ms} active ms and record() time "
            f"with {time_ms} active ms both count for this run",
        )


def _after_completion(events: Sequence[EventFacts], windows: Sequence[Window]) -> Iterator[Finding]:
    completions = [event for event in events if event.kind == "completion"]
    instants = [parse_instant(event.ended_at or "") for event in completions]
    known = [instant for instant in instants if instant is not None]
    if not known:
        return
    # A late retry of a window from before the completion is fine; a window that starts
    # after it is time of a new attempt booked on the finished run.
    completed_at = min(known)
    for window in windows:
        start = window.start
        if start is not None and start >= completed_at:
            yield (
                HEARTBEAT_AFTER_COMPLETION,
                f"window {window.started_at}..{window.ended_at} starts after the run was "
                f"completed at {format_instant(completed_at)}; a new attempt needs a fresh runId",
            )


def _completed_twice(events: Sequence[EventFacts]) -> Iterator[Finding]:
    # The same completion retried carries the same event time (the vendor treats that as
    # an idempotent retry); different times are two attempts on one runId.
    times = list(dict.fromkeys(e.ended_at for e in events if e.kind == "completion"))
    if len(times) > 1:
        yield (COMPLETED_TWICE, f"completions at {', '.join(str(t) for t in times)}")


def _overlaps(windows: Sequence[Window]) -> Iterator[Finding]:
    spans = [(w.start, w.end, w) for w in windows if w.start is not None and w.end is not None]
    for index, (_, end, window) in enumerate(spans):
        # Sorted by start, so the first later window starting at or after this one's end
        # ends the search.
        for later_start, _, later in spans[index + 1 :]:
            if later_start is None or end is None or later_start >= end:
                break
            yield (
                OVERLAPPING_WINDOWS,
                f"window {later.started_at}..{later.ended_at} overlaps "
                f"window {window.started_at}..{window.ended_at}",
            )


def _arithmetic(windows: Sequence[Window]) -> Iterator[Finding]:
    for window in windows:
        start, end = window.start, window.end
        claimed = window.elapsed_ms + window.paused_ms
        if start is None or end is None:
            yield (
                WINDOW_ARITHMETIC,
                f"window {window.started_at!r}..{window.ended_at!r} is not a real time span",
            )
            continue
        # Whole microseconds on both sides: exact, and no timedelta overflow for absurd ms.
        span_us = (end - start) // timedelta(microseconds=1)
        if span_us != claimed * 1000:
            actual_ms = span_us / 1000
            yield (
                WINDOW_ARITHMETIC,
                f"window {window.started_at}..{window.ended_at} spans {actual_ms:g} ms but "
                f"elapsedMs + pausedMs = {window.elapsed_ms} + {window.paused_ms} = {claimed}",
            )


def _shared(events: Sequence[EventFacts]) -> Iterator[Finding]:
    students = list(dict.fromkeys(event.student for event in events))
    if len(students) > 1:
        yield (RUN_SHARED_BY_STUDENTS, f"students {', '.join(students)} share this runId")
    activities = list(dict.fromkeys(event.object_id for event in events))
    if len(activities) > 1:
        yield (RUN_SHARED_BY_ACTIVITIES, f"activities {', '.join(activities)} share this runId")
