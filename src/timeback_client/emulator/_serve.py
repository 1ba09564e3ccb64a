"""Serving the emulator on a real loopback socket: in a background thread, or blocking.

Both bind the listening socket *before* starting uvicorn, so the URL (and an ephemeral
port, for ``port=0``) is known at once and there is no window in which the port is free.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from ._faults import ConnectionDropped

if TYPE_CHECKING:
    from ._emulator import Emulator

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8787
#: The student ``timeback-client emulator`` knows when no ``--student`` is given.
DEFAULT_STUDENTS: Mapping[str, str] = {"demo-token": "student@example.edu"}
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
    server = uvicorn.Server(config)
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


def serve(
    port: int = DEFAULT_PORT,
    students: Mapping[str, str] | None = None,
    db: str | os.PathLike[str] | None = None,
    *,
    host: str = DEFAULT_HOST,
    mount: str | None = None,
    announce: Callable[[str], None] | None = None,
) -> None:
    """Run an emulator in the foreground until interrupted (Ctrl-C).

    Args:
        port: Port to bind on ``host``; 0 picks a free one.
        students: Token -> email map; ``DEFAULT_STUDENTS`` when None.
        db: SQLite file keeping everything across restarts; memory when None.
        host: Address to bind (loopback by default).
        mount: Mount path of the vendor routes; ``/api/timeback`` when None.
        announce: Where the base URL and the students go; stdout (flushed) when None.
    """
    from ._emulator import DEFAULT_MOUNT, Emulator

    known = dict(DEFAULT_STUDENTS if students is None else students)
    with Emulator(students=known, db=db, mount=mount or DEFAULT_MOUNT) as emulator:
        _serve_blocking(emulator, host=host, port=port, announce=announce or _print_flushed)


def _print_flushed(line: str) -> None:
    # Flushed: whoever started the emulator may be waiting on a pipe for the URL.
    print(line, flush=True)


def _serve_blocking(
    emulator: Emulator, *, host: str, port: int, announce: Callable[[str], None]
) -> None:
    sock = _bind(host, port)
    try:
        bound_port = sock.getsockname()[1]
        announce(f"Timeback emulator: http://{host}:{bound_port}{emulator.mount}")
        for token, email in emulator.students.items():
            announce(f"  student {email}: Authorization: Bearer {token}")
        announce(f"  inspect: http://{host}:{bound_port}/_emulator/runs")
        _server(emulator.app, host, bound_port, foreground=True).run(sockets=[sock])
    finally:
        sock.close()


def _student(text: str) -> tuple[str, str]:
    token, sep, email = text.partition("=")
    if not sep or not token or not email:
        raise argparse.ArgumentTypeError(f"expected TOKEN=EMAIL, got {text!r}")
    return token, email


class _Students(argparse.Action):
    """``--student``, repeatable; the same token twice is refused (not overridden)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        assert isinstance(values, tuple)
        token, email = values
        students: dict[str, str] = getattr(namespace, self.dest) or {}
        if token in students:
            parser.error(
                f"argument --student: token {token!r} is given twice "
                f"({students[token]} and {email}); give each student a token of their own"
            )
        students[token] = email
        setattr(namespace, self.dest, students)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port (0 to 65535; 0: any free one)")
    return port


def _mount(text: str) -> str:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r} does not start with '/' (e.g. /api/timeback)")
    return text


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``timeback-client emulator`` options to a parser.

    Options: ``--port`` (8787), ``--host`` (127.0.0.1), ``--student TOKEN=EMAIL``
    (repeatable), ``--db FILE``, ``--mount`` (``/api/timeback``).
    """
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help="port (default 8787)")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address (default 127.0.0.1)")
    parser.add_argument(
        "--student",
        dest="students",
        metavar="TOKEN=EMAIL",
        type=_student,
        action=_Students,
        help="a student the emulator knows by bearer token or session cookie (repeatable;"
        " default demo-token=student@example.edu)",
    )
    parser.add_argument("--db", metavar="FILE", help="SQLite file kept across restarts")
    parser.add_argument(
        "--mount", type=_mount, default=None, help="mount path (default /api/timeback)"
    )


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with options parsed by a parser set up with ``add_cli_arguments``.

    Returns:
        The process exit status.
    """
    students = args.students or None
    try:
        serve(port=args.port, students=students, db=args.db, host=args.host, mount=args.mount)
    except OSError as exc:
        print(f"timeback-client emulator: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    return 0
