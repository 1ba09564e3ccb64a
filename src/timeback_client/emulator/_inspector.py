"""The inspector: the page at ``GET /_emulator/`` and the JSON it polls.

The page is three static files (``inspector/``: HTML, CSS, JavaScript, no build step
and nothing from a CDN) shipped in the wheel as package data, read once when the app is
built. It polls ``GET /_emulator/overview?since=VERSION`` and redraws only when the
version moved (an event stored, or a reset), then reads the run it shows from
``GET /_emulator/runs/{runId}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import resources
from typing import Any, Final

import attrs

from ._problems import Problem
from ._runs import Run

#: The page's files: name -> media type.
ASSETS: Final = {
    "index.html": "text/html; charset=utf-8",
    "inspector.css": "text/css; charset=utf-8",
    "inspector.js": "text/javascript; charset=utf-8",
}

#: The page runs only its own files; no inline script, nothing from elsewhere.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


@attrs.frozen(kw_only=True)
class Asset:
    """One file of the page."""

    body: bytes
    media_type: str


def load_assets() -> dict[str, Asset]:
    """The page's files, read from the installed package."""
    folder = resources.files(__package__ or "timeback_client.emulator") / "inspector"
    return {
        name: Asset(body=(folder / name).read_bytes(), media_type=media_type)
        for name, media_type in ASSETS.items()
    }


def _course(run: Run) -> str | None:
    """The course's name as the events carry it (Caliper ``object.course.name``)."""
    for event in run.events:
        course = event.caliper.get("object", {}).get("course", {})
        if isinstance(course, dict) and course.get("name"):
            return str(course["name"])
    return None


def _completed_at(run: Run) -> str | None:
    ends = [e.ended_at for e in run.events if e.kind == "completion" and e.ended_at]
    return min(ends) if ends else None


def run_summary(run: Run, problems: Sequence[Problem]) -> dict[str, Any]:
    """One row of the page's list of runs."""
    return {
        "runId": run.run_id,
        "students": list(run.students),
        "activities": list(run.activities),
        "course": _course(run),
        "activeMs": run.active_ms,
        "inactiveMs": run.inactive_ms,
        "windows": len(run.windows),
        "sessions": run.sessions,
        "completed": run.completed,
        "completedAt": _completed_at(run),
        "lastSeq": max(event.seq for event in run.events),
        "problems": [problem.rule for problem in problems],
    }


def overview(runs: Sequence[Run], problems: Sequence[Problem], version: str) -> dict[str, Any]:
    """What the page polls: every run, newest first, and every problem."""
    by_run: dict[str, list[Problem]] = {}
    for problem in problems:
        by_run.setdefault(problem.run_id, []).append(problem)
    newest_first = sorted(runs, key=lambda run: min(e.seq for e in run.events), reverse=True)
    return {
        "version": version,
        "changed": True,
        "runs": [run_summary(run, by_run.get(run.run_id, [])) for run in newest_first],
        "problems": [problem.to_json() for problem in problems],
    }
