"""Real processes: killed with SIGKILL mid-session, sharing one outbox, exiting without
close(), forking, and writing to a full disk; the emulator serves on a loopback socket."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio
import pytest
from outbox_kit import (
    STUDENTS,
    TALLY,
    WireLog,
    boottime_ms,
    check_delivery,
    children,
    free_port,
    serve,
    stored_windows,
    url_at,
    wait_for,
)

from timeback_client import AsyncTimeback
from timeback_client._writer import CHECKPOINT_INTERVAL
from timeback_client.emulator import Emulator, UnknownRun

pytestmark = pytest.mark.skipif(
    sys.platform != "linux",
    reason="SIGKILL, fork(), RLIMIT_FSIZE and CLOCK_BOOTTIME as the shared timeline: Linux only",
)

# A kill may cost the time since the last checkpoint: the checkpoint interval, plus what a
# busy machine adds to one write (measured: a few ms; CI gets a margin).
KILL_LOSS_BOUND_MS = round(CHECKPOINT_INTERVAL * 1000) + 300
# Our reading of the kill instant and the child's readings are whole ms apart at most.
ROUNDING_MS = 3


async def replay_here(
    url: str, outbox: Path, *, identity: str | None, token: str = "tok-ada"
) -> None:
    """Open a client on the outbox in this process: it replays what dead processes left."""
    with anyio.fail_after(15):
        async with AsyncTimeback(
            url, headers={"Authorization": f"Bearer {token}"}, outbox=outbox, identity=identity
        ):
            pass


def test_sigkill_mid_session_loses_at_most_the_checkpoint_interval(tmp_path: Path) -> None:
    """Three processes (2 s heartbeats) killed with SIGKILL at different points of their
    open window; their outboxes are replayed by this process (on asyncio, on trio) and by
    a new process: each run's delivered active time is its time up to the kill, less at
    most one checkpoint interval, and nothing is counted twice."""
    wire = WireLog()
    kill_after_s = (2.45, 3.7, 4.95)
    with Emulator(students=STUDENTS) as emulator, serve(emulator, wire) as url:
        outboxes = [tmp_path / f"outbox-{i}.sqlite3" for i in range(len(kill_after_s))]
        specs = [
            ("work", url, str(outbox), "--identity", "ada", "--interval", "2")
            for outbox in outboxes
        ]
        with children(*specs) as procs:
            started = [proc.message() for proc in procs]
            killed_at: list[int] = [0] * len(procs)
            for i in sorted(range(len(procs)), key=lambda i: kill_after_s[i]):
                due = started[i]["start_timeline_ms"] + round(kill_after_s[i] * 1000)
                time.sleep(max(0, due - boottime_ms()) / 1000)
                killed_at[i] = boottime_ms()
                procs[i].kill()
        anyio.run(lambda: replay_here(url, outboxes[0], identity="ada"), backend="asyncio")
        anyio.run(lambda: replay_here(url, outboxes[1], identity="ada"), backend="trio")
        with children(("replay", url, str(outboxes[2]), "--identity", "ada")) as (replayer,):
            assert replayer.message() == {"replayed": True}

        measured = {
            s["run_id"]: killed_at[i] - s["start_timeline_ms"] for i, s in enumerate(started)
        }
        losses = [ms - emulator.run(run_id).active_ms for run_id, ms in measured.items()]
        delivery = check_delivery(
            emulator, measured, wire=wire, may_lose_ms=KILL_LOSS_BOUND_MS, early_ms=ROUNDING_MS
        )
        for s in started:
            run = emulator.run(s["run_id"])
            assert run.sessions == 1  # contiguous from the start to the last checkpoint
    assert all(stored_windows(outbox) == 0 for outbox in outboxes)
    TALLY.add(delivery, SIGKILL_mid_session=len(procs))
    TALLY.kill_losses_ms.extend(losses)
    print(f"\nSIGKILL: measured {list(measured.values())} ms, lost {losses} ms")


def test_two_processes_share_one_outbox_and_a_third_replays_the_killed_one(
    tmp_path: Path,
) -> None:
    """A and B track the same student with one outbox. A's backend refuses its
    credentials (401), so its windows pile up in the outbox; B, opened meanwhile, must not
    send them (A holds the lease). After A is SIGKILLed a third client replays A's
    windows exactly once while B goes on, and B's windows are sent by B alone."""
    wire = WireLog()
    outbox = tmp_path / "shared.sqlite3"
    with Emulator(students=STUDENTS) as emulator, serve(emulator, wire) as url:
        common = ("--identity", "ada", "--interval", "0.5")
        a_spec = ("work", url, str(outbox), "--token", "tok-unknown", *common)
        b_spec = ("work", url, str(outbox), "--token", "tok-ada-2", "--seconds", "3", *common)
        with children(a_spec) as (a,):
            a_run = a.message()
            # B opens only once A's windows wait in the outbox, so B's start-up claim
            # meets them, and must leave them to A, which is alive.
            wait_for(lambda: stored_windows(outbox) >= 2, 10, "A's windows in the outbox")
            with children(b_spec) as (b,):
                b_run = b.message()
                time.sleep(2.0)
                # Both alive: A's windows reached the server only as A's refused attempts.
                assert {r.token for r in wire.requests if r.run_id == a_run["run_id"]} == {
                    "tok-unknown"
                }
                with pytest.raises(UnknownRun):  # nothing of it was ever accepted
                    emulator.run(a_run["run_id"])
                assert emulator.run(b_run["run_id"]).windows != ()
                killed_at = boottime_ms()
                a.kill()
                anyio.run(lambda: replay_here(url, outbox, identity="ada", token="tok-ada-3"))
                b.message()  # B's last reading
                b_ended = b.message()["ended_ms"]
        a_measured = killed_at - a_run["start_timeline_ms"]
        delivery = check_delivery(
            emulator,
            {a_run["run_id"]: a_measured, b_run["run_id"]: b_ended},
            wire=wire,
            may_lose_ms=KILL_LOSS_BOUND_MS,
            early_ms=ROUNDING_MS,
        )
        by_token = {
            run: {r.token for r in wire.requests if r.run_id == run and r.status is not None}
            for run in (a_run["run_id"], b_run["run_id"])
        }
        a_loss = a_measured - emulator.run(a_run["run_id"]).active_ms
    assert by_token == {
        a_run["run_id"]: {"tok-unknown", "tok-ada-3"},
        b_run["run_id"]: {"tok-ada-2"},
    }
    assert stored_windows(outbox) == 0
    TALLY.add(delivery, HTTP_401_held_windows=1, SIGKILL_with_a_live_sharer=1)
    TALLY.kill_losses_ms.append(a_loss)
    print(f"\nshared outbox: A lost {a_loss} ms at SIGKILL, {delivery.windows} windows")


