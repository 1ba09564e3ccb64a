"""Where time comes from: the system's clocks, or a virtual clock for tests.

A clock answers two questions in integer milliseconds:

- ``read()`` gives the *timeline*, a monotonic clock that keeps counting while the machine
  is suspended, and the total time the machine spent *suspended* since the clock was made.
  Active time is the timeline's advance minus the suspended time's advance, so a suspend
  counts as paused, never as active.
- ``wall_ms(t)`` maps a timeline instant to epoch milliseconds: ``t`` plus the clock's
  *offset*, the wall clock's lead over the timeline. Only the labels of windows
  (``startedAt``, ``endedAt``) come from it; durations come from the timeline alone, so a
  wall-clock jump never produces negative or inflated windows.

**Labels follow the real clock.** A Raspberry Pi without a battery-backed clock boots
with the time it last shut down, and NTP steps it 10-60 s after the app started; a VM
restore or a person fixing the clock does the same. The platform files a student's
minutes by each window's ``endedAt``, so labels that kept the boot-time offset would file
a whole day's minutes under the wrong day. Each ``read()`` therefore compares the wall
clock with the timeline (`WallAnchor`): when the wall clock has *stepped* away from where
the offset puts it by more than ``STEP_MS`` (2 s), the offset is taken again, and every
label mapped from then on carries the true time. Smaller differences (NTP slewing the
clock, the few microseconds between two reads) never move the offset, so a healthy
machine's labels stay exactly contiguous.

**Backwards too.** A step back (a clock that ran ahead, set right) moves labels back as
well: a minute belongs to the day it happened, and the server checks no order or overlap
between windows. Windows cut after a step back may therefore overlap earlier windows of
the same run in time; what the server does care about is ``startedAt``, on which it
dedupes, and the activity makes sure no start label of a run repeats (see
``AsyncActivity``). Active and paused milliseconds never change with a step.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import logging
import sys
import time
from collections.abc import Callable
from typing import Final, NamedTuple, Protocol

import anyio

__all__ = [
    "STEP_MS",
    "Clock",
    "Reading",
    "ScaledClock",
    "SystemClock",
    "VirtualClock",
    "WallAnchor",
    "system_clock",
]

# A wall clock this far from where the offset puts it has been stepped (NTP on a machine
# that booted with a stale clock, a VM restore, a person): labels follow it. NTP slews
# smaller errors away gradually, and those leave the offset alone.
STEP_MS: Final = 2_000

logger = logging.getLogger("timeback_client")


class Reading(NamedTuple):
    """One reading of a clock, in integer milliseconds."""

    timeline_ms: int
    suspended_ms: int


class Clock(Protocol):
    """What the time accounting and the heartbeat loop need from a clock."""

    def read(self) -> Reading:
        """The timeline now, and the suspended time so far."""
        ...

    def wall_ms(self, timeline_ms: int) -> int:
        """The epoch milliseconds of a timeline instant: ``timeline_ms`` plus the clock's
        offset, the same for every instant until the offset is taken again (at a
        ``read()`` that finds the wall clock stepped). For labels only, never durations."""
        ...

    async def sleep_until(self, timeline_ms: int) -> None:
        """Return once the timeline has reached ``timeline_ms`` (at once if it has)."""
        ...


def _system_clocks() -> tuple[Callable[[], int], Callable[[], int]]:
    """Two nanosecond clocks: one that counts through suspend, one that stops during it."""
    if sys.platform.startswith("linux") and hasattr(time, "CLOCK_BOOTTIME"):
        boottime, monotonic = time.CLOCK_BOOTTIME, time.CLOCK_MONOTONIC
        return (lambda: time.clock_gettime_ns(boottime)), (lambda: time.clock_gettime_ns(monotonic))
    if sys.platform == "darwin":
        # On Darwin CLOCK_MONOTONIC counts through sleep and CLOCK_UPTIME_RAW does not.
        darwin_mono, uptime = time.CLOCK_MONOTONIC, time.CLOCK_UPTIME_RAW
        return (lambda: time.clock_gettime_ns(darwin_mono)), (lambda: time.clock_gettime_ns(uptime))
    if sys.platform == "win32":
        awake = _windows_unbiased_ns()
        if awake is not None:
            # time.monotonic() (QueryPerformanceCounter) counts through sleep on Windows.
            return time.monotonic_ns, awake
    # Elsewhere no suspend-free clock is known: a suspend then reads as a late heartbeat.
    return time.monotonic_ns, time.monotonic_ns


def _windows_unbiased_ns() -> Callable[[], int] | None:
    import ctypes

    try:
        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        query = kernel32.QueryUnbiasedInterruptTime
    except (AttributeError, OSError):
        return None
    value = ctypes.c_ulonglong()

    def read() -> int:
        query(ctypes.byref(value))
        return int(value.value) * 100  # 100 ns units

    return read


class WallAnchor:
    """The offset from a monotonic reference to the wall clock, taken again when the wall
    clock steps.

    Every clock here keeps one: ``offset_ms`` is the wall clock's lead over the reference
    (the timeline, or for `ScaledClock` the real monotonic time), and `follow` compares the
    wall clock with the reference now. The offset is one int, replaced whole, so a thread
    that maps a label while another re-anchors sees the old offset or the new one, never a
    mix.

    Args:
        wall_ms: the wall clock, epoch ms.
        reference_ms: the reference's reading now.
    """

    __slots__ = ("_wall_ms", "offset_ms")

    def __init__(self, wall_ms: Callable[[], int], reference_ms: int) -> None:
        self._wall_ms = wall_ms
        self.offset_ms = wall_ms() - reference_ms

    def follow(self, reference_ms: int) -> None:
        """Take the offset again if the wall clock stepped more than `STEP_MS` away from
        ``reference_ms + offset_ms``."""
        offset = self._wall_ms() - reference_ms
        step = offset - self.offset_ms
        if abs(step) > STEP_MS:
            self.offset_ms = offset
            logger.debug("timeback: the wall clock stepped %+d ms; labels follow it", step)


class SystemClock:
    """The machine's clocks, with labels that follow the wall clock's steps.

    Args:
        wall_ns: the wall clock in epoch nanoseconds (`time.time_ns`; a test injects its
            own to step it).
    """

    def __init__(self, wall_ns: Callable[[], int] = time.time_ns) -> None:
        self._through_suspend, self._awake = _system_clocks()
        self._suspend_offset_ms = self._offset_ms()
        self._suspended_ms = 0
        self._wall = WallAnchor(lambda: wall_ns() // 1_000_000, self._timeline_ms())

    def _timeline_ms(self) -> int:
        return self._through_suspend() // 1_000_000

    def _offset_ms(self) -> int:
        # The two clocks advance at the same rate except while suspended; rounding keeps
        # the sub-millisecond gap between the two reads from showing up as suspend time.
        return round((self._through_suspend() - self._awake()) / 1_000_000)

    def read(self) -> Reading:
        """The timeline now, and the suspended time since this clock was made."""
        suspended = self._offset_ms() - self._suspend_offset_ms
        # The offset between the clocks jitters by a millisecond when it sits near x.5 ms;
        # a real suspend is far longer, so only a step of 2 ms or more counts, and the
        # total never goes back.
        if suspended >= self._suspended_ms + 2:
            self._suspended_ms = suspended
        timeline_ms = self._timeline_ms()
        # The timeline counts through a suspend, as the wall clock does: only a step of
        # the wall clock moves the offset.
        self._wall.follow(timeline_ms)
        return Reading(timeline_ms, self._suspended_ms)

    def wall_ms(self, timeline_ms: int) -> int:
        """Epoch ms of a timeline instant, on the wall clock as of the last step seen."""
        return timeline_ms + self._wall.offset_ms

    async def sleep_until(self, timeline_ms: int) -> None:
        """Sleep until the timeline reaches ``timeline_ms``."""
        remaining_ms = timeline_ms - self._timeline_ms()
        await anyio.sleep(max(0, remaining_ms) / 1000)


@functools.cache
def system_clock() -> SystemClock:
    """The process's one `SystemClock`: every client shares its wall-clock offset."""
    return SystemClock()


