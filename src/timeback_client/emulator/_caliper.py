"""Caliper events as the vendor builds them, as JSON-ready dicts.

Mirrors ``timeback-sdk`` 0.4.0 ``handlers/activity/caliper.py`` and the
``timeback_caliper`` factories, serialized the way its client sends them
(``model_dump(mode="json", by_alias=True, exclude_none=True)``): same keys, same key
order, same URL building. Only ``id`` and ``generated.id`` differ (fresh UUIDs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlparse, urlunparse

from ._catalog import Course, Environment, Selector, SubjectGrade

CALIPER_CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
ONEROSTER_BASE_URLS: dict[Environment, str] = {
    "staging": "https://api.staging.alpha-1edtech.ai",
    "production": "https://api.alpha-1edtech.ai",
}
ROSTERING_PATH = "/ims/oneroster/rostering/v1p2"

NewId = Callable[[], str]
Json = dict[str, Any]


class InvalidSensorUrlError(ValueError):
    """The sensor is not an absolute URL (the vendor's InvalidSensorUrlError text)."""

    def __init__(self, sensor: str) -> None:
        super().__init__(
            f'Invalid sensor URL "{sensor}". Sensor must be a valid absolute URL '
            '(e.g., "https://sensor.example.com") to support slug-based activity IDs.'
        )


def _join_url(base_url: str, path: str) -> str:
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def user_url(env: Environment, sourced_id: str) -> str:
    """The OneRoster user URL the vendor uses as the Caliper actor id."""
    return _join_url(ONEROSTER_BASE_URLS[env], f"{ROSTERING_PATH}/users/{sourced_id}")


def course_url(env: Environment, course_id: str) -> str:
    """The OneRoster course URL of a synced course."""
    return _join_url(ONEROSTER_BASE_URLS[env], f"{ROSTERING_PATH}/courses/{course_id}")


def canonical_activity_url(sensor: str, selector: Selector, slug: str) -> str:
    """``{sensor}/activities/{subject}/g{grade}/{slug}`` or ``{sensor}/activities/{code}/{slug}``.

    Raises:
        InvalidSensorUrlError: When the sensor has no scheme or host.
    """
    parsed = urlparse(sensor)
    if not parsed.scheme or not parsed.netloc:
        raise InvalidSensorUrlError(sensor)
    if isinstance(selector, SubjectGrade):
        segment = f"{selector.subject}/g{selector.grade}"
    else:
        segment = selector.code
    path = f"{parsed.path.rstrip('/')}/activities/{segment}/{quote(slug, safe='')}"
    return urlunparse(
        (parsed.scheme, parsed.netloc, path, parsed.params, parsed.query, parsed.fragment)
    )


def actor(env: Environment, sourced_id: str, email: str) -> Json:
    """The ``TimebackUser`` actor."""
    return {"id": user_url(env, sourced_id), "type": "TimebackUser", "email": email}


def activity_context(
    *,
    slug: str,
    name: str,
    selector: Selector,
    course: Course,
    course_id: str,
    sensor: str,
    app_name: str,
    env: Environment,
) -> Json:
    """The ``TimebackActivityContext`` object of both event kinds.

    Raises:
        InvalidSensorUrlError: When the sensor has no scheme or host.
    """
    return {
        "id": canonical_activity_url(sensor, selector, slug),
        "type": "TimebackActivityContext",
        "subject": course.subject,
        "app": {"name": app_name},
        "course": {"id": course_url(env, course_id), "name": course.name},
        "activity": {"name": name},
        # The vendor's `process` defaults to True and neither path here overrides it.
        "process": True,
    }


def time_spent_metrics(elapsed_ms: int, paused_ms: int) -> list[Json]:
    """``active`` seconds always; ``inactive`` seconds only when positive.

    Raises:
        OverflowError: For integers too large for a float, as in the vendor (-> 502).
    """
    items: list[Json] = [{"type": "active", "value": max(0, elapsed_ms) / 1000}]
    if paused_ms > 0:
        items.append({"type": "inactive", "value": max(0, paused_ms) / 1000})
    return items


def _session_and_extensions(event: Json, run_id: str | None, course_id: str) -> Json:
    if run_id is not None:
        event["session"] = f"urn:uuid:{run_id}"
    event["extensions"] = {"courseId": course_id}
    return event


def time_spent_event(
    *,
    new_id: NewId,
    actor: Json,
    context: Json,
    metrics: list[Json],
    event_time: str,
    course_id: str,
    run_id: str | None,
) -> Json:
    """A ``TimeSpentEvent`` (``action: SpentTime``)."""
    event: Json = {
        "@context": CALIPER_CONTEXT,
        "id": new_id(),
        "type": "TimeSpentEvent",
        "action": "SpentTime",
        "actor": actor,
        "object": context,
        "eventTime": event_time,
        "profile": "TimebackProfile",
        "generated": {
            "id": new_id(),
            "type": "TimebackTimeSpentMetricsCollection",
            "items": metrics,
        },
    }
    return _session_and_extensions(event, run_id, course_id)


def activity_completed_event(
    *,
    new_id: NewId,
    actor: Json,
    context: Json,
    metrics: list[Json],
    event_time: str,
    attempt: int,
    pct_complete: int | float | None,
    course_id: str,
    run_id: str | None,
) -> Json:
    """An ``ActivityEvent`` (``action: Completed``) with its metrics collection."""
    event_id = new_id()
    generated: Json = {
        "id": new_id(),
        "type": "TimebackActivityMetricsCollection",
        "items": metrics,
        "attempt": attempt,
    }
    if pct_complete is not None:
        generated["extensions"] = {"pctCompleteApp": pct_complete}
    event: Json = {
        "@context": CALIPER_CONTEXT,
        "id": event_id,
        "type": "ActivityEvent",
        "action": "Completed",
        "actor": actor,
        "object": context,
        "eventTime": event_time,
        "profile": "TimebackProfile",
        "generated": generated,
    }
    return _session_and_extensions(event, run_id, course_id)
