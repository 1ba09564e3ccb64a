"""The outbox writer: the one thread that writes an outbox file, for every client of the
process that uses that file.

Clients never touch SQLite. They tell the writer what happened, through queues that never
block, from whatever thread they run on, and go on: a window to store, its first attempt,
its final answer, and each change of a running activity's open window (a cut, a pause, a
resume). The writer keeps a *diff* between what is on disk and what it was told, and
writes it in one transaction per `CHECKPOINT_INTERVAL`, with a *stamp*: the current
instant of each clock whose activities are counting. Only what a caller waits for goes at
once: an owner joining or leaving, a claim of what earlier processes left, a flush.

**Checkpoints cost a change, not a second.** A running activity's open window grows with
time at a known rate (every millisecond not spent suspended is active), so the file holds
it as of its last change, and the stamp says until when its process was alive. After a
crash the open window counts up to the last stamp. A change and the stamp that follows it
go in one transaction, so nothing a crash replays was not active; a window cut and the
open window after it are told in one message, so they reach the file together. A thousand
students cost one stamp a second, plus a row per heartbeat.

**A checkpoint and its stamp share one wall-clock offset.** Activities tell their open
windows in timeline ms; the writer maps them to wall ms (what the file holds) with the
offset of its clock read for the stamp of the same transaction. When the wall clock
steps, the clock takes a new offset (see `_clock`), and the writer rewrites the
checkpoints of that clock's runs in the transaction of the first stamp after the step:
otherwise an open window written before the step and a stamp written after it would
count the step as active time after a crash (a step forward) or lose time (a step back).

So a crash loses at most about a second; a window stored and answered within the same
second never reaches the disk at all; a paused lesson writes nothing; one process makes
at most one transaction a second, however many activities it runs. A locked or slow disk
delays only this thread: the diff waits in memory (the app is told once it is
`MAX_BEHIND` windows long, and the oldest windows past that stay in memory only), and is
written when the disk lets it.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import contextlib
import datetime
import functools
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Final

import attrs

from ._clock import Clock
from ._delivery_errors import DeliveryError, DuplicateRiskError, UndeliveredError
from ._errors import OutboxError, TimebackError
from ._models import OpenWindow, Window, WindowKey
from ._outbox import CheckpointRow, Outbox, StoredWindow, WindowRow
from ._outbox_home import default_outbox_path, former_outbox_path, move_outbox

__all__ = [
    "CHECKPOINT_INTERVAL",
    "OutboxOwner",
    "OutboxStatistics",
    "OutboxWriter",
    "flush_outbox",
    "outbox_writer",
    "release_writer",
]

logger = logging.getLogger("timeback_client")

CHECKPOINT_INTERVAL: Final = 1.0  # seconds: the most a crash can lose
RENEW_EVERY: Final = 5.0  # seconds between lease renewals (a lease lasts 15 s)
MAX_BEHIND: Final = 10_000  # windows waiting for the disk before the app is told
REPORT_EVERY: Final = 60.0  # a failing disk is reported at most this often, per kind
RETRY_CAP: Final = 15.0  # the longest wait before trying a failed transaction again
BUSY_TIMEOUT: Final = 2.0  # how long one transaction waits for another process's lock
STOP_TIMEOUT: Final = 10.0  # at interpreter exit, the longest wait for the last writes
# Joins and claims that come close together (a process opening many clients) share one
# quick transaction: opening a client waits at most this much longer.
QUICK_GAP: Final = 0.05

# A window to store: (owner, ended_at_ms, elapsed_ms, body, first attempt or None).
_Stored = tuple[str, int, int, bytes, float | None]
# What is told of windows and runs: plain tuples of atoms, which the garbage collector
# stops tracking at once, so the many that wait a second for the tick never reach its
# old generation (which every full collection walks).
_RunOp = tuple[Any, ...]
_Op = Callable[[], object]  # an order a caller waits for, run on the writer's thread
_STOP: Final = object()
_ENDED: Final = "ended"


@attrs.frozen(kw_only=True)
class OutboxStatistics:
    """A snapshot of the outbox writer of one file (shared by the clients of the process).

    Attributes:
        path: the outbox file.
        owners: clients of this process using it.
        watched: running activities whose open window it checkpoints.
        behind: windows told to it and not yet on disk.
        transactions: transactions committed so far.
        failures: transactions that failed so far (a locked or failing disk).
        usable: False when the file could not be opened (windows stay in memory).
        stored: windows in the file waiting for the backend's answer, as of the last
            transaction (every client's and process's that shares the file).
        stored_ms: the active milliseconds they carry: what a kiosk shows as "3 minutes
            waiting to send".
        oldest: when the oldest of them started (aware, UTC), or None.
    """

    path: str
    owners: int
    watched: int
    behind: int
    transactions: int
    failures: int
    usable: bool
    stored: int = 0
    stored_ms: int = 0
    oldest: datetime.datetime | None = None


@attrs.define(eq=False)
class _Run:
    """A running activity's checkpoint, as the writer keeps it."""

    owner: str
    template: bytes
    stamp: str  # the stamp of its clock
    row_id: int | None = None  # its row in the file, once written
    counting: bool = False  # as last told
    state: OpenWindow | None = None  # as last told, rewritten when its clock steps


