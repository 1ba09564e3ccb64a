"""A real HTTP backend on 127.0.0.1: a tiny starlette app served by uvicorn in a thread."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from timeback_client.emulator._serve import ClosingServer

MOUNT = "/api/timeback"


class LoopbackBackend:
    """Records heartbeat bodies and answers 204, optionally after ``delay`` seconds.

    Bind to port 0 (the OS picks a free port); `start()` returns once uvicorn listens.
    """

    def __init__(self, *, delay: float = 0.0) -> None:
        self.delay = delay
        self._lock = threading.Lock()
        self._bodies: list[dict[str, Any]] = []
        app = Starlette(
            routes=[Route(MOUNT + "/activity/heartbeat", self._heartbeat, methods=["POST"])]
        )
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=1,
        )
        self._server = ClosingServer(config)
        self._thread = threading.Thread(target=self._server.run, name="loopback backend")
        self.base_url = ""

    @property
    def bodies(self) -> list[dict[str, Any]]:
        """The heartbeat bodies answered so far, in arrival order."""
        with self._lock:
            return list(self._bodies)

    async def _heartbeat(self, request: Request) -> Response:
        body = await request.json()
        if self.delay:
            await anyio.sleep(self.delay)
        with self._lock:
            self._bodies.append(body)
        return Response(status_code=204)

    def start(self) -> LoopbackBackend:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback backend did not start")
            time.sleep(0.005)
        (server,) = self._server.servers
        port = server.sockets[0].getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}{MOUNT}"
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
