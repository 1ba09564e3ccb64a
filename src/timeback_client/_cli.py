"""The ``timeback-client`` command: ``demo``, ``emulator``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]

_NEEDS_EMULATOR = "this command needs the emulator extra: pip install 'timeback-client[emulator]'"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timeback-client",
        description="Timeback activity time tracking outside the browser.",
    )
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
        type=float,
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
        from .emulator import add_cli_arguments
    except ImportError:
        emulator.set_defaults(missing_extra=True)
    else:
        add_cli_arguments(emulator)
    return parser


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
            from .emulator import run_from_args

            return run_from_args(args)
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
