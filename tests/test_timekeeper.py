"""The timekeeper: an activity's pause reasons, idleness and heartbeat deadlines, as pure
transitions on plain readings (no clock, no loop, no I/O)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from hypothesis import given, settings
from hypothesis import strategies as st

from timeback_client import Reading
from timeback_client._ledger import Cut
from timeback_client._timekeeper import IDLE, USER, Step, Timekeeper

INTERVAL = 15_000
IDLE_MS = 60_000
ABANDON = 600_000


def keeper(*, idle_ms: int | None = IDLE_MS, beats: bool = True, start: int = 0) -> Timekeeper:
    return Timekeeper(
        Reading(start, 0),
        interval_ms=INTERVAL,
        idle_ms=idle_ms,
        abandon_after_ms=ABANDON,
        beats=beats,
    )


def at(ms: int, suspended: int = 0) -> Reading:
    return Reading(ms, suspended)


# -- deadlines --------------------------------------------------------------------------------


def test_the_first_deadline_is_the_first_beat_or_the_idle_timeout_whichever_is_first() -> None:
    assert keeper().due() == INTERVAL
    assert keeper(idle_ms=5_000).due() == 5_000
    assert keeper(idle_ms=None, beats=False).due() is None
    assert keeper(beats=False).due() == IDLE_MS


def test_a_beat_cuts_the_window_and_keeps_the_cadence() -> None:
    time = keeper(idle_ms=None)
    assert time.fire(at(15_003)) == Step(Cut(0, 15_003, 15_003, 0))
    assert time.due() == 30_000  # the schedule, not 15 s after a late beat
    assert time.fire(at(30_000)) == Step(Cut(15_003, 30_000, 14_997, 0))


def test_a_beat_more_than_an_interval_late_restarts_the_cadence_without_a_burst() -> None:
    time = keeper(idle_ms=None)
    assert time.fire(at(47_000)).cut == Cut(0, 47_000, 47_000, 0)
    assert time.due() == 62_000


def test_firing_before_anything_is_due_does_nothing() -> None:
    """A deadline that moved since it was read (a touch, a resume) fires early: no-op."""
    time = keeper()
    assert time.fire(at(14_999)) == Step()
    assert time.due() == INTERVAL


def test_touch_postpones_the_idle_deadline() -> None:
    time = keeper(idle_ms=5_000)
    assert time.touch(at(4_000)) == Step()
    assert time.due() == 9_000
    assert time.fire(at(5_000)) == Step()


def test_idleness_pauses_at_its_deadline_and_cuts_the_window() -> None:
    time = keeper(idle_ms=5_000)
    assert time.fire(at(5_000)) == Step(Cut(0, 5_000, 5_000, 0), paused=True)
    assert time.paused_by == IDLE
    assert time.due() is None  # nothing is due while paused


def test_touch_ends_an_idle_pause_and_the_cadence_restarts_from_there() -> None:
    time = keeper(idle_ms=5_000)
    time.fire(at(5_000))
    assert time.touch(at(8_000)) == Step(resumed=True)
    assert time.paused_by is None
    assert time.due() == 13_000  # idle 5 s after the touch, before the next beat
    assert time.fire(at(13_000)) == Step(Cut(5_000, 13_000, 5_000, 3_000), paused=True)


def test_an_app_pause_takes_over_an_idle_pause_and_only_resume_ends_it() -> None:
    time = keeper(idle_ms=5_000)
    time.fire(at(5_000))
    assert time.pause(at(6_000)) == Step()  # already paused: no callback, no window
    assert time.paused_by == USER
    assert time.touch(at(7_000)) == Step()
    assert time.paused_by == USER
    assert time.resume(at(9_000)) == Step(resumed=True)


def test_pause_and_resume_are_idempotent() -> None:
    time = keeper()
    assert time.resume(at(1_000)) == Step()
    assert time.pause(at(2_000)) == Step(Cut(0, 2_000, 2_000, 0), paused=True)
    assert time.pause(at(3_000)) == Step()
    assert time.resume(at(4_000)) == Step(resumed=True)
    assert time.resume(at(5_000)) == Step()


def test_without_beats_a_pause_still_cuts_for_the_totals() -> None:
    """``time=False``: no heartbeat deadlines, but the ledger still counts (elapsed_ms)."""
    time = keeper(idle_ms=None, beats=False)
    assert time.due() is None
    assert time.pause(at(4_000)).cut == Cut(0, 4_000, 4_000, 0)
    assert time.active_ms(at(9_000)) == 4_000


def test_after_finish_nothing_changes_and_nothing_is_due() -> None:
    time = keeper()
    assert time.finish(at(10_000)) == Step(Cut(0, 10_000, 10_000, 0))
    assert time.due() is None
    for step in (
        time.finish(at(11_000)),
        time.pause(at(11_000)),
        time.resume(at(11_000)),
        time.touch(at(11_000)),
        time.fire(at(30_000)),
    ):
        assert step == Step()
    assert time.open_window(at(12_000)) is None
    assert time.active_ms(at(12_000)) == 10_000


# -- any sequence, against an independent model ------------------------------------------------


@dataclass
class Model:
    """What the activity's time should be, written plainly: (active, reason) per instant."""

    idle_ms: int | None
    beats: bool
    now: int = 0
    paused_by: str | None = None
    last_input: int = 0
    beat_due: int = INTERVAL
    ended: bool = False
    active_ms: int = 0

    def advance(self, ms: int) -> None:
        if not self.ended and self.paused_by is None:
            self.active_ms += ms
        self.now += ms

    def due(self) -> int | None:
        if self.ended or self.paused_by is not None:
            return None
        candidates = [self.beat_due] if self.beats else []
        if self.idle_ms is not None:
            candidates.append(self.last_input + self.idle_ms)
        return min(candidates, default=None)


