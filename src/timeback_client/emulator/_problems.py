"""Detection of the integration mistakes the Timeback docs warn about.

Pure functions over the facts of a run's stored events (their Caliper payloads are never
read). Each problem names its run, a rule (a short stable id, listed in ``RULES``),
human-readable evidence, the fix (``FIXES``) and the windows it concerns: one mistake is
one problem, however many windows it spoiled (a runId reused after completion is one
problem listing every late window, not one per window).

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


#: What to change in the app, rule by rule.
FIXES: dict[str, str] = {
    DOUBLE_COUNTING: "Count time one way: with heartbeats on, call record() without 'time' "
    "(or run the activity with time=False and send it through record())",
    HEARTBEAT_AFTER_COMPLETION: "Start a new activity, with a fresh runId, for a new attempt; "
    "end the activity before its completion is recorded",
    COMPLETED_TWICE: "Record one completion per run; a new attempt needs a new activity and runId",
    OVERLAPPING_WINDOWS: "Send each stretch of time once: a run's windows follow one another "
    "(startedAt = the previous endedAt); check the client's clock",
    WINDOW_ARITHMETIC: "Make endedAt - startedAt equal elapsedMs + pausedMs in every window",
    RUN_SHARED_BY_STUDENTS: "Give each student's activity a runId of its own",
    RUN_SHARED_BY_ACTIVITIES: "Give each activity a runId of its own",
}

#: How many windows a problem's evidence names; `Problem.windows` lists them all.
_NAMED = 3


@attrs.frozen(kw_only=True)
class Problem:
    """One mistake on one run, with every window it concerns.

    Attributes:
        run_id: The run it concerns.
        rule: A stable rule id, one of ``RULES`` (e.g. ``"double-counting"``).
        evidence: What was seen, for a human.
        windows: The windows of the mistake, by start (none for a rule about the run as a
            whole, such as ``completed-twice``).
    """

    run_id: str
    rule: str
    evidence: str
    windows: tuple[Window, ...] = ()

    @property
    def fix(self) -> str:
        """What to change in the app (``FIXES``)."""
        return FIXES[self.rule]

    def to_json(self) -> dict[str, Any]:
        """The JSON form served by ``GET /_emulator/problems``."""
        return {
            "runId": self.run_id,
            "rule": self.rule,
            "evidence": self.evidence,
            "fix": self.fix,
            "windows": [window.to_json() for window in self.windows],
        }


Finding = tuple[str, str, tuple[Window, ...]]


def find_problems(run_id: str, events: Sequence[EventFacts]) -> tuple[Problem, ...]:
    """Every problem of one run: at most one per rule, naming all its windows."""
    windows = windows_of(events)
    found: list[Problem] = []
    for rule, evidence, concerned in (
        *_double_counting(events, windows),
        *_after_completion(events, windows),
        *_completed_twice(events),
        *_overlaps(windows),
        *_arithmetic(windows),
        *_shared(events),
    ):
        found.append(Problem(run_id=run_id, rule=rule, evidence=evidence, windows=concerned))
    return tuple(found)


def _span(window: Window) -> str:
    return f"{window.started_at}..{window.ended_at}"


def _listed(items: Sequence[str]) -> str:
    """The first few items, and how many more."""
    shown = "; ".join(items[:_NAMED])
    return shown + (f"; and {len(items) - _NAMED} more" if len(items) > _NAMED else "")


def _double_counting(events: Sequence[EventFacts], windows: Sequence[Window]) -> Iterator[Finding]:
    beats = [event for event in events if event.kind == "heartbeat"]
    timed = [event for event in events if event.kind == "time"]
    if beats and timed:
        beat_ms = sum(event.active_ms or 0 for event in beats)
        time_ms = sum(event.active_ms or 0 for event in timed)
        yield (
            DOUBLE_COUNTING,
            f"{len(beats)} heartbeat window(s) with {beat_ms} active ms and record() time "
            f"with {time_ms} active ms both count for this run",
            tuple(windows),
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
    late = tuple(w for w in windows if w.start is not None and w.start >= completed_at)
    if late:
        yield (
            HEARTBEAT_AFTER_COMPLETION,
            f"{len(late)} window(s) start after the run was completed at "
            f"{format_instant(completed_at)}; a new attempt needs a fresh runId: "
            + _listed([f"window {_span(window)}" for window in late]),
            late,
        )


def _completed_twice(events: Sequence[EventFacts]) -> Iterator[Finding]:
    # The same completion retried carries the same event time (the vendor treats that as
    # an idempotent retry); different times are two attempts on one runId.
    times = list(dict.fromkeys(e.ended_at for e in events if e.kind == "completion"))
    if len(times) > 1:
        yield (COMPLETED_TWICE, f"completions at {', '.join(str(t) for t in times)}", ())


def _overlaps(windows: Sequence[Window]) -> Iterator[Finding]:
    spans = [(w.start, w.end, w) for w in windows if w.start is not None and w.end is not None]
    pairs: list[str] = []
    concerned: dict[int, Window] = {}
    for index, (_, end, window) in enumerate(spans):
        # Sorted by start, so the first later window starting at or after this one's end
        # ends the search.
        for later_start, _, later in spans[index + 1 :]:
            if later_start is None or end is None or later_start >= end:
                break
            pairs.append(f"window {_span(later)} overlaps window {_span(window)}")
            concerned.setdefault(window.seq, window)
            concerned.setdefault(later.seq, later)
    if pairs:
        yield (
            OVERLAPPING_WINDOWS,
            f"{len(pairs)} overlap(s) among {len(concerned)} windows: {_listed(pairs)}",
            tuple(w for w in windows if w.seq in concerned),
        )


def _arithmetic(windows: Sequence[Window]) -> Iterator[Finding]:
    wrong: list[tuple[Window, str]] = []
    for window in windows:
        start, end = window.start, window.end
        claimed = window.elapsed_ms + window.paused_ms
        if start is None or end is None:
            wrong.append(
                (window, f"window {window.started_at!r}..{window.ended_at!r} is not a real span")
            )
            continue
        # Whole microseconds on both sides: exact, and no timedelta overflow for absurd ms.
        span_us = (end - start) // timedelta(microseconds=1)
        if span_us != claimed * 1000:
            actual_ms = span_us / 1000
            wrong.append(
                (
                    window,
                    f"window {_span(window)} spans {actual_ms:g} ms but elapsedMs + pausedMs "
                    f"= {window.elapsed_ms} + {window.paused_ms} = {claimed}",
                )
            )
    if wrong:
        yield (
            WINDOW_ARITHMETIC,
            f"{len(wrong)} window(s) do not add up: " + _listed([text for _, text in wrong]),
            tuple(window for window, _ in wrong),
        )


def _shared(events: Sequence[EventFacts]) -> Iterator[Finding]:
    students = list(dict.fromkeys(event.student for event in events))
    if len(students) > 1:
        yield (RUN_SHARED_BY_STUDENTS, f"students {', '.join(students)} share this runId", ())
    activities = list(dict.fromkeys(event.object_id for event in events))
    if len(activities) > 1:
        yield (
            RUN_SHARED_BY_ACTIVITIES,
            f"activities {', '.join(activities)} share this runId",
            (),
        )
