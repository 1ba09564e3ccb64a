"""A real process using the blocking `Timeback`, driven by the outbox fault tests.

Each mode prints JSON lines on stdout, flushed, for the test to read:

- ``work``: start an activity, print its run and start instant, then keep working (a
  ``touch()`` every 50 ms) until killed, or for ``--seconds`` and then ``--then``:
  ``end`` (end and close) or ``return`` (return from main without either: the
  interpreter's exit must flush).
- ``replay``: open a client on the outbox (it replays what dead processes left), close.
- ``fork``: use a client, ``os.fork()``, use it in the child too (see `fork`).
- ``diskfull``: track with writes to the outbox failing (see `disk_full`).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import time
import warnings
from typing import Any

from timeback_client import (
    Activity,
    ErrorContext,
    LifecycleError,
    SystemClock,
    Timeback,
    TimebackError,
    TimeOptions,
)
from timeback_client._writer import flush_outbox

COURSE = {"subject": "Math", "grade": 3}


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def client(args: argparse.Namespace, **extra: Any) -> Timeback:
    return Timeback(
        args.url,
        headers={"Authorization": f"Bearer {args.token}"},
        outbox=args.outbox,
        identity=args.identity,
        backend=args.backend,
        **extra,
    )


def start(timeback: Timeback, interval: float, flush_timeout: float = 5.0) -> Activity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=interval, flush_timeout=flush_timeout),
    )


def work(args: argparse.Namespace) -> None:
    clock = SystemClock()
    timeback = client(args, clock=clock)
    activity = start(timeback, args.interval, args.flush_timeout)
    started_ms = round(activity.started_at.timestamp() * 1000)
    # The clock's timeline is CLOCK_BOOTTIME, which the test reads too: wall_ms(0) is the
    # offset between the two, so the test can tell how long this run was active at a kill.
    say(run_id=activity.run_id, start_timeline_ms=started_ms - clock.wall_ms(0), pid=os.getpid())
    until = None if args.seconds is None else time.monotonic() + args.seconds
    while until is None or time.monotonic() < until:
        time.sleep(0.05)
        activity.touch()
    say(elapsed_ms=activity.elapsed_ms, at=time.monotonic())
    if args.then == "end":
        activity.end()
        timeback.close()
        say(ended_ms=activity.elapsed_ms)
    # "return": no end(), no close(): the interpreter exit must flush.


def replay(args: argparse.Namespace) -> None:
    with client(args):
        pass
    say(replayed=True)


def fork(args: argparse.Namespace) -> None:
    """A client used before fork(); the child's first call rebuilds it, the parent's
    activity goes on, and the parent's activity object fails fast in the child."""
    timeback = client(args)
    parent = start(timeback, args.interval)
    time.sleep(0.4)
    loop_thread = timeback.portal.call(_thread_id)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock the child:
        # the SDK's threads are why this test forks: the child must build its own.
        warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report through the pipe, never return into the caller
        os.close(read_fd)
        report: dict[str, Any] = {}
        try:
            report = _in_child(timeback, parent, loop_thread, args.interval)
        except BaseException as exc:
            report["error"] = repr(exc)
        finally:
            os.write(write_fd, json.dumps(report).encode())
            os._exit(0)
    os.close(write_fd)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_fd) as pipe:
        child = json.loads(pipe.read())
    time.sleep(0.3)
    parent.touch()
    parent.end()
    timeback.close()
    say(
        parent_run=parent.run_id,
        parent_ms=parent.elapsed_ms,
        child=child,
        child_status=status,
    )


def _thread_id() -> int:
    import threading

    return threading.get_ident()


def _in_child(timeback: Timeback, parent: Activity, loop_thread: int, interval: float) -> Any:
    report: dict[str, Any] = {}
    started = time.monotonic()
    try:
        parent.pause()
        report["parent_activity"] = "no error"
    except LifecycleError:
        report["parent_activity"] = "LifecycleError"
    report["parent_activity_s"] = time.monotonic() - started
    # The first call in the child rebuilds the client: a new loop thread, new connections.
    report["new_loop_thread"] = timeback.portal.call(_thread_id) != loop_thread
    # The parent's activity is still the current one in the parent only.
    report["current_in_child"] = timeback.activity.current is not None
    activity = start(timeback, interval)
    report["run_id"] = activity.run_id
    time.sleep(0.6)
    activity.end()
    report["elapsed_ms"] = activity.elapsed_ms
    timeback.close()
    return report


def disk_full(args: argparse.Namespace) -> None:
    """Writes to the outbox fail as on a full disk: RLIMIT_FSIZE caps every file of this
    process at the size the outbox file and its log have now, so the next write that would
    grow one fails (EFBIG, with SIGXFSZ ignored) as ENOSPC would. Tracking must go on."""
    errors: list[str] = []

    def note(error: TimebackError, context: ErrorContext) -> None:
        errors.append(type(error).__name__)

    timeback = client(args, on_error=note)
    # The client's start does not wait for the disk: the outbox is made, joined and
    # claimed on the writer's thread. The disk fills up once that is done.
    joined = flush_outbox(args.outbox)
    assert joined is not None
    joined.result(timeout=30)
    # The database and its write-ahead log (the -shm index is memory-mapped, not written).
    written = (args.outbox, f"{args.outbox}-wal")
    limit = max(os.path.getsize(name) for name in written if os.path.exists(name))
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    activity = timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=args.interval),
        on_error=note,
    )
    time.sleep(args.seconds or 1.5)
    activity.end()
    timeback.close()
    say(run_id=activity.run_id, elapsed_ms=activity.elapsed_ms, errors=errors)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["work", "replay", "fork", "diskfull"])
    parser.add_argument("url")
    parser.add_argument("outbox")
    parser.add_argument("--token", default="tok-ada")
    parser.add_argument("--identity", default=None)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--flush-timeout", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=None)
    parser.add_argument("--then", choices=["end", "return"], default="end")
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    args = parser.parse_args()
    {"work": work, "replay": replay, "fork": fork, "diskfull": disk_full}[args.mode](args)


if __name__ == "__main__":
    main()
