"""Differential parity: the same requests to the vendor's real server and to the emulator.

The vendor side is ``timeback-sdk`` 0.4.0's FastAPI router (``vendor_server.py``) in its
own Python 3.12 virtualenv: ``$TIMEBACK_PARITY_PYTHON``, or one this suite creates with
``.ci/parity-venv.sh`` under the user cache directory. The suite skips only when no
Python 3.12 interpreter exists on the machine.

``CASES`` is the table of requests, sent in order to both servers (order matters: the
duplicates follow the windows they repeat). For each case the two answers must agree on
status, content type and body (error code, message and details included), and the
Caliper events each server sent must be equal up to their random ids.

Print the table without running anything: ``python tests/emulator/parity/test_emulator_parity.py``.
"""

from __future__ import annotations

import copy
import json
import re
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs
import httpx
import pytest

from vendor_kit import vendor_server

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]

pytestmark = pytest.mark.skipif(
    sys.platform == "win32",
    reason="the vendor's venv comes from a bash script, and select() waits on a pipe: POSIX only",
)

APP_NAME = "Parity App"
SENSOR = "https://sensor.parity.example"
STUDENTS = {"tok-ada": "ada@example.edu", "tok-bob": "bob@example.edu"}
#: The courses of both servers: (subject, grade, code, staging id).
COURSES: list[tuple[str, int | None, str | None, str | None]] = [
    ("Math", 3, None, "course-math-3"),
    ("Reading", 5, None, "course-reading-5"),
    ("Other", None, "CS-101", "course-cs-101"),
    ("Science", 7, None, None),  # never synced: MISSING_SYNCED_COURSE_ID
]

# ── the table ──────────────────────────────────────────────────────────────────────────

DROP: Any = object()  # a field value meaning "leave the field out"
MATH3 = {"subject": "Math", "grade": 3}


def run_id(label: str) -> str:
    """A fixed runId per label, so reruns send the same bytes."""
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{label}.parity.timeback"))


def beat(label: str, **changes: Any) -> dict[str, Any]:
    """A valid heartbeat of run ``label`` (10:00:00-10:00:15, 15 s active), changed."""
    body: dict[str, Any] = {
        "id": "lesson-1",
        "name": "Fractions",
        "course": MATH3,
        "runId": run_id(label),
        "startedAt": "2026-11-25T10:00:00.000Z",
        "endedAt": "2026-11-25T10:00:15.000Z",
        "elapsedMs": 15000,
        "pausedMs": 0,
    }
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def rec(slug: str, **changes: Any) -> dict[str, Any]:
    """A valid ``record()`` input for activity ``slug`` (one activity per case: the vendor
    stand-in has no assessment results, so every completion is attempt 1)."""
    body: dict[str, Any] = {
        "user": {"email": "ada@example.edu"},
        "activity": {"id": slug, "name": "Fractions", "course": MATH3},
        "metrics": {"xp_earned": 10, "total_questions": 10, "correct_questions": 8},
        "time": {
            "started_at": "2026-11-25T10:00:00.000Z",
            "ended_at": "2026-11-25T10:20:00.000Z",
            "active_ms": 1_100_000,
            "inactive_ms": 100_000,
        },
        "run_id": run_id(f"record-{slug}"),
    }
    for key, value in changes.items():
        if value is DROP:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def activity(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"id": "quiz", "name": "Quiz", "course": MATH3}
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


def metrics(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"xp_earned": 10, "total_questions": 10, "correct_questions": 8}
    return {k: v for k, v in {**base, **changes}.items() if v is not DROP}


Auth = Literal["bearer", "cookie", "bob", "none", "unknown"]


