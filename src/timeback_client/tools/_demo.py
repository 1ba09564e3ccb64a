"""``timeback-client demo``: the stateful story, against an embedded emulator.

Session 1 starts a lesson, heartbeats flow, the student takes a break and later leaves
(`end()` flushes time and keeps the run open); the app saved the runId as soon as the
activity started. Session 2 resumes the same runId; the app's server records the
completion with that runId; a new attempt gets a fresh runId. Time is compressed with
`ScaledClock`: the windows carry lesson time. At the end the emulator's per-run totals are
compared with what the app measured, and its problem list must be empty.

``--mistakes`` then replays the two classic mistakes and shows the emulator catching them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final, TextIO

import anyio

from .._client import AsyncTimeback
from .._clock import ScaledClock
from .._delivery_errors import DeliveryError
from .._models import ErrorContext, TimeOptions, format_timestamp
from ..emulator import Emulator

__all__ = ["run_demo"]

TOKEN: Final = "demo-token-ada"  # noqa: S105 - the emulator's demo student, not a secret
EMAIL: Final = "ada@example.edu"
BASE_URL: Final = "http://emulator.localhost/api/timeback"
LESSON: Final[dict[str, Any]] = {
    "id": "fractions-1",
    "name": "Fractions: halves and quarters",
    "course": {"subject": "Math", "grade": 3},
}
OPTIONS: Final = TimeOptions(heartbeat_interval=15.0)

# What the student does in each session, in lesson seconds: ("work", s) or ("break", s).
Plan = Sequence[tuple[str, float]]


class Story:
    """The demo's state: the emulator, one compressed clock, what the app measured."""

    def __init__(self, speed: float, out: TextIO) -> None:
        self.clock = ScaledClock(speed)
        # The server's own "now" (completion times) runs on the same compressed time.
        self.emulator = Emulator(students={TOKEN: EMAIL}, clock=self.now)
        self.out = out
        self.measured_ms: dict[str, int] = {}
        self.failures = 0

    def now(self) -> datetime:
        """The compressed wall-clock time, as the server sees it."""
        return datetime.fromtimestamp(self.clock.wall_ms(self.clock.read().timeline_ms) / 1000, UTC)

    def say(self, text: str) -> None:
        ms = self.clock.read().timeline_ms
        minutes, rest = divmod(ms, 60_000)
        print(f"[{minutes:02d}:{rest / 1000:06.3f}] {text}", file=self.out, flush=True)

    def heading(self, text: str) -> None:
        print(f"\n== {text}", file=self.out, flush=True)

    async def wait(self, seconds: float) -> None:
        await self.clock.sleep_until(self.clock.read().timeline_ms + round(seconds * 1000))

    async def session(self, title: str, plan: Plan, *, run_id: str | None = None) -> str:
        """One app session: start (or resume) the lesson, follow the plan, end()."""
        self.heading(title)
        async with AsyncTimeback(
            BASE_URL,
            headers={"Authorization": f"Bearer {TOKEN}"},
            transport=self.emulator.transport(),
            clock=self.clock,
            outbox=None,  # the embedded emulator forgets everything when the demo ends
            enabled=True,  # its backend is embedded: TIMEBACK_DISABLED is for real ones
        ) as timeback:
            activity = timeback.activity.start(
                **LESSON,
                run_id=run_id,
                time=OPTIONS,
                on_flush=lambda ms: self.say(f"  heartbeat accepted: {ms / 1000:7.3f} s active"),
                on_error=self._on_error,
                on_pause=lambda: self.say("  paused: the student is on a break"),
                on_resume=lambda: self.say("  resumed: the student is back"),
            )
            verb = "resumes run" if run_id else "starts new run"
            self.say(f"start {LESSON['id']!r}: {verb} {activity.run_id} (saved by the app)")
            for step, seconds in plan:
                if step == "break":
                    activity.pause()
                    await self.wait(seconds)
                    activity.resume()
                else:
                    await self.wait(seconds)
            await activity.end()
            self.say(
                f"end(): time flushed, run kept open; {activity.elapsed_ms / 1000:.3f} s "
                "active this session"
            )
        self.measured_ms[activity.run_id] = (
            self.measured_ms.get(activity.run_id, 0) + activity.elapsed_ms
        )
        return activity.run_id

    def record_completion(self, run_id: str, *, time: dict[str, Any] | None = None) -> None:
        """What the app's server does when the lesson is finished: record() with the runId."""
        body: dict[str, Any] = {
            "user": {"email": EMAIL},
            "activity": LESSON,
            "metrics": {
                "total_questions": 10,
                "correct_questions": 9,
                "xp_earned": 12,
                "pct_complete": 100,
                "mastered_units": 1,
            },
            "run_id": run_id,
        }
        if time is not None:
            body["time"] = time
        self.emulator.record(body)
        extra = " with time (the app ran time=True: a mistake)" if time else ""
        self.say(f"server: record() completion of run {run_id}{extra}")

    def _on_error(self, error: DeliveryError, context: ErrorContext) -> None:
        self.failures += 1
        self.say(f"  delivery problem ({context.operation}): {error}")

    def totals(self) -> bool:
        """Print the emulator's per-run totals beside the app's; True if all match."""
        self.heading("Per-run totals, from the emulator")
        print(
            f"{'run':<36}  {'sessions':>8}  {'windows':>7}  {'active s':>10}  "
            f"{'app measured':>12}  {'inactive s':>10}  completed",
            file=self.out,
        )
        all_match = True
        for run in self.emulator.runs():
            measured = self.measured_ms.get(run.run_id)
            match = measured == run.active_ms
            all_match &= match
            print(
                f"{run.run_id:<36}  {run.sessions:>8}  {len(run.windows):>7}  "
                f"{run.active_ms / 1000:>10.3f}  "
                f"{'-' if measured is None else f'{measured / 1000:.3f}':>12}  "
                f"{run.inactive_ms / 1000:>10.3f}  {'yes' if run.completed else 'no'}"
                f"{'' if match else '   <- differs'}",
                file=self.out,
            )
        return all_match

    def problems(self) -> list[str]:
        """Print the emulator's problem list; the rules found."""
        found = self.emulator.problems()
        self.heading("Problems the emulator found")
        if not found:
            print("none", file=self.out)
        for problem in found:
            print(
                f"- {problem.rule} on run {problem.run_id}:\n  {problem.evidence}\n"
                f"  fix: {problem.fix}",
                file=self.out,
            )
        return [p.rule for p in found]