class VirtualClock:
    """A clock that only moves when a test says so.

    Sleepers wake in deadline order as `advance` passes their deadlines, and each one runs
    until every task is blocked again, so a two-hour session runs in milliseconds with
    exact, repeatable windows. Use it from the event loop that runs the SDK.

    Its wall clock runs with the timeline, and `step_wall` steps it without moving the
    timeline, as NTP or a person setting the clock would.

    Args:
        wall_start_ms: the epoch milliseconds that timeline instant 0 maps to
            (default 2026-01-05T09:00:00.000Z, a Monday morning).
    """

    def __init__(self, wall_start_ms: int = 1_767_603_600_000) -> None:
        self._now_ms = 0
        self._suspended_ms = 0
        self._wall_start_ms = wall_start_ms
        self._wall = WallAnchor(self.wall_now_ms, 0)
        self._sleepers: list[tuple[int, int, anyio.Event]] = []
        self._order = itertools.count()

    @property
    def now_ms(self) -> int:
        """The virtual timeline, in ms since the clock was made."""
        return self._now_ms

    def wall_now_ms(self) -> int:
        """The virtual wall clock now, epoch ms (what labels follow once a read sees it)."""
        return self._wall_start_ms + self._now_ms

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock by ``seconds`` (back if negative); the timeline stays."""
        self._wall_start_ms += round(seconds * 1000)

    def read(self) -> Reading:
        """The virtual timeline and the virtual suspended time."""
        self._wall.follow(self._now_ms)
        return Reading(self._now_ms, self._suspended_ms)

    def wall_ms(self, timeline_ms: int) -> int:
        """Epoch ms of a timeline instant, on the wall clock as of the last step seen."""
        return timeline_ms + self._wall.offset_ms

    async def sleep_until(self, timeline_ms: int) -> None:
        """Wait until `advance` moves the timeline to ``timeline_ms``."""
        if timeline_ms <= self._now_ms:
            await anyio.lowlevel.checkpoint()
            return
        event = anyio.Event()
        heapq.heappush(self._sleepers, (timeline_ms, next(self._order), event))
        await event.wait()

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline, in order."""
        await self._move(round(seconds * 1000), suspended=False)

    async def suspend(self, seconds: float) -> None:
        """Simulate a machine suspend: time passes, none of it awake.

        Sleepers due during the suspend wake late, at its end, as they do on a real machine.
        """
        await self._move(round(seconds * 1000), suspended=True)

    async def _move(self, ms: int, *, suspended: bool) -> None:
        if ms < 0:
            raise ValueError("a clock cannot go backwards")
        # Let tasks that were just started or woken register their sleeps first.
        await _wait_all_tasks_blocked()
        target = self._now_ms + ms
        if suspended:
            self._now_ms = target
            self._suspended_ms += ms
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, event = heapq.heappop(self._sleepers)
            self._now_ms = max(self._now_ms, deadline)
            event.set()
            await _wait_all_tasks_blocked()
        self._now_ms = target
        await _wait_all_tasks_blocked()


