"""The ``timeback-client emulator`` command: an `Emulator` served in the foreground.

Above the facade it runs: `_serve` only knows how to put an ASGI app on a socket.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Final

from .._backend_config import BackendConfig, read_backend_config, read_text
from .._errors import ValidationError
from ._catalog import Environment
from ._emulator import DEFAULT_MOUNT, Emulator
from ._problems import Problem
from ._refusals import Refusal, summarize
from ._serve import DEFAULT_HOST, serve_forever

DEFAULT_PORT = 8787

#: The command's exit statuses.
EXIT_CLEAN: Final = 0
#: With ``--fail-on-problems``: the app made a mistake (a problem, or a refused request).
EXIT_APP_MISTAKES: Final = 1
#: The emulator never served: a bad option or file, a port, host or ``--db`` it cannot
#: use (argparse's own status for a bad option).
EXIT_CANNOT_START: Final = 2

#: The exit statuses, as ``timeback-client emulator --help`` shows them.
EXIT_STATUSES: Final = (
    "exit status: 0 when stopped (Ctrl-C, SIGTERM); with --fail-on-problems, 1 when the "
    "app made a mistake (a problem in a run, or a heartbeat or record() the emulator "
    "refused); 2 when the emulator could not start (a bad option, --config or "
    "--students file, or a port, --host or --db it cannot use)"
)
#: The student ``timeback-client emulator`` knows when no ``--student`` is given.
DEFAULT_STUDENTS: Mapping[str, str] = {"demo-token": "student@example.edu"}


def serve(
    port: int = DEFAULT_PORT,
    students: Mapping[str, str] | None = None,
    db: str | os.PathLike[str] | None = None,
    *,
    host: str = DEFAULT_HOST,
    mount: str | None = None,
    config: str | os.PathLike[str] | Mapping[str, object] | BackendConfig | None = None,
    environment: Environment = "staging",
    fail_on_problems: bool = False,
    announce: Callable[[str], None] | None = None,
) -> int:
    """Run an emulator in the foreground until it is stopped (Ctrl-C, SIGINT or SIGTERM).

    Args:
        port: Port to bind on ``host``; 0 picks a free one.
        students: Token -> email map; ``DEFAULT_STUDENTS`` when None.
        db: SQLite file keeping everything across restarts; memory when None.
        host: Address to bind (loopback by default).
        mount: Mount path of the vendor routes; ``/api/timeback`` when None.
        config: The backend's ``timeback.config.json`` (see `Emulator`); None: every
            course is known and synced.
        environment: The backend's Timeback environment, ``"staging"`` or
            ``"production"``: which of each course's ``ids`` counts.
        fail_on_problems: Once stopped, say the problems seen and the requests refused,
            and return 1 if there are any (a verdict for CI).
        announce: Where the base URL, the students and the verdict go; stdout (flushed)
            when None.

    Returns:
        The exit status: 1 when ``fail_on_problems`` and a problem was seen or a request
        refused, else 0.

    Raises:
        ValidationError: ``config`` is not one the vendor's server would start with.
        OSError: the port cannot be bound.
    """
    say = announce or _print_flushed
    known = dict(DEFAULT_STUDENTS if students is None else students)
    with (
        Emulator(
            students=known, db=db, mount=mount or DEFAULT_MOUNT, config=config, env=environment
        ) as emulator,
        _stopped_by_sigterm(),
    ):
        with suppress(KeyboardInterrupt, _Stopped):
            _serve_blocking(emulator, host=host, port=port, announce=say)
        if not fail_on_problems:
            return 0
        return _verdict(emulator.problems(), emulator.refusals(), say)


class _Stopped(Exception):
    """SIGTERM arrived: stop serving as Ctrl-C does."""


@contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM raises `_Stopped` in the main thread, as SIGINT raises KeyboardInterrupt.

    uvicorn catches both while it serves and, once it has shut down, raises the signal
    again for the handler it found: this one, so the command can still say its verdict.
    """

    def stop(_signum: int, _frame: FrameType | None) -> None:
        raise _Stopped

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: whoever runs us handles signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _verdict(
    problems: tuple[Problem, ...], refusals: tuple[Refusal, ...], say: Callable[[str], None]
) -> int:
    if not problems and not refusals:
        say("timeback-client emulator: no problems seen, no request refused")
        return EXIT_CLEAN
    if problems:
        say(f"timeback-client emulator: {len(problems)} problem(s) seen")
    else:
        say("timeback-client emulator: no problems seen in the runs")
    for problem in problems:
        windows = f" ({len(problem.windows)} window(s))" if problem.windows else ""
        say(f"- {problem.rule} on run {problem.run_id}{windows}: {problem.evidence}")
        say(f"  fix: {problem.fix}")
    for line in summarize(refusals):
        say(line if line.startswith("- ") else f"timeback-client emulator: {line}")
    if refusals:
        say(
            "  fix: send what the backend accepts: the courses of its timeback.config.json, "
            "synced for this environment, for students it knows, with valid bodies"
        )
    return EXIT_APP_MISTAKES


