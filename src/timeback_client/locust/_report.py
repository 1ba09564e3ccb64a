"""The test's course and end: the workers' runs, the master's report and verdict.

**At the end of a test** the students stop: each ends its activity and closes its client,
which sends its last window and waits (at most ``flush_timeout``) for delivery. The master
asks every worker to stop its students and waits for each worker's runs (they come with
the worker's last statistics, over ``report_to_master``, so Locust's figures include every
last heartbeat); then it writes ``--timeback-report`` and, against the emulator, compares
each run's measured active time with what the emulator recorded, sets a non-zero exit
code on a mismatch, or when no student started a run, and prints the verdict (with the
most common heartbeat failures, if any) as the last thing it prints. Bad ``--timeback-*``
options are refused when Locust starts.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import attrs
import gevent
import httpx
from locust.env import Environment
from locust.runners import MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

from ..tools._report import identity_note
from ..tools.students import describe_course
from ._options import Setup, option_errors, read_setup, remember_locust_defaults
from ._user import (
    REPORT_GRACE_S,
    Heartbeats,
    StudentUser,
    default_credentials,
    json_object,
    origin_of,
    student_classes,
    students_of,
)

__all__ = ["init", "listen", "quit_", "quitting", "test_start", "test_stop", "test_stopping"]

logger = logging.getLogger("timeback_client")

_REPORT_MESSAGE: Final = "timeback_stop"  # master -> workers: stop students, send runs
_REPORT_KEY: Final = "timeback"  # the worker's runs, in its report_to_master data


@attrs.define(eq=False)
class _Collection:
    """The master's (or a local run's) reports of the workers, for one test."""

    reports: dict[str, dict[str, Any]] = attrs.field(factory=dict)
    expected: int = 0


_COLLECTIONS: weakref.WeakKeyDictionary[Environment, _Collection] = weakref.WeakKeyDictionary()


def init(environment: Environment, **_kwargs: Any) -> None:
    # Locust logs at INFO; httpx's line per request would cost more than the request.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):
        # Refused now, as Locust refuses its own bad options, not by every student later.
        # (A worker gets the master's options, which the master checked.)
        errors = option_errors(
            environment.parsed_options,
            needs_credentials=any(
                default_credentials(user) for user in student_classes(environment)
            ),
        )
        if errors:
            for error in errors:
                logger.error(error)
            sys.exit(1)
        _list_courses(read_setup(environment.parsed_options))
    if not isinstance(runner, MasterRunner):
        listen(environment.events.spawning_complete, _freeze)
        # Start the SDK's thread (and its imports) now, not with the first student: the
        # test's time then goes to students, not to a cold start.
        students_of(environment).sdk()
    if isinstance(runner, WorkerRunner):
        remember_locust_defaults()
        students = students_of(environment)

        def stop_students(environment: Environment, msg: Any, **_kw: Any) -> None:
            environment.runner.stop()  # type: ignore[union-attr]
            students.flush()  # already done at test_stop, unless no test ran

        def attach(client_id: str, data: dict[str, Any]) -> None:
            if students.report is not None:
                data[_REPORT_KEY] = students.report

        runner.register_message(_REPORT_MESSAGE, stop_students, concurrent=True)
        listen(environment.events.report_to_master, attach)
    elif isinstance(runner, MasterRunner):
        collection = _COLLECTIONS.setdefault(environment, _Collection())

        def heard(client_id: str, data: dict[str, Any]) -> None:
            report = data.get(_REPORT_KEY)
            if report is not None:
                collection.reports[client_id] = report

        listen(environment.events.worker_report, heard)


def _freeze(**_kwargs: Any) -> None:
    """Once the students are spawned, move what they hold out of the collector's reach.

    A full collection walks every object it tracks while every greenlet and the SDK's
    thread wait: with thousands of students a pause of hundreds of ms, which makes
    heartbeats late. What the students hold lives as long as they do; ``gc.freeze()``
    (undone when the test stops) leaves the collector what is made afterwards.
    """
    # No collection first: it would be the very pause over every student's objects that
    # freezing avoids (what is garbage now is collected after the thaw).
    gc.freeze()


def test_start(environment: Environment, **_kwargs: Any) -> None:
    if isinstance(environment.runner, MasterRunner):
        _COLLECTIONS.setdefault(environment, _Collection()).reports.clear()
    else:
        students_of(environment).test_started()


def test_stopping(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        return
    collection = _COLLECTIONS.setdefault(environment, _Collection())
    collection.expected = runner.worker_count
    runner.send_message(_REPORT_MESSAGE)
    deadline = time.monotonic() + _flush_timeout(environment) + REPORT_GRACE_S
    while len(collection.reports) < collection.expected and time.monotonic() < deadline:
        gevent.sleep(0.2)


def test_stop(environment: Environment, **_kwargs: Any) -> None:
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        gc.unfreeze()
    if isinstance(runner, WorkerRunner):
        students_of(environment).flush()
        return
    if isinstance(runner, MasterRunner):
        collection = _COLLECTIONS.setdefault(environment, _Collection())
        reports = list(collection.reports.values())
        missing = max(0, collection.expected - len(reports))
    else:
        reports = [students_of(environment).flush()]
        missing = 0
    _conclude(environment, reports, missing)


def quitting(environment: Environment, **_kwargs: Any) -> None:
    students_of(environment).stop_sdk()


def _flush_timeout(environment: Environment) -> float:
    """The longest a leaving student of this test waits for its last windows."""
    timeouts = [float(user.flush_timeout) for user in student_classes(environment)]
    return max(timeouts, default=StudentUser.flush_timeout)


def _list_courses(setup: Setup) -> None:
    """Once, at the start: the backend's courses students take, and those left out."""
    catalogue = setup.catalogue
    if catalogue is None:
        return
    named = ", ".join(describe_course(lesson.course) for lesson in catalogue.lessons)
    logger.info("timeback: students take %s (%s)", named, catalogue.source)
    for reason in catalogue.left_out:
        logger.warning("timeback: left out of %s: %s", catalogue.source, reason)