@attrs.frozen(kw_only=True)
class Case:
    """One request of the sequence.

    Attributes:
        name: Unique, descriptive.
        expect: The status the vendor answers (checked, so a change of the vendor shows).
        body: JSON value sent (ignored when ``raw`` is set).
        raw: Bytes sent as they are.
        auth: ``bearer``/``cookie`` for Ada, ``bob`` (bearer) for Bob, ``none``, or an
            ``unknown`` token.
        route: ``heartbeat`` (``{mount}/activity/heartbeat``) or ``record`` (the vendor's
            ``timeback.activity.record()``).
        method: HTTP method.
        path: Path under the mount instead of the heartbeat route.
        now: The event time is "now" (no ``time.ended_at``): compared by shape only.
    """

    name: str
    expect: int
    body: Any = None
    raw: bytes | None = None
    auth: Auth = "bearer"
    route: Literal["heartbeat", "record"] = "heartbeat"
    method: str = "POST"
    path: str | None = None
    now: bool = False


def invalid(name: str, body: Any, **kwargs: Any) -> Case:
    return Case(name=name, expect=400, body=body, **kwargs)


def record(name: str, expect: int, body: Any, **kwargs: Any) -> Case:
    return Case(name=name, expect=expect, body=body, route="record", **kwargs)


