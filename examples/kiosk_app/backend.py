"""The app's backend, as the kiosk sees it: where heartbeats go, and the server's part.

A Timeback app's frontend only tracks time; its **backend** records the completion with
the vendor server SDK's ``timeback.activity.record()``, using the same runId. This kiosk
has no backend of its own, so:

- `EmbeddedEmulator` (the default) runs the project's emulator on a loopback port inside
  the app, and "Finish lesson" plays the backend: it posts the ``record()`` input to the
  emulator's ``POST /_emulator/record``.
- `RemoteBackend` (``--server URL --token TOKEN``) sends heartbeats to a real backend;
  recording completion there is that backend's own business, so "Finish" says so.
"""

from __future__ import annotations

import contextlib
import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from .lessons import Lesson

# record() over loopback answers in milliseconds; a stuck call must not hang the kiosk.
_RECORD_TIMEOUT_S = 10.0


class CompletionUnavailable(Exception):
    """This backend cannot record completions for the kiosk (see the message)."""


class Backend(Protocol):
    """What the kiosk needs from the backend."""

    base_url: str
    description: str
    #: None when "Finish lesson" can record completions; else why it cannot.
    completion_note: str | None

    def knows(self, token: str) -> bool | None:
        """Whether the token is a student's (None: cannot tell before a request)."""
        ...

    def record_completion(self, token: str, lesson: Lesson, run_id: str, metrics: Metrics) -> None:
        """The server's part of "Finish": record the run's completion. Blocking; call it
        off the GUI thread. Raises `CompletionUnavailable` or `OSError`."""
        ...

    def close(self) -> None: ...


class Metrics(Protocol):
    total_questions: int
    correct_questions: int
    xp_earned: int


def email_for(name: str) -> str:
    """The demo email the embedded emulator knows a roster name by."""
    slug = re.sub(r"[^a-z0-9]+", ".", name.lower()).strip(".") or "student"
    return f"{slug}@kiosk.example"


class EmbeddedEmulator:
    """The emulator, served on 127.0.0.1 in a background thread for the app's lifetime.

    Args:
        roster: student name -> token; every token becomes a known student.
        db: an SQLite file to keep the emulator's events across runs (None: memory).
        port: the loopback port (0: any free one).
    """

    def __init__(self, roster: dict[str, str], *, db: Path | None = None, port: int = 0) -> None:
        try:
            from timeback_client.emulator import Emulator
        except ImportError as exc:
            raise SystemExit(
                "the embedded emulator needs the 'emulator' extra: "
                "pip install 'timeback-client[emulator]' (or pass --server URL --token TOKEN)"
            ) from exc
        self.emulator = Emulator(
            students={token: email_for(name) for name, token in roster.items()}, db=db
        )
        self._stack = contextlib.ExitStack()
        self._stack.callback(self.emulator.close)
        self.base_url: str = self._stack.enter_context(self.emulator.serve_in_thread(port))
        self.origin = self.base_url.removesuffix(self.emulator.mount)
        self.description = f"embedded emulator at {self.base_url}"
        self.completion_note: str | None = None

    def knows(self, token: str) -> bool | None:
        return token in self.emulator.students

    def record_completion(self, token: str, lesson: Lesson, run_id: str, metrics: Metrics) -> None:
        # The vendor's record() input, as the app's server would pass it (snake_case).
        # No "time": heartbeats already reported it, and both would count it twice.
        body = {
            "user": {"email": self.emulator.students[token]},
            "activity": {"id": lesson.id, "name": lesson.name, "course": lesson.course},
            "metrics": {
                "total_questions": metrics.total_questions,
                "correct_questions": metrics.correct_questions,
                "xp_earned": metrics.xp_earned,
                "pct_complete": 100,
            },
            "run_id": run_id,
        }
        _post_json(f"{self.origin}/_emulator/record", body)

    def close(self) -> None:
        self._stack.close()


class RemoteBackend:
    """A real app backend at ``base_url``, which records completions itself."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.description = f"backend at {base_url}"
        self.completion_note: str | None = (
            "Completion is recorded by your backend's own timeback.activity.record(), with "
            "this lesson's runId; this kiosk has no server logic of its own to do it. "
            "Close the lesson: your time is saved and the run stays open."
        )

    def knows(self, token: str) -> bool | None:
        return None

    def record_completion(self, token: str, lesson: Lesson, run_id: str, metrics: Metrics) -> None:
        raise CompletionUnavailable(self.completion_note)

    def close(self) -> None:
        pass


def _post_json(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=_RECORD_TIMEOUT_S) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            detail = exc.read().decode(errors="replace")
        raise OSError(f"record() was refused ({exc.code}): {detail}") from exc
