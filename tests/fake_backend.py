"""A scripted backend for `httpx.MockTransport`: records heartbeats, answers on cue."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import httpx

from timeback_client import VirtualClock

Reply = httpx.Response | Exception
Responder = Callable[[httpx.Request], Reply]


@attrs.frozen
class Seen:
    """One request as the backend saw it."""

    at_ms: int
    url: str
    content: bytes
    headers: httpx.Headers
    status: int | None  # None: the request raised or was interrupted

    @property
    def body(self) -> dict[str, Any]:
        value = json.loads(self.content)
        assert isinstance(value, dict)
        return value

    @property
    def run_id(self) -> str:
        return str(self.body["runId"])


class FakeBackend:
    """A heartbeat endpoint: answers the scripted replies in order, then 204.

    Args:
        clock: the virtual clock, to timestamp requests and to take ``latency_ms``.
        latency_ms: how long (virtual) each request takes before its answer.
        responder: answers instead of the script when the script is empty.
    """

    def __init__(
        self,
        clock: VirtualClock | None = None,
        *,
        latency_ms: int = 0,
        responder: Responder | None = None,
    ) -> None:
        self.clock = clock
        self.latency_ms = latency_ms
        self.responder = responder
        self.script: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.in_flight: dict[str, int] = {}
        self.max_in_flight = 0
        self.max_in_flight_per_run = 0

    def reply(self, *replies: Reply) -> None:
        """Answer the next requests with these (a response, or an exception to raise)."""
        self.script.extend(replies)

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The bodies the backend accepted (2xx), in order."""
        return [s.body for s in self.seen if s.status is not None and 200 <= s.status < 300]

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """Every body sent, retries included."""
        return [s.body for s in self.seen]

    def _now(self) -> int:
        return 0 if self.clock is None else self.clock.now_ms

    async def handle(self, request: httpx.Request) -> httpx.Response:
        content = await request.aread()
        run_id = str(json.loads(content)["runId"])
        at = self._now()
        self.in_flight[run_id] = self.in_flight.get(run_id, 0) + 1
        self.max_in_flight_per_run = max(self.max_in_flight_per_run, self.in_flight[run_id])
        self.max_in_flight = max(self.max_in_flight, sum(self.in_flight.values()))
        status: int | None = None
        try:
            if self.latency_ms and self.clock is not None:
                await self.clock.sleep_until(at + self.latency_ms)
            reply: Reply
            if self.script:
                reply = self.script.popleft()
            elif self.responder is not None:
                reply = self.responder(request)
            else:
                reply = httpx.Response(204)
            if isinstance(reply, Exception):
                raise reply
            status = reply.status_code
            return reply
        finally:
            self.in_flight[run_id] -= 1
            self.seen.append(Seen(at, str(request.url), content, request.headers, status))
