"""The app's requests the emulator refused, counted by route, status and error.

A refused heartbeat is time the app lost (the vendor's server refuses it the same way),
and a refused ``record()`` a completion it lost: as much an app's mistake as any problem
of a run, so the CI verdict counts them. Only the backend's own answers count: a fault
the operator queued answers in front of the app, which never sees that request.

Kept in memory (not in ``--db``): they are what this emulator saw since it started or was
last reset. A refusal is kept by its error body, which the vendor builds from the request
body; the bearer token or session cookie of a request is never part of it.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any, Literal

import attrs

from ._validation import Rejection

Route = Literal["heartbeat", "record"]

#: How the verdict names each route's requests (singular, plural).
_NAMES: dict[Route, tuple[str, str]] = {
    "heartbeat": ("heartbeat", "heartbeats"),
    "record": ("record() call", "record() calls"),
}

#: Kinds of refusal kept apart; past this many, new kinds are counted together.
_KINDS = 100


@attrs.frozen(kw_only=True)
class Refusal:
    """One kind of request the emulator refused, and how many times.

    Attributes:
        route: ``"heartbeat"`` (the vendor's heartbeat route) or ``"record"``
            (``record()``, in Python or through ``POST /_emulator/record``).
        status: The HTTP status answered, e.g. 400.
        code: The vendor's error code, e.g. ``"UNKNOWN_COURSE"``.
        message: The vendor's error message, e.g. ``"Unknown course: Reading grade 2"``,
            and the field it names, if any.
        count: How many requests got this answer.
    """

    route: Route
    status: int
    code: str
    message: str
    count: int = 1

    def describe(self) -> str:
        """``2 x 400 UNKNOWN_COURSE: Unknown course: ...``, for a person."""
        return f"{self.count} x {self.status} {self.code}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The JSON form: ``route``, ``status``, ``code``, ``message``, ``count``."""
        return attrs.asdict(self)


def _message(error: Any) -> str:
    if not isinstance(error, dict):
        return ""
    message = str(error.get("message", ""))
    details = error.get("details")
    if not isinstance(details, dict):
        return message
    field = details.get("field")
    if field is not None and str(field) not in message:
        message += f" (field {field}: {details.get('message')})"
    return message


class Refusals:
    """A thread-safe count of refused requests (the server thread notes, anyone reads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[tuple[Route, int, str, str]] = Counter()

    def note(self, route: Route, status: int, body: Any) -> None:
        """Count an answer of ``status`` >= 400 with the vendor's ``{"error": ...}``
        body (or any other body: its code is then the status's)."""
        if status < 400:
            return
        error = body.get("error") if isinstance(body, dict) else None
        code = str(error.get("code")) if isinstance(error, dict) else "HTTP_ERROR"
        key = (route, status, code, _message(error))
        with self._lock:
            if key not in self._counts and len(self._counts) >= _KINDS:
                key = (route, status, code, "(and other messages)")
            self._counts[key] += 1

    def note_rejection(self, route: Route, rejection: Rejection) -> None:
        """Count a refusal answered with ``rejection``."""
        self.note(route, rejection.status, rejection.to_json())

    def all(self) -> tuple[Refusal, ...]:
        """Each kind of refusal with its count, most frequent first."""
        with self._lock:
            counted = self._counts.most_common()
        return tuple(
            Refusal(route=route, status=status, code=code, message=message, count=count)
            for (route, status, code, message), count in counted
        )

    def clear(self) -> None:
        """Forget every refusal."""
        with self._lock:
            self._counts.clear()


def summarize(refusals: tuple[Refusal, ...]) -> list[str]:
    """The verdict's lines: per route, ``3 heartbeats refused (time the app lost):``
    then one line per kind (``- 2 x 400 UNKNOWN_COURSE: ...``)."""
    lines: list[str] = []
    for route, (one, many) in _NAMES.items():
        kinds = [refusal for refusal in refusals if refusal.route == route]
        total = sum(refusal.count for refusal in kinds)
        if not total:
            continue
        lost = "time" if route == "heartbeat" else "completions"
        lines.append(f"{total} {one if total == 1 else many} refused ({lost} the app lost):")
        lines.extend(f"- {refusal.describe()}" for refusal in kinds)
    return lines
