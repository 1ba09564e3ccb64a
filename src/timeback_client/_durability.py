"""One client's use of the outbox: write before send, forget after the answer, checkpoint
the open window every second, and replay what earlier processes left.

The outbox file itself (`_outbox.Outbox`) is plain synchronous storage; this room wires it
to the sender (as its `Journal`) and to the client's event loop. A failing disk never stops
tracking: the window stays in memory, and the problem is reported.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Final

import anyio

from ._activity import AsyncActivity
from ._clock import Clock
from ._errors import DeliveryError, DuplicateRiskError, TimebackError
from ._models import Window
from ._outbox import Outbox, OutboxError, StoredWindow
from ._sender import Delivery, DeliveryListener, Endpoint

__all__ = ["CHECKPOINT_INTERVAL", "DurableOutbox"]

logger = logging.getLogger("timeback_client")

CHECKPOINT_INTERVAL: Final = 1.0  # seconds: the most a crash can lose
RENEW_EVERY: Final = 5  # checkpoints between lease renewals (the lease lasts 15 s)
# A full disk fails every write: the app hears of each kind of failure at most this often.
REPORT_EVERY: Final = 60.0
ROOM_CHECK_EVERY: Final = 64  # windows stored between size checks


class DurableOutbox:
    """Keeps one client's windows in an `Outbox` until they have their final answer.

    Args:
        outbox: the open outbox (for this client's backend).
        identity: whose windows these are (replays go only to the same identity).
        report: where problems go (the client's ``on_error`` and log).
    """

    def __init__(
        self, outbox: Outbox, *, identity: str, report: Callable[[TimebackError], None]
    ) -> None:
        self.outbox = outbox
        self.identity = identity
        self._report = report
        self._stored_since_check = 0
        self._last_reported: dict[str, float] = {}
        self._closed = False

    # -- the sender's Journal ---------------------------------------------------------

    def store(self, delivery: Delivery) -> None:
        """Write a new window before it is sent; on a disk error keep it in memory only."""
        window = delivery.window
        try:
            delivery.row_id = self.outbox.add(
                run_id=window.run_id,
                started_at_ms=window.started_at_ms,
                ended_at_ms=window.ended_at_ms,
                elapsed_ms=window.elapsed_ms,
                body=delivery.body,
                identity=self.identity,
            )
        except sqlite3.Error as exc:
            self._failed("store a window", exc)
            return
        delivery.journal = self
        self._stored_since_check += 1
        if self._stored_since_check >= ROOM_CHECK_EVERY:
            self._stored_since_check = 0
            self._make_room()

    def sending(self, delivery: Delivery) -> None:
        """Mark the window as sent: a replay must then treat it as possibly accepted."""
        if delivery.row_id is not None:
            try:
                self.outbox.mark_sent(delivery.row_id)
            except sqlite3.Error as exc:
                self._failed("mark a window sent", exc)

    def settled(self, delivery: Delivery) -> None:
        """The window has its final answer: delete it."""
        if delivery.row_id is not None:
            try:
                self.outbox.remove(delivery.row_id)
            except sqlite3.Error as exc:
                self._failed("delete a delivered window", exc)

    # -- checkpoints and leases --------------------------------------------------------

    async def keep(self, current: Callable[[], AsyncActivity | None]) -> None:
        """Checkpoint the running activity's open window every second; renew the lease.

        Both are about what a crash of this process can cost, so they run on real time,
        whatever clock the activities read.
        """
        beats = 0
        while True:
            await anyio.sleep(CHECKPOINT_INTERVAL)
            if self._closed:
                # Woken in the same loop turn that closed the outbox, before its cancellation.
                return
            self.checkpoint(current())
            beats += 1
            if beats % RENEW_EVERY == 0:
                try:
                    self.outbox.renew()
                except sqlite3.Error as exc:
                    self._failed("renew the outbox lease", exc)

    def checkpoint(self, activity: AsyncActivity | None) -> None:
        """Write the open window of ``activity`` (if it holds active time)."""
        window = None if activity is None else activity._open_window()
        if window is None:
            return
        try:
            self.outbox.checkpoint(
                [
                    (
                        window.run_id,
                        self.identity,
                        window.started_at_ms,
                        window.ended_at_ms,
                        window.elapsed_ms,
                        window.to_bytes(),
                    )
                ]
            )
        except sqlite3.Error as exc:
            self._failed("checkpoint the open window", exc)

    def forget_checkpoint(self, run_id: str) -> None:
        """The activity ended: its last window (if any) replaced the checkpoint already."""
        try:
            self.outbox.drop_checkpoint(run_id)
        except sqlite3.Error as exc:
            self._failed("drop a checkpoint", exc)

    # -- replay ---------------------------------------------------------------------------

    def replay(
        self, clock: Clock, endpoint: Endpoint, listener: DeliveryListener
    ) -> list[Delivery]:
        """What earlier processes left for this backend and identity, ready to send again
        with the exact bytes first written: sent-but-unanswered windows first."""
        try:
            stored = self.outbox.claim_orphans(self.identity)
        except sqlite3.Error as exc:
            self._failed("read what earlier sessions left", exc)
            return []
        now = clock.read().timeline_ms
        deliveries = []
        for row in stored:
            window = _parse(row)
            if window is None:
                self._report(OutboxError(f"dropped an unreadable stored window (row {row.row_id})"))
                self.outbox.remove(row.row_id)
                continue
            delivery = Delivery(
                window=window, endpoint=endpoint, listener=listener, body=row.body, journal=self
            )
            delivery.row_id = row.row_id
            if row.sent_at is not None:
                # Sent by an earlier process and never answered: the server may have it.
                age_ms = max(0, round((time.time() - row.sent_at) * 1000))
                delivery.unanswered_since_ms = now - age_ms
            deliveries.append(delivery)
        return deliveries

    def close(self) -> None:
        """Release this process's claim: the next process replays what is left."""
        self._closed = True
        try:
            self.outbox.close()
        except sqlite3.Error as exc:
            self._failed("close the outbox", exc)

    # -- internals ------------------------------------------------------------------------

    def _make_room(self) -> None:
        try:
            lost_ms = self.outbox.make_room()
        except sqlite3.Error as exc:
            self._failed("make room in the outbox", exc)
            return
        if lost_ms:
            self._report(
                OutboxError(
                    f"the outbox is full ({self.outbox.max_windows} windows): dropped the "
                    f"oldest unsent windows, {lost_ms} active ms"
                )
            )

    def _failed(self, what: str, exc: sqlite3.Error) -> None:
        error = OutboxError(f"could not {what} in the outbox {self.outbox.path}: {exc}")
        error.__cause__ = exc
        now = time.monotonic()
        if now - self._last_reported.get(what, -REPORT_EVERY) < REPORT_EVERY:
            logger.debug("timeback: %s", error)
            return
        self._last_reported[what] = now
        self._report(error)


class ReplayListener:
    """Hears about windows replayed from earlier sessions (they have no activity here)."""

    def __init__(self, report: Callable[[TimebackError], None]) -> None:
        self._report = report

    def delivered(self, window: Window, *, duplicate: bool) -> None:
        """A replayed window reached the backend."""
        logger.info(
            "timeback: replayed window of run %s (%d active ms) delivered%s",
            window.run_id,
            window.elapsed_ms,
            " (the backend already had it)" if duplicate else "",
        )

    def failed(
        self, window: Window, error: DeliveryError, *, attempts: int, will_retry: bool
    ) -> None:
        """A replayed window could not be delivered (yet). Retries are reported once, at
        the first failure; a possible double count always is."""
        if not will_retry or attempts <= 1 or isinstance(error, DuplicateRiskError):
            self._report(error)


def _parse(row: StoredWindow) -> Window | None:
    try:
        return Window.from_json(json.loads(row.body))
    except (ValueError, KeyError, TypeError, TimebackError):
        return None


async def open_outbox(
    path: str, *, backend: str, report: Callable[[TimebackError], None]
) -> Outbox | None:
    """Open the outbox off the event loop; on failure report it and go on without one."""
    try:
        outbox = await anyio.to_thread.run_sync(lambda: Outbox(path, backend=backend))
    except (OSError, sqlite3.Error, OutboxError) as exc:
        error = OutboxError(f"cannot use the outbox {path}: {exc}; windows stay in memory")
        error.__cause__ = exc
        report(error)
        return None
    if outbox.set_aside is not None:
        report(
            OutboxError(
                f"the outbox {path} was unreadable or not ours; kept it as {outbox.set_aside} "
                "and started a new one"
            )
        )
    return outbox