CASES: list[Case] = [
    # Identity is checked before the body is even read.
    Case(name="unauthenticated", expect=401, body=beat("auth"), auth="none"),
    Case(name="unknown-token", expect=401, body=beat("auth"), auth="unknown"),
    Case(name="unauthenticated-non-json", expect=401, raw=b"{not json", auth="none"),
    # Bodies that are not a JSON object.
    invalid("malformed-json", None, raw=b'{"id": '),
    invalid("empty-body", None, raw=b""),
    invalid("invalid-utf8", None, raw=b'{"id": "\xff"}'),
    invalid("integer-past-digit-limit", None, raw=b'{"elapsedMs": ' + b"1" * 5000 + b"}"),
    Case(name="body-array", expect=502, body=[]),
    Case(name="body-null", expect=502, body=None),
    Case(name="body-string", expect=502, body="lesson-1"),
    Case(name="body-number", expect=502, body=42),
    Case(name="body-true", expect=502, body=True),
    # id and name.
    invalid("missing-id", beat("v", id=DROP)),
    invalid("empty-id", beat("v", id="")),
    invalid("blank-id", beat("v", id="   ")),
    invalid("id-not-string", beat("v", id=7)),
    invalid("missing-name", beat("v", name=DROP)),
    invalid("empty-name", beat("v", name="")),
    # course.
    invalid("missing-course", beat("v", course=DROP)),
    invalid("course-empty-object", beat("v", course={})),
    invalid("course-string", beat("v", course="Math")),
    invalid("course-list", beat("v", course=[MATH3])),
    invalid("code-not-string", beat("v", course={"code": 101})),
    invalid("code-blank", beat("v", course={"code": "   "})),
    invalid("code-empty-means-no-code", beat("v", course={"code": "", "grade": 3})),
    invalid("missing-subject", beat("v", course={"grade": 3})),
    invalid("subject-not-string", beat("v", course={"subject": 3, "grade": 3})),
    invalid("missing-grade", beat("v", course={"subject": "Math"})),
    invalid("grade-null", beat("v", course={"subject": "Math", "grade": None})),
    invalid("bad-subject", beat("v", course={"subject": "Art", "grade": 3})),
    invalid("subject-lowercase", beat("v", course={"subject": "math", "grade": 3})),
    invalid("grade-13", beat("v", course={"subject": "Math", "grade": 13})),
    invalid("grade-minus-1", beat("v", course={"subject": "Math", "grade": -1})),
    invalid("grade-float", beat("v", course={"subject": "Math", "grade": 3.0})),
    invalid("grade-true", beat("v", course={"subject": "Math", "grade": True})),
    invalid("grade-string", beat("v", course={"subject": "Math", "grade": "3"})),
    invalid("grade-type-before-subject", beat("v", course={"subject": "Art", "grade": "3"})),
    invalid("course-before-run-id", beat("v", course={"grade": 3}, runId="run-1")),
    # runId.
    invalid("missing-run-id", beat("v", runId=DROP)),
    invalid("run-id-null", beat("v", runId=None)),
    invalid("run-id-not-uuid", beat("v", runId="run-1")),
    invalid("run-id-number", beat("v", runId=5)),
    invalid("run-id-without-dashes", beat("v", runId=uuid.UUID(run_id("v")).hex)),
    invalid("run-id-braces", beat("v", runId="{" + run_id("v") + "}")),
    invalid(
        "run-id-before-course-lookup", beat("v", course={"subject": "Math", "grade": 4}, runId="x")
    ),
    # Course lookup, before the time fields.
    invalid("unknown-course", beat("v", course={"subject": "Math", "grade": 4})),
    invalid("unknown-code", beat("v", course={"code": "NOPE"})),
    invalid("unknown-code-stripped", beat("v", course={"code": "  NOPE "})),
    invalid(
        "course-lookup-before-times",
        beat("v", course={"subject": "Reading", "grade": 4}, startedAt="10:00"),
    ),
    Case(
        name="unsynced-course",
        expect=503,
        body=beat("v", course={"subject": "Science", "grade": 7}),
    ),
    # startedAt / endedAt.
    invalid("missing-started-at", beat("v", startedAt=DROP)),
    invalid("started-at-null", beat("v", startedAt=None)),
    invalid("naive-started-at", beat("v", startedAt="2026-11-25T10:00:00.000")),
    invalid("started-at-date-only", beat("v", startedAt="2026-11-25")),
    invalid("started-at-space", beat("v", startedAt="2026-11-25 10:00:00Z")),
    invalid("started-at-lowercase-z", beat("v", startedAt="2026-11-25T10:00:00z")),
    invalid("started-at-compact-offset", beat("v", startedAt="2026-11-25T10:00:00+0000")),
    invalid("started-at-epoch-ms", beat("v", startedAt=1795600800000)),
    invalid("missing-ended-at", beat("v", endedAt=DROP)),
    invalid("naive-ended-at", beat("v", endedAt="2026-11-25T10:00:15")),
    # elapsedMs / pausedMs.
    invalid("missing-elapsed-ms", beat("v", elapsedMs=DROP)),
    invalid("elapsed-ms-null", beat("v", elapsedMs=None)),
    invalid("elapsed-ms-float", beat("v", elapsedMs=1.0)),
    invalid("elapsed-ms-true", beat("v", elapsedMs=True)),
    invalid("elapsed-ms-negative", beat("v", elapsedMs=-1)),
    invalid("elapsed-ms-string", beat("v", elapsedMs="1000")),
    invalid("missing-paused-ms", beat("v", pausedMs=DROP)),
    invalid("paused-ms-negative", beat("v", pausedMs=-5)),
    invalid("paused-ms-float", beat("v", pausedMs=0.5)),
    # Pass the regex, fail the vendor's datetime parsing or arithmetic: 502.
    Case(
        name="started-at-impossible-date",
        expect=502,
        body=beat("v", startedAt="2026-02-30T10:00:00.000Z"),
    ),
    Case(name="started-at-hour-24", expect=502, body=beat("v", startedAt="2026-11-25T24:00:00Z")),
    Case(
        name="started-at-offset-24h",
        expect=502,
        body=beat("v", startedAt="2026-11-25T10:00:00+24:00"),
    ),
    Case(
        name="started-at-trailing-newline",
        expect=502,
        body=beat("v", startedAt="2026-11-25T10:00:00.000Z\n"),
    ),
    Case(
        name="started-at-arabic-digits",
        expect=502,
        body=beat("v", startedAt="\u0662\u0660\u0662\u0666-11-25T10:00:00Z"),
    ),
    Case(name="elapsed-ms-past-float", expect=502, body=beat("huge", elapsedMs=10**400)),
    # Accepted windows, and the vendor's dedupe key: runId + instant(startedAt) in ms.
    Case(name="first-window", expect=204, body=beat("a")),
    Case(name="duplicate-same-bytes", expect=200, body=beat("a")),
    Case(
        name="duplicate-same-instant-other-offset",
        expect=200,
        body=beat("a", startedAt="2026-11-25T11:00:00.000+01:00", elapsedMs=1),
    ),
    Case(
        name="duplicate-within-the-millisecond",
        expect=200,
        body=beat("a", startedAt="2026-11-25T10:00:00.0009Z"),
    ),
    Case(name="duplicate-before-arithmetic", expect=200, body=beat("a", elapsedMs=10**400)),
    Case(
        name="duplicate-before-sync-check",
        expect=200,
        body=beat("a", course={"subject": "Science", "grade": 7}),
    ),
    Case(name="duplicate-across-students", expect=200, body=beat("a"), auth="bob"),
    Case(
        name="duplicate-across-activities",
        expect=200,
        body=beat("a", id="lesson-9", course={"code": "CS-101"}),
    ),
    Case(
        name="second-window-with-pause",
        expect=204,
        body=beat(
            "a",
            startedAt="2026-11-25T10:00:15.000Z",
            endedAt="2026-11-25T10:00:30.000Z",
            elapsedMs=12000,
            pausedMs=3000,
        ),
    ),
    Case(name="cookie-auth", expect=204, body=beat("b"), auth="cookie"),
    Case(name="uppercase-run-id", expect=204, body=beat("c", runId=run_id("c").upper())),
    Case(name="run-id-case-is-another-key", expect=204, body=beat("c")),
    Case(
        name="nil-uuid-run-id",
        expect=204,
        body=beat("nil", runId="00000000-0000-0000-0000-000000000000"),
    ),
    Case(name="run-id-trailing-newline", expect=204, body=beat("nl", runId=run_id("nl") + "\n")),
    Case(name="code-course", expect=204, body=beat("d", course={"code": "CS-101"})),
    Case(
        name="code-wins-over-grade",
        expect=204,
        body=beat("e", course={"code": "CS-101", "subject": "Art", "grade": 99}),
    ),
    Case(name="code-stripped", expect=204, body=beat("f", course={"code": "  CS-101  "})),
    Case(
        name="empty-code-grade-based",
        expect=204,
        body=beat("g", course={"code": "", "subject": "Reading", "grade": 5}),
    ),
    Case(
        name="offset-times",
        expect=204,
        body=beat("h", startedAt="2026-11-25T15:30:00+05:30", endedAt="2026-11-25T15:30:15+05:30"),
    ),
    Case(
        name="no-fraction",
        expect=204,
        body=beat("i", startedAt="2026-11-25T10:00:00Z", endedAt="2026-11-25T10:00:15Z"),
    ),
    Case(
        name="nanosecond-fraction",
        expect=204,
        body=beat("j", startedAt="2026-11-25T10:00:00.123456789Z"),
    ),
    Case(
        name="extra-fields-ignored",
        expect=204,
        body=beat("k", sessionId="s-1", metrics={"xp": 3}, process=False),
    ),
    Case(name="zero-window", expect=204, body=beat("l", elapsedMs=0, pausedMs=0)),
    Case(
        name="empty-window",
        expect=204,
        body=beat("l2", endedAt="2026-11-25T10:00:00.000Z", elapsedMs=0),
    ),
    Case(name="window-after-empty-one-is-duplicate", expect=200, body=beat("l2")),
    Case(
        name="id-and-name-stripped",
        expect=204,
        body=beat("m", id="  lesson-2 ", name="\tFractions\n"),
    ),
    Case(name="slug-needs-quoting", expect=204, body=beat("n", id="unit 1/lesson?2&x=ü")),
    Case(name="unicode-name", expect=204, body=beat("o", name="Fractions ½ — 分数")),
    Case(name="elapsed-ms-2-pow-64", expect=204, body=beat("p", elapsedMs=2**64)),
    Case(
        name="ended-at-impossible-date",
        expect=204,
        body=beat("q", endedAt="2026-02-30T10:00:15.000Z"),
    ),
    Case(
        name="ended-before-started", expect=204, body=beat("r", endedAt="2026-11-25T09:00:00.000Z")
    ),
    Case(name="arithmetic-not-checked", expect=204, body=beat("s", elapsedMs=999_999)),
    # Routing, as FastAPI answers it.
    Case(name="get-heartbeat", expect=405, method="GET", body=None),
    Case(name="put-heartbeat", expect=405, method="PUT", body=beat("t")),
    Case(name="unknown-route", expect=404, path="/activity/nope", body=beat("t")),
    Case(name="trailing-slash", expect=307, path="/activity/heartbeat/", body=beat("t")),
    # The server side: timeback.activity.record().
    record("record-completion-with-time", 200, rec("r-full", metrics=metrics(pct_complete=80))),
    record("record-without-time", 200, rec("r-notime", time=DROP), now=True),
    record("record-empty-time", 200, rec("r-emptytime", time={}), now=True),
    record("record-pct-clamped", 200, rec("r-pct", metrics=metrics(pct_complete=150))),
    record("record-mastered-units", 200, rec("r-mastered", metrics=metrics(mastered_units=2))),
    record(
        "record-timeback-id",
        200,
        rec("r-tbid", user={"email": "ada@example.edu", "timeback_id": "tb-123"}),
    ),
    record(
        "record-code-course",
        200,
        rec("r-code", activity={"id": "r-code", "name": "Loops", "course": {"code": "CS-101"}}),
    ),
    record(
        "record-blank-id-not-stripped",
        200,
        rec("   ", activity={"id": "   ", "name": "Blank", "course": MATH3}),
    ),
    record(
        "record-float-xp-no-questions", 200, rec("r-float", metrics={"xp_earned": 2.5}, run_id=DROP)
    ),
    record("record-uppercase-run-id", 200, rec("r-upper", run_id=run_id("r-upper").upper())),
    record("record-missing-user", 400, rec("x", user=DROP)),
    record("record-user-not-object", 400, rec("x", user="ada@example.edu")),
    record("record-empty-email", 400, rec("x", user={"email": ""})),
    record(
        "record-timeback-id-number",
        400,
        rec("x", user={"email": "ada@example.edu", "timeback_id": 5}),
    ),
    record("record-missing-activity", 400, rec("x", activity=DROP)),
    record("record-missing-activity-name", 400, rec("x", activity=activity(name=DROP))),
    record("record-missing-course", 400, rec("x", activity=activity(course=DROP))),
    record("record-empty-code", 400, rec("x", activity=activity(course={"code": ""}))),
    record(
        "record-null-code",
        400,
        rec("x", activity=activity(course={"code": None, "subject": "Math", "grade": 3})),
    ),
    record(
        "record-bad-subject",
        400,
        rec("x", activity=activity(course={"subject": "Art", "grade": 3})),
    ),
    record(
        "record-grade-13", 400, rec("x", activity=activity(course={"subject": "Math", "grade": 13}))
    ),
    record(
        "record-grade-float",
        400,
        rec("x", activity=activity(course={"subject": "Math", "grade": 3.0})),
    ),
    record("record-missing-grade", 400, rec("x", activity=activity(course={"subject": "Math"}))),
    record("record-missing-metrics", 400, rec("x", metrics=DROP)),
    record("record-metrics-list", 400, rec("x", metrics=[10])),
    record("record-missing-xp", 400, rec("x", metrics=metrics(xp_earned=DROP))),
    record("record-negative-xp", 400, rec("x", metrics=metrics(xp_earned=-1))),
    record("record-bool-xp", 400, rec("x", metrics=metrics(xp_earned=True))),
    record("record-total-without-correct", 400, rec("x", metrics=metrics(correct_questions=DROP))),
    record("record-correct-exceeds-total", 400, rec("x", metrics=metrics(correct_questions=11))),
    record("record-total-float", 400, rec("x", metrics=metrics(total_questions=10.0))),
    record("record-negative-pct", 400, rec("x", metrics=metrics(pct_complete=-1))),
    record("record-time-not-object", 400, rec("x", time="20m")),
    record("record-naive-ended-at", 400, rec("x", time={"ended_at": "2026-11-25T10:20:00"})),
    record("record-active-ms-float", 400, rec("x", time={"active_ms": 1.5})),
    record("record-bad-run-id", 400, rec("x", run_id="run-1")),
    record(
        "record-unknown-course",
        400,
        rec("x", activity=activity(course={"subject": "Math", "grade": 4})),
    ),
    record("record-unknown-code", 400, rec("x", activity=activity(course={"code": "NOPE"}))),
    record(
        "record-unsynced-course",
        503,
        rec("x", activity=activity(course={"subject": "Science", "grade": 7})),
    ),
    record(
        "record-active-ms-past-float",
        502,
        rec("r-huge", time={"ended_at": "2026-11-25T10:20:00Z", "active_ms": 10**400}),
    ),
    record("record-not-an-object", 400, []),
    record("record-malformed-json", 400, None, raw=b"{"),
]

