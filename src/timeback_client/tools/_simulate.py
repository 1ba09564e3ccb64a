"""``timeback-client simulate``: a school of students against one backend, from one machine.

Every simulated student runs the SDK as an app would: one `AsyncTimeback` each, all of
them sharing one `Engine` (one scheduler, one connection pool, one bounded sender), on
one `ScaledClock` that compresses lesson time. A student arrives,
works (touching the activity every few seconds), takes breaks (`pause` / `resume`),
wanders off (the SDK pauses itself after ``idle_timeout``; the next `touch` resumes),
leaves (`end`) and comes back later to the saved runId; now and then the app's server
records a completion (``POST /_emulator/record``) and the student starts a new attempt
with a fresh runId. Completions need that server-side hook, so they happen only against
our own emulator.

Without ``--server`` the emulator runs in a process of its own, so its work does not
count as the client's; at the end the emulator's per-run totals are compared with the
time the students spent, run by run, and its problem list is reported. Against a real
backend, students take the backend's own courses (`Catalogue`) and log in as the
deployment's students (`Roster`), and what the backend refused is grouped by its error
code, with the courses and credentials involved.
"""

from __future__ import annotations

import gc
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Final, TextIO

import anyio
import attrs
import httpx

from .._activity import AsyncActivity
from .._client import AsyncTimeback
from .._clock import ScaledClock
from .._delivery_errors import DeliveryError, ResponseError
from .._engine import Engine
from .._models import ErrorContext, TimeOptions
from ._report import EmulatorTotals, ProgressLine, Refusal, Report, render_text
from .students import (
    BUILTIN_CATALOGUE,
    Behaviour,
    Catalogue,
    Complete,
    Credential,
    End,
    Lesson,
    Pause,
    Plan,
    Resume,
    Roster,
    Start,
    Step,
    Touch,
    Wait,
    completion_body,
    describe_course,
    student_plan,
)

__all__ = ["Behaviour", "Simulation", "TimedTransport", "run_simulation"]

_MS: Final = 1000


@attrs.frozen(kw_only=True)
class Simulation:
    """What to simulate.

    Args:
        students: how many students.
        minutes: lesson minutes to simulate.
        interval: heartbeat interval, in lesson seconds.
        speed: how much faster than real time lesson time runs.
        server: a backend mount URL; None starts the emulator in its own process.
        token: the one bearer token every student sends to ``server`` (one identity).
        roster: the deployment's students, one credential each, round-robin (instead of
            ``token``).
        catalogue: the courses students take (the built-in ones by default).
        seed: seeds the students' choices; None picks one (and the report shows it).
        flush_timeout: each ``end()`` waits at most this long (real seconds) for delivery:
            longer than an app's 5 s, since when lesson time is up every student's last
            window is queued at the same instant.
        behaviour: how students behave.
    """

    students: int = attrs.field(validator=attrs.validators.ge(1))
    minutes: float = attrs.field(validator=attrs.validators.gt(0))
    interval: float = attrs.field(default=15.0, validator=attrs.validators.gt(0))
    speed: float = attrs.field(default=10.0, validator=attrs.validators.gt(0))
    server: str | None = None
    token: str | None = None
    roster: Roster | None = None
    catalogue: Catalogue = BUILTIN_CATALOGUE
    seed: int | None = None
    flush_timeout: float = 30.0
    behaviour: Behaviour = attrs.field(factory=Behaviour)

    def __attrs_post_init__(self) -> None:
        if self.token is not None and self.roster is not None:
            raise ValueError("give the students one token or a roster, not both")

    @property
    def students_roster(self) -> Roster | None:
        """Who the students are to ``server``: the roster, the one token, or None (the
        emulator's own students, one each)."""
        if self.token is not None:
            return Roster(
                credentials=(Credential.bearer(self.token, label="--token"),), source="--token"
            )
        return self.roster


class TimedTransport(httpx.AsyncBaseTransport):
    """Times every request of the pool, from send to response headers, in ms.

    Args:
        inner: the real transport.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self.latencies_ms: list[float] = []
        self.statuses: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send through the inner transport, noting the time it took and the answer."""
        started = time.perf_counter()
        try:
            response = await self._inner.handle_async_request(request)
        except Exception as exc:
            self.statuses[type(exc).__name__] += 1
            raise
        self.latencies_ms.append((time.perf_counter() - started) * 1000)
        self.statuses[str(response.status_code)] += 1
        return response

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self._inner.aclose()