# Enough scheduler rounds for a woken task to run until it blocks again in the common case.
_SETTLE_ROUNDS: Final = 32


async def _wait_all_tasks_blocked() -> None:
    """`anyio.wait_all_tasks_blocked`, without its 0.1 s poll in the common case.

    On asyncio, anyio sleeps 0.1 s (real time) whenever a task is still runnable, which
    made each virtual wake-up cost a tenth of a second. Yielding a few scheduler rounds
    first lets woken tasks (and the tasks they start) run until they block, so the check
    that follows usually finds every task blocked at once.
    """
    for _ in range(_SETTLE_ROUNDS):
        await anyio.lowlevel.checkpoint()
    await anyio.wait_all_tasks_blocked()


class ScaledClock:
    """The machine's monotonic clock, running ``speed`` times faster.

    For demos and load simulations that compress a school day into minutes: windows carry
    lesson time (a 15 s heartbeat is 15,000 ms on the wire) while only 15/speed s pass.
    A step of the real wall clock moves labels by the step (the anchor follows real time,
    not scaled time).

    Args:
        speed: how much faster than real time the timeline runs.
        wall_ns: the wall clock in epoch nanoseconds (`time.time_ns`).
    """

    def __init__(self, speed: float, wall_ns: Callable[[], int] = time.time_ns) -> None:
        if not speed > 0:
            raise ValueError("speed must be positive")
        self.speed = speed
        self._start_ns = time.monotonic_ns()
        self._wall = WallAnchor(lambda: wall_ns() // 1_000_000, 0)

    def read(self) -> Reading:
        """Scaled time since this clock was made; suspends are not told apart here."""
        real_ns = time.monotonic_ns() - self._start_ns
        self._wall.follow(real_ns // 1_000_000)
        return Reading(int(real_ns * self.speed) // 1_000_000, 0)

    def wall_ms(self, timeline_ms: int) -> int:
        """Epoch ms: the real start, plus scaled time, plus the wall clock's steps."""
        return timeline_ms + self._wall.offset_ms

    async def sleep_until(self, timeline_ms: int) -> None:
        """Sleep in real time until the scaled timeline reaches ``timeline_ms``."""
        remaining_ms = timeline_ms - self.read().timeline_ms
        await anyio.sleep(max(0, remaining_ms) / 1000 / self.speed)