# ── running the sequence ───────────────────────────────────────────────────────────────

URN = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
NOW_FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


@attrs.frozen(kw_only=True)
class Observed:
    """What one server answered to one case, comparable across servers."""

    status: int
    content_type: str | None
    body: Any
    location: str | None
    events: list[Any]


def _headers(auth: Auth) -> dict[str, str]:
    return {
        "bearer": {"Authorization": "Bearer tok-ada"},
        "cookie": {"Cookie": "timeback_session=tok-ada"},
        "bob": {"Authorization": "Bearer tok-bob"},
        "none": {},
        "unknown": {"Authorization": "Bearer tok-nobody"},
    }[auth]


def _normalize_event(event: Any, case: Case) -> Any:
    """The event with its random ids (and a "now" event time) replaced by markers."""
    event = copy.deepcopy(event)
    for holder in (event, event.get("generated", {})):
        holder["id"] = "<urn:uuid>" if URN.match(str(holder.get("id"))) else holder.get("id")
    if case.now:
        stamp = str(event.get("eventTime"))
        recent = NOW_FORMAT.match(stamp) and abs(
            datetime.fromisoformat(stamp.replace("Z", "+00:00")) - datetime.now(UTC)
        ) < timedelta(minutes=5)
        event["eventTime"] = "<now>" if recent else stamp
    return event


