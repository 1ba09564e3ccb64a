"""The real vendor server for the parity suite: ``timeback-sdk`` 0.4.0 behind FastAPI.

Runs in the Python 3.12 virtualenv (``.ci/parity-venv.sh``), never in the project's own:

    python vendor_server.py --config timeback.config.json --students '{"tok": "a@b.c"}'
        [--roster '["a@b.c"]']

It mounts the vendor's own router (``TimebackFastAPI(...).router``) at ``/api/timeback``
with a test identity callback (the emulator's rules: bearer token, then the
``timeback_session`` cookie) and a recording stand-in for the vendor's outbound client,
so nothing leaves the machine. Routes of its own, for the suite:

- ``GET /_parity/events``: every Caliper event the vendor sent, as serialized for Caliper;
- ``POST /_parity/record``: ``timeback.activity.record(body)``, with its exceptions
  mapped to the answers of the emulator's ``POST /_emulator/record``.

It binds 127.0.0.1 on a free port (or ``--port``, to come back where a restarted server
was) and prints the port on stdout once listening.
"""

from __future__ import annotations

import argparse
import json
import socket
import uuid
from types import SimpleNamespace
from typing import Any

import uvicorn
from fastapi import FastAPI, Request  # type: ignore[import-not-found, unused-ignore]
from starlette.responses import JSONResponse, Response
from timeback import (  # type: ignore[import-not-found, unused-ignore]
    ApiCredentials,
    CustomIdentityConfig,
    TimebackConfig,
)
from timeback.server.adapters.fastapi import (  # type: ignore[import-not-found, unused-ignore]
    TimebackFastAPI,
)
from timeback.server.handlers.activity.caliper import (  # type: ignore[import-not-found, unused-ignore]
    MissingSyncedCourseIdError,
)
from timeback.server.lib.resolve import (  # type: ignore[import-not-found, unused-ignore]
    TimebackUserResolutionError,
    resolve_status_for_user_resolution_error,
)
from timeback.server.namespaces.activity import (  # type: ignore[import-not-found, unused-ignore]
    ActivityRecordCourseError,
    ActivityRecordValidationError,
)
from timeback_core import TimebackClient  # type: ignore[import-not-found, unused-ignore]

SESSION_COOKIE = "timeback_session"
COURSE_ERRORS = {
    "unknown_course": (400, "UNKNOWN_COURSE"),
    "ambiguous_course": (500, "AMBIGUOUS_COURSE_SELECTOR"),
}


class RecordingEvents:
    """Stands in for ``client.caliper.events``: keeps what would have been sent."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, sensor: str, events: list[Any]) -> Any:
        for event in events:
            # What the real client puts in the Caliper envelope (`_serialize_event`).
            self.sent.append(event.model_dump(mode="json", by_alias=True, exclude_none=True))
        return SimpleNamespace(job_id="parity", sensor=sensor)


class Roster:
    """Stands in for ``client.oneroster``: one user per email, the emulator's sourcedId;
    with ``known``, users only for those emails (a student missing from the roster)."""

    def __init__(self, known: list[str] | None = None) -> None:
        self._known = None if known is None else set(known)
        # The real client's transport settings (base URL, rostering path), built offline.
        self._transport = TimebackClient(
            env="staging", client_id="parity", client_secret="parity"
        ).oneroster.get_transport()
        self.users = SimpleNamespace(list=self._list_users)
        self.assessment_results = SimpleNamespace(list_all=self._no_results)

    def get_transport(self) -> Any:
        return self._transport

    async def _list_users(self, *, where: dict[str, str], limit: int) -> Any:
        email = where["email"]
        if self._known is not None and email not in self._known:
            return SimpleNamespace(data=[])
        user = SimpleNamespace(
            sourced_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}")),
            email=email,
            given_name=None,
            family_name=None,
            primary_org=None,
            roles=None,
            orgs=None,
            grades=None,
        )
        return SimpleNamespace(data=[user][:limit])

    async def _no_results(self, *, where: dict[str, str]) -> list[Any]:
        return []


class FakeClient:
    """The vendor's ``TimebackClient``, as far as the activity handlers use it."""

    def __init__(self, roster: list[str] | None = None) -> None:
        self.events = RecordingEvents()
        self.caliper = SimpleNamespace(events=self.events)
        self.oneroster = Roster(roster)

    async def close(self) -> None:
        return None


def identity(students: dict[str, str]) -> Any:
    def get_email(request: Request) -> str | None:
        tokens = []
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials.strip():
            tokens.append(credentials.strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            tokens.append(cookie)
        return next(filter(None, map(students.get, tokens)), None)

    return CustomIdentityConfig(get_email=get_email)


def error(status: int, code: str, message: str, details: Any = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def build_app(
    config_path: str, students: dict[str, str], roster: list[str] | None = None
) -> FastAPI:
    timeback = TimebackFastAPI(
        TimebackConfig(
            env="staging",
            api=ApiCredentials(client_id="parity", client_secret="parity"),
            identity=identity(students),
            config_path=config_path,
        )
    )
    client = FakeClient(roster)
    # The instance's lazy client factory hands out its cached client once set; there is
    # no public hook for the outbound client, and this one must never reach the network.
    timeback.instance._client_factory._client = client
    sent = client.events.sent

    app = FastAPI()
    app.include_router(timeback.router, prefix="/api/timeback")

    async def events() -> Response:
        return JSONResponse({"events": sent})

    async def record(request: Request) -> Response:
        try:
            body = await request.json()
        except Exception:
            return error(400, "INVALID_PAYLOAD", "Malformed JSON in request body")
        if not isinstance(body, dict):
            return error(400, "INVALID_PAYLOAD", "record() input must be a JSON object")
        before = len(sent)
        try:
            await timeback.activity.record(body)
        except ActivityRecordValidationError as exc:
            details = {"field": exc.field, "message": exc.message}
            return error(400, "INVALID_PAYLOAD", str(exc), details)
        except ActivityRecordCourseError as exc:
            status, code = COURSE_ERRORS.get(exc.code, (500, "MISSING_SENSOR"))
            return error(status, code, str(exc))
        except MissingSyncedCourseIdError as exc:
            return error(503, "MISSING_SYNCED_COURSE_ID", str(exc))
        except TimebackUserResolutionError as exc:
            status = resolve_status_for_user_resolution_error(exc)
            return error(status, "USER_RESOLUTION_FAILED", "Unable to resolve Timeback identity")
        except Exception as exc:
            return error(502, "INTERNAL_ERROR", str(exc) or "Unknown error")
        return JSONResponse({"events": sent[before:]})

    app.add_api_route("/_parity/events", events, methods=["GET"])
    app.add_api_route("/_parity/record", record, methods=["POST"])
    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", required=True, help="timeback.config.json")
    parser.add_argument("--students", required=True, help="JSON object token -> email")
    parser.add_argument("--roster", help="JSON list of the emails OneRoster knows (default all)")
    parser.add_argument("--port", type=int, default=0, help="the port (0: a free one)")
    args = parser.parse_args()
    roster = None if args.roster is None else json.loads(args.roster)
    app = build_app(args.config, json.loads(args.students), roster)
    # IPPROTO_TCP, or asyncio leaves Nagle on and keep-alive requests take ~40 ms each.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    # A restarted server binds the port its predecessor's connections may still hold.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
