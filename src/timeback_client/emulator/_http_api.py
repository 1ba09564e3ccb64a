"""The emulator's HTTP API, described once: the reference page and the OpenAPI document.

``ENDPOINTS`` says, for every route the app serves, its method, body, answer, status
codes and an example. ``reference_markdown()`` renders it as the docs' reference page
(``docs/reference/emulator-http.md``), ``openapi()`` as an OpenAPI 3.1 document, which
the emulator serves at ``GET /_emulator/openapi.json``. A test fails when a route the app
serves is missing here, or the page in the docs is not what this renders. To render the
page again after a change here::

    python -c "from timeback_client.emulator._http_api import reference_markdown as r; \
print(r(), end='')" > docs/reference/emulator-http.md
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

import attrs

from .. import __version__

#: Written in place of the mount in a path: ``/api/timeback`` unless told otherwise.
MOUNT: Final = "{mount}"


@attrs.frozen(kw_only=True)
class Endpoint:
    """One method of one route.

    Attributes:
        method: ``GET``, ``POST``, ``PUT`` or ``DELETE``.
        path: The path, ``{mount}`` for the vendor's mount and ``{run_id}`` for a
            parameter, as the app routes it.
        group: The section it belongs to.
        summary: One sentence: what it does.
        body: What the request carries; None for no body.
        body_example: An example body.
        answer: What a success answers.
        answer_example: An example of that answer; None for an empty or non-JSON one.
        statuses: Every status it answers, each with what it means.
        media_type: The success answer's media type ("" for no body).
        examples: Examples of other answers, by status.
    """

    method: str
    path: str
    group: str
    summary: str
    body: str | None = None
    body_example: Any = None
    answer: str
    answer_example: Any = None
    statuses: tuple[tuple[int, str], ...]
    media_type: str = "application/json"
    examples: tuple[tuple[int, Any], ...] = ()

    def served_path(self, mount: str) -> str:
        """The path as the app routes it under ``mount``."""
        return self.path.replace(MOUNT, mount)


_RUN_ID = "6f0c7c1e-8a1b-4b52-9d55-0c1c7b1f2a10"
_HEARTBEAT = {
    "id": "lesson-1",
    "name": "Fractions",
    "course": {"subject": "Math", "grade": 3},
    "runId": _RUN_ID,
    "startedAt": "2026-11-25T10:00:00.000Z",
    "endedAt": "2026-11-25T10:00:15.000Z",
    "elapsedMs": 12000,
    "pausedMs": 3000,
}
_WINDOW = {
    "startedAt": "2026-11-25T10:00:00.000Z",
    "endedAt": "2026-11-25T10:00:15.000Z",
    "elapsedMs": 12000,
    "pausedMs": 3000,
    "student": "ada@example.edu",
    "activityId": "lesson-1",
    "seq": 1,
}
_EVENT = {
    "seq": 1,
    "kind": "heartbeat",
    "runId": _RUN_ID,
    "student": "ada@example.edu",
    "activityId": "lesson-1",
    "objectId": "https://sensor.example/activities/Math/g3/lesson-1",
    "startedAt": "2026-11-25T10:00:00.000Z",
    "endedAt": "2026-11-25T10:00:15.000Z",
    "activeMs": 12000,
    "inactiveMs": 3000,
    "receivedAt": "2026-11-25T10:00:15.020Z",
    "caliper": {"type": "TimeSpentEvent", "...": "the Caliper event as sent"},
}
_RUN_SUMMARY = {
    "runId": _RUN_ID,
    "students": ["ada@example.edu"],
    "activities": ["lesson-1"],
    "activeMs": 12000,
    "inactiveMs": 3000,
    "windows": [_WINDOW],
    "sessions": 1,
    "completed": False,
}
_RUN = {**_RUN_SUMMARY, "events": [_EVENT]}
_PROBLEM = {
    "runId": _RUN_ID,
    "rule": "heartbeat-after-completion",
    "evidence": "2 window(s) start after the run was completed at 2026-11-25T10:20:00.000Z; "
    "a new attempt needs a fresh runId: window ...; window ...",
    "fix": "Start a new activity, with a fresh runId, for a new attempt; end the activity "
    "before its completion is recorded",
    "windows": [_WINDOW],
}
_COURSE = {
    "subject": "Math",
    "grade": 3,
    "code": None,
    "stagingId": "course-math-3",
    "productionId": "course-math-3",
    "sensor": None,
}
_FAULT = {"status": 503, "retryAfter": 2, "count": 2}
_FAULT_SERVED = {
    "count": 2,
    "status": 503,
    "code": None,
    "message": None,
    "body": None,
    "retryAfter": 2,
    "delay": 0.0,
    "drop": False,
    "afterProcessing": False,
}
_RECORD = {
    "user": {"email": "ada@example.edu"},
    "activity": {"id": "lesson-1", "name": "Fractions", "course": {"subject": "Math", "grade": 3}},
    "metrics": {"xp_earned": 10, "total_questions": 10, "correct_questions": 8},
    "run_id": _RUN_ID,
}
_CONFIG = {
    "name": "Fractions App",
    "sensor": "https://sensor.fractions.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "course-math-3"}},
        {"courseCode": "CS-101", "ids": {"staging": "course-cs-101"}},
        {"subject": "Science", "grade": 7},
    ],
}

#: A completion, as `record()` without `time` stores it: no window, so no start or totals.
_COMPLETION = {
    **_EVENT,
    "seq": 2,
    "kind": "completion",
    "startedAt": None,
    "endedAt": "2026-11-25T10:20:00.000Z",
    "activeMs": None,
    "inactiveMs": None,
    "receivedAt": "2026-11-25T10:20:00.000Z",
    "caliper": {"type": "ActivityEvent", "...": "the Caliper event as sent"},
}
#: The courses `_CONFIG` configures, as the course routes answer them.
_CONFIG_COURSES = [
    {**_COURSE, "productionId": None},
    {
        "subject": "Other",
        "grade": None,
        "code": "CS-101",
        "stagingId": "course-cs-101",
        "productionId": None,
        "sensor": None,
    },
    {**_COURSE, "subject": "Science", "grade": 7, "stagingId": None, "productionId": None},
]

_BAD_INPUT = (400, "`INVALID_PAYLOAD`: the body is not what the route takes (the message says why)")
_VENDOR = "Vendor route"
_INSPECT = "Inspection"
_OPERATOR = "The operator's fixes"
_FAULTS = "Fault injection"
_PAGE = "The inspector page"

ENDPOINTS: Final[tuple[Endpoint, ...]] = (
    Endpoint(
        method="POST",
        path=f"{MOUNT}/activity/heartbeat",
        group=_VENDOR,
        summary="One window of time, exactly as `timeback-sdk` 0.4.0's route takes it. The "
        "student is named by `Authorization: Bearer <token>` or the `timeback_session` "
        "cookie; queued faults apply to this route only.",
        body="The heartbeat (camelCase): `id`, `name`, `course` (`{subject, grade}` or "
        "`{code}`), `runId`, `startedAt`, `endedAt`, `elapsedMs`, `pausedMs`.",
        body_example=_HEARTBEAT,
        answer="Nothing: the window was accepted and a Caliper `TimeSpentEvent` stored.",
        statuses=(
            (204, "accepted"),
            (200, 'the window was accepted before: `{"duplicate": true}`'),
            (
                400,
                "`INVALID_PAYLOAD` (the window is wrong) or `UNKNOWN_COURSE` (not in the config)",
            ),
            (401, "`UNAUTHORIZED`: no known token"),
            (404, "`USER_RESOLUTION_FAILED`: the student is not in the roster"),
            (500, "`AMBIGUOUS_COURSE_SELECTOR` or `MISSING_SENSOR`: a misconfigured backend"),
            (502, "`INTERNAL_ERROR`: the event could not be built"),
            (503, "`MISSING_SYNCED_COURSE_ID`: the course was never synced for the environment"),
        ),
        media_type="",
        examples=(
            (200, {"duplicate": True}),
            (
                503,
                {
                    "error": {
                        "code": "MISSING_SYNCED_COURSE_ID",
                        "message": 'Course "Science grade 7" is missing a course ID for '
                        "staging. Run `timeback resources push` first.",
                    }
                },
            ),
        ),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/record",
        group=_VENDOR,
        summary="The vendor's `timeback.activity.record()`, as the app's server calls it: a "
        "completion, and a time-spent event when `time` is given.",
        body="`record()`'s input (snake_case): `user`, `activity`, `metrics`, optional "
        "`time` and `run_id`.",
        body_example=_RECORD,
        answer="The events stored.",
        answer_example={"events": [_COMPLETION]},
        statuses=(
            (200, "recorded"),
            (400, "`INVALID_PAYLOAD` (with `details.field`) or `UNKNOWN_COURSE`"),
            (404, "`USER_RESOLUTION_FAILED`: the student is not in the roster"),
            (500, "`AMBIGUOUS_COURSE_SELECTOR` or `MISSING_SENSOR`"),
            (502, "`INTERNAL_ERROR`"),
            (503, "`MISSING_SYNCED_COURSE_ID`"),
        ),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/runs",
        group=_INSPECT,
        summary="Every run, in order of first appearance, with its events.",
        answer="`runs`: each run's totals, windows (by start), sessions, completion and events.",
        answer_example={"runs": [_RUN]},
        statuses=((200, "the runs"),),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/runs/{run_id}",
        group=_INSPECT,
        summary="One run.",
        answer="The run: as an item of `GET /_emulator/runs`.",
        answer_example=_RUN,
        statuses=((200, "the run"), (404, "`UNKNOWN_RUN`: no event ever named this runId")),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/events",
        group=_INSPECT,
        summary="Every Caliper event stored, in arrival order.",
        answer="`events`: each event's facts and the Caliper event as sent.",
        answer_example={"events": [_EVENT]},
        statuses=((200, "the events"),),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/problems",
        group=_INSPECT,
        summary="The integration mistakes seen so far: one per mistake and run.",
        answer="`problems`: each with its run, rule, evidence, fix and the windows concerned.",
        answer_example={"problems": [_PROBLEM]},
        statuses=((200, "the problems (an empty list for none)"),),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/reset",
        group=_INSPECT,
        summary="Forget every event, dedupe key, refused request and queued fault.",
        answer="Nothing.",
        statuses=((204, "forgotten"),),
        media_type="",
    ),
    Endpoint(
        method="GET",
        path="/_emulator/openapi.json",
        group=_INSPECT,
        summary="This API as an OpenAPI 3.1 document.",
        answer="The OpenAPI document.",
        answer_example={"openapi": "3.1.0", "info": {"title": "Timeback emulator"}, "paths": {}},
        statuses=((200, "the document"),),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/",
        group=_PAGE,
        summary="The inspector: a page to open while the app runs. It lists the runs, newest "
        "first (student, activity, course, active and paused totals, windows, sessions, "
        "completion, problems), and shows one run's windows on a timeline, with its gaps, "
        "overlaps and completion, and its problems in red with the rule and the fix. It "
        "follows new heartbeats by itself, polling `GET /_emulator/overview`.",
        answer="The page (HTML; its script and style sheet are the two routes below).",
        statuses=((200, "the page"),),
        media_type="text/html",
    ),
    Endpoint(
        method="GET",
        path="/_emulator/inspector.js",
        group=_PAGE,
        summary="The inspector's script.",
        answer="JavaScript.",
        statuses=((200, "the script"),),
        media_type="text/javascript",
    ),
    Endpoint(
        method="GET",
        path="/_emulator/inspector.css",
        group=_PAGE,
        summary="The inspector's style sheet.",
        answer="CSS.",
        statuses=((200, "the style sheet"),),
        media_type="text/css",
    ),
    Endpoint(
        method="GET",
        path="/_emulator/overview",
        group=_PAGE,
        summary="What the inspector polls: every run (newest first) with its totals, and every "
        "problem. With `?since=VERSION`, the version of the last answer, it answers only "
        '`{"version": ..., "changed": false}` until an event is stored or the emulator reset.',
        answer="`version`, `changed`, `runs` (each: `runId`, `students`, `activities`, "
        "`course`, `activeMs`, `inactiveMs`, `windows` (a count), `sessions`, `completed`, "
        "`completedAt`, `lastSeq`, `problems` (their rules)) and `problems` (as `GET "
        "/_emulator/problems` serves them).",
        answer_example={
            "version": "0.1.1",
            "changed": True,
            "runs": [
                {
                    "runId": _RUN_ID,
                    "students": ["ada@example.edu"],
                    "activities": ["lesson-1"],
                    "course": "Math G3",
                    "activeMs": 12000,
                    "inactiveMs": 3000,
                    "windows": 1,
                    "sessions": 1,
                    "completed": False,
                    "completedAt": None,
                    "lastSeq": 1,
                    "problems": [],
                }
            ],
            "problems": [],
        },
        statuses=((200, "the overview, or that nothing changed"),),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/roster",
        group=_OPERATOR,
        summary="The emails OneRoster knows.",
        answer="`emails`: a list, or null when every email is known (the default).",
        answer_example={"emails": ["ada@example.edu"]},
        statuses=((200, "the roster"),),
    ),
    Endpoint(
        method="PUT",
        path="/_emulator/roster",
        group=_OPERATOR,
        summary="Know only these students; the others' windows get `404 "
        "USER_RESOLUTION_FAILED`, as from the vendor.",
        body="`emails`: a list, or null for every email.",
        body_example={"emails": ["ada@example.edu"]},
        answer="The roster, as `GET` answers it.",
        answer_example={"emails": ["ada@example.edu"]},
        statuses=((200, "replaced"), _BAD_INPUT),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/roster",
        group=_OPERATOR,
        summary="Add one student to the roster: their held windows are accepted from now on.",
        body="`email`.",
        body_example={"email": "bob@example.edu"},
        answer="The roster, as `GET` answers it.",
        answer_example={"emails": ["ada@example.edu", "bob@example.edu"]},
        statuses=((200, "added"), _BAD_INPUT),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/courses",
        group=_OPERATOR,
        summary="The configured courses.",
        answer="`courses`: a list, or null for the open catalog (every course known and "
        "synced, the default).",
        answer_example={"courses": [_COURSE]},
        statuses=((200, "the courses"),),
    ),
    Endpoint(
        method="PUT",
        path="/_emulator/courses",
        group=_OPERATOR,
        summary="Replace the configured courses, as a redeploy with another "
        "`timeback.config.json` would.",
        body="Either the backend's `timeback.config.json` itself (its `name` and `sensor` "
        "are taken too), or the emulator's own shape, `courses`: a list of `{subject, "
        "grade | code, stagingId?, productionId?, sensor?}`, or null for the open catalog.",
        body_example=_CONFIG,
        answer="The courses, as `GET` answers them.",
        answer_example={"courses": _CONFIG_COURSES},
        statuses=((200, "replaced"), (400, "`INVALID_PAYLOAD`: a config the vendor would refuse")),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/courses",
        group=_OPERATOR,
        summary="Add one course to the config (it was `UNKNOWN_COURSE` until now).",
        body="A course in the emulator's own shape.",
        body_example={"subject": "Math", "grade": 4, "stagingId": "course-math-4"},
        answer="`course`: the course added.",
        answer_example={
            "course": {**_COURSE, "grade": 4, "stagingId": "course-math-4", "productionId": None}
        },
        statuses=(
            (201, "added"),
            (400, "`INVALID_PAYLOAD`: the catalog is open, or the course repeats another"),
        ),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/courses/sync",
        group=_OPERATOR,
        summary="Sync a configured course (`timeback resources push`): it gets an id in both "
        "environments and stops being `MISSING_SYNCED_COURSE_ID`.",
        body="The course as a heartbeat names it, `{subject, grade}` or `{code}`, and "
        "optionally its `courseId`.",
        body_example={"subject": "Science", "grade": 7, "courseId": "course-science-7"},
        answer="`course`: the course as it is now configured.",
        answer_example={
            "course": {
                **_COURSE,
                "subject": "Science",
                "grade": 7,
                "stagingId": "course-science-7",
                "productionId": "course-science-7",
            }
        },
        statuses=(
            (200, "synced"),
            (400, "`INVALID_PAYLOAD`: no single configured course named so"),
        ),
    ),
    Endpoint(
        method="GET",
        path="/_emulator/faults",
        group=_FAULTS,
        summary="The faults queued for the next heartbeats.",
        answer="`faults`: in the order they apply.",
        answer_example={"faults": [_FAULT_SERVED]},
        statuses=((200, "the queue"),),
    ),
    Endpoint(
        method="POST",
        path="/_emulator/faults",
        group=_FAULTS,
        summary="Queue a fault for the next `count` heartbeats: another status (with a "
        "vendor error code, or a bare proxy answer), a `Retry-After`, a delay, a dropped "
        "connection, or a lost answer (`afterProcessing`).",
        body="`count`, `status`, `code`, `message`, `body`, `retryAfter`, `delay`, `drop`, "
        "`afterProcessing`; all optional.",
        body_example=_FAULT,
        answer="`fault`: the fault queued.",
        answer_example={"fault": _FAULT_SERVED},
        statuses=((201, "queued"), _BAD_INPUT),
    ),
    Endpoint(
        method="DELETE",
        path="/_emulator/faults",
        group=_FAULTS,
        summary="Forget every queued fault.",
        answer="Nothing.",
        statuses=((204, "forgotten"),),
        media_type="",
    ),
)


def _json_block(value: Any) -> list[str]:
    return ["```json", json.dumps(value, indent=2), "```"]


def reference_markdown() -> str:
    """The docs' reference page of the HTTP API (``docs/reference/emulator-http.md``)."""
    lines = [
        "# Emulator HTTP API",
        "",
        "<!-- Rendered from ENDPOINTS in src/timeback_client/emulator/_http_api.py "
        "(its docstring says how): edit it there. -->",
        "",
        "Every route `timeback-client emulator` (and `Emulator.app`) serves. The vendor's "
        "route is under the mount, `/api/timeback` unless `--mount` says otherwise; the "
        "emulator's own are under `/_emulator/`. Error bodies are the vendor's: "
        '`{"error": {"code": ..., "message": ..., "details"?: ...}}`. The same API as an '
        "OpenAPI document: `GET /_emulator/openapi.json`.",
    ]
    group = ""
    for endpoint in ENDPOINTS:
        if endpoint.group != group:
            group = endpoint.group
            lines += ["", f"## {group}"]
        lines += ["", f"### {endpoint.method} {endpoint.served_path('/api/timeback')}", ""]
        lines += [endpoint.summary, ""]
        lines += [f"**Body:** {endpoint.body or 'none.'}"]
        if endpoint.body_example is not None:
            lines += ["", *_json_block(endpoint.body_example)]
        lines += ["", f"**Answer:** {endpoint.answer}"]
        if endpoint.answer_example is not None:
            lines += ["", *_json_block(endpoint.answer_example)]
        lines += ["", "| status | meaning |", "|---|---|"]
        lines += [f"| {status} | {meaning} |" for status, meaning in endpoint.statuses]
    return "\n".join(lines) + "\n"