def test_interpreter_exit_without_close_flushes_within_the_deadline(tmp_path: Path) -> None:
    """Two processes return from main without end() or close(): against a live backend
    the time is delivered at exit; against an unreachable one the exit still comes within
    flush_timeout, and the windows wait in the outbox for the next client."""
    wire = WireLog()
    dead_port = free_port()
    kept = tmp_path / "kept.sqlite3"
    flush_timeout = 0.5
    with Emulator(students=STUDENTS) as emulator, serve(emulator, wire) as url:
        quick = ("--interval", "0.4", "--seconds", "1.0", "--then", "return")
        deadline = ("--flush-timeout", str(flush_timeout))
        with children(
            ("work", url, str(tmp_path / "live.sqlite3"), *quick, *deadline),
            ("work", url_at(dead_port), str(kept), *quick, *deadline),
        ) as (live, offline):
            runs = [live.message(), offline.message()]
            last = [live.message(), offline.message()]
            exit_s = []
            for proc, reading in zip((live, offline), last, strict=True):
                proc.finish()
                exit_s.append(time.monotonic() - reading["at"])
                assert proc.process.returncode == 0
        assert stored_windows(kept) >= 1
        with serve(emulator, wire, port=dead_port) as same_url:
            anyio.run(lambda: replay_here(same_url, kept, identity=None))
        # The last window is cut at exit, a little after the child's last reading.
        for run, reading, took in zip(runs, last, exit_s, strict=True):
            delivered = emulator.run(run["run_id"]).active_ms
            assert 0 <= delivered - reading["elapsed_ms"] <= took * 1000
        measured = {run["run_id"]: emulator.run(run["run_id"]).active_ms for run in runs}
        delivery = check_delivery(emulator, measured, wire=wire)
    # Interpreter start-up is before the reading; teardown after the flush is short. The
    # bound is loose on purpose (a loaded machine stretches a process's exit by seconds):
    # what it tells apart is an exit that keeps flush_timeout from one that waits for the
    # unreachable backend, which never comes.
    assert exit_s[1] < flush_timeout + 5.0, exit_s
    assert exit_s[0] < flush_timeout + 5.0, exit_s
    TALLY.add(delivery, exit_without_close=2, backend_unreachable_at_exit=1)
    print(f"\nexit without close: exits took {[round(s, 3) for s in exit_s]} s")


def test_a_forked_child_rebuilds_its_runtime_and_the_parent_goes_on(tmp_path: Path) -> None:
    """fork() while a blocking client runs an activity: in the child the parent's
    activity fails fast with LifecycleError, the first call builds a new loop thread and
    client, and the child's activity is delivered; the parent's is unharmed."""
    wire = WireLog()
    with (
        Emulator(students=STUDENTS) as emulator,
        serve(emulator, wire) as url,
        children(("fork", url, str(tmp_path / "outbox.sqlite3"), "--interval", "0.3")) as (proc,),
    ):
        report = proc.message()
        assert proc.finish() == ""
        child = report["child"]
        assert "error" not in child, child
        assert child["parent_activity"] == "LifecycleError"
        assert child["parent_activity_s"] < 1.0
        assert child["new_loop_thread"] is True
        assert child["current_in_child"] is False
        assert report["child_status"] == 0
        runs = {report["parent_run"]: report["parent_ms"], child["run_id"]: child["elapsed_ms"]}
        delivery = check_delivery(emulator, runs, wire=wire)
        assert emulator.run(report["parent_run"]).sessions == 1
    TALLY.add(delivery, fork=1)


def test_a_full_disk_is_reported_and_tracking_goes_on(tmp_path: Path) -> None:
    """Every write to the outbox fails as on a full disk (RLIMIT_FSIZE, in a child
    process): on_error hears OutboxError, and every window is still delivered from memory."""
    wire = WireLog()
    with (
        Emulator(students=STUDENTS) as emulator,
        serve(emulator, wire) as url,
        children(
            # A few seconds: the writer writes once a second (windows answered within it
            # never reach the disk; the open window's checkpoint does).
            (
                "diskfull",
                url,
                str(tmp_path / "o" / "outbox.sqlite3"),
                "--interval",
                "0.3",
                "--seconds",
                "4",
            )
        ) as (proc,),
    ):
        report = proc.message()
        proc.finish()
        assert "OutboxError" in report["errors"]
        assert set(report["errors"]) == {"OutboxError"}
        delivery = check_delivery(emulator, {report["run_id"]: report["elapsed_ms"]}, wire=wire)
    TALLY.add(delivery, disk_full=1)