def _print_flushed(line: str) -> None:
    # Flushed: whoever started the emulator may be waiting on a pipe for the URL.
    print(line, flush=True)


def _serve_blocking(
    emulator: Emulator, *, host: str, port: int, announce: Callable[[str], None]
) -> None:
    def bound(bound_port: int) -> None:
        origin = f"http://{host}:{bound_port}"
        announce(f"Timeback emulator: {origin}{emulator.mount}")
        for token, email in emulator.students.items():
            # Only the demo student's token is shown: others may be the backend's own.
            shown = f": Authorization: Bearer {token}" if DEFAULT_STUDENTS.get(token) else ""
            announce(f"  student {email}{shown}")
        courses = emulator.courses
        if courses is not None:
            synced = sum(1 for course in courses if course.course_id(emulator.env))
            announce(f"  courses: {len(courses)} configured, {synced} synced for {emulator.env}")
        announce(f"  inspect: {origin}/_emulator/")

    serve_forever(emulator.app, host=host, port=port, bound=bound)


_STUDENTS_FIX: Final = (
    "Write one student a line as TOKEN=EMAIL, e.g. a1b2c3=ada@example.edu; "
    "blank lines and lines starting with # are skipped."
)


def _split_student(text: str) -> tuple[str, str] | str:
    """``TOKEN=EMAIL`` split at its last ``=`` (a base64 token ends in ``=``, an email
    holds none), or what is wrong with it, in words that never show the token."""
    token, sep, email = text.strip().rpartition("=")
    token, email = token.strip(), email.strip()
    if not sep:
        return "is not TOKEN=EMAIL (no '=')"
    if not token:
        return "has no token before '='"
    if not email:
        return "has no email after the last '='"
    if "@" not in email:
        return "has no email after the last '=': what follows it has no '@'"
    if any(c.isspace() for c in email):
        return (
            "has no email after the last '=': what follows it holds a space "
            "(a # comment takes a line of its own)"
        )
    if any(char.isspace() or not char.isprintable() for char in token):
        return "holds a token with a space or an unprintable character, which no token has"
    return token, email


def _student(text: str) -> tuple[str, str]:
    split = _split_student(text)
    if isinstance(split, str):
        # The text may be a real token: it is never echoed.
        raise argparse.ArgumentTypeError(f"a --student value {split}; expected TOKEN=EMAIL")
    return split


