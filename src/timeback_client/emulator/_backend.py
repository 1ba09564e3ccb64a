"""The emulated app backend: heartbeats in, Caliper events stored, ``record()``.

The heartbeat path follows the vendor's handler step by step (authenticate, parse,
validate, dedupe, check the course is synced, resolve the student, build, send) so each
failure happens at the same point with the same answer. "Send" is a write to the store,
and dedupe is the store's unique key: durable, and atomic where the vendor's is not.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import attrs

from . import _caliper
from ._catalog import Catalog, Course, Environment, Selector
from ._store import NewEvent, SentEvent, Store
from ._validation import (
    Heartbeat,
    RecordInput,
    RecordRejected,
    Rejection,
    format_instant,
    internal_error,
    resolve_record_course,
    validate_heartbeat,
    validate_record,
    vendor_epoch_ms,
)

Clock = Callable[[], datetime]

UNAUTHORIZED = Rejection(status=401, code="UNAUTHORIZED", message="Unauthorized")
MALFORMED_JSON = Rejection(
    status=400, code="INVALID_PAYLOAD", message="Malformed JSON in request body"
)
#: The vendor's answer for a student its OneRoster lookup does not find.
UNRESOLVED = Rejection(
    status=404, code="USER_RESOLUTION_FAILED", message="Unable to resolve Timeback identity"
)


@attrs.frozen(kw_only=True)
class Answer:
    """An HTTP answer: status and JSON body (None for an empty body)."""

    status: int
    body: dict[str, Any] | None = None

    @classmethod
    def reject(cls, rejection: Rejection) -> Answer:
        """The answer carrying a rejection's error body."""
        return cls(status=rejection.status, body=rejection.to_json())


ACCEPTED = Answer(status=204)
DUPLICATE = Answer(status=200, body={"duplicate": True})


# Cached: every heartbeat of a student needs it, and a uuid5 costs a SHA-1 and a UUID.
@functools.lru_cache(maxsize=65536)
def sourced_id_for(email: str) -> str:
    """The OneRoster ``sourcedId`` the emulator's roster gives an email.

    The vendor looks the student up by email in OneRoster; the emulator's roster knows
    every email, under ``uuid5(NAMESPACE_URL, "mailto:" + email)``.
    """
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailto:{email}"))


def _new_urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


