"""The backend's courses and the deployment's students, as the simulated students take them.

A ``timeback.config.json`` is read as the vendor's server SDK reads it; a course spec is
``subject:grade`` or ``code:CODE``; a roster is a bearer token or a cookie a line. Bad input
is a `ValidationError` naming the file and the line or field, and the fix; a credential's
value is never in a message or a repr.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from timeback_client import ValidationError
from timeback_client.tools.students import (
    BUILTIN_CATALOGUE,
    BUILTIN_LESSONS,
    Credential,
    Roster,
    courses_from_specs,
    describe_course,
    parse_course,
    parse_credential,
    read_catalogue,
    read_roster,
)


def _config(tmp_path: Path, config: Any) -> Path:
    path = tmp_path / "timeback.config.json"
    path.write_text(config if isinstance(config, str) else json.dumps(config), encoding="utf-8")
    return path


# ── the backend's courses ──


def test_a_config_gives_one_lesson_per_synced_course_selected_as_a_heartbeat_can(
    tmp_path: Path,
) -> None:
    path = _config(
        tmp_path,
        {
            "name": "School",
            "sensor": "https://sensor.example",
            "courses": [
                {"subject": "Math", "grade": 3, "ids": {"staging": "m3"}},
                {
                    "subject": "Science",
                    "grade": 6,
                    "courseCode": "SCI-6",
                    "ids": {"production": "s"},
                },
                {"courseCode": "CS-101", "ids": {"staging": "cs"}},  # subject: "Other"
                {"subject": "Reading", "grade": 4},  # never synced
                {"subject": "FastMath", "grade": 2, "ids": {"staging": "fm"}},  # no code
            ],
        },
    )

    catalogue = read_catalogue(path)

    assert [lesson.course for lesson in catalogue.lessons] == [
        {"subject": "Math", "grade": 3},
        {"code": "SCI-6"},  # a code wins, as it does on the server
        {"code": "CS-101"},
    ]
    assert [lesson.name for lesson in catalogue.lessons] == ["Math grade 3", "SCI-6", "CS-101"]
    assert len({lesson.id for lesson in catalogue.lessons}) == 3
    assert catalogue.source == str(path)
    assert catalogue.left_out == (
        "Reading grade 4: not synced (no ids)",
        "FastMath grade 2: a heartbeat cannot name the subject 'FastMath' (give it a courseCode)",
    )
    # Only the backend's environment counts, when it is known.
    staging = read_catalogue(path, environment="staging")
    assert [lesson.name for lesson in staging.lessons] == ["Math grade 3", "CS-101"]
    assert "SCI-6: not synced (no ids.staging)" in staging.left_out


@pytest.mark.parametrize(
    ("config", "field", "words"),
    [
        ('{"courses": [', "line 1", "is not JSON"),
        ("[]", "timeback.config.json", "not a JSON object"),
        ({"name": "x"}, "timeback.config.json: courses", "missing or empty"),
        ({"courses": {"Math": 3}}, "timeback.config.json: courses", "not a list"),
        ({"courses": ["Math:3"]}, "courses[0]", "not an object"),
        ({"courses": [{"subject": "Math", "grade": 13}]}, "courses[0].grade", "not a grade"),
        ({"courses": [{"subject": "Math", "grade": "3"}]}, "courses[0].grade", "not a grade"),
        ({"courses": [{"subject": "Math", "grade": True}]}, "courses[0].grade", "not a grade"),
        ({"courses": [{"subject": 7, "grade": 3}]}, "courses[0].subject", "not text"),
        ({"courses": [{"courseCode": 101}]}, "courses[0].courseCode", "not text"),
        ({"courses": [{"subject": "Math"}]}, "courses[0]", "neither a grade nor a courseCode"),
        (
            {"courses": [{"subject": "Math", "grade": 3}, {"subject": "Math", "grade": 3}]},
            "courses[1]",
            "repeats Math grade 3",
        ),
        (
            {"courses": [{"courseCode": "A", "grade": 3}, {"courseCode": "A", "grade": 4}]},
            "courses[1]",
            "repeats A",
        ),
        ({"courses": [{"subject": "Math", "grade": 3}]}, "timeback.config.json", "no course"),
    ],
)
def test_a_config_that_is_not_one_is_refused_naming_the_field(
    tmp_path: Path, config: Any, field: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        read_catalogue(_config(tmp_path, config))
    assert field in caught.value.field
    assert words in caught.value.problem
    assert caught.value.fix


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot be read") as caught:
        read_catalogue(tmp_path / "nope.json")
    assert caught.value.field.endswith("nope.json")
    assert "timeback.config.json" in caught.value.fix


@pytest.mark.parametrize(
    ("spec", "course", "name"),
    [
        ("Math:3", {"subject": "Math", "grade": 3}, "Math grade 3"),
        (
            " social studies : 0 ",
            {"subject": "Social Studies", "grade": 0},
            "Social Studies grade 0",
        ),
        ("code:CS-101", {"code": "CS-101"}, "CS-101"),
        ("CODE: AP:CS ", {"code": "AP:CS"}, "AP:CS"),
    ],
)
def test_a_course_spec_is_subject_and_grade_or_a_code(
    spec: str, course: dict[str, Any], name: str
) -> None:
    lesson = parse_course(spec)
    assert lesson.course == course
    assert lesson.name == name


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("Math", "is not a course"),
        ("Maths:3", "names no subject"),
        ("Math:13", "not a grade from 0 to 12"),
        ("Math:three", "not a grade"),
        ("code:", "no code"),
        ("", "is not a course"),
    ],
)
def test_a_bad_course_spec_is_refused_with_the_way_to_write_one(spec: str, words: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_course(spec)
    assert caught.value.field == f"course {spec!r}"
    assert words in caught.value.problem
    assert '"Math:3"' in caught.value.fix


def test_specs_make_a_catalogue_with_each_course_once() -> None:
    catalogue = courses_from_specs(["Math:3", "code:CS-101", "math:3"])
    assert [lesson.name for lesson in catalogue.lessons] == ["Math grade 3", "CS-101"]
    assert catalogue.source == "given"
    with pytest.raises(ValidationError):
        courses_from_specs([])


def test_the_built_in_catalogue_is_the_built_in_lessons() -> None:
    assert BUILTIN_CATALOGUE.lessons == BUILTIN_LESSONS
    assert describe_course({"subject": "Math", "grade": 3}) == "Math grade 3"
    assert describe_course({"code": "CS-101"}) == 'code "CS-101"'


# ── the deployment's students ──


def test_a_roster_is_a_token_or_a_cookie_a_line_used_round_robin(tmp_path: Path) -> None:
    path = tmp_path / "students.txt"
    path.write_text(
        "\ufeff# one student a line\n"
        "tok-ada\n"
        "\n"
        "Bearer tok-bob\n"
        "timeback_session=s3cr3t\n"
        "QWxhZGRpbjpvcGVu==\n",  # base64 padding: a token, not a cookie
        encoding="utf-8",
    )

    roster = read_roster(path)

    assert len(roster) == 4
    assert [c.label for c in roster.credentials] == [f"{path} line {n}" for n in (2, 4, 5, 6)]
    ada, bob, cy, dee = roster.credentials
    assert ada.headers == {"Authorization": "Bearer tok-ada"}
    assert ada.cookies == {}
    assert bob.headers == {"Authorization": "Bearer tok-bob"}
    assert cy.headers == {}
    assert cy.cookies == {"timeback_session": "s3cr3t"}
    assert dee.headers == {"Authorization": "Bearer QWxhZGRpbjpvcGVu=="}
    assert [roster.for_student(i) for i in range(6)] == [ada, bob, cy, dee, ada, bob]
    # The secret is in no repr.
    assert "s3cr3t" not in repr(cy)
    assert "tok-ada" not in repr(roster)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("", None, "holds no credential"),
        ("# nobody\n\n", None, "holds no credential"),
        ("tok-ada\nmy token\n", 2, "holds a space"),
        ("tok-ada\nsession=a;b\n", 2, "';'"),
        ("tok-ada\ntok-bob\ntok-ada\n", 3, "repeats line 1"),
        ("tök\n", 1, "past ASCII"),
    ],
)
def test_a_bad_roster_line_is_named_by_its_number_and_never_shown(
    tmp_path: Path, text: str, line: int | None, words: str
) -> None:
    path = tmp_path / "students.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValidationError) as caught:
        read_roster(path)
    expected = str(path) if line is None else f"{path} line {line}"
    assert caught.value.field == expected
    assert words in caught.value.problem
    for secret in ("my token", "a;b", "tök"):
        assert secret not in str(caught.value)


def test_a_credential_line_parses_alone() -> None:
    cookie = parse_credential("  sid=abc=def  ", label="x")
    assert cookie == Credential.cookie("sid", "abc=def", label="x")
    assert parse_credential("bearer t0k", label="y").headers == {"Authorization": "Bearer t0k"}
    with pytest.raises(ValueError, match="must be >= 1"):
        Roster(credentials=(), source="nowhere")
