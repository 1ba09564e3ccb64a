"""Per-run views over the stored events: windows, totals, sessions, completion."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import attrs

from ._store import COMPACT_JSON, EventFacts, SentEvent, event_json_text
from ._validation import parse_instant


class UnknownRun(LookupError):
    """No heartbeat and no ``record()`` ever named this runId.

    Attributes:
        run_id: the runId asked for.
    """

    def __init__(self, run_id: str, *, known: Sequence[str] = ()) -> None:
        seen = ", ".join(known[:3]) + (", ..." if len(known) > 3 else "")
        super().__init__(
            f"no heartbeat or record() for run {run_id!r}; "
            + (f"runs seen: {seen}" if known else "no run seen yet")
        )
        self.run_id = run_id


@attrs.frozen(kw_only=True)
class Window:
    """One accepted heartbeat window.

    Attributes:
        started_at: ``startedAt`` as sent.
        ended_at: ``endedAt`` as sent.
        elapsed_ms: Active milliseconds.
        paused_ms: Paused (inactive) milliseconds.
        student: The student's email.
        activity_id: The activity slug.
        seq: Arrival order of its event.
    """

    started_at: str
    ended_at: str
    elapsed_ms: int
    paused_ms: int
    student: str
    activity_id: str
    seq: int

    @property
    def start(self) -> datetime | None:
        """``started_at`` as an aware datetime, None when it is not a real instant."""
        return parse_instant(self.started_at)

    @property
    def end(self) -> datetime | None:
        """``ended_at`` as an aware datetime, None when it is not a real instant."""
        return parse_instant(self.ended_at)

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON form."""
        return {
            "startedAt": self.started_at,
            "endedAt": self.ended_at,
            "elapsedMs": self.elapsed_ms,
            "pausedMs": self.paused_ms,
            "student": self.student,
            "activityId": self.activity_id,
            "seq": self.seq,
        }

    @classmethod
    def from_event(cls, event: EventFacts) -> Window:
        """The window a heartbeat event was made from."""
        assert event.kind == "heartbeat"
        assert event.started_at is not None
        assert event.ended_at is not None
        return cls(
            started_at=event.started_at,
            ended_at=event.ended_at,
            elapsed_ms=event.active_ms or 0,
            paused_ms=event.inactive_ms or 0,
            student=event.student,
            activity_id=event.activity_id,
            seq=event.seq,
        )


@attrs.frozen(kw_only=True)
class Run:
    """What the backend recorded for one runId.

    Attributes:
        run_id: The run.
        students: Emails of the students seen on the run (one, unless misused).
        activities: Activity slugs seen on the run (one, unless misused).
        active_ms: Active time Timeback counts for the run: every TimeSpentEvent of it,
            heartbeats and ``record()`` time alike (so double counting shows here).
        inactive_ms: Inactive time counted the same way.
        windows: Heartbeat windows, ordered by start.
        sessions: Number of contiguous window chains (a chain breaks where a window does
            not start at the previous one's end): 2 for one resume.
        completed: Whether ``record()`` recorded a completion for the run.
        events: Every event of the run in arrival order.
    """

    run_id: str
    students: tuple[str, ...]
    activities: tuple[str, ...]
    active_ms: int
    inactive_ms: int
    windows: tuple[Window, ...] = attrs.field(repr=False)
    sessions: int
    completed: bool
    events: tuple[SentEvent, ...] = attrs.field(repr=False)

    def __repr__(self) -> str:
        return (
            f"<Run {self.run_id} active_ms={self.active_ms} inactive_ms={self.inactive_ms} "
            f"windows={len(self.windows)} sessions={self.sessions} completed={self.completed}>"
        )

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON form served by ``GET /_emulator/runs/{runId}``."""
        return {**self._summary_json(), "events": [event.to_json() for event in self.events]}

    def _summary_json(self) -> dict[str, Any]:
        return {
            "runId": self.run_id,
            "students": list(self.students),
            "activities": list(self.activities),
            "activeMs": self.active_ms,
            "inactiveMs": self.inactive_ms,
            "windows": [window.to_json() for window in self.windows],
            "sessions": self.sessions,
            "completed": self.completed,
        }


def run_json_text(run: Run) -> str:
    """``run.to_json()`` as JSON text, each event's stored Caliper text spliced in as it is."""
    summary = COMPACT_JSON.encode(run._summary_json())
    events = ",".join(map(event_json_text, run.events))
    return f'{summary[:-1]},"events":[{events}]}}'


def windows_of(events: Sequence[EventFacts]) -> tuple[Window, ...]:
    """The heartbeat windows among ``events``, by start instant (unparseable ones last)."""
    windows = [Window.from_event(event) for event in events if event.kind == "heartbeat"]

    def order(window: Window) -> tuple[int, float, int]:
        start = window.start
        return (0, start.timestamp(), window.seq) if start else (1, 0.0, window.seq)

    return tuple(sorted(windows, key=order))


def count_sessions(windows: Sequence[Window]) -> int:
    """Contiguous chains among windows sorted by start."""
    sessions = 0
    previous_end: datetime | None = None
    for window in windows:
        start = window.start
        if previous_end is None or start is None or start != previous_end:
            sessions += 1
        previous_end = window.end
    return sessions


def build_run(run_id: str, events: Sequence[SentEvent]) -> Run:
    """The run view of one run's events (an empty run when there are none)."""
    windows = windows_of(events)
    timed = [event for event in events if event.kind in ("heartbeat", "time")]
    return Run(
        run_id=run_id,
        students=tuple(dict.fromkeys(event.student for event in events)),
        activities=tuple(dict.fromkeys(event.activity_id for event in events)),
        active_ms=sum(event.active_ms or 0 for event in timed),
        inactive_ms=sum(event.inactive_ms or 0 for event in timed),
        windows=windows,
        sessions=count_sessions(windows),
        completed=any(event.kind == "completion" for event in events),
        events=tuple(events),
    )
