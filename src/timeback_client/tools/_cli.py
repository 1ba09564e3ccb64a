"""The ``timeback-client`` command: ``demo``, ``emulator``, ``simulate``."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar

from .. import __version__
from .._errors import ValidationError
from .students import (
    BUILTIN_CATALOGUE,
    Catalogue,
    courses_from_specs,
    parse_course,
    read_catalogue,
    read_roster,
)

__all__ = ["main"]

_T = TypeVar("_T")
_NEEDS_EMULATOR = "this command needs the emulator extra: pip install 'timeback-client[emulator]'"


def _positive(text: str) -> float:
    """A positive, finite number (of seconds, minutes, or times real time)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive, finite number")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not 1 or more")
    return value


def _checked(read: Callable[[str], _T]) -> Callable[[str], _T]:
    """An argparse type from a reader that raises `ValidationError` (a file read at the
    door: its problem, the line or field named, is argparse's one-line refusal)."""

    def check(text: str) -> _T:
        try:
            return read(text)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = read.__name__  # argparse names the type in some messages
    return check


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timeback-client",
        description="Timeback activity time tracking outside the browser.",
    )
    parser.add_argument("--version", action="version", version=f"timeback-client {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run the stateful story against an embedded emulator",
        description=(
            "Two sessions of one lesson, a completion recorded by the server, and a new "
            "attempt, against an embedded backend emulator, in compressed time."
        ),
    )
    demo.add_argument(
        "--speed",
        type=_positive,
        default=100.0,
        help="how much faster than real time the lesson runs (default 100)",
    )
    demo.add_argument(
        "--mistakes",
        action="store_true",
        help="also replay the two classic mistakes and show the emulator catching them",
    )

    emulator = commands.add_parser(
        "emulator",
        help="serve the backend emulator on a loopback port",
        description="Serve an emulated Timeback app backend (timeback-sdk 0.4.0 behaviour).",
    )
    try:
        from ..emulator import add_cli_arguments
    except ImportError:
        emulator.set_defaults(missing_extra=True)
    else:
        add_cli_arguments(emulator)

    simulate = commands.add_parser(
        "simulate",
        help="simulate a school of students against a backend (load test)",
        description=(
            "Simulated students start, work, pause, go idle, leave and resume lessons, all "
            "through one connection pool, in compressed time; then a report. Without "
            "--server the emulator runs in its own process and is checked too."
        ),
    )
    simulate.add_argument("--students", type=_count, required=True, help="how many students")
    simulate.add_argument(
        "--minutes", type=_positive, required=True, help="lesson minutes to simulate"
    )
    simulate.add_argument(
        "--interval", type=_positive, default=15.0, help="heartbeat interval, lesson seconds (15)"
    )
    simulate.add_argument(
        "--speed", type=_positive, default=10.0, help="lesson time runs this much faster (10)"
    )
    simulate.add_argument("--server", help="a backend mount URL (default: our emulator)")
    students = simulate.add_mutually_exclusive_group()
    students.add_argument(
        "--tokens",
        metavar="FILE",
        type=_checked(read_roster),
        help="the deployment's students for --server: a bearer token or a session cookie "
        "(name=value) a line, used round-robin",
    )
    students.add_argument(
        "--token", help="one bearer token for every student (to --server, one user)"
    )
    courses = simulate.add_mutually_exclusive_group()
    courses.add_argument(
        "--courses",
        metavar="FILE",
        type=_checked(read_catalogue),
        help="the backend's timeback.config.json: students take its synced courses",
    )
    courses.add_argument(
        "--course",
        metavar="SPEC",
        action="append",
        type=_checked(_course_spec),
        help='a course the backend knows, "Math:3" or "code:CS-101" (repeatable)',
    )
    simulate.add_argument("--seed", type=int, help="seed the students' behaviour")
    simulate.add_argument("--json", action="store_true", help="print a JSON report")
    return parser


def _course_spec(spec: str) -> str:
    parse_course(spec)
    return spec


def _catalogue(courses: Catalogue | None, specs: list[str] | None) -> Catalogue:
    if courses is not None:
        return courses
    return BUILTIN_CATALOGUE if not specs else courses_from_specs(specs)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(speed=args.speed, mistakes=args.mistakes)
        if args.command == "emulator":
            if getattr(args, "missing_extra", False):
                print(_NEEDS_EMULATOR, file=sys.stderr)
                return 2
            from ..emulator import run_from_args

            return run_from_args(args)
        if args.command == "simulate":
            from ._simulate import Simulation, run_simulation

            try:
                config = Simulation(
                    students=args.students,
                    minutes=args.minutes,
                    interval=args.interval,
                    speed=args.speed,
                    server=args.server,
                    token=args.token,
                    roster=args.tokens,
                    catalogue=_catalogue(args.courses, args.course),
                    seed=args.seed,
                )
            except ValueError as exc:
                print(f"timeback-client simulate: {exc}", file=sys.stderr)
                return 2
            return run_simulation(config, as_json=args.json)
    except ImportError as exc:
        if exc.name in ("starlette", "uvicorn"):
            print(_NEEDS_EMULATOR, file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130
    raise AssertionError(args.command)  # argparse only lets known commands through


if __name__ == "__main__":
    sys.exit(main())
