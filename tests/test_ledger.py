"""The ledger: pure time accounting on integer milliseconds, cut into windows."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timeback_client import Reading
from timeback_client._ledger import Cut, Ledger

ABANDON = 10_000


def _ledger(start: int = 0, *, abandon_after_ms: int = ABANDON) -> Ledger:
    return Ledger(Reading(start, 0), abandon_after_ms=abandon_after_ms)


# -- hand-built readings -------------------------------------------------------------------


def test_a_window_is_the_active_time_between_two_readings() -> None:
    ledger = _ledger(1_000)
    assert ledger.cut(Reading(16_000, 0)) == Cut(1_000, 16_000, 15_000, 0)
    assert ledger.cut(Reading(31_000, 0)) == Cut(16_000, 31_000, 15_000, 0)


def test_suspended_time_while_active_is_paused_not_active() -> None:
    ledger = _ledger()
    assert ledger.cut(Reading(15_000, 4_000)) == Cut(0, 15_000, 11_000, 4_000)


def test_cutting_an_empty_window_gives_nothing() -> None:
    ledger = _ledger(500)
    assert ledger.cut(Reading(500, 0)) is None
    assert ledger.cut(Reading(700, 0)) == Cut(500, 700, 200, 0)
    assert ledger.cut(Reading(700, 0)) is None


def test_pause_cuts_the_window_at_once() -> None:
    ledger = _ledger()
    assert ledger.pause(Reading(7_250, 0)) == Cut(0, 7_250, 7_250, 0)
    assert ledger.is_paused


def test_no_active_time_counts_while_paused() -> None:
    ledger = _ledger()
    ledger.pause(Reading(1_000, 0))
    assert ledger.active_ms(Reading(9_000, 0)) == 1_000


def test_the_first_window_after_a_resume_carries_the_paused_time() -> None:
    ledger = _ledger()
    ledger.pause(Reading(1_000, 0))
    assert ledger.resume(Reading(4_000, 0)) is None
    assert not ledger.is_paused
    assert ledger.cut(Reading(6_000, 0)) == Cut(1_000, 6_000, 2_000, 3_000)
    assert ledger.cut(Reading(8_000, 0)) == Cut(6_000, 8_000, 2_000, 0)


def test_a_pause_of_exactly_abandon_after_is_still_reported() -> None:
    ledger = _ledger()
    ledger.pause(Reading(1_000, 0))
    ledger.resume(Reading(1_000 + ABANDON, 0))
    assert ledger.cut(Reading(12_000, 0)) == Cut(1_000, 12_000, 1_000, ABANDON)


def test_a_pause_longer_than_abandon_after_restarts_from_a_clean_slate() -> None:
    ledger = _ledger()
    assert ledger.pause(Reading(1_000, 0)) == Cut(0, 1_000, 1_000, 0)
    ledger.resume(Reading(1_001 + ABANDON, 0))
    # The gap is not reported: the next window starts at the resume, with no paused time.
    assert ledger.cut(Reading(2_001 + ABANDON, 0)) == Cut(
        1_001 + ABANDON, 2_001 + ABANDON, 1_000, 0
    )
    assert ledger.active_ms(Reading(2_001 + ABANDON, 0)) == 2_000


def test_a_suspend_during_a_pause_counts_toward_abandon_after() -> None:
    ledger = _ledger()
    ledger.pause(Reading(1_000, 0))
    ledger.resume(Reading(1_001 + ABANDON, ABANDON))
    assert ledger.cut(Reading(2_001 + ABANDON, ABANDON)) == Cut(
        1_001 + ABANDON, 2_001 + ABANDON, 1_000, 0
    )


def test_a_suspend_longer_than_abandon_after_while_active_restarts_from_a_clean_slate() -> None:
    ledger = _ledger()
    # 5 s awake, then a suspend of ABANDON + 1 ms, read at one heartbeat.
    now = Reading(5_000 + ABANDON + 1, ABANDON + 1)
    assert ledger.cut(now) == Cut(0, 5_000, 5_000, 0)
    assert ledger.cut(Reading(now.timeline_ms + 3_000, now.suspended_ms)) == Cut(
        now.timeline_ms, now.timeline_ms + 3_000, 3_000, 0
    )


def test_a_short_suspend_while_active_keeps_the_windows_contiguous() -> None:
    ledger = _ledger()
    assert ledger.cut(Reading(5_000 + ABANDON, ABANDON)) == Cut(0, 5_000 + ABANDON, 5_000, ABANDON)


def test_a_long_suspend_is_cut_off_by_a_pause_too() -> None:
    ledger = _ledger()
    assert ledger.pause(Reading(2_000 + 2 * ABANDON, 2 * ABANDON)) == Cut(0, 2_000, 2_000, 0)
    ledger.resume(Reading(3_000 + 2 * ABANDON, 2 * ABANDON))
    assert ledger.finish(Reading(4_000 + 2 * ABANDON, 2 * ABANDON)) == Cut(
        2_000 + 2 * ABANDON, 4_000 + 2 * ABANDON, 1_000, 1_000
    )


def test_finish_while_active_closes_the_last_window() -> None:
    ledger = _ledger()
    ledger.cut(Reading(15_000, 0))
    assert ledger.finish(Reading(17_500, 0)) == Cut(15_000, 17_500, 2_500, 0)


def test_finish_while_paused_reports_the_pause_as_paused_time() -> None:
    ledger = _ledger()
    ledger.pause(Reading(3_000, 0))
    assert ledger.finish(Reading(8_000, 0)) == Cut(3_000, 8_000, 0, 5_000)


def test_finish_after_a_pause_longer_than_abandon_after_reports_nothing_more() -> None:
    ledger = _ledger()
    ledger.pause(Reading(3_000, 0))
    assert ledger.finish(Reading(3_001 + ABANDON, 0)) is None


def test_active_ms_stops_counting_at_finish() -> None:
    ledger = _ledger()
    ledger.finish(Reading(4_000, 0))
    assert ledger.active_ms(Reading(90_000, 0)) == 4_000


def test_readings_that_go_back_in_time_raise() -> None:
    ledger = _ledger(5_000)
    with pytest.raises(ValueError, match="back in time"):
        ledger.cut(Reading(4_999, 0))
    ledger.cut(Reading(6_000, 0))
    for operation in (ledger.cut, ledger.pause, ledger.resume, ledger.finish):
        with pytest.raises(ValueError, match="back in time"):
            operation(Reading(5_500, 0))


def test_active_ms_counts_cut_windows_plus_the_open_one() -> None:
    ledger = _ledger()
    ledger.cut(Reading(4_000, 0))
    assert ledger.active_ms(Reading(6_000, 500)) == 5_500
    assert ledger.active_ms(Reading(6_000, 500)) == 5_500  # reading does not change state


# -- property tests --------------------------------------------------------------------------

Op = tuple[str, int]


@dataclass
class Model:
    """The documented rules, stated independently of the ledger's code.

    - Time advanced while not paused and not suspended is active.
    - Time paused (by the user, or suspended) is paused time, reported in the next window.
    - A resume after a pause longer than ``abandon`` (measured on the timeline, suspends
      included) restarts from a clean slate: the paused time not yet in a window is dropped.
    - Likewise when the suspended time seen between two readings while active is longer than
      ``abandon``: that suspend is dropped, and tracking restarts at the reading.
    - Finishing while paused for longer than ``abandon`` drops the unreported pause.
    """

    abandon: int
    now: int = 0
    suspended: int = 0
    active: int = 0
    reported_paused: int = 0
    unreported_paused: int = 0
    paused_since: int | None = None
    suspended_since_reading: int = 0
    restarts: list[int] = field(default_factory=list)

    def advance(self, ms: int) -> None:
        self.now += ms
        if self.paused_since is None:
            self.active += ms
        else:
            self.unreported_paused += ms

    def suspend(self, ms: int) -> None:
        self.now += ms
        self.suspended += ms
        if self.paused_since is None:
            self.suspended_since_reading += ms
        else:
            self.unreported_paused += ms

    def read(self) -> Reading:
        """A reading taken by an operation: a long suspend since the last one restarts."""
        if self.suspended_since_reading > self.abandon:
            self._report()
            self._restart()
        else:
            self.unreported_paused += self.suspended_since_reading
        self.suspended_since_reading = 0
        return Reading(self.now, self.suspended)

    def cut(self) -> None:
        self._report()

    def pause(self) -> None:
        self._report()
        if self.paused_since is None:
            self.paused_since = self.now

    def resume(self) -> None:
        if self.paused_since is not None:
            if self.now - self.paused_since > self.abandon:
                self._restart()
            self.paused_since = None

    def finish(self) -> None:
        if self.paused_since is not None and self.now - self.paused_since > self.abandon:
            self._restart()
        self._report()

    def _report(self) -> None:
        self.reported_paused += self.unreported_paused
        self.unreported_paused = 0

    def _restart(self) -> None:
        self.unreported_paused = 0
        self.restarts.append(self.now)


def check_cuts(cuts: list[Cut], *, restarts: list[int], start: int) -> None:
    """The window invariants, with gaps allowed only where the model restarted."""
    previous_end = start
    starts: set[int] = set()
    for cut in cuts:
        assert cut.end_ms - cut.start_ms == cut.active_ms + cut.paused_ms, cut
        assert cut.active_ms >= 0
        assert cut.paused_ms >= 0
        assert cut.end_ms > cut.start_ms, f"empty window {cut}"
        assert cut.start_ms >= previous_end, f"{cut} overlaps the window before"
        assert cut.start_ms not in starts
        if cut.start_ms != previous_end:
            assert cut.start_ms in restarts, f"undocumented gap before {cut}"
        starts.add(cut.start_ms)
        previous_end = cut.end_ms


def _ops(abandon: int) -> st.SearchStrategy[list[Op]]:
    duration = st.one_of(
        st.integers(0, 3 * abandon),
        st.sampled_from([0, 1, abandon - 1, abandon, abandon + 1]),
    )
    op = st.one_of(
        st.tuples(st.just("advance"), duration),
        st.tuples(st.just("suspend"), duration),
        st.tuples(st.sampled_from(["pause", "resume", "cut"]), st.just(0)),
    )
    return st.lists(op, max_size=40)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[int, int, list[Op]]:
    abandon = draw(st.integers(1, 2_000))
    start = draw(st.integers(0, 10**12))
    return abandon, start, draw(_ops(abandon))


@settings(max_examples=400, deadline=None)
@given(scenarios())
def test_any_sequence_of_operations_keeps_every_window_invariant(
    scenario: tuple[int, int, list[Op]],
) -> None:
    """Windows are ordered, non-overlapping, distinct, exact, contiguous except at clean
    slates, and carry exactly the active time of an independent model."""
    abandon, start, ops = scenario
    model = Model(abandon=abandon, now=start)
    ledger = Ledger(Reading(start, 0), abandon_after_ms=abandon)
    cuts: list[Cut] = []
    last_active = 0

    def record(cut: Cut | None) -> None:
        if cut is not None:
            cuts.append(cut)

    for name, ms in ops:
        if name == "advance":
            model.advance(ms)
        elif name == "suspend":
            model.suspend(ms)
        else:
            reading = model.read()
            if name == "cut":
                before = ledger.active_ms(reading)
                record(ledger.cut(reading))
                model.cut()
                # After a cut the open window is empty: active_ms is the cut windows' sum.
                assert before == sum(c.active_ms for c in cuts)
            elif name == "pause":
                record(ledger.pause(reading))
                model.pause()
            else:
                record(ledger.resume(reading))
                model.resume()
        now = Reading(model.now, model.suspended)
        active = ledger.active_ms(now)
        assert active >= last_active, "active_ms went down"
        assert active == model.active
        last_active = active

    record(ledger.finish(model.read()))
    model.finish()
    check_cuts(cuts, restarts=model.restarts, start=start)
    assert sum(c.active_ms for c in cuts) == model.active
    assert sum(c.paused_ms for c in cuts) == model.reported_paused
    assert ledger.active_ms(Reading(model.now, model.suspended)) == model.active


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 60_000), min_size=1, max_size=30))
def test_heartbeats_without_pauses_tile_the_timeline(gaps: list[int]) -> None:
    """With no pause or suspend, the windows tile [start, end] with no paused time."""
    ledger = _ledger()
    now = 0
    cuts: list[Cut] = []
    for gap in gaps:
        now += gap
        cut = ledger.cut(Reading(now, 0))
        assert cut is not None
        cuts.append(cut)
    assert [c.start_ms for c in cuts] == [0, *[c.end_ms for c in cuts[:-1]]]
    assert cuts[-1].end_ms == now
    assert all(c.paused_ms == 0 for c in cuts)
