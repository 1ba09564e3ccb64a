"""Fault injection: make the next heartbeats fail the way real networks and servers do.

A ``Fault`` sits in a queue; each heartbeat request takes one use of the fault at the
head. The ``FaultMiddleware`` applies it in front of the app, like a flaky proxy would:
wait, answer with another status, or drop the connection, optionally *after* the backend
processed the heartbeat (the response is lost, the window is stored: the case a client's
retry plus the server's dedupe must get right).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, TypedDict, Unpack

import anyio
import attrs
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Vendor messages for error codes that have a fixed message.
VENDOR_MESSAGES: dict[str, str] = {
    "UNAUTHORIZED": "Unauthorized",
    "USER_RESOLUTION_FAILED": "Unable to resolve Timeback identity",
    "AMBIGUOUS_COURSE_SELECTOR": "Ambiguous course selector in timeback.config.json",
    "INVALID_PAYLOAD": "Invalid payload",
}


class ConnectionDropped(Exception):
    """Raised by the app to make the server drop the connection without an answer.

    Over a socket, uvicorn closes the connection when an app raises after starting its
    response; in process, the emulator's transport turns it into
    ``httpx.RemoteProtocolError``.
    """


def _check_status(_instance: object, _attribute: object, value: int | None) -> None:
    if value is not None and not 200 <= value <= 599:
        raise ValueError(f"status must be 200..599, not {value}")


def _check_positive(_instance: object, _attribute: object, value: int) -> None:
    if value < 1:
        raise ValueError(f"count must be >= 1, not {value}")


def _check_delay(_instance: object, _attribute: object, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"delay must be >= 0 seconds, not {value}")


class FaultFields(TypedDict, total=False):
    """The fields of a `Fault`, for `Faults.add`."""

    count: int
    status: int | None
    code: str | None
    message: str | None
    body: Any
    retry_after: float | None
    delay: float
    drop: bool
    after_processing: bool


@attrs.frozen(kw_only=True)
class Fault:
    """What the next ``count`` heartbeats suffer.

    Attributes:
        count: How many heartbeat requests this applies to.
        status: Answer with this status instead of the backend's answer.
        code: With ``status``: answer a vendor error body with this code (and the
            vendor's message for it, unless ``message`` is given). Without a code (and
            without ``body``) the answer is a bare proxy-style reason phrase.
        message: Message of the error body.
        body: With ``status``: this JSON value is the whole answer body.
        retry_after: With ``status``: a ``Retry-After`` header value (seconds).
        delay: Seconds to wait before anything else happens.
        drop: Drop the connection instead of answering.
        after_processing: Let the backend process the heartbeat first (it is stored),
            then replace its answer by the fault: a lost response.
    """

    count: int = attrs.field(default=1, validator=_check_positive)
    status: int | None = attrs.field(default=None, validator=_check_status)
    code: str | None = None
    message: str | None = None
    body: Any = None
    retry_after: float | None = None
    delay: float = attrs.field(default=0.0, validator=_check_delay)
    drop: bool = False
    after_processing: bool = False

    def __attrs_post_init__(self) -> None:
        if self.drop and self.status is not None:
            raise ValueError("a fault either drops the connection or answers a status")
        if self.status is None and (self.code or self.message or self.body is not None):
            raise ValueError("code, message and body need a status")

    @property
    def replaces_answer(self) -> bool:
        """Whether the client gets something other than the backend's own answer."""
        return self.drop or self.status is not None

    def to_json(self) -> dict[str, Any]:
        """The camelCase JSON form used by ``/_emulator/faults``."""
        return {
            "count": self.count,
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "body": self.body,
            "retryAfter": self.retry_after,
            "delay": self.delay,
            "drop": self.drop,
            "afterProcessing": self.after_processing,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        """A fault from its JSON form; unknown keys are an error.

        Raises:
            ValueError: For unknown keys or values out of range.
            TypeError: For values of the wrong type.
        """
        names = {
            "count": "count",
            "status": "status",
            "code": "code",
            "message": "message",
            "body": "body",
            "retryAfter": "retry_after",
            "delay": "delay",
            "drop": "drop",
            "afterProcessing": "after_processing",
        }
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        kwargs = {names[key]: value for key, value in data.items() if value is not None}
        _check_types(kwargs)
        return cls(**kwargs)

    def response(self) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """Status, headers and body of the answer that replaces the backend's."""
        assert self.status is not None
        headers: list[tuple[bytes, bytes]] = []
        if self.body is not None:
            content = json.dumps(self.body, separators=(",", ":")).encode()
            headers.append((b"content-type", b"application/json"))
        elif self.code is not None:
            message = self.message or VENDOR_MESSAGES.get(self.code, f"Injected {self.code}")
            error = {"error": {"code": self.code, "message": message}}
            content = json.dumps(error, separators=(",", ":"), ensure_ascii=False).encode()
            headers.append((b"content-type", b"application/json"))
        else:
            # No code: what a proxy or load balancer in front of the backend says.
            content = HTTPStatus(self.status).phrase.encode()
            headers.append((b"content-type", b"text/plain; charset=utf-8"))
        if self.retry_after is not None:
            value = (
                f"{self.retry_after:g}"
                if isinstance(self.retry_after, float)
                else str(self.retry_after)
            )
            headers.append((b"retry-after", value.encode()))
        headers.append((b"content-length", str(len(content)).encode()))
        return self.status, headers, content


def _check_types(kwargs: dict[str, Any]) -> None:
    expected: dict[str, tuple[type, ...]] = {
        "count": (int,),
        "status": (int,),
        "code": (str,),
        "message": (str,),
        "retry_after": (int, float),
        "delay": (int, float),
        "drop": (bool,),
        "after_processing": (bool,),
    }
    for key, value in kwargs.items():
        types = expected.get(key)
        if types is None:
            continue
        wrong_bool = isinstance(value, bool) and bool not in types
        if wrong_bool or not isinstance(value, types):
            raise TypeError(f"{key}: unexpected {type(value).__name__}")


class Faults:
    """The queue of pending faults; thread-safe.

    Example:
        ``emulator.faults.add(status=503, retry_after=1, count=2)`` makes the next two
        heartbeats answer 503 with ``Retry-After: 1``; ``emulator.faults.add(drop=True,
        after_processing=True)`` loses the answer to the next one after storing it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()

    def add(self, fault: Fault | None = None, **fields: Unpack[FaultFields]) -> Fault:
        """Queue a fault, given as a ``Fault`` or as its fields (see `Fault`).

        Returns:
            The queued fault.
        """
        if fault is None:
            fault = Fault(**fields)
        elif fields:
            raise TypeError("pass a Fault or its fields, not both")
        with self._lock:
            self._queue.append(fault)
        return fault

    def pending(self) -> tuple[Fault, ...]:
        """Queued faults, with their remaining counts."""
        with self._lock:
            return tuple(self._queue)

    def clear(self) -> None:
        """Drop every queued fault."""
        with self._lock:
            self._queue.clear()

    def take(self) -> Fault | None:
        """Use the head fault once (for one heartbeat), or None when none is queued."""
        with self._lock:
            if not self._queue:
                return None
            fault = self._queue.popleft()
            if fault.count > 1:
                self._queue.appendleft(attrs.evolve(fault, count=fault.count - 1))
            return fault


class FaultMiddleware:
    """ASGI middleware applying queued faults to heartbeat requests only.

    Args:
        app: The emulator's app.
        faults: The queue.
        heartbeat_path: Path of the heartbeat route.
    """

    def __init__(self, app: ASGIApp, *, faults: Faults, heartbeat_path: str) -> None:
        self._app = app
        self._faults = faults
        self._heartbeat_path = heartbeat_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        is_heartbeat = (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == self._heartbeat_path
        )
        fault = self._faults.take() if is_heartbeat else None
        if fault is None:
            await self._app(scope, receive, send)
            return
        if fault.delay:
            await anyio.sleep(fault.delay)
        if not fault.replaces_answer:
            await self._app(scope, receive, send)
            return
        if fault.after_processing:
            await self._app(scope, receive, _discard)
        if fault.drop:
            # A response must have started for uvicorn to close the connection rather
            # than answer 500; the declared length is never sent, so no client can
            # mistake what it got for an answer.
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"1")],
                }
            )
            raise ConnectionDropped
        status, headers, body = fault.response()
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _discard(_message: Message) -> None:
    """An ASGI ``send`` for an answer nobody will receive."""
