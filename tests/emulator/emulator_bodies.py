"""Request bodies and constants shared by the emulator's tests."""

from __future__ import annotations

import uuid
from typing import Any

ADA = "ada@example.edu"
BOB = "bob@example.edu"
STUDENTS = {"tok-ada": ADA, "tok-bob": BOB}


def new_run() -> str:
    return str(uuid.uuid4())


def window(
    run_id: str,
    start: str = "10:00:00.000",
    end: str = "10:00:15.000",
    elapsed_ms: int = 15000,
    paused_ms: int = 0,
    **changes: Any,
) -> dict[str, Any]:
    """A heartbeat body for 2026-11-25 at the given UTC times of day."""
    body: dict[str, Any] = {
        "id": "lesson-1",
        "name": "Fractions",
        "course": {"subject": "Math", "grade": 3},
        "runId": run_id,
        "startedAt": f"2026-11-25T{start}Z",
        "endedAt": f"2026-11-25T{end}Z",
        "elapsedMs": elapsed_ms,
        "pausedMs": paused_ms,
    }
    body.update(changes)
    return body


def completion(run_id: str | None, **changes: Any) -> dict[str, Any]:
    """A record() input for Ada's lesson-1, without time."""
    data: dict[str, Any] = {
        "user": {"email": ADA},
        "activity": {
            "id": "lesson-1",
            "name": "Fractions",
            "course": {"subject": "Math", "grade": 3},
        },
        "metrics": {"xp_earned": 10, "total_questions": 10, "correct_questions": 9},
        "run_id": run_id,
    }
    data.update(changes)
    return data
