"""The ``timeback-client emulator`` command: an `Emulator` served in the foreground.

Above the facade it runs: `_serve` only knows how to put an ASGI app on a socket.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping

from ._emulator import DEFAULT_MOUNT, Emulator
from ._serve import DEFAULT_HOST, serve_forever

DEFAULT_PORT = 8787
#: The student ``timeback-client emulator`` knows when no ``--student`` is given.
DEFAULT_STUDENTS: Mapping[str, str] = {"demo-token": "student@example.edu"}


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
    known = dict(DEFAULT_STUDENTS if students is None else students)
    with Emulator(students=known, db=db, mount=mount or DEFAULT_MOUNT) as emulator:
        _serve_blocking(emulator, host=host, port=port, announce=announce or _print_flushed)


def _print_flushed(line: str) -> None:
    # Flushed: whoever started the emulator may be waiting on a pipe for the URL.
    print(line, flush=True)


def _serve_blocking(
    emulator: Emulator, *, host: str, port: int, announce: Callable[[str], None]
) -> None:
    def bound(bound_port: int) -> None:
        announce(f"Timeback emulator: http://{host}:{bound_port}{emulator.mount}")
        for token, email in emulator.students.items():
            announce(f"  student {email}: Authorization: Bearer {token}")
        announce(f"  inspect: http://{host}:{bound_port}/_emulator/runs")

    serve_forever(emulator.app, host=host, port=port, bound=bound)


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