@attrs.define(eq=False)
class _Refused:
    """The refusals of one (status, code) so far."""

    example: str
    count: int = 0
    given_up: int = 0
    courses: set[str] = attrs.field(factory=set)
    fields: set[str] = attrs.field(factory=set)
    credentials: set[str] = attrs.field(factory=set)


@attrs.define(eq=False)
class _School:
    """Everything the students share: the clock, the end of lesson time, the tallies."""

    config: Simulation
    clock: ScaledClock
    start_ms: int
    end_ms: int
    hook: httpx.AsyncClient | None  # the server-side record() hook, emulator only
    sessions: int = 0
    resumed_sessions: int = 0
    pauses: int = 0
    idle_pauses: int = 0
    completions: int = 0
    delivered: int = 0
    flushed_ms: int = 0
    errors: Counter[str] = attrs.field(factory=Counter)
    final_errors: int = 0  # errors after which the SDK gave up on a window
    run_ms: dict[str, int] = attrs.field(factory=dict)
    finished: int = 0
    refused: dict[tuple[int, str | None], _Refused] = attrs.field(factory=dict)

    def now_ms(self) -> int:
        return self.clock.read().timeline_ms

    def over(self) -> bool:
        return self.now_ms() >= self.end_ms

    async def wait(self, seconds: float) -> None:
        """Let ``seconds`` of lesson time pass, or less if the lesson time runs out."""
        target = min(self.now_ms() + round(seconds * _MS), self.end_ms)
        await self.clock.sleep_until(target)

    def on_error(self, error: DeliveryError, context: ErrorContext, credential: str) -> None:
        status = getattr(error, "status_code", None)
        kind = f"{context.operation}: {type(error).__name__}"
        if status is not None:
            kind += f" {status}"
        if context.will_retry:
            kind += " (retried)"
        else:
            self.final_errors += 1
        self.errors[kind] += 1
        if isinstance(error, ResponseError):
            self._refused(error, context, credential)

    def _refused(self, error: ResponseError, context: ErrorContext, credential: str) -> None:
        """Group what the backend refused by status and code, with what was involved."""
        key = (error.status_code, error.code)
        refused = self.refused.get(key)
        if refused is None:
            refused = self.refused[key] = _Refused(example=str(error))
        refused.count += 1
        refused.given_up += not context.will_retry
        if error.window is not None:
            refused.courses.add(describe_course(error.window.course))
        if error.field is not None:
            refused.fields.add(error.field)
        refused.credentials.add(credential)

    def refusals(self) -> tuple[Refusal, ...]:
        """What the backend refused, most frequent first."""
        return tuple(
            Refusal(
                status=status,
                code=code,
                count=refused.count,
                given_up=refused.given_up,
                courses=tuple(sorted(refused.courses)),
                fields=tuple(sorted(refused.fields)),
                credentials=tuple(sorted(refused.credentials, key=_natural)),
                example=refused.example,
            )
            for (status, code), refused in sorted(
                self.refused.items(), key=lambda item: (-item[1].count, item[0][0])
            )
        )

    def on_flush(self, elapsed_ms: int) -> None:
        self.delivered += 1
        self.flushed_ms += elapsed_ms

    async def complete(self, email: str, lesson: Lesson, run_id: str) -> None:
        """The app's server records the completion of ``run_id`` (never the client)."""
        assert self.hook is not None
        body = completion_body(email, lesson, run_id)
        try:
            response = await self.hook.post("/_emulator/record", json=body)
        except httpx.HTTPError as exc:
            self.errors[f"record: {type(exc).__name__}"] += 1
            self.final_errors += 1
            return
        if response.status_code == 200:
            self.completions += 1
        else:
            self.errors[f"record: {response.status_code}"] += 1
            self.final_errors += 1

    def finish(self) -> None:
        self.finished += 1


def _natural(label: str) -> tuple[str, int]:
    """``"f line 10"`` after ``"f line 9"``."""
    head, _, number = label.rpartition(" ")
    return (head, int(number)) if number.isdigit() else (label, 0)


def _emulator_student(index: int) -> tuple[str, str]:
    """The token and email of the emulator's student ``index``."""
    return f"sim-student-{index:05d}", f"student{index:05d}@sim.example.edu"