ops = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), st.integers(0, 40_000)),
        st.tuples(st.sampled_from(["pause", "resume", "touch", "fire", "finish"]), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    ops=ops,
    idle_ms=st.one_of(st.none(), st.integers(1, 30_000)),
    beats=st.booleans(),
)
def test_any_sequence_of_calls_matches_the_model(
    ops: list[tuple[str, int]], idle_ms: int | None, beats: bool
) -> None:
    """Whatever the app does and whenever deadlines fire: the time counted active is the
    time the model says, windows tile the timeline, callbacks come once per change of
    state, and the next deadline is the model's."""
    time = Timekeeper(
        at(0), interval_ms=INTERVAL, idle_ms=idle_ms, abandon_after_ms=10**9, beats=beats
    )
    model = Model(idle_ms=idle_ms, beats=beats)
    cuts: list[Cut] = []
    for op, ms in ops:
        now = at(model.now + ms)
        if op == "advance":
            # Deadlines that pass meanwhile fire at their instant, as the scheduler does.
            while (due := model.due()) is not None and due <= now.timeline_ms:
                model.advance(due - model.now)
                step = time.fire(at(model.now))
                _apply_fire(model, step)
                cuts += [step.cut] if step.cut else []
            model.advance(now.timeline_ms - model.now)
            continue
        step = getattr(time, op)(now)
        expected_pause = op == "pause" and model.paused_by is None and not model.ended
        expected_resume = (
            not model.ended
            and model.paused_by is not None
            and (op == "resume" or (op == "touch" and model.paused_by == IDLE))
        )
        assert step.paused == expected_pause
        assert step.resumed == expected_resume
        _apply_call(model, op)
        if op == "fire":
            _apply_fire(model, step)
        cuts += [step.cut] if step.cut else []
        assert time.due() == model.due()
    assert time.active_ms(at(model.now)) == model.active_ms
    for earlier, later in itertools.pairwise(cuts):
        assert earlier.end_ms == later.start_ms  # no abandon here: one contiguous tiling
    for cut in cuts:
        assert cut.end_ms - cut.start_ms == cut.active_ms + cut.paused_ms
        assert cut.end_ms > cut.start_ms


def _apply_call(model: Model, op: str) -> None:
    if model.ended:
        return
    if op == "pause":
        model.paused_by = USER
    elif op == "resume" and model.paused_by is not None:
        model.paused_by = None
        model.last_input = model.now
        model.beat_due = model.now + INTERVAL
    elif op == "touch":
        if model.paused_by == IDLE:
            model.paused_by = None
            model.beat_due = model.now + INTERVAL
        model.last_input = model.now
    elif op == "finish":
        model.ended = True


def _apply_fire(model: Model, step: Step) -> None:
    if model.ended or model.paused_by is not None:
        assert step == Step()
        return
    if model.idle_ms is not None and model.now >= model.last_input + model.idle_ms:
        assert step.paused
        model.paused_by = IDLE
    elif model.beats and model.now >= model.beat_due:
        assert step.cut is not None
        model.beat_due += INTERVAL
        if model.beat_due <= model.now:
            model.beat_due = model.now + INTERVAL
    else:
        assert step == Step()