#: The summary of each environment's last test, printed again as Locust's last words.
_SUMMARIES: weakref.WeakKeyDictionary[Environment, str] = weakref.WeakKeyDictionary()


def _conclude(environment: Environment, reports: list[dict[str, Any]], missing: int) -> None:
    """Merge the workers' reports, check them against the emulator, print, write."""
    report = _merge(reports)
    report["students"] = _students_json(environment, report["totals"]["students"])
    verdict = _check(environment, report, missing)
    report["check"] = verdict
    totals = report["totals"]["heartbeats"]
    summary = "\n".join(
        [
            f"timeback: {report['totals']['students']} students, {len(report['runs'])} runs, "
            f"{report['totals']['workers']} worker(s); heartbeats sent {totals['sent']}, "
            f"accepted {totals['accepted']}, duplicates {totals['duplicates']}, "
            f"failed {totals['failed']}",
            f"timeback: students: {report['students']['note']}",
            f"timeback: {verdict['message']}",
        ]
    )
    _SUMMARIES[environment] = summary
    if not _students_option(environment, "headless"):
        print(summary, flush=True)  # again at exit, after Locust's own tables
    if verdict["ok"] is False:
        environment.process_exit_code = 1
    path = _students_option(environment, "timeback_report")
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if _students_option(environment, "csv_prefix"):
        # Locust writes its CSV statistics every second, and not again when it exits: let
        # it write once more, with the students' last windows (all sent at the end).
        gevent.sleep(CSV_STATS_INTERVAL_SEC + 0.2)


def quit_(**_kwargs: Any) -> None:
    # Locust prints its tables just before `quit`: the verdict comes after them, last.
    for summary in list(_SUMMARIES.values()):
        print(summary, flush=True)


def _students_json(environment: Environment, students: int) -> dict[str, Any]:
    """Who the students were to the backend, and the courses they took (no secret)."""
    setup = read_setup(environment.parsed_options)
    classes = student_classes(environment)
    roster = setup.roster
    catalogue = setup.catalogue
    courses: dict[str, Any] = {"source": "the user class's lessons", "leftOut": []}
    if catalogue is not None:
        courses = {
            "source": catalogue.source,
            "courses": [describe_course(lesson.course) for lesson in catalogue.lessons],
            "leftOut": list(catalogue.left_out),
        }
    if roster is None or not all(default_credentials(user) for user in classes):
        names = ", ".join(sorted(user.__name__ for user in classes)) or "StudentUser"
        return {
            "source": f"{names}.credentials()",
            "count": None,
            "note": f"{students} students, with what {names}.credentials() gives each",
            "courses": courses,
        }
    return {
        "source": roster.source,
        "count": len(roster),
        "note": identity_note(
            students, len(roster), roster.source, tokens_option="--timeback-tokens"
        ),
        "courses": courses,
    }


def _students_option(environment: Environment, name: str) -> Any:
    options = environment.parsed_options
    return getattr(options, name, None) if options is not None else None