def _send(client: httpx.Client, url: str, case: Case) -> httpx.Response:
    content = case.raw if case.raw is not None else json.dumps(case.body).encode()
    if case.method == "GET":
        content = b""
    headers = {"Content-Type": "application/json", **_headers(case.auth)}
    return client.request(case.method, url, content=content, headers=headers)


def _observe(response: httpx.Response, events: list[Any], case: Case) -> Observed:
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    if case.route == "record" and response.status_code == 200:
        body = "<events>"  # the events themselves are compared below
    location = response.headers.get("location")
    return Observed(
        status=response.status_code,
        content_type=response.headers.get("content-type"),
        body=body,
        location=httpx.URL(location).path if location else None,
        events=[_normalize_event(event, case) for event in events],
    )


def run_sequence(vendor_url: str, emulator_url: str, emulator: Any) -> dict[str, Any]:
    """Send every case to both servers, in order; the observations by case name."""
    outcomes: dict[str, tuple[Observed, Observed]] = {}
    with httpx.Client(timeout=30) as client:
        for case in CASES:
            seen = []
            for base, mount, record_path in (
                (vendor_url, "/api/timeback", "/_parity/record"),
                (emulator_url, emulator.mount, "/_emulator/record"),
            ):
                if case.route == "record":
                    url = base + record_path
                else:
                    url = base + mount + (case.path or "/activity/heartbeat")
                before = _sent_events(client, base, emulator, vendor=base == vendor_url)
                response = _send(client, url, case)
                after = _sent_events(client, base, emulator, vendor=base == vendor_url)
                seen.append(_observe(response, after[len(before) :], case))
            outcomes[case.name] = (seen[0], seen[1])
    return outcomes


