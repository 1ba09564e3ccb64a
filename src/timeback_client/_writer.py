"""The outbox writer: the one thread that writes an outbox file, for every client of the
process that uses that file.

Clients never touch SQLite. They hand the writer what happened (a window to store, its
first attempt, its final answer, an activity to checkpoint) through a queue that never
blocks, from whatever thread they run on, and go on. The writer keeps a *diff* between
what is on disk and what it was told, and writes it in one transaction per
`CHECKPOINT_INTERVAL`: new windows, first attempts, deleted windows, lease renewals, and
the open window of every activity whose active time moved since (read from the activities
themselves, under their locks, when the transaction is built). Only what a caller waits
for goes at once: an owner joining or leaving, a claim of what earlier processes left, a
flush.

So a crash loses at most about a second, whether of an open window or of one just cut;
a window stored and answered within the same second never reaches the disk at all; a
paused activity writes nothing; and one process makes at most one transaction a second,
however many activities it runs. A locked or slow disk delays only this thread: the diff
waits in memory (the app is told once it is `MAX_BEHIND` windows long, and the oldest
windows past that stay in memory only), and is written when the disk lets it.

Consistency with checkpoints: an activity queues a window it cuts *before* releasing its
lock, and the writer reads an activity's open window (under that lock) *before* taking
the queue. So a transaction holds either the open window from before a cut (and not the
window), or the window and the open window after it: never neither. A checkpoint that
starts before the end of a window stored in the same transaction is stale and is dropped.
"""

from __future__ import annotations

import atexit
import collections
import concurrent.futures
import functools
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from typing import Final, Protocol

import attrs

from ._errors import OutboxError, TimebackError
from ._outbox import CheckpointRow, Outbox, StoredWindow, WindowRow