class _Student:
    """One student: a credential, an app session at a time, and the shared student plan."""

    def __init__(self, school: _School, index: int, seed: int) -> None:
        self.school = school
        self.index = index
        self.seed = seed
        token, self.email = _emulator_student(index)
        roster = school.config.students_roster
        self.credential = (
            Credential.bearer(token, label=f"emulator student {index}")
            if roster is None
            else roster.for_student(index)
        )
        self.activity: AsyncActivity | None = None
        self.away = True

    async def attend(self, base_url: str, engine: Engine) -> None:
        """Open this student's client, follow the lesson plan, and close it last of all."""
        school = self.school
        credential = self.credential
        # No durable outbox: on a real machine each student's app has its own file, and a
        # thousand students sharing this process's one file would measure lock contention
        # on a disk nobody has, not the backend.
        # Sending is what a load run is for, whatever TIMEBACK_DISABLED says.
        async with AsyncTimeback(
            base_url,
            headers=credential.headers,
            cookies=credential.cookies,
            engine=engine,
            outbox=None,
            enabled=True,
        ) as tb:
            try:
                await self._follow(tb)
            finally:
                school.finish()

    def _options(self) -> TimeOptions:
        config = self.school.config
        return TimeOptions(
            heartbeat_interval=config.interval,
            idle_timeout=config.behaviour.idle_timeout,
            flush_timeout=config.flush_timeout,
        )

    def _plan(self) -> Plan:
        config = self.school.config
        # Arrivals spread over at least one interval, so heartbeats do not come in step.
        behaviour = attrs.evolve(
            config.behaviour,
            arrival_spread=max(config.behaviour.arrival_spread, config.interval),
        )
        return student_plan(
            index=self.index,
            seed=self.seed,
            behaviour=behaviour,
            lessons=config.catalogue.lessons,
            can_complete=self.school.hook is not None,
        )

    async def _follow(self, tb: AsyncTimeback) -> None:
        """Carry out the plan's steps until lesson time is up, then end the open session."""
        school = self.school
        plan = self._plan()
        reply: str | None = None
        try:
            while True:
                step = plan.send(reply)
                reply = None
                if isinstance(step, Wait):
                    await school.wait(step.seconds)
                    if school.over():
                        return
                elif isinstance(step, Start):
                    reply = self._start(tb, step)
                elif isinstance(step, End):
                    await self._end()
                elif isinstance(step, Complete):
                    await school.complete(self.email, step.lesson, step.run_id)
                elif self.activity is not None:
                    _ACTIONS[type(step)](self.activity)
        finally:
            plan.close()
            await self._end()

    def _start(self, tb: AsyncTimeback, step: Start) -> str:
        school = self.school
        lesson = step.lesson
        activity = tb.activity.start(
            id=lesson.id,
            name=lesson.name,
            course=lesson.course,
            run_id=step.run_id,
            time=self._options(),
            on_error=self._on_error,
            on_flush=school.on_flush,
            on_pause=self._on_pause,
        )
        school.sessions += 1
        school.resumed_sessions += step.run_id is not None
        self.activity, self.away = activity, False
        return activity.run_id

    async def _end(self) -> None:
        activity = self.activity
        if activity is None:
            return
        await activity.end()
        self.activity, self.away = None, True
        run_ms = self.school.run_ms
        run_ms[activity.run_id] = run_ms.get(activity.run_id, 0) + activity.elapsed_ms

    def _on_error(self, error: DeliveryError, context: ErrorContext) -> None:
        self.school.on_error(error, context, self.credential.label)

    def _on_pause(self) -> None:
        if self.activity is not None and self.activity.is_idle:
            self.school.idle_pauses += 1
        else:
            self.school.pauses += 1


_ACTIONS: Final[dict[type[Step], Callable[[AsyncActivity], object]]] = {
    Touch: AsyncActivity.touch,
    Pause: AsyncActivity.pause,
    Resume: AsyncActivity.resume,
}


@attrs.frozen(kw_only=True)
class _Outcome:
    school: _School
    transport: TimedTransport
    wall_s: float
    cpu_s: float