def _merge(reports: list[dict[str, Any]]) -> dict[str, Any]:
    heartbeats = Heartbeats()
    failures: dict[str, int] = {}
    runs: list[dict[str, Any]] = []
    workers = []
    for report in sorted(reports, key=lambda r: str(r["worker"])):
        for key, value in report["heartbeats"].items():
            setattr(heartbeats, key, getattr(heartbeats, key) + int(value))
        for kind, count in report.get("failures", {}).items():
            failures[kind] = failures.get(kind, 0) + int(count)
        runs.extend(report["runs"])
        workers.append(
            {
                "worker": report["worker"],
                "students": report["students"],
                "runs": len(report["runs"]),
                "heartbeats": report["heartbeats"],
                "cpuSeconds": report["cpuSeconds"],
                "pid": report.get("pid"),
            }
        )
    return {
        "runs": runs,
        "totals": {
            "heartbeats": heartbeats.to_json(),
            "students": sum(int(r["students"]) for r in reports),
            "completions": sum(int(r["completions"]) for r in reports),
            "activeMs": sum(int(run["activeMs"]) for run in runs),
            "workers": len(reports),
        },
        "failures": dict(sorted(failures.items(), key=lambda item: (-item[1], item[0]))),
        "workers": workers,
    }


def _check(environment: Environment, report: dict[str, Any], missing: int) -> dict[str, Any]:
    """Each run's measured active time against the emulator's (when the host is one)."""
    host = environment.host or _students_option(environment, "host")
    verdict: dict[str, Any] = {"target": None, "ok": None, "runs": len(report["runs"])}
    if missing:
        verdict.update(
            ok=False,
            message=f"MISMATCH: {missing} worker(s) sent no runs within "
            f"{_flush_timeout(environment) + REPORT_GRACE_S:g} s; their time is unaccounted for",
        )
        return verdict
    if not report["runs"]:
        verdict.update(
            ok=False,
            message="NO RUNS: no student started a run, so nothing was measured"
            + _failures_named(report["failures"])
            + " (see Locust's errors above)",
        )
        return verdict
    if not host:
        verdict["message"] = "exactness not checked: no --host" + _failures_named(
            report["failures"]
        )
        return verdict
    origin = origin_of(str(host))
    try:
        probe = httpx.get(f"{origin}/_emulator/faults", timeout=10.0)
        emulator = probe.status_code == 200 and "faults" in json_object(probe.content)
        found = httpx.get(f"{origin}/_emulator/runs", timeout=300.0) if emulator else None
    except httpx.HTTPError as exc:
        verdict["message"] = f"exactness not checked: {origin} did not answer ({exc!r})"
        return verdict
    if found is None:
        verdict["message"] = (
            f"exactness not checked: {origin} is not the emulator (no /_emulator/ routes)"
            + _failures_named(report["failures"])
        )
        return verdict
    recorded = {str(run["runId"]): int(run["activeMs"]) for run in found.json()["runs"]}
    measured: dict[str, int] = {}
    for run in report["runs"]:
        measured[run["runId"]] = measured.get(run["runId"], 0) + int(run["activeMs"])
    mismatches = [
        {"runId": run_id, "measuredMs": ms, "recordedMs": recorded.get(run_id, 0)}
        for run_id, ms in sorted(measured.items())
        if recorded.get(run_id, 0) != ms
    ]
    total = sum(measured.values())
    verdict.update(target=origin, ok=not mismatches, mismatches=mismatches)
    if mismatches:
        first = mismatches[0]
        verdict["message"] = (
            f"MISMATCH: {len(mismatches)} of {len(measured)} runs differ from the emulator "
            f"at {origin}, e.g. run {first['runId']}: measured {first['measuredMs']} ms, "
            f"recorded {first['recordedMs']} ms" + _failures_named(report["failures"])
        )
    else:
        recovered = _failures_named(report["failures"]).replace(
            "; heartbeat failures:", "; heartbeat failures the SDK's retries recovered from:"
        )
        verdict["message"] = (
            f"OK: every run's measured active time equals the emulator's at {origin} "
            f"({len(measured)} runs, {total} ms)" + recovered
        )
    return verdict


#: Fixes for the heartbeat failures a misconfigured test shows, by the failure's text.
_FIXES: Final = {
    "401 UNAUTHORIZED": "the backend knows no student by this token: check --timeback-token",
    "404 error": "is --host the mount of the Timeback server SDK, e.g. .../api/timeback?",
}


def _failures_named(failures: dict[str, int], most: int = 3) -> str:
    """``; heartbeat failures: 401 UNAUTHORIZED x18 (fix)``, the most common first."""
    if not failures:
        return ""
    common = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    named = []
    for kind, count in common[:most]:
        fix = _FIXES.get(kind)
        named.append(f"{kind} x{count}" + (f" ({fix})" if fix else ""))
    others = len(common) - most
    more = f", and {others} other kind(s)" if others > 0 else ""
    return "; heartbeat failures: " + ", ".join(named) + more


def listen(hook: Any, handler: Callable[..., None]) -> None:
    """``hook.add_listener(handler)`` (Locust's event hooks are untyped)."""
    hook.add_listener(handler)
