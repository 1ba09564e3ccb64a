"""The scheduler: one task drives every deadline of a loop, and runs work from other threads."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from timeback_client import VirtualClock
from timeback_client._scheduler import Scheduler

pytestmark = pytest.mark.anyio


class Item:
    """Something with deadlines: fires at each instant of ``plan``, in order."""

    def __init__(self, clock: VirtualClock, name: str, plan: list[int], log: list[Any]) -> None:
        self.clock = clock
        self.name = name
        self.plan = plan
        self.log = log
        self.schedule_entry: list[Any] | None = None
        self.raises = False

    def due(self) -> int | None:
        return self.plan[0] if self.plan else None

    def fire(self) -> None:
        now = self.clock.now_ms
        if self.plan and self.plan[0] <= now:
            self.plan.pop(0)
            self.log.append((self.name, now))
            if self.raises:
                raise RuntimeError("a defect in one activity")


@pytest.fixture
async def running() -> AsyncIterator[tuple[Scheduler, VirtualClock]]:
    clock = VirtualClock()
    scheduler = Scheduler(clock)
    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        yield scheduler, clock
        tg.cancel_scope.cancel()


async def test_one_task_fires_every_item_at_its_instants_in_order(
    running: tuple[Scheduler, VirtualClock],
) -> None:
    scheduler, clock = running
    log: list[Any] = []
    tasks_before = len(anyio.get_running_tasks())
    for index in range(100):
        scheduler.update(Item(clock, f"a{index}", [1_000 + index, 5_000 + index], log))
    assert len(anyio.get_running_tasks()) == tasks_before  # no task per item
    await clock.advance(10)
    assert len(log) == 200
    assert [at for _, at in log] == sorted(at for _, at in log)
    assert log[0] == ("a0", 1_000)
    assert log[-1] == ("a99", 5_099)


async def test_an_earlier_deadline_wakes_the_sleeping_task(
    running: tuple[Scheduler, VirtualClock],
) -> None:
    scheduler, clock = running
    log: list[Any] = []
    late = Item(clock, "late", [60_000], log)
    scheduler.update(late)
    await clock.advance(1)  # the task now sleeps until 60 s
    early = Item(clock, "early", [2_000], log)
    scheduler.update(early)
    await clock.advance(2)
    assert log == [("early", 2_000)]
    late.plan[:] = [4_000]  # the same item's deadline moves earlier
    scheduler.update(late)
    await clock.advance(60)
    assert log == [("early", 2_000), ("late", 4_000)]  # once: the 60 s entry was removed


async def test_a_removed_item_never_fires_and_is_not_held(
    running: tuple[Scheduler, VirtualClock],
) -> None:
    scheduler, clock = running
    log: list[Any] = []
    item = Item(clock, "gone", [1_000], log)
    scheduler.update(item)
    scheduler.remove(item)
    await clock.advance(5)
    assert log == []
    assert item.schedule_entry is None


async def test_an_item_that_raises_does_not_stop_the_others(
    running: tuple[Scheduler, VirtualClock], caplog: pytest.LogCaptureFixture
) -> None:
    scheduler, clock = running
    log: list[Any] = []
    broken = Item(clock, "broken", [1_000, 2_000], log)
    broken.raises = True
    scheduler.update(broken)
    scheduler.update(Item(clock, "fine", [1_500, 2_500], log))
    await clock.advance(3)
    assert [name for name, _ in log] == ["broken", "fine", "broken", "fine"]
    assert "tracking goes on" in caplog.text


async def test_work_posted_in_the_loop_runs_in_order_before_kick_returns(
    running: tuple[Scheduler, VirtualClock],
) -> None:
    scheduler, _ = running
    ran: list[int] = []

    def nested() -> None:
        ran.append(2)
        scheduler.post(ran.append, 4)  # posted while draining: runs in the same drain
        scheduler.kick()
        ran.append(3)

    scheduler.post(ran.append, 1)
    scheduler.post(nested)
    scheduler.kick()
    assert ran == [1, 2, 3, 4]


async def test_work_posted_from_another_thread_runs_soon_without_the_poster_waiting() -> None:
    """A real clock: the scheduler sleeps on a far deadline; a thread posts work and
    returns at once, and the loop runs it promptly, in the order posted."""
    clock = VirtualClock()  # never advanced: the scheduler sleeps for good
    scheduler = Scheduler(clock)
    ran: list[tuple[int, int]] = []
    done = anyio.Event()
    loop_thread = threading.get_ident()

    def record(index: int) -> None:
        ran.append((index, threading.get_ident()))
        if len(ran) == 50:
            done.set()

    def poster() -> None:
        for index in range(50):
            scheduler.post(record, index)
            scheduler.kick()

    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        with anyio.fail_after(5):
            await anyio.to_thread.run_sync(poster)
            await done.wait()
        tg.cancel_scope.cancel()
    assert [index for index, _ in ran] == list(range(50))
    assert {thread for _, thread in ran} == {loop_thread}


async def test_a_kick_from_another_thread_never_blocks_even_when_the_loop_is_busy() -> None:
    """The loop is stuck in a slow callback; a thread posting work is not held up by it."""
    scheduler = Scheduler(VirtualClock())
    release = threading.Event()
    posted_while_busy = threading.Event()
    ran: list[str] = []
    both = anyio.Event()

    def posted() -> None:
        ran.append("posted")
        both.set()

    def slow() -> None:
        # Blocks the loop's thread, as a slow user callback would, until the poster is
        # through: if posting waited for the loop, this would time out.
        ran.append("slow" if release.wait(5) else "timed out")

    def poster() -> None:
        scheduler.post(posted)
        scheduler.kick()
        posted_while_busy.set()

    async with anyio.create_task_group() as tg:
        await tg.start(scheduler.run)
        scheduler.post(slow)
        thread = threading.Thread(target=lambda: (time.sleep(0.05), poster(), release.set()))
        thread.start()
        scheduler.kick()  # runs slow() here, in the loop's thread
        await anyio.to_thread.run_sync(thread.join)
        with anyio.fail_after(5):
            await both.wait()
        tg.cancel_scope.cancel()
    assert ran == ["slow", "posted"]
    assert posted_while_busy.is_set()


async def test_wait_for_a_result_from_another_thread_does_not_block_the_loop() -> None:
    future: concurrent.futures.Future[str] = concurrent.futures.Future()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await anyio.sleep(0.005)
            ticks += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        threading.Timer(0.1, future.set_result, ("written",)).start()
        with anyio.fail_after(5):
            assert await Scheduler.wait_for(future) == "written"
        tg.cancel_scope.cancel()
    assert ticks >= 5