async def _drive(
    config: Simulation,
    seed: int,
    clock: ScaledClock,
    base_url: str,
    hook_origin: str | None,
    progress: ProgressLine,
) -> _Outcome:
    transport = TimedTransport(httpx.AsyncHTTPTransport())
    async with (
        httpx.AsyncClient(transport=transport) as http,
        Engine(http_client=http, clock=clock) as engine,
    ):
        hook = None if hook_origin is None else httpx.AsyncClient(base_url=hook_origin, timeout=60)
        start_ms = clock.read().timeline_ms
        school = _School(
            config=config,
            clock=clock,
            start_ms=start_ms,
            end_ms=start_ms + round(config.minutes * 60 * _MS),
            hook=hook,
        )
        students = [_Student(school, index, seed) for index in range(config.students)]
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            async with anyio.create_task_group() as outer:
                outer.start_soon(_show_progress, school, students, progress)
                outer.start_soon(_freeze_after_arrivals, school)
                async with anyio.create_task_group() as tg:
                    for student in students:
                        tg.start_soon(student.attend, base_url, engine)
                outer.cancel_scope.cancel()
        finally:
            gc.unfreeze()
            if hook is not None:
                await hook.aclose()
        wall_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    progress.done(_status(school, students, wall_s))
    return _Outcome(school=school, transport=transport, wall_s=wall_s, cpu_s=cpu_s)


async def _freeze_after_arrivals(school: _School) -> None:
    """Once every student has arrived, move what they hold out of the collector's reach.

    A full collection walks every object it tracks while every student waits: with
    thousands of students that is a pause of hundreds of ms, which makes heartbeats late.
    What the students hold lives as long as they do; ``gc.freeze()`` (undone at the end)
    leaves the collector only what is made afterwards.
    """
    behaviour = school.config.behaviour
    await school.wait(max(behaviour.arrival_spread, school.config.interval) + 1)
    # No collection first: it would be the very pause over every student's objects that
    # freezing avoids (what is garbage now is collected after the thaw).
    gc.freeze()


def _status(school: _School, students: list[_Student], wall_s: float) -> str:
    active = paused = idle = 0
    for student in students:
        activity = student.activity
        if activity is None:
            continue
        if activity.is_idle:
            idle += 1
        elif activity.is_paused:
            paused += 1
        else:
            active += 1
    away = len(students) - active - paused - idle
    lesson_ms = min(school.now_ms(), school.end_ms) - school.start_ms
    total_ms = school.end_ms - school.start_ms
    rate = school.delivered / wall_s if wall_s > 0 else 0.0
    errors = sum(school.errors.values())
    return (
        f"lesson {_mmss(lesson_ms)}/{_mmss(total_ms)}  active {active} paused {paused} "
        f"idle {idle} away {away}  heartbeats {school.delivered} ({rate:.0f}/s)  "
        f"errors {errors}"
    )


