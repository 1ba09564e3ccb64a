"""Each outbox file's part in a move of windows from one file to another.

Windows move from one file (the source) to another (the target) in steps, each a
transaction on one file: SQLite makes a transaction atomic across attached files only
outside WAL mode. What a crash between two steps leaves tells the next mover what
happened, so no window is lost or moved twice. `_outbox_home.move_outbox` drives the
steps; these are each file's part, run in the store's transactions on its connection.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Final

from ._outbox import Outbox, WindowRow

__all__ = ["MOVE_PREFIX", "OutboxMoves"]

# Owner names of windows on their way to another outbox file (see `mark_for_move`).
MOVE_PREFIX: Final = "move-"


class OutboxMoves:
    """One outbox file's part in moves: as the source, or as the target.

    Args:
        outbox: the file's store, whose transactions the steps run in.
    """

    __slots__ = ("_outbox",)

    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def mark_for_move(self, marker: str) -> list[WindowRow]:
        """(Source.) Take what dead or departed owners left, of every backend and
        identity, to move it: their open windows become windows, and every window is
        marked ``<marker>:claim``, registered as an owner of this process. Call it in a
        transaction, after `OwnerLeases.forget_dead_owners` and `settle_moves`.

        The ``:claim`` ending keeps every claim away from the marked windows (those of
        earlier versions too); the registration tells other movers the move is under way.
        Returns the windows as rows for the target, owned there by ``marker``: an owner
        that is not registered, so a claim takes them.
        """
        gone = self._outbox.leases.gone_owners()
        if not gone:
            return []
        mark = f"{marker}:claim"
        marks = ",".join("?" * len(gone))
        self._outbox.close_open_windows("owner IN (" + marks + ")", tuple(gone), mark)
        db = self._outbox.connection
        db.execute(
            f"UPDATE windows SET owner = ? WHERE owner IN ({marks})",  # noqa: S608 - only placeholders
            (mark, *gone),
        )
        rows = [
            WindowRow(
                owner=marker,
                backend=backend,
                identity=identity,
                run_id=run_id,
                started_at_ms=started,
                ended_at_ms=ended,
                elapsed_ms=elapsed,
                body=bytes(body),
                sent_at=sent_at,
            )
            for backend, identity, run_id, started, ended, elapsed, body, sent_at in db.execute(
                "SELECT backend, identity, run_id, started_at_ms, ended_at_ms, elapsed_ms, "
                "body, sent_at FROM windows WHERE owner = ? ORDER BY row_id",
                (mark,),
            )
        ]
        if rows:
            self._outbox.leases.register(mark)
        return rows

    def holds_move(self, marker: str) -> bool:
        """(Source.) Whether the move is still this process's to finish: no other mover
        released its windows meanwhile (which it may once the registration lapsed).
        Ask in the transaction that then drops them."""
        db = self._outbox.connection
        found = db.execute("SELECT 1 FROM owners WHERE owner = ?", (f"{marker}:claim",))
        return found.fetchone() is not None

    def drop_move(self, marker: str) -> None:
        """(Source.) The move's windows are in the target: they go from here."""
        db = self._outbox.connection
        mark = f"{marker}:claim"
        db.execute("DELETE FROM windows WHERE owner = ?", (mark,))
        db.execute("DELETE FROM owners WHERE owner = ?", (mark,))

    def release_move(self, marker: str) -> None:
        """(Source.) The move's windows did not reach the target: they are left as a
        departed owner's, to be claimed here or moved again."""
        db = self._outbox.connection
        mark = f"{marker}:claim"
        db.execute("UPDATE windows SET owner = ? WHERE owner = ?", (marker, mark))
        db.execute("DELETE FROM owners WHERE owner = ?", (mark,))

    def settle_moves(self, landed: Collection[str]) -> list[str]:
        """(Source.) Finish the moves whose mover is gone (its process died between two
        steps): the windows of a move in ``landed`` (the target has them) go, those of
        any other are released. Call it in a transaction, after
        `OwnerLeases.forget_dead_owners`.

        Returns the moves of ``landed`` of which nothing is left here: the target may
        forget them.
        """
        db = self._outbox.connection
        pattern = f"{MOVE_PREFIX}%:claim"
        abandoned = [
            row[0].removesuffix(":claim")
            for row in db.execute(
                "SELECT DISTINCT owner FROM windows WHERE owner LIKE ? "
                "AND owner NOT IN (SELECT owner FROM owners)",
                (pattern,),
            )
        ]
        for marker in abandoned:
            if marker in landed:
                self.drop_move(marker)
            else:
                self.release_move(marker)
        live = {
            row[0] for row in db.execute("SELECT owner FROM owners WHERE owner LIKE ?", (pattern,))
        }
        return [marker for marker in landed if f"{marker}:claim" not in live]

    def record_move(self, marker: str, source: str) -> None:
        """(Target.) The windows of the move ``marker`` from the file ``source`` are here:
        call it in the transaction that adds them."""
        db = self._outbox.connection
        db.execute(
            "INSERT OR IGNORE INTO moves_in (marker, source) VALUES (?, ?)", (marker, source)
        )

    def moves_in(self, source: str) -> set[str]:
        """(Target.) The moves from ``source`` that reached this file and are not forgotten."""
        db = self._outbox.connection
        found = db.execute("SELECT marker FROM moves_in WHERE source = ?", (source,))
        return {row[0] for row in found}

    def forget_moves(self, markers: Iterable[str]) -> None:
        """(Target.) Moves of which the source holds nothing any more."""
        db = self._outbox.connection
        db.executemany("DELETE FROM moves_in WHERE marker = ?", [(marker,) for marker in markers])