def _sent_events(client: httpx.Client, base: str, emulator: Any, *, vendor: bool) -> list[Any]:
    if vendor:
        events: list[Any] = client.get(base + "/_parity/events").json()["events"]
        return events
    return [event.caliper for event in emulator.events()]


def _summary(observed: Observed) -> str:
    error = observed.body.get("error") if isinstance(observed.body, dict) else None
    code = error.get("code") if isinstance(error, dict) else ""
    events = f" +{len(observed.events)}ev" if observed.events else ""
    return f"{observed.status} {code}{events}".strip()


def table(outcomes: dict[str, tuple[Observed, Observed]] | None = None) -> str:
    """The case table, with both servers' answers when there are outcomes."""
    lines = [f"{'#':>3}  {'case':<40} {'route':<9} {'expect':>6}  vendor / emulator"]
    for number, case in enumerate(CASES, 1):
        line = f"{number:>3}  {case.name:<40} {case.route:<9} {case.expect:>6}"
        if outcomes is not None:
            vendor, emulated = outcomes[case.name]
            verdict = "agree" if vendor == emulated else "DIFFER"
            line += f"  {_summary(vendor)} / {_summary(emulated)}  {verdict}"
        lines.append(line)
    return "\n".join(lines)


# ── fixtures ───────────────────────────────────────────────────────────────────────────