@attrs.define(eq=False)
class _Diff:
    """What the file does not have yet."""

    adds: dict[WindowKey, _Stored] = attrs.Factory(dict)
    sent: dict[WindowKey, float] = attrs.Factory(dict)
    refused: set[WindowKey] = attrs.Factory(set)  # sent, then refused: as if never sent
    removes: set[WindowKey] = attrs.Factory(set)
    # The newest open window of each run told since the last transaction (ended: gone).
    states: dict[str, OpenWindow | str] = attrs.Factory(dict)
    joins: list[OutboxOwner] = attrs.Factory(list)
    claims: list[tuple[OutboxOwner, concurrent.futures.Future[list[StoredWindow]]]] = attrs.Factory(
        list
    )
    leaves: list[tuple[OutboxOwner, concurrent.futures.Future[None]]] = attrs.Factory(list)
    flushes: list[concurrent.futures.Future[None]] = attrs.Factory(list)

    @property
    def urgent(self) -> bool:
        """Whether someone waits for this transaction."""
        return bool(self.joins or self.claims or self.leaves or self.flushes)

    @property
    def empty(self) -> bool:
        return not (
            self.urgent or self.adds or self.sent or self.refused or self.removes or self.states
        )

    def _send(self, key: WindowKey, at: float) -> None:
        if key in self.adds:
            self.adds[key] = (*self.adds[key][:4], at)
        else:
            self.sent.setdefault(key, at)
            self.refused.discard(key)

    def _refuse(self, key: WindowKey) -> None:
        if key in self.adds:
            self.adds[key] = (*self.adds[key][:4], None)
        else:
            self.sent.pop(key, None)
            self.refused.add(key)

    def absorb(self, newer: _Diff) -> None:
        """Take what was told after this diff (which a failed transaction left) on top."""
        for key, stored in newer.adds.items():
            self.adds[key] = stored
        # A key is in at most one of `sent` and `refused` of a diff: the later of the two.
        for key in newer.refused:
            self._refuse(key)
        for key, at in newer.sent.items():
            self._send(key, at)
        for key in newer.removes:
            if self.adds.pop(key, None) is None:
                self.removes.add(key)
            self.sent.pop(key, None)
            self.refused.discard(key)
        self.states.update(newer.states)
        self.joins += newer.joins
        self.claims += newer.claims
        self.leaves += newer.leaves
        self.flushes += newer.flushes


