"""A local emulator of a Timeback app backend, faithful to ``timeback-sdk`` 0.4.0.

Needs the ``emulator`` extra (starlette, uvicorn). Typical use::

    from timeback_client.emulator import Emulator

    emulator = Emulator(students={"token": "ada@example.edu"})
    transport = emulator.transport()             # in process, no socket
    with emulator.serve_in_thread() as base_url:  # or on a loopback socket
        ...
    emulator.run(run_id).active_ms, emulator.problems()

Pieces: ``Emulator`` (the facade), ``Course`` (configured courses), ``Fault`` and
``Faults`` (fault injection), ``Run``, ``Window``, ``SentEvent`` and ``Problem``
(inspection values; ``RULES`` and ``FIXES`` say what each problem's rule means and what
to change), ``Refusal`` (a kind of request the emulator refused), ``RecordRejected``
(refused ``record()`` input), ``serve`` / ``add_cli_arguments`` / ``run_from_args`` (the
``timeback-client emulator`` command).
"""

from ._app import SESSION_COOKIE
from ._catalog import Course
from ._command import add_cli_arguments, run_from_args, serve
from ._emulator import DEFAULT_MOUNT, Emulator
from ._faults import Fault, FaultFields, Faults
from ._problems import FIXES, RULES, Problem
from ._refusals import Refusal
from ._runs import Run, UnknownRun, Window
from ._store import SentEvent
from ._validation import RecordRejected

__all__ = [
    "DEFAULT_MOUNT",
    "FIXES",
    "RULES",
    "SESSION_COOKIE",
    "Course",
    "Emulator",
    "Fault",
    "FaultFields",
    "Faults",
    "Problem",
    "RecordRejected",
    "Refusal",
    "Run",
    "SentEvent",
    "UnknownRun",
    "Window",
    "add_cli_arguments",
    "run_from_args",
    "serve",
]
