"""An httpx transport into the emulator's ASGI app, with no socket.

``httpx.ASGITransport`` alone would let an injected drop surface as the emulator's own
exception and would ignore the client's timeouts. This wrapper makes the in-process path
fail like the network path: a drop is ``httpx.RemoteProtocolError``, and a request that
outlives the client's read timeout is ``httpx.ReadTimeout``.
"""

from __future__ import annotations

import anyio
import httpx
from starlette.types import ASGIApp

from ._faults import ConnectionDropped


class EmulatorTransport(httpx.AsyncBaseTransport):
    """Route requests into an ASGI app in process.

    Args:
        app: The emulator's ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send one request into the app."""
        timeouts = request.extensions.get("timeout", {})
        read_timeout = timeouts.get("read") if isinstance(timeouts, dict) else None
        try:
            with anyio.fail_after(read_timeout):
                return await self._inner.handle_async_request(request)
        except ConnectionDropped as exc:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            ) from exc
        except TimeoutError as exc:
            raise httpx.ReadTimeout("timed out", request=request) from exc

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()