def read_students(path: str | os.PathLike[str]) -> dict[str, str]:
    """The backend's students from a file: one ``TOKEN=EMAIL`` a line, as ``--student``
    takes them; blank lines and lines starting with ``#`` are skipped.

    Raises:
        ValidationError: the file cannot be read, a line is not ``TOKEN=EMAIL``, or a
            token is given twice (the file and line named; a token never shown).
    """
    where = os.fspath(path)
    students: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(read_text(where, _STUDENTS_FIX).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        split = _split_student(line)
        if isinstance(split, str):
            raise ValidationError(f"{where} line {number}", split, _STUDENTS_FIX)
        token, email = split
        if token in first_line:
            raise ValidationError(
                f"{where} line {number}",
                f"repeats the token of line {first_line[token]}",
                "Give each student a token of their own.",
            )
        first_line[token] = number
        students[token] = email
    return students


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


def _config_file(text: str) -> BackendConfig:
    try:
        return read_backend_config(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _students_file(text: str) -> dict[str, str]:
    try:
        return read_students(text)
    except ValidationError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``timeback-client emulator`` options to a parser.

    Options: ``--port`` (8787), ``--host`` (127.0.0.1), ``--student TOKEN=EMAIL``
    (repeatable), ``--students FILE``, ``--config FILE``, ``--environment``
    (``staging``), ``--fail-on-problems``, ``--db FILE``, ``--mount`` (``/api/timeback``);
    and the exit statuses (``EXIT_STATUSES``) as the help's epilog.
    """
    parser.epilog = EXIT_STATUSES
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
    parser.add_argument(
        "--students",
        dest="students_file",
        metavar="FILE",
        type=_students_file,
        help="the backend's students: one TOKEN=EMAIL a line (# comments allowed)",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        type=_config_file,
        help="the backend's timeback.config.json: heartbeats are answered as the vendor's "
        "server answers them with it (default: every course known and synced)",
    )
    parser.add_argument(
        "--environment",
        choices=("staging", "production"),
        default="staging",
        help="the backend's Timeback environment: which course ids count (default staging)",
    )
    parser.add_argument(
        "--fail-on-problems",
        action="store_true",
        help="when stopped (Ctrl-C, SIGTERM), print the problems seen and the requests "
        "refused, and exit 1 if any",
    )
    parser.add_argument("--db", metavar="FILE", help="SQLite file kept across restarts")
    parser.add_argument(
        "--mount", type=_mount, default=None, help="mount path (default /api/timeback)"
    )


def _all_students(args: argparse.Namespace) -> dict[str, str] | str | None:
    """The students of ``--student`` and ``--students``; a message when a token is in
    both; None for neither."""
    given: dict[str, str] = dict(args.students or {})
    from_file: dict[str, str] = args.students_file or {}
    for token in from_file:
        if token in given:
            return (
                "argument --students: a token of the file is also given by --student; "
                "give each student a token of their own"
            )
    given.update(from_file)
    return given or None


def _start_failure(exc: OSError, args: argparse.Namespace) -> str:
    """What went wrong and the fix, for a ``--db`` or an address the server cannot use."""
    host, port = args.host, args.port
    if args.db is not None and exc.filename == os.fspath(args.db):
        return f"argument --db: {exc.filename}: cannot be opened ({exc.strerror}). " + (
            "Pass a file in a directory that exists and that this user may write to."
        )
    if isinstance(exc, socket.gaierror):
        return (
            f"argument --host: {host!r} is no address of this machine ({exc.strerror}). "
            "Pass e.g. 127.0.0.1, or 0.0.0.0 for every interface."
        )
    if exc.errno == errno.EADDRINUSE:
        return (
            f"{host}:{port} is already in use ({exc.strerror}). Stop what listens there "
            "(another emulator?), or pass another --port."
        )
    if exc.errno in (errno.EACCES, errno.EADDRNOTAVAIL):
        return f"cannot listen on {host}:{port} ({exc.strerror}). Pass another --host or --port."
    return str(exc)


def run_from_args(args: argparse.Namespace) -> int:
    """Serve with options parsed by a parser set up with ``add_cli_arguments``.

    Returns:
        The process exit status (``EXIT_STATUSES``): 2 when the emulator could not start
        (input the command refuses, a port, host or ``--db`` it cannot use), 1 with
        ``--fail-on-problems`` when the app made a mistake, else 0.
    """
    students = _all_students(args)
    if isinstance(students, str):
        print(f"timeback-client emulator: error: {students}", file=sys.stderr)
        return EXIT_CANNOT_START
    try:
        return serve(
            port=args.port,
            students=students,
            db=args.db,
            host=args.host,
            mount=args.mount,
            config=args.config,
            environment=args.environment,
            fail_on_problems=args.fail_on_problems,
        )
    except ValidationError as exc:
        if exc.field == "db":  # a file that is no emulator's store
            said = f"argument --db: {exc.problem}. {exc.fix}"
        else:
            said = f"argument --config: {exc}"
        print(f"timeback-client emulator: error: {said}", file=sys.stderr)
        return EXIT_CANNOT_START
    except OSError as exc:
        print(f"timeback-client emulator: {_start_failure(exc, args)}", file=sys.stderr)
        return EXIT_CANNOT_START
    except KeyboardInterrupt:
        return 0