def _mmss(ms: int) -> str:
    minutes, seconds = divmod(ms // _MS, 60)
    return f"{minutes:02d}:{seconds:02d}"


async def _show_progress(school: _School, students: list[_Student], progress: ProgressLine) -> None:
    started = time.perf_counter()
    while True:
        fraction = (school.now_ms() - school.start_ms) / (school.end_ms - school.start_ms)
        status = _status(school, students, time.perf_counter() - started)
        if fraction >= 1:
            status += "  (lesson time is up: ending sessions, flushing)"
        progress.update(min(1.0, fraction), status)
        await anyio.sleep(0.25)


def _emulator_totals(runs: list[dict[str, Any]], problems: list[dict[str, Any]]) -> EmulatorTotals:
    rules = Counter(str(problem["rule"]) for problem in problems)
    examples = tuple(
        f"{problem['rule']} on run {problem['runId']}: {problem['evidence']}"
        for problem in problems[:3]
    )
    return EmulatorTotals(
        runs=len(runs),
        windows=sum(len(run["windows"]) for run in runs),
        sessions=sum(int(run["sessions"]) for run in runs),
        completed=sum(bool(run["completed"]) for run in runs),
        active_ms=sum(int(run["activeMs"]) for run in runs),
        inactive_ms=sum(int(run["inactiveMs"]) for run in runs),
        run_active_ms={str(run["runId"]): int(run["activeMs"]) for run in runs},
        problems=dict(rules),
        problem_examples=examples,
    )


def simulate(config: Simulation, *, progress_out: TextIO | None = None) -> Report:
    """Run a simulation and return its report (blocking)."""
    from ._emulator_process import EmulatorProcess, ScaledTime

    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    progress = ProgressLine(progress_out or sys.stderr)
    clock = ScaledClock(config.speed)
    if config.server is not None:
        outcome = anyio.run(_drive, config, seed, clock, config.server, None, progress)
        return _report(config, seed, outcome, config.server, None)
    students = dict(_emulator_student(i) for i in range(config.students))
    progress.note(f"starting the emulator in its own process for {config.students} students")
    with EmulatorProcess(students, scaled_time=ScaledTime.of(clock)) as emulator:
        outcome = anyio.run(
            _drive, config, seed, clock, emulator.base_url, emulator.origin, progress
        )
        progress.note("fetching the emulator's totals and problems")
        totals = _emulator_totals(
            emulator.get_json("/_emulator/runs")["runs"],
            emulator.get_json("/_emulator/problems")["problems"],
        )
    return _report(config, seed, outcome, f"emulator at {emulator.base_url}", totals)


def _report(
    config: Simulation,
    seed: int,
    outcome: _Outcome,
    server: str,
    totals: EmulatorTotals | None,
) -> Report:
    school, transport = outcome.school, outcome.transport
    roster = config.students_roster
    return Report(
        students=config.students,
        lesson_minutes=config.minutes,
        interval_s=config.interval,
        speed=config.speed,
        seed=seed,
        server=server,
        against_emulator=totals is not None,
        wall_s=outcome.wall_s,
        client_cpu_s=outcome.cpu_s,
        sessions=school.sessions,
        resumed_sessions=school.resumed_sessions,
        pauses=school.pauses,
        idle_pauses=school.idle_pauses,
        completions=school.completions,
        requests=sum(transport.statuses.values()),
        delivered=school.delivered,
        statuses=dict(transport.statuses),
        latencies_ms=sorted(transport.latencies_ms),
        errors=dict(school.errors),
        final_errors=school.final_errors,
        simulated_active_ms=sum(school.run_ms.values()),
        flushed_active_ms=school.flushed_ms,
        run_simulated_ms=dict(school.run_ms),
        emulator=totals,
        refusals=school.refusals(),
        catalogue=config.catalogue.source,
        courses=tuple(describe_course(lesson.course) for lesson in config.catalogue.lessons),
        left_out=config.catalogue.left_out,
        identities=None if roster is None else len(roster),
        identities_source=None if roster is None else roster.source,
    )


def _preflight(server: str) -> str | None:
    """Why ``server`` is no Timeback mount to simulate against (None: it answers as one,
    whatever the status)."""
    url = server.rstrip("/") + "/activity/heartbeat"
    try:
        response = httpx.post(
            url, content=b"{}", headers={"content-type": "application/json"}, timeout=5.0
        )
    except httpx.UnsupportedProtocol:
        return f"cannot use --server {server}: give a URL with http:// or https://"
    except httpx.HTTPError as exc:
        why = f"{type(exc).__name__}: {exc or 'no answer within 5 s'}"
        return f"cannot reach --server {server}: {why}"
    if response.status_code == 404 and _error_code(response) is None:
        return (
            f"--server {server} answers 404 at {url}: is it the mount of the Timeback server "
            "SDK (e.g. https://host/api/timeback)?"
        )
    return None


def _error_code(response: httpx.Response) -> str | None:
    """The backend's error code in an error answer (``error.code``), if it has one."""
    try:
        body = response.json()
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None


def run_simulation(
    config: Simulation,
    *,
    as_json: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``timeback-client simulate``: run, print the report; 0 when everything added up."""
    import json

    if config.server is None and config.students_roster is not None:
        print(
            "timeback-client simulate: --token and --tokens only go with --server",
            file=err or sys.stderr,
        )
        return 2
    if config.server is not None and config.students_roster is None:
        print(
            "timeback-client simulate: --server needs --tokens FILE (the deployment's "
            "students, a bearer token or a session cookie a line) or --token (one identity "
            "for every student)",
            file=err or sys.stderr,
        )
        return 2
    if config.server is not None:
        problem = _preflight(config.server)
        if problem is not None:
            print(f"timeback-client simulate: {problem}", file=err or sys.stderr)
            return 2
    report = simulate(config, progress_out=err)
    stream = out or sys.stdout
    if as_json:
        json.dump(report.to_json(), stream, indent=2)
        stream.write("\n")
    else:
        print(render_text(report), file=stream)
    return 0 if report.ok else 1