def openapi(mount: str = "/api/timeback") -> dict[str, Any]:
    """The API as an OpenAPI 3.1 document, with the vendor's route under ``mount``."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        path = endpoint.served_path(mount)
        paths.setdefault(path, {})[endpoint.method.lower()] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Timeback emulator",
            "version": __version__,
            "description": "An emulated Timeback app backend (timeback-sdk 0.4.0's heartbeat "
            "route) with inspection, the operator's fixes and fault injection.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "timeback_session"},
            }
        },
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "tags": [endpoint.group],
        "summary": endpoint.summary.split(". ")[0].removesuffix("."),
        "description": endpoint.summary,
        "responses": {
            str(status): _response(endpoint, status, meaning)
            for status, meaning in endpoint.statuses
        },
    }
    if "{run_id}" in endpoint.path:
        operation["parameters"] = [
            {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": True,
            "description": endpoint.body,
            "content": {"application/json": {"example": endpoint.body_example}},
        }
    if endpoint.path.startswith(MOUNT):
        operation["security"] = [{"bearer": []}, {"session": []}]
    return operation


def _response(endpoint: Endpoint, status: int, meaning: str) -> Mapping[str, Any]:
    response: dict[str, Any] = {"description": meaning}
    content: dict[str, Any] = {}
    if status == endpoint.statuses[0][0]:
        if endpoint.answer_example is not None and endpoint.media_type:
            content = {endpoint.media_type: {"example": endpoint.answer_example}}
    elif status >= 400:
        content = {"application/json": {"schema": _ERROR_SCHEMA}}
    example = dict(endpoint.examples).get(status)
    if example is not None:
        content.setdefault("application/json", {})["example"] = example
    if content:
        response["content"] = content
    return response


_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "details": {"type": "object"},
            },
            "required": ["code", "message"],
        }
    },
}
