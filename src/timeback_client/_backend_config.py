"""The backend's ``timeback.config.json``, read as the vendor's server SDK reads it.

One reader for every tool that takes the backend's config: ``simulate --courses`` makes
its students' lessons of it (`students.read_catalogue`), and the emulator answers
heartbeats with it (``timeback-client emulator --config``, ``Emulator(config=...)``).
It keeps the vendor's defaults (``subject`` "Other", ``name`` "Timeback App") and refuses,
at the door, what the vendor's server would refuse to boot with (a course with neither a
grade nor a ``courseCode``, a repeated course), naming the file and the field.

What a course means in one environment (its synced id, its Caliper sensor) follows the
vendor's ``create_server``: ``overrides[env]`` first, then the course, then the config's
top level, and last a sensor derived from the origin of a ``launchUrl``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal
from urllib.parse import urlparse

import attrs

from ._errors import ValidationError

Environment = Literal["staging", "production"]

#: What the vendor calls an app whose config names none.
DEFAULT_NAME: Final = "Timeback App"

_CONFIG_FIX: Final = "Pass the timeback.config.json that the backend's server SDK reads."
_COURSE_FIX: Final = (
    'Write each course as {"subject": "Math", "grade": 3} or {"courseCode": "CS-101"}.'
)


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


@attrs.frozen(kw_only=True)
class ConfiguredCourse:
    """One entry of ``courses``, as written (the vendor's defaults applied).

    Attributes:
        field: where it is, for messages: ``"timeback.config.json: courses[2]"``.
        subject: ``subject`` ("Other" when left out, as the vendor does).
        grade: ``grade``, 0..12, or None for a grade-less course.
        code: ``courseCode``, or None.
        ids: ``ids`` as written: environment -> synced course id.
        sensor: the course's own ``sensor``.
        launch_url: the course's own ``launchUrl``.
        overrides: ``overrides`` as written: environment -> what changes there.
    """

    field: str
    subject: str
    grade: int | None
    code: str | None
    ids: Mapping[str, Any] = attrs.field(converter=_frozen_mapping, factory=dict)
    sensor: str | None = None
    launch_url: str | None = None
    overrides: Mapping[str, Any] = attrs.field(converter=_frozen_mapping, factory=dict)

    @property
    def name(self) -> str:
        """The course as the backend names it: its code, else ``"Math grade 3"``."""
        return self.code if self.code else f"{self.subject} grade {self.grade}"

    def course_id(self, environment: Environment) -> str | None:
        """The synced course id in ``environment``; None when never synced there."""
        synced = self.ids.get(environment)
        return synced if isinstance(synced, str) and synced else None

    def synced_anywhere(self) -> bool:
        """Whether the course has a synced id in some environment."""
        return any(isinstance(value, str) and value for value in self.ids.values())

    def _override(self, environment: Environment) -> Mapping[str, Any]:
        found = self.overrides.get(environment)
        return found if isinstance(found, dict) else {}


@attrs.frozen(kw_only=True)
class BackendConfig:
    """A backend's ``timeback.config.json``.

    Attributes:
        source: where it came from (a file's path, or ``"config"``): safe to show.
        name: the app's ``name`` (the vendor's default when left out).
        sensor: the top-level ``sensor``.
        launch_url: the top-level ``launchUrl``.
        courses: every configured course, in order (at least one).
    """

    source: str
    name: str = DEFAULT_NAME
    sensor: str | None = None
    launch_url: str | None = None
    courses: tuple[ConfiguredCourse, ...]

    def sensor_of(self, course: ConfiguredCourse, environment: Environment) -> str | None:
        """The course's own Caliper sensor in ``environment``, as the vendor resolves it:
        ``overrides[env].sensor``, the course's ``sensor``, and, with no top-level
        ``sensor``, the origin of the effective ``launchUrl``. None: the top-level one."""
        override = course._override(environment)
        own = _text(override.get("sensor")) or course.sensor
        if own or self.sensor:
            return own
        launch_url = (
            _text(override.get("launchUrl"))
            or _text(override.get("launch_url"))
            or course.launch_url
            or self.launch_url
        )
        return _origin(launch_url) if launch_url else None


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _origin(url: str) -> str | None:
    parsed = urlparse(url)
    if not parsed.scheme or not parsed.netloc:
        return None
    return f"{parsed.scheme}://{parsed.netloc}"


def read_backend_config(path: str | os.PathLike[str]) -> BackendConfig:
    """Read the backend's ``timeback.config.json``.

    Raises:
        ValidationError: the file cannot be read, is not JSON, or is not such a config
            (the field named, e.g. ``courses[2].grade``).
    """
    where = os.fspath(path)
    return parse_backend_config(_read_json(where), source=where)


def parse_backend_config(raw: object, *, source: str = "config") -> BackendConfig:
    """A ``timeback.config.json`` already decoded (a dict), checked as `read_backend_config`
    checks a file; ``source`` names it in messages.

    Raises:
        ValidationError: it is not such a config (the field named).
    """
    if not isinstance(raw, dict):
        raise ValidationError(
            source, "is not a JSON object", 'A timeback.config.json is {"courses": [...], ...}.'
        )
    courses = raw.get("courses")
    if not isinstance(courses, list) or not courses:
        raise ValidationError(
            f"{source}: courses",
            "is missing or empty" if not courses else "is not a list",
            'List the backend\'s courses: "courses": [{"subject": "Math", "grade": 3, '
            '"ids": {"staging": "..."}}]. ' + _CONFIG_FIX,
        )
    seen: set[tuple[object, ...]] = set()
    configured = tuple(
        _course(f"{source}: courses[{index}]", entry, seen) for index, entry in enumerate(courses)
    )
    name = raw.get("name", DEFAULT_NAME)
    return BackendConfig(
        source=source,
        name=_optional_text(f"{source}: name", name) or DEFAULT_NAME,
        sensor=_optional_text(f"{source}: sensor", raw.get("sensor")),
        launch_url=_optional_text(f"{source}: launchUrl", raw.get("launchUrl")),
        courses=configured,
    )


def _optional_text(field: str, value: object) -> str | None:
    if value is None or isinstance(value, str):
        return value or None
    raise ValidationError(field, f"{value!r} is not text", "Write it as a JSON string.")


def _course(field: str, raw: object, seen: set[tuple[object, ...]]) -> ConfiguredCourse:
    if not isinstance(raw, dict):
        raise ValidationError(field, f"is a {type(raw).__name__}, not an object", _COURSE_FIX)
    # The vendor's defaults and its start-up checks (`_load_config`, `_validate_config`).
    subject = raw.get("subject", "Other")
    if not isinstance(subject, str):
        raise ValidationError(f"{field}.subject", f"{subject!r} is not text", 'Write e.g. "Math".')
    grade = _grade(f"{field}.grade", raw.get("grade"))
    code = raw.get("courseCode")
    if code is not None and not isinstance(code, str):
        raise ValidationError(
            f"{field}.courseCode", f"{code!r} is not text", 'Write the code as text, e.g. "CS-101".'
        )
    if grade is None and not code:
        raise ValidationError(
            field,
            "has neither a grade nor a courseCode",
            "Give it one; the backend's server SDK refuses such a course too.",
        )
    selectors: dict[tuple[object, ...], str] = {}
    if grade is not None:
        selectors[("grade", subject, grade)] = f"{subject} grade {grade}"
    if code:
        selectors[("code", code)] = code
    for selector, described in selectors.items():
        if selector in seen:
            raise ValidationError(
                field,
                f"repeats {described}",
                "List each course once; the backend's server SDK refuses repeats too.",
            )
        seen.add(selector)
    ids = _ids(f"{field}.ids", raw.get("ids"))
    overrides = raw.get("overrides")
    return ConfiguredCourse(
        field=field,
        subject=subject,
        grade=grade,
        code=code or None,
        ids=ids,
        sensor=_optional_text(f"{field}.sensor", raw.get("sensor")),
        launch_url=_optional_text(f"{field}.launchUrl", raw.get("launchUrl")),
        overrides=overrides if isinstance(overrides, dict) else {},
    )


def _ids(field: str, ids: object) -> dict[str, Any]:
    """``ids`` as written, refused when the vendor's server could not read it: it looks
    each environment's id up in an object, and sends it on as text."""
    if ids is None:
        return {}
    fix = 'Write the synced course ids by environment, e.g. "ids": {"staging": "course-123"}.'
    if not isinstance(ids, dict):
        raise ValidationError(field, f"is a {type(ids).__name__}, not an object", fix)
    for environment, course_id in ids.items():
        if course_id is not None and not isinstance(course_id, str):
            raise ValidationError(f"{field}.{environment}", f"{course_id!r} is not text", fix)
    return ids


def _grade(field: str, grade: object) -> int | None:
    if grade is None:
        return None
    if isinstance(grade, bool) or not isinstance(grade, int) or not 0 <= grade <= 12:
        raise ValidationError(
            field, f"{grade!r} is not a grade", "Write a whole number from 0 (kindergarten) to 12."
        )
    return grade


def read_text(where: str, fix: str) -> str:
    """A file's text, or a `ValidationError` naming it, with ``fix``."""
    try:
        # utf-8-sig: a byte order mark from a Windows editor is not part of the text.
        return Path(where).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValidationError(where, f"cannot be read ({exc.strerror or exc})", fix) from None
    except UnicodeDecodeError:
        raise ValidationError(where, "is not UTF-8 text", fix) from None


def _read_json(where: str) -> object:
    text = read_text(where, _CONFIG_FIX)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"{where} line {exc.lineno}",
            f"is not JSON ({exc.msg}, column {exc.colno})",
            "Fix the JSON; the backend's server SDK cannot read it either.",
        ) from None