class OutboxOwner:
    """One client's share of an outbox writer: its owner row, backend and identity.

    Every method returns at once and may be called from any thread.

    Args:
        writer: the writer of the file.
        backend: the client's base URL.
        identity: whose windows these are.
        report: tells the client of a problem (must be safe to call from any thread).
        explicit_identity: whether the app named the identity (``identity=``); if not, a
            claim also says what waits for other identities (new credentials, a token
            refreshed since a crash).
    """

    __slots__ = ("backend", "explicit_identity", "identity", "owner", "report", "writer")

    def __init__(
        self,
        writer: OutboxWriter,
        *,
        backend: str,
        identity: str,
        report: Callable[[TimebackError], None],
        explicit_identity: bool = False,
    ) -> None:
        self.writer = writer
        self.owner = uuid.uuid4().hex
        self.backend = backend
        self.identity = identity
        self.report = report
        self.explicit_identity = explicit_identity
        writer._put(functools.partial(writer._join, self), wake=True)

    def watch(self, run_id: str, template: bytes, clock: Clock, state: OpenWindow) -> None:
        """A new activity: keep its open window, from ``state`` on, until `unwatch`."""
        self.writer._told(("watch", run_id, self.owner, template, clock, *state))

    def store(
        self,
        window_key: WindowKey,
        ended_at_ms: int,
        elapsed_ms: int,
        body: bytes,
        state: OpenWindow,
    ) -> None:
        """A window just cut, about to be sent, and its run's open window after it: both
        reach the file together (within a second)."""
        run_id, started_at_ms = window_key
        self.writer._told(
            ("add", run_id, started_at_ms, self.owner, ended_at_ms, elapsed_ms, body, *state)
        )

    def change(self, run_id: str, state: OpenWindow) -> None:
        """The run's open window changed without a cut (a resume)."""
        self.writer._told(("state", run_id, *state))

    def unwatch(self, run_id: str) -> None:
        """The run's activity ended (its last window was told before this)."""
        self.writer._told(("end", run_id))

    # The sender's per-window events (`_sender.DeliveryListener`), in its words: what
    # each means for the file is decided here, and only here.

    def sending(self, window_key: WindowKey) -> None:
        """The window's first attempt is going out (from now on the server may have it)."""
        self.writer._told(("sent", *window_key, time.time()))

    def delivered(self, window_key: WindowKey) -> None:
        """The backend has the window: forget it."""
        self.settled(window_key)

    def failed(self, window: Window, error: DeliveryError, *, will_retry: bool) -> None:
        """An attempt failed. A final failure is forgotten (every window of an
        `UndeliveredError`), except a possible double count, which is still being sent."""
        if will_retry or isinstance(error, DuplicateRiskError):
            return
        dropped = error.windows if isinstance(error, UndeliveredError) else (window,)
        for each in dropped:
            self.settled(each.key)

    def held(self, window_key: WindowKey) -> None:
        """The backend answered the window with a refusal it keeps it through: the server
        does not have it (a replay is never a double count), and, like a window never
        sent, it may be merged to make room."""
        self.writer._told(("refused", *window_key))

    def settled(self, window_key: WindowKey) -> None:
        """The window needs keeping no more (answered for good, or unreadable): forget it."""
        self.writer._told(("remove", *window_key))

    def claim(self) -> concurrent.futures.Future[list[StoredWindow]]:
        """Take over what earlier owners left for this backend and identity."""
        future: concurrent.futures.Future[list[StoredWindow]] = concurrent.futures.Future()
        self.writer._put(functools.partial(self.writer._claim, self, future), wake=True)
        return future

    def leave(self) -> concurrent.futures.Future[None]:
        """Write what this owner told the writer, then give up its rows (the next client
        replays what is left) and let go of the writer."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.writer._put(functools.partial(self.writer._leave, self, future), wake=True)
        return future


class OutboxWriter:
    """The writer thread of one outbox file. Get it with `outbox_writer(path)`.

    Started by its first owner and stopped, once written out, when its last owner leaves.
    """

    def __init__(self, path: str, *, key: tuple[int, str]) -> None:
        self.path = path
        self._key = key
        # The default file takes in what earlier versions left in its former place, and
        # lives in the SDK's own directory: there, and only there, a file that is not a
        # usable outbox is set aside. A path the app named is never moved.
        self._own = path == os.path.realpath(default_outbox_path())
        self._former = _former_of(path) if self._own else None
        self._id = uuid.uuid4().hex  # this writer's stamps, apart from any other's
        # Orders a caller waits for, and what is told of windows and runs, in order: a
        # caller waits only for the first kind, so only that wakes the thread (a wake-up
        # per window would cost a GIL hand-off each).
        self._queue: collections.deque[_Op] = collections.deque()
        self._told_runs: collections.deque[_RunOp] = collections.deque()
        self._wake = threading.Event()
        self._owners: dict[str, OutboxOwner] = {}  # joined and written
        self._known: dict[str, OutboxOwner] = {}  # every owner that joined, by its id
        self._runs: dict[str, _Run] = {}
        self._clocks: dict[str, Clock] = {}  # by stamp
        # The wall-clock offset each clock's checkpoints were last written with.
        self._offsets: dict[str, int] = {}
        self._counting: collections.Counter[str] = collections.Counter()  # runs, by stamp
        self._members = 0  # owners joined or joining (guarded by _registry_lock)
        self._diff = _Diff()
        self._outbox: Outbox | None = None
        self._broken: BaseException | None = None
        self._transactions = 0
        self._failures = 0
        # What the file holds (windows, their active ms, the oldest's start), read after
        # each transaction that changed its windows; replaced whole, so any thread reads
        # a consistent triple.
        self._stored: tuple[int, int, int | None] = (0, 0, None)
        self._summary_stale = True
        self._retry_at = 0.0
        self._retry_wait = 0.0
        self._last_tick = 0.0
        self._last_quick = 0.0
        self._last_renewal = 0.0
        self._reported: dict[str, float] = {}
        self._told_behind = False
        self._stored_since_room_check = 0
        self._stopped = concurrent.futures.Future[None]()
        self._thread = threading.Thread(
            target=self._run, name=f"timeback outbox writer {os.path.basename(path)}", daemon=True
        )
        self._thread.start()

    def statistics(self) -> OutboxStatistics:
        """A snapshot (approximate while the thread runs)."""
        return OutboxStatistics(
            path=self.path,
            owners=len(self._owners),
            watched=len(self._runs),
            behind=len(self._diff.adds),
            transactions=self._transactions,
            failures=self._failures,
            usable=self._broken is None,
            stored=self._stored[0],
            stored_ms=self._stored[1],
            oldest=None
            if self._stored[2] is None
            else datetime.datetime.fromtimestamp(self._stored[2] / 1000, datetime.UTC),
        )

    def flush(self) -> concurrent.futures.Future[None]:
        """Write everything told so far now; the future is done once it is on disk."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(functools.partial(self._flush, future), wake=True)
        return future

    def _told(self, op: _RunOp) -> None:
        self._told_runs.append(op)

    def _put(self, op: _Op, *, wake: bool = False) -> None:
        self._queue.append(op)
        if wake:
            self._wake.set()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        # Opening the file (a quick check of every page, the schema, two syncs) waits a
        # moment: the client that started this thread is still starting, on its app's
        # thread (a sign-in on a GUI thread), and would share the interpreter's lock with
        # the open. Nobody waits for the open; clients started together share it.
        time.sleep(QUICK_GAP)
        try:
            self._outbox = Outbox(self.path, busy_timeout=BUSY_TIMEOUT, set_aside=self._own)
            with self._outbox.transaction():
                self._outbox.leases.forget_earlier_process()
        except (OSError, sqlite3.Error, OutboxError) as exc:
            self._broken = exc
        try:
            while not self._step():
                pass
        except BaseException as exc:  # pragma: no cover - a defect; keep the file sane
            logger.exception("timeback: the outbox writer for %s stopped", self.path)
            self._broken = exc
        finally:
            if self._outbox is not None:
                self._outbox.close()
            self._stopped.set_result(None)

    def _step(self) -> bool:
        """Wait for a wake-up or the next tick, take the queues, write if due. True: stop."""
        timeout = self._timeout()
        if timeout != 0:
            self._wake.wait(timeout)
        self._wake.clear()  # before taking the queues: a later wake-up is not lost
        stop = self._drain()
        now = time.monotonic()
        if stop or (now >= self._retry_at and self._due(now)):
            full = stop or self._diff.leaves or self._diff.flushes
            self._tick(now, full=bool(full) or now - self._last_tick >= CHECKPOINT_INTERVAL)
        return stop

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self._diff.urgent:
            return max(0.0, self._retry_at - now, self._last_quick + QUICK_GAP - now)
        if self._diff.empty and not self._runs and not self._owners:
            return None
        next_tick = max(self._last_tick + CHECKPOINT_INTERVAL, self._retry_at)
        return max(0.0, next_tick - now)

    def _due(self, now: float) -> bool:
        if now - self._last_tick >= CHECKPOINT_INTERVAL:
            return True
        return self._diff.urgent and now - self._last_quick >= QUICK_GAP

    def _drain(self) -> bool:
        """Fold everything told so far into the diff. True if the stop order was among it.

        The orders first, then what was told of runs: whatever was told before an order
        (an owner's windows before its leave) is then taken with it.
        """
        stop = False
        queue = self._queue
        while queue:
            stop = (queue.popleft()() is _STOP) or stop
        told = self._told_runs
        while told:
            self._fold(told.popleft())
        return stop

    # What is told, folded into the diff (on the thread).

    def _fold(self, op: _RunOp) -> None:
        diff = self._diff
        kind, run_id, *rest = op
        if kind == "add":
            started_at_ms, owner, ended_at_ms, elapsed_ms, body, *state = rest
            diff.adds[(run_id, started_at_ms)] = (owner, ended_at_ms, elapsed_ms, body, None)
            self._check_behind()
            self._change(run_id, tuple(state))
        elif kind == "state":
            self._change(run_id, tuple(rest))
        elif kind == "sent":
            diff._send((run_id, rest[0]), rest[1])
        elif kind == "refused":
            diff._refuse((run_id, rest[0]))
        elif kind == "remove":
            key = (run_id, rest[0])
            # Stored and answered between two transactions: the file never sees it.
            if diff.adds.pop(key, None) is None:
                diff.removes.add(key)
            diff.sent.pop(key, None)
            diff.refused.discard(key)
        elif kind == "watch":
            owner, template, clock, *state = rest
            stamp = f"{self._id}:{id(clock)}"
            self._clocks.setdefault(stamp, clock)
            self._runs[run_id] = _Run(owner=owner, template=template, stamp=stamp)
            self._change(run_id, tuple(state))
        else:  # "end"
            self._change(run_id, _ENDED)

    def _change(self, run_id: str, state: Any) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return  # pragma: no cover - told of a run never watched
        counting = state != _ENDED and bool(state[3])
        if counting != run.counting:
            self._counting[run.stamp] += 1 if counting else -1
            run.counting = counting
        if state != _ENDED:
            run.state = state
        self._diff.states[run_id] = state

    def _join(self, owner: OutboxOwner) -> None:
        self._known[owner.owner] = owner
        self._diff.joins.append(owner)

    def _claim(
        self, owner: OutboxOwner, future: concurrent.futures.Future[list[StoredWindow]]
    ) -> None:
        self._move_former(owner)
        self._diff.claims.append((owner, future))

    def _move_former(self, owner: OutboxOwner) -> None:
        """Before a claim: what the former default file holds moves into this one, so the
        claim sees it. A move that fails is reported to the claimant, and the next claim
        tries again; nothing of it is lost meanwhile."""
        if self._former is None or self._outbox is None or self._broken is not None:
            return
        try:
            move_outbox(self._former, self._outbox)
        except OutboxError as exc:
            owner.report(exc)

    def _leave(self, owner: OutboxOwner, future: concurrent.futures.Future[None]) -> None:
        self._diff.leaves.append((owner, future))

    def _flush(self, future: concurrent.futures.Future[None]) -> None:
        self._diff.flushes.append(future)

    @staticmethod
    def _stop_order() -> object:
        return _STOP

    def _check_behind(self) -> None:
        adds = self._diff.adds
        if len(adds) <= MAX_BEHIND:
            self._told_behind = False
            return
        # The disk has not kept up: the oldest windows stay in memory only (they are
        # still being delivered); the app hears of it once per episode.
        stored = adds.pop(next(iter(adds)))
        if not self._told_behind:
            self._told_behind = True
            owner = self._known.get(stored[0])
            if owner is not None:
                owner.report(
                    OutboxError(
                        f"the outbox {self.path} is {MAX_BEHIND} windows behind (a locked "
                        "or slow disk); older windows are kept in memory only until it "
                        "catches up"
                    )
                )

    # -- one transaction --------------------------------------------------------------

    def _tick(self, now: float, *, full: bool) -> None:
        """One transaction, if there is anything to write.

        A full tick (once a second, or for a leave, a flush or the stop) writes the whole
        diff and the stamps; in between, a quick one writes only joins and claims, for
        which a client waits.
        """
        if self._broken is not None or self._outbox is None:
            self._last_tick = now
            self._discard_for_broken_outbox()
            return
        stamps: list[tuple[str, int, int]] = []
        offsets: dict[str, int] = {}
        renew = False
        if full:
            self._last_tick = now
            stamps, offsets = self._stamps()
            self._restate_stepped(offsets)
            renew = bool(self._owners) and now - self._last_renewal >= RENEW_EVERY
            if self._diff.empty and not stamps and not renew:
                return  # nothing changed: a paused activity writes nothing
            diff, self._diff = self._diff, _Diff()
        else:
            # Joins and claims only: no open window is written without its clock's offset.
            self._last_quick = now
            diff = _Diff(joins=self._diff.joins, claims=self._diff.claims)
            self._diff.joins, self._diff.claims = [], []
        outbox = self._outbox
        try:
            with outbox.transaction():
                for owner in diff.joins:
                    outbox.leases.register(owner.owner)
                if diff.claims:
                    outbox.leases.forget_dead_owners()
                claimed = self._claim_all(outbox, diff)
                outbox.add(self._rows(diff))
                outbox.mark_refused(diff.refused)
                outbox.mark_sent((at, run_id, start) for (run_id, start), at in diff.sent.items())
                outbox.remove(diff.removes)
                rows = self._write_checkpoints(outbox, diff, offsets)
                for stamp, wall_ms, suspended_ms in stamps:
                    outbox.stamp(stamp, wall_ms, suspended_ms)
                if renew:
                    outbox.leases.renew()
                for owner, _ in diff.leaves:
                    outbox.leases.release(owner.owner)
                lost = self._make_room(outbox, diff)
        except sqlite3.Error as exc:
            self._failed(diff, exc, now)
            return
        self._transactions += 1
        self._retry_wait = 0.0
        if self._summary_stale or diff.adds or diff.removes or claimed or lost:
            self._summary_stale = True  # until read: a figure of statistics() only
            with contextlib.suppress(sqlite3.Error):
                self._stored = outbox.summary()
                self._summary_stale = False
        if renew:
            self._last_renewal = now
        for run_id, row_id in rows.items():
            run = self._runs.get(run_id)
            if run is None:
                continue
            if diff.states.get(run_id) == _ENDED:
                self._forget(run_id, run)
            else:
                run.row_id = row_id
        self._welcome(outbox, diff)
        self._settle_futures(diff, claimed)
        for owner, lost_ms in lost:
            owner.report(
                OutboxError(
                    f"the outbox is full ({outbox.max_windows} windows): dropped the oldest "
                    f"unsent windows, {lost_ms} active ms"
                )
            )

    def _stamps(self) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
        """The instant of every clock whose runs are counting (until here they count),
        and the wall-clock offset of every clock, to write checkpoints with."""
        stamps = []
        offsets = {}
        for stamp, clock in self._clocks.items():
            reading = clock.read() if self._counting[stamp] > 0 else None
            # Read after read(), which takes a new offset if the wall clock stepped: the
            # stamp and the checkpoints of this transaction share it.
            offsets[stamp] = offset = clock.wall_ms(0)
            if reading is not None:
                stamps.append((stamp, reading.timeline_ms + offset, reading.suspended_ms))
        return stamps, offsets

    def _restate_stepped(self, offsets: dict[str, int]) -> None:
        """Rewrite the checkpoints of the runs whose clock's offset changed since they
        were written (the wall clock stepped)."""
        stepped = {stamp for stamp, offset in offsets.items() if self._offsets.get(stamp) != offset}
        if not stepped:
            return
        self._offsets.update(offsets)
        states = self._diff.states
        for run_id, run in self._runs.items():
            state = run.state
            if run.stamp in stepped and run.row_id is not None and state is not None:
                states.setdefault(run_id, state)  # unless a newer state is told already

    @staticmethod
    def _claim_all(
        outbox: Outbox, diff: _Diff
    ) -> list[tuple[concurrent.futures.Future[list[StoredWindow]], list[StoredWindow]]]:
        """Claims, in order: within one transaction, the first claim of a backend and
        identity takes every orphan of theirs, and the others of the same find none."""
        claimed = []
        done: set[tuple[str, str]] = set()
        for owner, future in diff.claims:
            key = (owner.backend, owner.identity)
            rows = [] if key in done else outbox.claim_orphans(owner.owner, *key)
            done.add(key)
            claimed.append((future, rows))
            if not owner.explicit_identity:
                windows, active_ms = outbox.waiting_for_others(*key)
                if windows:
                    owner.report(
                        OutboxError(
                            f"{windows} window(s), {active_ms} active ms, left in the outbox "
                            "by earlier sessions of this backend wait for other credentials: "
                            "without identity=, windows are replayed only under the credentials "
                            "they were made with, so a token refreshed since a crash leaves "
                            "them waiting. Pass identity= (a stable id of the student, e.g. "
                            "your user id) to the client, so that what a crash leaves is "
                            "replayed whatever the token"
                        )
                    )
        return claimed

    def _rows(self, diff: _Diff) -> list[WindowRow]:
        rows = []
        for (run_id, started_at_ms), (owner_id, ended, elapsed, body, sent) in diff.adds.items():
            owner = self._known.get(owner_id)
            if owner is None:
                continue  # pragma: no cover - an owner always joins before it stores
            rows.append(
                WindowRow(
                    owner=owner_id,
                    backend=owner.backend,
                    identity=owner.identity,
                    run_id=run_id,
                    started_at_ms=started_at_ms,
                    ended_at_ms=ended,
                    elapsed_ms=elapsed,
                    body=body,
                    sent_at=sent,
                )
            )
        return rows

    def _write_checkpoints(
        self, outbox: Outbox, diff: _Diff, offsets: dict[str, int]
    ) -> dict[str, int | None]:
        """Write the runs' changed open windows, in wall ms of their clock's ``offsets``:
        a new row the first time, then a move of that row, and its end drops it. Returns
        the new row of each run written (None for an ended run)."""
        rows: dict[str, int | None] = {}
        moves: list[tuple[int, int, int, int, int, int]] = []
        drops: list[int] = []
        for run_id, state in diff.states.items():
            run = self._runs.get(run_id)
            if run is None:
                continue
            if isinstance(state, str):  # ended
                if run.row_id is not None:
                    drops.append(run.row_id)
                rows[run_id] = None  # forgotten once this transaction is on disk
                continue
            offset = offsets[run.stamp]
            start, as_of, active, counting, suspended = state
            start, as_of = start + offset, as_of + offset
            if run.row_id is not None:
                moves.append((run.row_id, start, as_of, active, int(counting), suspended))
            elif active or counting:
                owner = self._known[run.owner]
                rows[run_id] = outbox.put_checkpoint(
                    CheckpointRow(
                        owner=run.owner,
                        backend=owner.backend,
                        identity=owner.identity,
                        run_id=run_id,
                        started_at_ms=start,
                        ended_at_ms=as_of,
                        elapsed_ms=active,
                        template=run.template,
                        running=bool(counting),
                        suspended_ms=suspended,
                        stamp=run.stamp,
                    )
                )
        outbox.drop_checkpoints(drops)
        outbox.move_checkpoints(moves)
        return rows

    def _forget(self, run_id: str, run: _Run) -> None:
        del self._runs[run_id]
        if run.counting:
            self._counting[run.stamp] -= 1

    def _make_room(self, outbox: Outbox, diff: _Diff) -> list[tuple[OutboxOwner, int]]:
        self._stored_since_room_check += len(diff.adds)
        if self._stored_since_room_check < 64:
            return []
        self._stored_since_room_check = 0
        lost = []
        told: dict[str, OutboxOwner] = {}  # one owner per backend hears of a loss
        for owner in self._owners.values():
            told.setdefault(owner.backend, owner)
        for backend, owner in told.items():
            lost_ms = outbox.make_room(backend)
            if lost_ms:
                lost.append((owner, lost_ms))
        return lost

    def _welcome(self, outbox: Outbox, diff: _Diff) -> None:
        for owner in diff.joins:
            self._owners[owner.owner] = owner
            if outbox.set_aside is not None:
                owner.report(
                    OutboxError(
                        f"the outbox {self.path} {outbox.set_aside_because}; kept it as "
                        f"{outbox.set_aside} (as it was) and started a new one"
                    )
                )

    def _settle_futures(
        self,
        diff: _Diff,
        claimed: list[tuple[concurrent.futures.Future[list[StoredWindow]], list[StoredWindow]]],
    ) -> None:
        for claim, rows in claimed:
            claim.set_result(rows)
        for owner, left in diff.leaves:
            self._owners.pop(owner.owner, None)
            self._known.pop(owner.owner, None)
            left.set_result(None)
        for flushed in diff.flushes:
            flushed.set_result(None)

    def _failed(self, diff: _Diff, exc: sqlite3.Error, now: float) -> None:
        """Keep the diff for the next try, after a growing wait; tell the owners."""
        self._failures += 1
        diff.absorb(self._diff)
        self._diff = diff
        self._retry_wait = min(RETRY_CAP, max(CHECKPOINT_INTERVAL, self._retry_wait * 2))
        self._retry_at = now + self._retry_wait
        kind = type(exc).__name__
        if now - self._reported.get(kind, -REPORT_EVERY) < REPORT_EVERY:
            logger.debug("timeback: outbox %s: %s", self.path, exc)
            return
        self._reported[kind] = now
        for owner in {*self._owners.values(), *diff.joins}:
            error = OutboxError(
                f"could not write the outbox {self.path}: {exc}; windows wait in memory "
                "and are written once it works again"
            )
            error.__cause__ = exc
            owner.report(error)

    def _discard_for_broken_outbox(self) -> None:
        """Without a usable file, windows live in memory only: tell each owner once."""
        diff, self._diff = self._diff, _Diff()
        self._runs.clear()
        self._counting.clear()
        for owner in diff.joins:
            self._owners[owner.owner] = owner
            error = OutboxError(
                f"cannot use the outbox {self.path}: {self._broken}; windows stay in memory"
            )
            error.__cause__ = self._broken
            owner.report(error)
        self._settle_futures(diff, [(future, []) for _, future in diff.claims])

    # -- lifecycle --------------------------------------------------------------------

    def _stop(self) -> concurrent.futures.Future[None]:
        self._put(self._stop_order, wake=True)
        return self._stopped