__all__ = [
    "CHECKPOINT_INTERVAL",
    "Checkpointed",
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

Key = tuple[str, int]  # (run_id, started_at_ms): a window's identity in the outbox
Snapshot = tuple[int, int, int]  # (started_at_ms, ended_at_ms, elapsed_ms), wall ms
_Op = Callable[[], object]  # one thing told to the writer, run on its thread
_STOP: Final = object()


class Checkpointed(Protocol):
    """An activity, as the writer sees it: something with an open window."""

    def checkpoint(self) -> Snapshot | None:
        """The open window now, in wall ms (None: no active time in it)."""
        ...


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
    """

    path: str
    owners: int
    watched: int
    behind: int
    transactions: int
    failures: int
    usable: bool


@attrs.define(eq=False)
class _Watch:
    owner: OutboxOwner
    source: Checkpointed
    template: bytes
    written: Snapshot | None = None  # what the file holds for it


@attrs.define(eq=False)
class _Diff:
    """What the file does not have yet."""

    adds: dict[Key, WindowRow] = attrs.Factory(dict)
    sent: dict[Key, float] = attrs.Factory(dict)
    removes: set[Key] = attrs.Factory(set)
    joins: list[OutboxOwner] = attrs.Factory(list)
    claims: list[tuple[OutboxOwner, concurrent.futures.Future[list[StoredWindow]]]] = attrs.Factory(
        list
    )
    leaves: list[tuple[OutboxOwner, concurrent.futures.Future[None]]] = attrs.Factory(list)
    flushes: list[concurrent.futures.Future[None]] = attrs.Factory(list)
    dropped: list[str] = attrs.Factory(list)  # checkpoints of runs no longer watched

    @property
    def urgent(self) -> bool:
        """Whether someone waits for this transaction."""
        return bool(self.joins or self.claims or self.leaves or self.flushes)

    @property
    def empty(self) -> bool:
        return not (self.urgent or self.adds or self.sent or self.removes or self.dropped)


class OutboxOwner:
    """One client's share of an outbox writer: its owner row, backend and identity.

    Every method returns at once and may be called from any thread.

    Args:
        writer: the writer of the file.
        backend: the client's base URL.
        identity: whose windows these are.
        report: tells the client of a problem (must be safe to call from any thread).
    """

    def __init__(
        self,
        writer: OutboxWriter,
        *,
        backend: str,
        identity: str,
        report: Callable[[TimebackError], None],
    ) -> None:
        self.writer = writer
        self.owner = uuid.uuid4().hex
        self.backend = backend
        self.identity = identity
        self.report = report
        writer._put(functools.partial(writer._join, self), wake=True)

    def store(self, window_key: Key, ended_at_ms: int, elapsed_ms: int, body: bytes) -> None:
        """A new window, about to be sent: store it (within a second)."""
        run_id, started_at_ms = window_key
        row = WindowRow(
            owner=self.owner,
            backend=self.backend,
            identity=self.identity,
            run_id=run_id,
            started_at_ms=started_at_ms,
            ended_at_ms=ended_at_ms,
            elapsed_ms=elapsed_ms,
            body=body,
        )
        self.writer._put(functools.partial(self.writer._add, row))

    def sending(self, window_key: Key) -> None:
        """The window's first attempt is going out (from now on the server may have it)."""
        self.writer._put(functools.partial(self.writer._sent, window_key, time.time()))

    def settled(self, window_key: Key) -> None:
        """The window has its final answer: forget it."""
        self.writer._put(functools.partial(self.writer._remove, window_key))

    def watch(self, run_id: str, source: Checkpointed, template: bytes) -> None:
        """Checkpoint this run's open window every second until `unwatch`."""
        self.writer._put(
            functools.partial(self.writer._watch, run_id, _Watch(self, source, template))
        )

    def unwatch(self, run_id: str) -> None:
        """The run's activity ended (its last window was stored before this)."""
        self.writer._put(functools.partial(self.writer._unwatch, run_id))

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
        # Told things wait here until the next tick; only what a caller waits for wakes
        # the thread (a wake-up per window would cost a GIL hand-off each).
        self._queue: collections.deque[_Op] = collections.deque()
        self._wake = threading.Event()
        self._owners: dict[str, OutboxOwner] = {}
        self._members = 0  # owners joined or joining (guarded by _registry_lock)
        self._watched: dict[str, _Watch] = {}
        self._diff = _Diff()
        self._outbox: Outbox | None = None
        self._broken: BaseException | None = None
        self._transactions = 0
        self._failures = 0
        self._retry_at = 0.0
        self._retry_wait = 0.0
        self._last_tick = 0.0
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
            watched=len(self._watched),
            behind=len(self._diff.adds),
            transactions=self._transactions,
            failures=self._failures,
            usable=self._broken is None,
        )

    def flush(self) -> concurrent.futures.Future[None]:
        """Write everything told so far now; the future is done once it is on disk."""
        future: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._put(functools.partial(self._flush, future), wake=True)
        return future

    def _put(self, op: _Op, *, wake: bool = False) -> None:
        self._queue.append(op)
        if wake:
            self._wake.set()

    # -- the thread -------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._outbox = Outbox(self.path, busy_timeout=BUSY_TIMEOUT)
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
        """Wait for a wake-up or the next tick, take the queue, write if due. True: stop."""
        timeout = self._timeout()
        if timeout != 0:
            self._wake.wait(timeout)
        self._wake.clear()  # before taking the queue: a later wake-up is not lost
        stop = self._drain_queue()
        now = time.monotonic()
        if stop or (now >= self._retry_at and self._due(now)):
            full = stop or self._diff.leaves or self._diff.flushes
            self._tick(now, full=bool(full) or now - self._last_tick >= CHECKPOINT_INTERVAL)
        return stop

    def _timeout(self) -> float | None:
        now = time.monotonic()
        if self._diff.urgent:
            return max(0.0, self._retry_at - now)
        if self._diff.empty and not self._watched and not self._owners:
            return None
        next_tick = max(self._last_tick + CHECKPOINT_INTERVAL, self._retry_at)
        return max(0.0, next_tick - now)

    def _due(self, now: float) -> bool:
        return self._diff.urgent or now - self._last_tick >= CHECKPOINT_INTERVAL

    def _take(self, op: _Op) -> bool:
        """Fold one thing told into the diff. True for the stop order."""
        return op() is _STOP

    # What an owner tells, folded into the diff (on the thread).

    def _add(self, row: WindowRow) -> None:
        self._diff.adds[(row.run_id, row.started_at_ms)] = row
        self._check_behind()

    def _sent(self, key: Key, at: float) -> None:
        diff = self._diff
        row = diff.adds.get(key)
        if row is not None:
            diff.adds[key] = attrs.evolve(row, sent_at=at)
        else:
            diff.sent.setdefault(key, at)

    def _remove(self, key: Key) -> None:
        diff = self._diff
        # Stored and answered between two transactions: the file never sees it.
        if diff.adds.pop(key, None) is None:
            diff.removes.add(key)
        diff.sent.pop(key, None)

    def _watch(self, run_id: str, watch: _Watch) -> None:
        self._watched[run_id] = watch

    def _unwatch(self, run_id: str) -> None:
        watch = self._watched.pop(run_id, None)
        if watch is not None and watch.written is not None:
            self._diff.dropped.append(run_id)

    def _join(self, owner: OutboxOwner) -> None:
        self._diff.joins.append(owner)

    def _claim(
        self, owner: OutboxOwner, future: concurrent.futures.Future[list[StoredWindow]]
    ) -> None:
        self._diff.claims.append((owner, future))

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
        oldest = next(iter(adds))
        row = adds.pop(oldest)
        if not self._told_behind:
            self._told_behind = True
            owner = self._owners.get(row.owner)
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
        diff and the moved checkpoints; in between, a quick one writes only joins and
        claims, for which a client waits.
        """
        if self._broken is not None or self._outbox is None:
            self._last_tick = now
            self._discard_for_broken_outbox()
            return
        snapshots: dict[str, Snapshot | None] = {}
        renew = moved = False
        if full:
            self._last_tick = now
            # Open windows first, then the queue (see the module's docstring).
            snapshots = {run_id: w.source.checkpoint() for run_id, w in self._watched.items()}
            if self._drain_queue():
                self._put(self._stop_order, wake=True)  # for the next step to see
            renew = bool(self._owners) and now - self._last_renewal >= RENEW_EVERY
            moved = any(
                snapshot != self._watched[run_id].written
                for run_id, snapshot in snapshots.items()
                if run_id in self._watched
            )
            if self._diff.empty and not moved and not renew:
                return  # nothing changed: an idle or paused activity writes nothing
            diff, self._diff = self._diff, _Diff()
        else:
            diff = _Diff(joins=self._diff.joins, claims=self._diff.claims)
            self._diff.joins, self._diff.claims = [], []
        outbox = self._outbox
        claimed: list[tuple[concurrent.futures.Future[list[StoredWindow]], list[StoredWindow]]]
        try:
            with outbox.transaction():
                for owner in diff.joins:
                    outbox.register(owner.owner)
                if diff.claims:
                    outbox.forget_dead_owners(
                        alive={*self._owners, *(owner.owner for owner in diff.joins)}
                    )
                claimed = self._claim_all(outbox, diff)
                outbox.add(diff.adds.values())
                outbox.mark_sent((at, run_id, start) for (run_id, start), at in diff.sent.items())
                outbox.remove(diff.removes)
                written = self._write_checkpoints(outbox, snapshots, diff)
                if renew:
                    outbox.renew(self._owners)
                for owner, _ in diff.leaves:
                    outbox.release(owner.owner)
                lost = self._make_room(outbox, diff)
        except sqlite3.Error as exc:
            self._failed(diff, exc, now)
            return
        self._transactions += 1
        self._retry_wait = 0.0
        if renew:
            self._last_renewal = now
        for run_id, snapshot in written.items():
            watch = self._watched.get(run_id)
            if watch is not None:
                watch.written = snapshot
        for owner in diff.joins:
            self._owners[owner.owner] = owner
            if outbox.set_aside is not None:
                owner.report(
                    OutboxError(
                        f"the outbox {self.path} was unreadable or not ours; kept it as "
                        f"{outbox.set_aside} and started a new one"
                    )
                )
        self._settle_futures(diff, claimed)
        for owner, lost_ms in lost:
            owner.report(
                OutboxError(
                    f"the outbox is full ({outbox.max_windows} windows): dropped the oldest "
                    f"unsent windows, {lost_ms} active ms"
                )
            )

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
        return claimed

    def _drain_queue(self) -> bool:
        """Fold everything told so far into the diff. True if the stop order was among it."""
        stop = False
        queue = self._queue
        while queue:
            stop = self._take(queue.popleft()) or stop
        return stop

    def _write_checkpoints(
        self, outbox: Outbox, snapshots: dict[str, Snapshot | None], diff: _Diff
    ) -> dict[str, Snapshot | None]:
        """Bring the file's checkpoints in line with the snapshots; what each now holds."""
        stored_until: dict[str, int] = {}
        for (run_id, _), row in diff.adds.items():
            stored_until[run_id] = max(stored_until.get(run_id, 0), row.ended_at_ms)
        puts: list[CheckpointRow] = []
        moves: list[tuple[str, int, int, int]] = []
        drops: list[str] = list(diff.dropped)
        written: dict[str, Snapshot | None] = {}
        for run_id, snapshot in snapshots.items():
            watch = self._watched.get(run_id)
            if watch is None:
                continue
            if snapshot is not None and snapshot[0] < stored_until.get(run_id, snapshot[0]):
                snapshot = None  # read before a cut whose window is in this transaction
            if snapshot == watch.written:
                continue
            written[run_id] = snapshot
            if snapshot is None:
                drops.append(run_id)
            elif watch.written is None:
                owner = watch.owner
                puts.append(
                    CheckpointRow(
                        owner=owner.owner,
                        backend=owner.backend,
                        identity=owner.identity,
                        run_id=run_id,
                        started_at_ms=snapshot[0],
                        ended_at_ms=snapshot[1],
                        elapsed_ms=snapshot[2],
                        template=watch.template,
                    )
                )
            else:
                moves.append((run_id, *snapshot))
        outbox.drop_checkpoints(drops)
        outbox.put_checkpoints(puts)
        outbox.move_checkpoints(moves)
        return written

    def _make_room(self, outbox: Outbox, diff: _Diff) -> list[tuple[OutboxOwner, int]]:
        self._stored_since_room_check += len(diff.adds)
        if self._stored_since_room_check < 64:
            return []
        self._stored_since_room_check = 0
        lost = []
        for owner in self._owners.values():
            lost_ms = outbox.make_room(owner.owner, owner.backend)
            if lost_ms:
                lost.append((owner, lost_ms))
        return lost

    def _settle_futures(
        self,
        diff: _Diff,
        claimed: list[tuple[concurrent.futures.Future[list[StoredWindow]], list[StoredWindow]]],
    ) -> None:
        for claim, rows in claimed:
            claim.set_result(rows)
        for owner, left in diff.leaves:
            self._owners.pop(owner.owner, None)
            left.set_result(None)
        for flushed in diff.flushes:
            flushed.set_result(None)

    def _failed(self, diff: _Diff, exc: sqlite3.Error, now: float) -> None:
        """Keep the diff for the next try, after a growing wait; tell the owners."""
        self._failures += 1
        self._diff = _merge(diff, self._diff)
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
        self._watched.clear()
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


def _merge(older: _Diff, newer: _Diff) -> _Diff:
    """A failed transaction's diff, with what was told since on top."""
    merged = older
    for key, row in newer.adds.items():
        merged.adds[key] = row
    for key, at in newer.sent.items():
        if key in merged.adds:
            merged.adds[key] = attrs.evolve(merged.adds[key], sent_at=at)
        else:
            merged.sent.setdefault(key, at)
    for key in newer.removes:
        if merged.adds.pop(key, None) is None:
            merged.removes.add(key)
        merged.sent.pop(key, None)
    merged.joins += newer.joins
    merged.claims += newer.claims
    merged.leaves += newer.leaves
    merged.flushes += newer.flushes
    merged.dropped += newer.dropped
    return merged


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