def _vendor_config() -> dict[str, Any]:
    courses = []
    for subject, grade, code, staging_id in COURSES:
        course: dict[str, Any] = {"subject": subject}
        if grade is not None:
            course["grade"] = grade
        if code is not None:
            course["courseCode"] = code
        if staging_id is not None:
            course["ids"] = {"staging": staging_id}
        courses.append(course)
    return {"name": APP_NAME, "sensor": SENSOR, "courses": courses}


@pytest.fixture(scope="module")
def vendor_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with vendor_server(tmp_path_factory.mktemp("vendor"), _vendor_config(), STUDENTS) as origin:
        yield origin


@pytest.fixture(scope="module")
def outcomes(vendor_url: str) -> dict[str, tuple[Observed, Observed]]:
    from timeback_client.emulator import Course, Emulator

    courses = [
        Course(subject=subject, grade=grade, code=code, staging_id=staging_id)
        for subject, grade, code, staging_id in COURSES
    ]
    with (
        Emulator(students=STUDENTS, courses=courses, app_name=APP_NAME, sensor=SENSOR) as emulator,
        emulator.serve_in_thread() as base_url,
    ):
        emulator_url = base_url.removesuffix(emulator.mount)
        results = run_sequence(vendor_url, emulator_url, emulator)
    print("\n" + table(results))
    return results


# ── tests ──────────────────────────────────────────────────────────────────────────────


def test_case_names_are_unique() -> None:
    names = [case.name for case in CASES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_emulator_answers_like_the_vendor(
    case: Case, outcomes: dict[str, tuple[Observed, Observed]]
) -> None:
    vendor, emulated = outcomes[case.name]
    assert vendor.status == case.expect, f"the vendor itself answered {vendor}"
    assert emulated == vendor


def test_every_accepted_window_sent_one_event(
    outcomes: dict[str, tuple[Observed, Observed]],
) -> None:
    """A guard on the harness: event comparison is not vacuous."""
    accepted = [c for c in CASES if c.route == "heartbeat" and c.expect == 204]
    assert accepted
    for case in accepted:
        vendor, _ = outcomes[case.name]
        assert len(vendor.events) == 1, case.name
        assert vendor.events[0]["type"] == "TimeSpentEvent"


if __name__ == "__main__":
    sys.stdout.write(table() + "\n")
