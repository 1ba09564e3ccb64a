"""Serving an ASGI app on a real loopback socket: in a background thread, or blocking.

Both bind the listening socket *before* starting uvicorn, so the URL (and an ephemeral
port, for ``port=0``) is known at once and there is no window in which the port is free.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from ._faults import ConnectionDropped

DEFAULT_HOST = "127.0.0.1"
_STARTUP_TIMEOUT_S = 10.0
_SHUTDOWN_TIMEOUT_S = 10.0


class _QuietDrops(logging.Filter):
    """Hide uvicorn's traceback for an injected connection drop: it is intended."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


def _quiet_injected_drops() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(existing, _QuietDrops) for existing in logger.filters):
        logger.addFilter(_QuietDrops())


class ClosingServer(uvicorn.Server):
    """A uvicorn server that closes every connection before its loop ends.

    uvicorn asks the connections it knows of to close, waits up to
    ``timeout_graceful_shutdown`` for them, then returns with any still open: one accepted
    in the instant it stopped, which it never asked, stays open until its loop is gone.
    Its socket then waits for the garbage collector (a ``ResourceWarning`` wherever that
    happens to run) and its client for a timeout instead of the end of the stream.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if isinstance(transport, asyncio.Transport):
                transport.abort()
        # The transports close in the loop's next turn: give it one.
        await asyncio.sleep(0)


def _bind(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose
    # proto is IPPROTO_TCP, and with proto 0 every keep-alive request waits ~40 ms for
    # Nagle and delayed ACKs.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        # Listening now means early clients queue in the backlog instead of being refused
        # while uvicorn is still starting.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


def _server(app: ASGIApp, host: str, port: int, *, foreground: bool) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="off",
        ws="none",
        # In the foreground uvicorn's own logging setup is right; in a thread inside a
        # test process, leave the process's logging alone.
        log_config=uvicorn.config.LOGGING_CONFIG if foreground else None,
        log_level="info" if foreground else "warning",
        access_log=foreground,
        timeout_graceful_shutdown=1,
    )
    server = ClosingServer(config)
    # After the Config: it (re)configures uvicorn's loggers.
    _quiet_injected_drops()
    return server


@contextlib.contextmanager
def serve_in_thread(
    app: ASGIApp, *, mount: str, host: str = DEFAULT_HOST, port: int = 0
) -> Iterator[str]:
    """Run ``app`` with uvicorn in a background thread while the block runs.

    A thread rather than a task: the emulator must serve while the test (or the sync
    client's own event-loop thread) blocks, and uvicorn owns its event loop.

    Args:
        app: The ASGI app.
        mount: Path appended to the base URL.
        host: Loopback address to bind.
        port: Port to bind; 0 picks a free one.

    Yields:
        The base URL, e.g. ``http://127.0.0.1:54321/api/timeback``.

    Raises:
        RuntimeError: When the server does not start.
    """
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    try:
        server = _server(app, host, bound_port, foreground=False)
    except BaseException:
        sock.close()
        raise
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="timeback-emulator", daemon=True
    )
    try:
        thread.start()
        deadline = time.monotonic() + _STARTUP_TIMEOUT_S
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator's uvicorn server did not start")
            time.sleep(0.002)
        yield f"http://{host}:{bound_port}{mount}"
    finally:
        server.should_exit = True
        if thread.is_alive():
            thread.join(_SHUTDOWN_TIMEOUT_S)
        sock.close()


def serve_forever(
    app: ASGIApp, *, host: str, port: int, bound: Callable[[int], None] | None = None
) -> None:
    """Serve ``app`` in the foreground until interrupted, with uvicorn's own logging.

    Args:
        app: The ASGI app.
        host: Address to bind.
        port: Port to bind; 0 picks a free one.
        bound: Told the port once the socket listens, before uvicorn starts.
    """
    sock = _bind(host, port)
    try:
        bound_port = sock.getsockname()[1]
        if bound is not None:
            bound(bound_port)
        _server(app, host, bound_port, foreground=True).run(sockets=[sock])
    finally:
        sock.close()
