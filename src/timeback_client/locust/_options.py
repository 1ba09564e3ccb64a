"""The ``--timeback-*`` options: added to Locust's command line, read, and checked.

Workers get them from the master, as Locust's own options. The credential and course
options stay out of Locust's web UI: its page renders every UI option's value, on a UI
bound to every interface by default. A worker reads ``--timeback-tokens`` and
``--timeback-courses`` at the paths the master gives, with ``simulate``'s own readers.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import attrs

from .._errors import ValidationError
from ..tools.students import (
    Catalogue,
    Credential,
    Roster,
    courses_from_specs,
    read_catalogue,
    read_roster,
)

T = TypeVar("T")

DEFAULT_INTERVAL: Final = 15.0
NO_CREDENTIALS: Final = (
    "--timeback-tokens: give the deployment's students (a bearer token or a session cookie "
    "a line), or --timeback-token for one identity, or override StudentUser.credentials()"
)


@attrs.frozen(kw_only=True)
class Setup:
    """The ``--timeback-*`` options that name the backend's students and courses, read."""

    roster: Roster | None  # --timeback-tokens or --timeback-token; None: a subclass's own
    catalogue: Catalogue | None  # --timeback-courses or --timeback-course; None: `lessons`


def read_setup(options: Any) -> Setup:
    """The students and courses the options name, read by ``simulate``'s own readers.

    Raises:
        ValidationError: naming the option and the fix (never a credential's value).
    """
    token = getattr(options, "timeback_token", None)
    tokens = getattr(options, "timeback_tokens", None)
    courses = getattr(options, "timeback_courses", None)
    specs = getattr(options, "timeback_course", None)
    if token and tokens:
        raise ValidationError(
            "--timeback-token",
            "is given with --timeback-tokens",
            "Give one: a file of the deployment's students, or one token for every student.",
        )
    if courses and specs:
        raise ValidationError(
            "--timeback-course",
            "is given with --timeback-courses",
            "Give one: the backend's timeback.config.json, or the courses it knows.",
        )
    roster = None
    if tokens:
        roster = _option("--timeback-tokens", read_roster, str(tokens))
    elif token:
        roster = Roster(
            credentials=(Credential.bearer(str(token), label="--timeback-token"),),
            source="--timeback-token",
        )
    catalogue = None
    if courses:
        catalogue = _option("--timeback-courses", read_catalogue, str(courses))
    elif specs:
        catalogue = _option("--timeback-course", courses_from_specs, [str(s) for s in specs])
    return Setup(roster=roster, catalogue=catalogue)


def _option(name: str, reader: Callable[[Any], T], value: Any) -> T:
    try:
        return reader(value)
    except ValidationError as exc:
        raise ValidationError(f"{name}: {exc.field}", exc.problem, exc.fix) from None


def add_arguments(parser: Any) -> None:
    """Locust's ``init_command_line_parser`` listener: the ``--timeback-*`` options."""
    # Credentials stay out of Locust's web UI (which renders every UI option's value into
    # its page): workers still get them, with the master's other options.
    parser.add_argument(
        "--timeback-token",
        default=None,
        help="one bearer token for every student (to the backend, one user)",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-tokens",
        metavar="FILE",
        default=None,
        help="the deployment's students: a bearer token or a session cookie (name=value) "
        "a line, given round-robin to every student of every worker",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-courses",
        metavar="FILE",
        default=None,
        help="the backend's timeback.config.json: students take its synced courses",
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-course",
        metavar="SPEC",
        action="append",
        default=None,
        help='a course the backend knows, "Math:3" or "code:CS-101" (repeatable)',
        include_in_web_ui=False,
    )
    parser.add_argument(
        "--timeback-interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help="heartbeat interval, in seconds (default 15)",
    )
    parser.add_argument(
        "--timeback-report",
        default=None,
        help="write a JSON report of every run here when the test stops (the master's)",
    )


def remember_locust_defaults() -> None:
    """Keep the names of Locust's own options once, for the rest of the worker's life.

    A worker sorts each spawn message's options into Locust's own and a locustfile's by
    asking ``locust.argument_parser.default_args_dict()`` once per option: each call builds
    Locust's whole argument parser again (about 2 ms here), some 70 times a message, a
    message a second while students arrive. That was most of a worker's CPU while 1,000
    students arrived over 15 s. The names cannot change once Locust has started (they are
    its own options, not a locustfile's, and every caller asks only whether a name is one
    of them), so one parse serves every message. Idempotent.
    """
    from locust import argument_parser  # imported by Locust's worker already

    parse = getattr(argument_parser, "default_args_dict", None)
    if parse is None or getattr(parse, "__wrapped__", None) is not None:
        return  # a Locust without it, or remembered already
    defaults: dict[str, Any] = parse()

    @functools.wraps(parse)
    def default_args_dict() -> dict[str, Any]:
        return dict(defaults)  # a copy, as each call of Locust's gave

    argument_parser.default_args_dict = default_args_dict


def option_errors(options: Any, *, needs_credentials: bool) -> list[str]:
    """What is wrong with this test's ``--timeback-*`` options (empty when nothing is).

    Args:
        options: Locust's parsed options.
        needs_credentials: whether a user class sends the command line's credentials.
    """
    if options is None:
        return []
    errors = []
    try:
        setup = read_setup(options)
    except ValidationError as exc:
        errors.append(str(exc))
    else:
        if setup.roster is None and needs_credentials:
            errors.append(NO_CREDENTIALS)
    interval = getattr(options, "timeback_interval", None)
    if interval is not None and not (math.isfinite(interval) and interval > 0):
        errors.append(
            f"--timeback-interval: {interval:g} is not a positive number of seconds "
            "(e.g. 15, the default)"
        )
    report = getattr(options, "timeback_report", None)
    if report:
        path = Path(report).expanduser()
        folder = path.parent
        if path.is_dir():
            errors.append(f"--timeback-report: {report} is a directory; give a file's path")
        elif not folder.is_dir():
            errors.append(f"--timeback-report: the directory {folder} does not exist")
        elif not os.access(folder, os.W_OK | os.X_OK) or (
            path.exists() and not os.access(path, os.W_OK)
        ):
            errors.append(f"--timeback-report: {report} cannot be written (permission denied)")
    return errors
