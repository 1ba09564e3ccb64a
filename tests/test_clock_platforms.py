"""The system clock on each platform, with the platform's clocks faked: the one that
counts through a suspend gives the timeline, the one that stops during it tells the
suspend apart, so a suspend reads as suspended (paused) time and never as active."""

from __future__ import annotations

import ctypes
import sys
import time
from typing import Any

import pytest

from timeback_client import SystemClock

# Clock ids of our own, so the fakes answer the same on any machine.
BOOTTIME, MONOTONIC, UPTIME_RAW = 1007, 1001, 1008


class Machine:
    """A machine's two nanosecond clocks: `through` counts through a suspend, `awake`
    does not."""

    def __init__(self) -> None:
        self.through_ns = 7_000_000_000_000
        self.awake_ns = 3_000_000_000_000
        self.wall_ns = 1_767_603_600_000_000_000

    def run(self, seconds: float) -> None:
        self.through_ns += round(seconds * 1e9)
        self.awake_ns += round(seconds * 1e9)
        self.wall_ns += round(seconds * 1e9)

    def suspend(self, seconds: float) -> None:
        self.through_ns += round(seconds * 1e9)
        self.wall_ns += round(seconds * 1e9)

    def wall(self) -> int:
        return self.wall_ns


class FakeKernel32:
    """``QueryUnbiasedInterruptTime``: awake time in 100 ns units, into its argument."""

    def __init__(self, machine: Machine) -> None:
        self.machine = machine

    def QueryUnbiasedInterruptTime(self, pointer: Any) -> int:
        pointer._obj.value = self.machine.awake_ns // 100
        return 1


class FakeWindll:
    def __init__(self, kernel32: object) -> None:
        self.kernel32 = kernel32


def fake_posix(monkeypatch: pytest.MonkeyPatch, machine: Machine, clocks: dict[int, str]) -> None:
    def clock_gettime_ns(clock_id: int) -> int:
        value: int = getattr(machine, clocks[clock_id])
        return value

    monkeypatch.setattr(time, "clock_gettime_ns", clock_gettime_ns, raising=False)


def on_linux(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(time, "CLOCK_BOOTTIME", BOOTTIME, raising=False)
    monkeypatch.setattr(time, "CLOCK_MONOTONIC", MONOTONIC, raising=False)
    fake_posix(monkeypatch, machine, {BOOTTIME: "through_ns", MONOTONIC: "awake_ns"})


def on_macos(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    # Darwin's CLOCK_MONOTONIC counts through sleep; CLOCK_UPTIME_RAW does not.
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(time, "CLOCK_MONOTONIC", MONOTONIC, raising=False)
    monkeypatch.setattr(time, "CLOCK_UPTIME_RAW", UPTIME_RAW, raising=False)
    fake_posix(monkeypatch, machine, {MONOTONIC: "through_ns", UPTIME_RAW: "awake_ns"})


def on_windows(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    # QueryPerformanceCounter (time.monotonic) counts through sleep on Windows.
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(time, "monotonic_ns", lambda: machine.through_ns)
    monkeypatch.setattr(ctypes, "windll", FakeWindll(FakeKernel32(machine)), raising=False)


@pytest.mark.parametrize(
    "platform", [on_linux, on_macos, on_windows], ids=["linux", "macos", "windows"]
)
def test_a_suspend_counts_as_suspended_and_running_time_does_not(
    monkeypatch: pytest.MonkeyPatch, platform: Any
) -> None:
    machine = Machine()
    platform(monkeypatch, machine)
    clock = SystemClock(wall_ns=machine.wall)
    start = clock.read()
    machine.run(2)
    ran = clock.read()
    assert (ran.timeline_ms - start.timeline_ms, ran.suspended_ms) == (2_000, 0)
    machine.suspend(3_600)
    machine.run(1)
    woke = clock.read()
    assert woke.timeline_ms - ran.timeline_ms == 3_601_000
    assert woke.suspended_ms == 3_600_000
    # The wall clock went on through the suspend, as the timeline did: no step, so the
    # labels before and after it are on one offset.
    assert clock.wall_ms(start.timeline_ms) == 1_767_603_600_000
    assert clock.wall_ms(woke.timeline_ms) == machine.wall_ns // 1_000_000


def without_boottime(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.delattr(time, "CLOCK_BOOTTIME", raising=False)
    monkeypatch.setattr(time, "monotonic_ns", lambda: machine.awake_ns)


def unknown_platform(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(sys, "platform", "sunos5")
    monkeypatch.setattr(time, "monotonic_ns", lambda: machine.awake_ns)


def windows_without_unbiased_time(monkeypatch: pytest.MonkeyPatch, machine: Machine) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(time, "monotonic_ns", lambda: machine.awake_ns)
    monkeypatch.setattr(ctypes, "windll", FakeWindll(object()), raising=False)


@pytest.mark.parametrize(
    "platform",
    [without_boottime, unknown_platform, windows_without_unbiased_time],
    ids=["linux without CLOCK_BOOTTIME", "another platform", "windows without the call"],
)
def test_without_a_suspend_free_clock_both_clocks_are_the_monotonic_one(
    monkeypatch: pytest.MonkeyPatch, platform: Any
) -> None:
    """Where no clock stops during a suspend, the clock still runs (on the monotonic
    clock, which stops during a suspend on these systems), and a suspend then reads as a
    late heartbeat: neither counted as suspended nor as passed."""
    machine = Machine()
    platform(monkeypatch, machine)
    clock = SystemClock(wall_ns=machine.wall)
    start = clock.read()
    machine.run(2)
    machine.suspend(3_600)
    after = clock.read()
    assert (after.timeline_ms - start.timeline_ms, after.suspended_ms) == (2_000, 0)
    # The wall clock went on through the suspend: to the clock, a step, which labels follow.
    assert clock.wall_ms(after.timeline_ms) == machine.wall_ns // 1_000_000