class Backend:
    """Heartbeat handling and ``record()`` over a store and a catalog.

    Args:
        store: Where events go.
        catalog: Known courses.
        app_name: The app name in Caliper contexts (``name`` of the vendor config).
        env: Which synced course ids and OneRoster host to use.
        clock: Current time (aware), for received-at stamps and ``record()`` defaults.
    """

    def __init__(
        self,
        *,
        store: Store,
        catalog: Catalog,
        app_name: str,
        env: Environment,
        clock: Clock,
    ) -> None:
        self._store = store
        self._catalog = catalog
        # The emails OneRoster knows; None: every email (the default). Replaced whole,
        # never mutated, so a request on the server's thread reads one or the other.
        self.roster: frozenset[str] | None = None
        # The operator's redeploy with another config replaces it.
        self.app_name = app_name
        self._env = env
        self._clock = clock

    def heartbeat(self, email: str, body: object) -> Answer:
        """Handle an authenticated heartbeat with a decoded JSON body."""
        checked = validate_heartbeat(body, self._catalog)
        if isinstance(checked, Rejection):
            return Answer.reject(checked)
        try:
            window_start_ms = vendor_epoch_ms(checked.started_at)
        except ValueError as exc:
            return Answer.reject(internal_error(exc))
        # The vendor's key: the run id as sent (case matters) and the start instant.
        key = f"{checked.run_id}:{window_start_ms}"
        if self._store.has_key(key):
            return DUPLICATE
        course_id = checked.course.course_id(self._env)
        if not course_id:
            return Answer.reject(self._not_synced(checked.course))
        if not self.knows(email):
            # The vendor looks the student up in OneRoster after the sync check.
            return Answer.reject(UNRESOLVED)
        try:
            event = self._time_spent(checked, email, course_id)
        except (ValueError, OverflowError) as exc:
            # The vendor answers any failure while building or sending with 502.
            return Answer.reject(internal_error(exc))
        stored = self._store.add(event, dedupe_key=key)
        return ACCEPTED if stored is not None else DUPLICATE

    def knows(self, email: str) -> bool:
        """Whether OneRoster resolves this student (everyone, without a roster)."""
        roster = self.roster
        return roster is None or email in roster

    def _time_spent(self, beat: Heartbeat, email: str, course_id: str) -> NewEvent:
        context = self._context(
            slug=beat.activity_id,
            name=beat.name,
            selector=beat.selector,
            course=beat.course,
            course_id=course_id,
            sensor=beat.sensor,
        )
        caliper = _caliper.time_spent_event(
            new_id=_new_urn,
            actor=_caliper.actor(self._env, sourced_id_for(email), email),
            context=context,
            metrics=_caliper.time_spent_metrics(beat.elapsed_ms, beat.paused_ms),
            event_time=beat.ended_at,
            course_id=course_id,
            run_id=beat.run_id,
        )
        return NewEvent(
            kind="heartbeat",
            run_id=beat.run_id,
            student=email,
            activity_id=beat.activity_id,
            object_id=context["id"],
            started_at=beat.started_at,
            ended_at=beat.ended_at,
            active_ms=beat.elapsed_ms,
            inactive_ms=beat.paused_ms,
            received_at=format_instant(self._clock()),
            caliper=caliper,
        )

    def record(self, input_data: Mapping[str, Any]) -> tuple[SentEvent, ...]:
        """The vendor's ``timeback.activity.record()``: a completion, plus time if given.

        Returns:
            The stored completion event, then the time-spent event when ``time`` was
            given.

        Raises:
            RecordRejected: For input or configuration the vendor would refuse.
        """
        record = validate_record(input_data)
        course, sensor = resolve_record_course(record, self._catalog)
        course_id = course.course_id(self._env)
        if not course_id:
            raise RecordRejected(self._not_synced(course))
        if record.timeback_id is None and not self.knows(record.email):
            raise RecordRejected(UNRESOLVED)
        now = format_instant(self._clock())
        ended_at = record.ended_at or now
        sourced_id = record.timeback_id or sourced_id_for(record.email)
        # Like the vendor, the completion is sent before the time-spent event is even
        # built: a failure building the latter leaves the completion recorded.
        stored: list[SentEvent | None] = []
        try:
            context = self._context(
                slug=record.activity_id,
                name=record.activity_name,
                selector=record.selector,
                course=course,
                course_id=course_id,
                sensor=sensor,
            )
            actor = _caliper.actor(self._env, sourced_id, record.email)
            completion = self._completion(record, actor, context, course_id, ended_at, now)
            stored.append(self._store.add(completion))
            if record.has_time:
                timed = self._record_time(record, actor, context, course_id, ended_at, now)
                stored.append(self._store.add(timed))
        except (ValueError, OverflowError) as exc:
            raise RecordRejected(internal_error(exc)) from exc
        return tuple(event for event in stored if event is not None)

    def _completion(
        self,
        record: RecordInput,
        actor: dict[str, Any],
        context: dict[str, Any],
        course_id: str,
        ended_at: str,
        now: str,
    ) -> NewEvent:
        metrics = [
            {"type": kind, "value": value}
            for kind, value in (
                ("totalQuestions", record.total_questions),
                ("correctQuestions", record.correct_questions),
                ("xpEarned", record.xp_earned),
                ("masteredUnits", record.mastered_units),
            )
            if value is not None
        ]
        pct = record.pct_complete
        caliper = _caliper.activity_completed_event(
            new_id=_new_urn,
            actor=actor,
            context=context,
            metrics=metrics,
            event_time=ended_at,
            attempt=self._attempt(actor["email"], context["id"], ended_at),
            pct_complete=None if pct is None else max(0, min(100, pct)),
            course_id=course_id,
            run_id=record.run_id,
        )
        return NewEvent(
            kind="completion",
            run_id=record.run_id,
            student=record.email,
            activity_id=record.activity_id,
            object_id=context["id"],
            started_at=record.started_at,
            ended_at=ended_at,
            active_ms=None,
            inactive_ms=None,
            received_at=now,
            caliper=caliper,
        )

    def _record_time(
        self,
        record: RecordInput,
        actor: dict[str, Any],
        context: dict[str, Any],
        course_id: str,
        ended_at: str,
        now: str,
    ) -> NewEvent:
        # As in the vendor, `started_at` is validated but unused: the event carries only
        # the end time and the two durations, and nothing dedupes it.
        active_ms = record.active_ms or 0
        inactive_ms = record.inactive_ms or 0
        caliper = _caliper.time_spent_event(
            new_id=_new_urn,
            actor=actor,
            context=context,
            metrics=_caliper.time_spent_metrics(active_ms, inactive_ms),
            event_time=ended_at,
            course_id=course_id,
            run_id=record.run_id,
        )
        return NewEvent(
            kind="time",
            run_id=record.run_id,
            student=record.email,
            activity_id=record.activity_id,
            object_id=context["id"],
            started_at=record.started_at,
            ended_at=ended_at,
            active_ms=active_ms,
            inactive_ms=inactive_ms,
            received_at=now,
            caliper=caliper,
        )

    def _attempt(self, email: str, object_id: str, ended_at: str) -> int:
        """The vendor's attempt numbering, over the completions stored here.

        The same end time as an earlier completion is a retry (same attempt); otherwise
        it is the next attempt of this student on this activity.
        """
        attempts: dict[str, int] = {}
        for completed_at, caliper in self._store.completions(email, object_id):
            attempts[completed_at] = caliper["generated"]["attempt"]
        if ended_at in attempts:
            return attempts[ended_at]
        return max(attempts.values(), default=0) + 1

    def _context(
        self,
        *,
        slug: str,
        name: str,
        selector: Selector,
        course: Course,
        course_id: str,
        sensor: str,
    ) -> dict[str, Any]:
        return _caliper.activity_context(
            slug=slug,
            name=name,
            selector=selector,
            course=course,
            course_id=course_id,
            sensor=sensor,
            app_name=self.app_name,
            env=self._env,
        )

    def _not_synced(self, course: Course) -> Rejection:
        return Rejection(
            status=503,
            code="MISSING_SYNCED_COURSE_ID",
            message=(
                f'Course "{course.identifier}" is missing a course ID for {self._env}. '
                "Run `timeback resources push` first."
            ),
        )