def _former_of(path: str) -> str | None:
    """The former location of the default outbox ``path``, unless it is the same file."""
    try:
        former = os.path.realpath(former_outbox_path())
    except RuntimeError:
        return None  # no home directory: earlier versions had no default outbox either
    return None if former == path else former


# -- one writer per file per process ---------------------------------------------------

_registry_lock = threading.Lock()
_writers: dict[tuple[int, str], OutboxWriter] = {}


def outbox_writer(path: str | os.PathLike[str]) -> OutboxWriter:
    """The writer of ``path`` in this process, started if it is not running.

    Every call must be matched by an owner joining (`OutboxOwner`) and later leaving.
    """
    resolved = os.path.realpath(os.fspath(path))
    key = (os.getpid(), resolved)
    with _registry_lock:
        writer = _writers.get(key)
        if writer is None:
            writer = _writers[key] = OutboxWriter(resolved, key=key)
        writer._members += 1
        return writer


def flush_outbox(path: str | os.PathLike[str]) -> concurrent.futures.Future[None] | None:
    """Ask the writer of ``path`` in this process, if there is one, to write out at once.

    Returns the future of that transaction (None when no writer runs for the file).
    """
    key = (os.getpid(), os.path.realpath(os.fspath(path)))
    with _registry_lock:
        writer = _writers.get(key)
    return None if writer is None else writer.flush()


def release_writer(writer: OutboxWriter) -> concurrent.futures.Future[None] | None:
    """An owner of ``writer`` has left: stop it if it was the last one.

    Returns the future of its stop (done once its last writes are on disk), or None if
    others still use it.
    """
    with _registry_lock:
        writer._members -= 1
        if writer._members > 0:
            return None
        _writers.pop(writer._key, None)
    return writer._stop()


@atexit.register
def _stop_writers() -> None:
    """At interpreter exit, write out what every writer of this process holds."""
    with _registry_lock:
        writers = [w for (pid, _), w in _writers.items() if pid == os.getpid()]
        _writers.clear()
    for writer in writers:
        writer.flush()
        writer._stop()
    for writer in writers:
        writer._thread.join(STOP_TIMEOUT)