async def _story(story: Story, mistakes: bool) -> int:
    first = await story.session(
        "Session 1: the student starts the lesson, takes a break, then leaves",
        [("work", 120), ("break", 60), ("work", 45)],
    )
    await story.wait(30)
    again = await story.session(
        "Session 2, later: the app resumes the saved runId",
        [("work", 90)],
        run_id=first,
    )
    assert again == first
    story.record_completion(first)
    fresh = await story.session("A new attempt after completion: a fresh runId", [("work", 60)])
    story.say(f"new attempt ran as {fresh}, not {first}")
    exact = story.totals()
    problems = story.problems()
    ok = exact and not problems and story.failures == 0
    print(
        "\nEvery active millisecond the app measured reached the backend exactly once."
        if ok
        else "\nSomething did not add up: see above.",
        file=story.out,
    )
    if not mistakes:
        return 0 if ok else 1
    caught = await _mistakes(story, completed_run=first)
    return 0 if ok and caught else 1


async def _mistakes(story: Story, *, completed_run: str) -> bool:
    story.heading("Mistake 1: heartbeats AND server time for the same run (time counted twice)")
    run = await story.session("  a lesson tracked with heartbeats", [("work", 60)])
    ended = story.clock.wall_ms(story.clock.read().timeline_ms)
    # The server also reports the session's time itself, as if the app ran time=False.
    story.record_completion(
        run,
        time={
            "started_at": format_timestamp(ended - 60_000),
            "ended_at": format_timestamp(ended),
            "active_ms": 60_000,
            "inactive_ms": 0,
        },
    )
    story.heading("Mistake 2: reusing a completed runId for a new attempt")
    await story.session(
        "  a new attempt that resumes the completed run", [("work", 30)], run_id=completed_run
    )
    rules = set(story.problems())
    caught = {"double-counting", "heartbeat-after-completion"} <= rules
    print(
        "\nBoth mistakes were caught." if caught else "\nA mistake went unnoticed!",
        file=story.out,
    )
    return caught


def run_demo(*, speed: float = 100.0, mistakes: bool = False, out: TextIO | None = None) -> int:
    """Run the demo; returns the exit status (0 when everything added up)."""
    if not speed > 0:
        print("--speed must be positive", file=sys.stderr)
        return 2
    story = Story(speed, out or sys.stdout)
    print(
        f"timeback-client demo: one student, one lesson, lesson time x{speed:g} "
        f"(a {OPTIONS.heartbeat_interval:g} s heartbeat every "
        f"{OPTIONS.heartbeat_interval / speed * 1000:.0f} ms)",
        file=story.out,
    )
    try:
        return anyio.run(_story, story, mistakes)
    finally:
        story.emulator.close()
