"""The emulator's ASGI app (starlette): the vendor's heartbeat route plus ``/_emulator``.

Error bodies, status codes and even the framework's own 404/405 answers are shaped as the
vendor's FastAPI mount produces them, so a client cannot tell the two apart.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from .._errors import ValidationError
from ._backend import MALFORMED_JSON, UNAUTHORIZED, Answer, Backend
from ._catalog import Course
from ._faults import Fault, FaultMiddleware, Faults
from ._http_api import openapi
from ._inspector import CONTENT_SECURITY_POLICY, load_assets, overview
from ._problems import Problem
from ._refusals import Refusals
from ._runs import Run, UnknownRun, run_json_text
from ._store import SentEvent, event_json_text
from ._validation import RecordRejected, Rejection

#: Name of the session cookie the emulator accepts as an alternative to a bearer token.
SESSION_COOKIE = "timeback_session"

IdentifyFn = Callable[[str], str | None]


class Operated(Protocol):
    """What the ``/_emulator`` routes read and change: the `Emulator` facade, which builds
    this app, seen from below (so the app needs no import of the facade)."""

    @property
    def courses(self) -> tuple[Course, ...] | None: ...

    @property
    def roster(self) -> frozenset[str] | None: ...

    def record(self, input_data: Mapping[str, Any]) -> tuple[SentEvent, ...]: ...

    def run(self, run_id: str) -> Run: ...

    def runs(self) -> tuple[Run, ...]: ...

    def events(self) -> tuple[SentEvent, ...]: ...

    def problems(self) -> tuple[Problem, ...]: ...

    def reset(self) -> None: ...

    def set_roster(self, emails: Iterable[str] | None) -> None: ...

    def add_to_roster(self, email: str) -> None: ...

    def set_courses(self, courses: Sequence[Course] | None) -> None: ...

    def set_config(self, config: Mapping[str, Any]) -> None: ...

    def add_course(self, course: Course) -> None: ...

    def sync_course(
        self,
        *,
        subject: str | None = None,
        grade: int | None = None,
        code: str | None = None,
        course_id: str | None = None,
    ) -> Course: ...


def student_token(request: Request) -> list[str]:
    """Candidate tokens of a request: the bearer token, then the session cookie."""
    tokens = []
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        tokens.append(credentials.strip())
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        tokens.append(cookie)
    return tokens


def _respond(answer: Answer) -> Response:
    if answer.body is None:
        return Response(status_code=answer.status)
    return JSONResponse(answer.body, status_code=answer.status)


def _json_text(name: str, items: Iterable[str]) -> Response:
    """``{name: [...]}`` from items already encoded as JSON."""
    body = f'{{"{name}":[{",".join(items)}]}}'
    return Response(body.encode(), media_type="application/json")


def _reject(rejection: Rejection) -> Response:
    return JSONResponse(rejection.to_json(), status_code=rejection.status)


def _bad_request(message: str) -> Response:
    return _reject(Rejection(status=400, code="INVALID_PAYLOAD", message=message))


async def _json_body(request: Request) -> tuple[Any, Response | None]:
    try:
        return await request.json(), None
    # The vendor answers *any* failure to decode the body (bad JSON, bad UTF-8, numbers
    # past Python's digit limit) with this one 400, so it catches everything here too.
    except Exception:
        return None, _reject(MALFORMED_JSON)


def _course_json(course: Course) -> dict[str, Any]:
    return {
        "subject": course.subject,
        "grade": course.grade,
        "code": course.code,
        "stagingId": course.staging_id,
        "productionId": course.production_id,
        "sensor": course.sensor,
    }


def _check_types(body: dict[str, Any], strings: tuple[str, ...]) -> None:
    """TypeError unless ``grade`` is an integer and each of ``strings`` a string, where
    present."""
    grade = body.get("grade")
    if grade is not None and (isinstance(grade, bool) or not isinstance(grade, int)):
        raise TypeError(f"grade must be an integer, not {grade!r}")
    for name in strings:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"{name} must be a string, not {value!r}")


#: The fields of a course in the emulator's own shape (``GET /_emulator/courses``).
_COURSE_FIELDS = frozenset({"subject", "grade", "code", "stagingId", "productionId", "sensor"})


def _is_config(body: dict[str, Any]) -> bool:
    """Whether a ``PUT /_emulator/courses`` body is a ``timeback.config.json`` (a field
    only a config has, such as ``name``, ``ids`` or ``courseCode``) rather than the
    emulator's own shape. The two agree on what they share (``subject``, ``grade``,
    ``sensor``), so a body either could be means the same course either way."""
    if set(body) - {"courses"}:
        return True
    listed = body.get("courses")
    return isinstance(listed, list) and any(
        isinstance(course, dict) and set(course) - _COURSE_FIELDS for course in listed
    )


def _course_from_json(body: dict[str, Any]) -> Course:
    """A course from ``{"subject", "grade"|"code", "stagingId"?, "productionId"?,
    "sensor"?}``; TypeError or ValueError for anything else."""
    allowed = {"subject", "grade", "code", "stagingId", "productionId", "sensor"}
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValueError(f"unknown course field(s) {extra}; expected some of {sorted(allowed)}")
    _check_types(body, ("subject", "code", "stagingId", "productionId", "sensor"))
    return Course(
        subject=body.get("subject", "Other"),
        grade=body.get("grade"),
        code=body.get("code"),
        staging_id=body.get("stagingId"),
        production_id=body.get("productionId"),
        sensor=body.get("sensor"),
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    # FastAPI's default handler: `{"detail": ...}` JSON, headers kept (e.g. `Allow`).
    assert isinstance(exc, HTTPException)
    if exc.status_code in (204, 304) or exc.status_code < 200:
        return Response(status_code=exc.status_code, headers=exc.headers)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def build_app(
    *,
    emulator: Operated,
    backend: Backend,
    faults: Faults,
    refusals: Refusals,
    identify: IdentifyFn,
    mount: str,
    version: Callable[[], str],
) -> ASGIApp:
    """The whole app: routes, FastAPI-shaped HTTP errors, fault injection in front.

    Args:
        emulator: Inspection source for ``/_emulator`` routes.
        backend: Heartbeat and record handling.
        faults: The fault queue applied to heartbeats.
        refusals: Where the heartbeats and ``record()`` input the app refused are
            counted (those that reach ``emulator.record`` are counted there).
        identify: Maps a token to a student email, None when unknown.
        mount: Path prefix of the vendor routes, e.g. ``/api/timeback``.
        version: What the inspector's page polls: changes whenever an event is stored or
            the emulator is reset.
    """

    async def heartbeat(request: Request) -> Response:
        # Who is asking comes first: the vendor answers 401 before reading the body.
        email = next(filter(None, map(identify, student_token(request))), None)
        if email is None:
            refusals.note_rejection("heartbeat", UNAUTHORIZED)
            return _reject(UNAUTHORIZED)
        body, error = await _json_body(request)
        if error is not None:
            refusals.note_rejection("heartbeat", MALFORMED_JSON)
            return error
        answer = backend.heartbeat(email, body)
        refusals.note("heartbeat", answer.status, answer.body)
        return _respond(answer)

    async def record(request: Request) -> Response:
        body, error = await _json_body(request)
        if error is not None:
            refusals.note_rejection("record", MALFORMED_JSON)
            return error
        if not isinstance(body, dict):
            not_object = Rejection(
                status=400, code="INVALID_PAYLOAD", message="record() input must be a JSON object"
            )
            refusals.note_rejection("record", not_object)
            return _reject(not_object)
        try:
            events = emulator.record(body)
        except RecordRejected as exc:
            return _reject(exc.rejection)
        return JSONResponse({"events": [event.to_json() for event in events]})

    async def runs(_request: Request) -> Response:
        # Tens of thousands of events: their stored Caliper JSON goes out as it is.
        return _json_text("runs", map(run_json_text, emulator.runs()))

    async def run(request: Request) -> Response:
        try:
            found = emulator.run(request.path_params["run_id"])
        except UnknownRun as exc:
            return JSONResponse(
                {"error": {"code": "UNKNOWN_RUN", "message": str(exc)}}, status_code=404
            )
        return JSONResponse(found.to_json())

    async def events(_request: Request) -> Response:
        return _json_text("events", map(event_json_text, emulator.events()))

    async def problems(_request: Request) -> Response:
        found = emulator.problems()
        return JSONResponse({"problems": [problem.to_json() for problem in found]})

    async def fault_queue(request: Request) -> Response:
        if request.method == "DELETE":
            faults.clear()
            return Response(status_code=204)
        if request.method == "POST":
            body, error = await _json_body(request)
            if error is not None:
                return error
            if not isinstance(body, dict):
                return _bad_request("a fault must be a JSON object")
            try:
                fault = faults.add(Fault.from_json(body))
            except (TypeError, ValueError) as exc:
                return _bad_request(str(exc))
            return JSONResponse({"fault": fault.to_json()}, status_code=201)
        return JSONResponse({"faults": [fault.to_json() for fault in faults.pending()]})

    async def reset(_request: Request) -> Response:
        emulator.reset()
        return Response(status_code=204)

    # The operator's fixes, made while clients hold their windows.

    def _roster_json() -> Response:
        known = emulator.roster
        return JSONResponse({"emails": None if known is None else sorted(known)})

    async def roster(request: Request) -> Response:
        if request.method == "GET":
            return _roster_json()
        body, error = await _json_body(request)
        if error is not None:
            return error
        if request.method == "PUT":
            emails = body.get("emails", ...) if isinstance(body, dict) else ...
            if emails is not None and (
                not isinstance(emails, list) or not all(isinstance(e, str) for e in emails)
            ):
                return _bad_request('expected {"emails": ["ada@example.edu", ...]} or null')
            emulator.set_roster(emails)
        else:
            email = body.get("email") if isinstance(body, dict) else None
            if not isinstance(email, str) or not email:
                return _bad_request('expected {"email": "ada@example.edu"}')
            emulator.add_to_roster(email)
        return _roster_json()

    def _courses_json() -> Response:
        known = emulator.courses
        listed = None if known is None else [_course_json(course) for course in known]
        return JSONResponse({"courses": listed})

    async def courses(request: Request) -> Response:
        if request.method == "GET":
            return _courses_json()
        body, error = await _json_body(request)
        if error is not None:
            return error
        if request.method == "PUT" and isinstance(body, dict) and _is_config(body):
            try:
                emulator.set_config(body)
            except ValidationError as exc:
                return _bad_request(str(exc))
            return _courses_json()
        if request.method == "PUT":
            listed = body.get("courses", ...) if isinstance(body, dict) else ...
            if listed is not None and (
                not isinstance(listed, list) or not all(isinstance(c, dict) for c in listed)
            ):
                return _bad_request('expected {"courses": [{"subject": ..., ...}, ...]} or null')
            try:
                emulator.set_courses(
                    None if listed is None else [_course_from_json(c) for c in listed]
                )
            except (TypeError, ValueError) as exc:
                return _bad_request(str(exc))
            return _courses_json()
        if not isinstance(body, dict):
            return _bad_request("a course must be a JSON object")
        try:
            course = _course_from_json(body)
            emulator.add_course(course)
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return JSONResponse({"course": _course_json(course)}, status_code=201)

    async def sync(request: Request) -> Response:
        body, error = await _json_body(request)
        if error is not None:
            return error
        if not isinstance(body, dict):
            return _bad_request('expected {"subject": ..., "grade": ...} or {"code": ...}')
        try:
            _check_types(body, ("subject", "code", "courseId"))
            course = emulator.sync_course(
                subject=body.get("subject"),
                grade=body.get("grade"),
                code=body.get("code"),
                course_id=body.get("courseId"),
            )
        except (TypeError, ValueError) as exc:
            return _bad_request(str(exc))
        return JSONResponse({"course": _course_json(course)})

    document = openapi(mount)
    assets = load_assets()

    def asset(name: str) -> Callable[[Request], Any]:
        found = assets[name]
        headers = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
        if name.endswith(".html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY

        async def serve(_request: Request) -> Response:
            return Response(found.body, media_type=found.media_type, headers=headers)

        return serve

    async def inspector_overview(request: Request) -> Response:
        now = version()
        if request.query_params.get("since") == now:
            return JSONResponse({"version": now, "changed": False})
        # Read the version first: an event stored meanwhile makes the next poll redraw.
        return JSONResponse(overview(emulator.runs(), emulator.problems(), now))

    async def openapi_json(_request: Request) -> Response:
        return JSONResponse(document)

    heartbeat_path = f"{mount}/activity/heartbeat"
    app = Starlette(
        routes=[
            Route(heartbeat_path, heartbeat, methods=["POST"]),
            Route("/_emulator/record", record, methods=["POST"]),
            Route("/_emulator/runs", runs, methods=["GET"]),
            Route("/_emulator/runs/{run_id}", run, methods=["GET"]),
            Route("/_emulator/events", events, methods=["GET"]),
            Route("/_emulator/problems", problems, methods=["GET"]),
            Route("/_emulator/faults", fault_queue, methods=["GET", "POST", "DELETE"]),
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/roster", roster, methods=["GET", "POST", "PUT"]),
            Route("/_emulator/courses", courses, methods=["GET", "POST", "PUT"]),
            Route("/_emulator/courses/sync", sync, methods=["POST"]),
            Route("/_emulator/openapi.json", openapi_json, methods=["GET"]),
            Route("/_emulator/", asset("index.html"), methods=["GET"]),
            Route("/_emulator/inspector.css", asset("inspector.css"), methods=["GET"]),
            Route("/_emulator/inspector.js", asset("inspector.js"), methods=["GET"]),
            Route("/_emulator/overview", inspector_overview, methods=["GET"]),
        ],
        exception_handlers={HTTPException: _http_exception},
    )
    return FaultMiddleware(app, faults=faults, heartbeat_path=heartbeat_path)
