"""The backend's own ``timeback.config.json``: the emulator answers as the vendor does with it.

The same config, through ``Emulator(config=...)`` (a path or a dict), through
``PUT /_emulator/courses`` and through the pytest plugin. What the vendor's own server
answers with such a config is checked in ``parity/test_config_differential.py``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from emulator_bodies import STUDENTS, new_run, window

from timeback_client import ValidationError
from timeback_client.emulator import Course, Emulator

pytestmark = pytest.mark.anyio

HEARTBEAT = "/activity/heartbeat"
MATH_3 = {"subject": "Math", "grade": 3}
CS_101 = {"code": "CS-101"}
SCIENCE_7 = {"subject": "Science", "grade": 7}
MATH_4 = {"subject": "Math", "grade": 4}

#: A backend's config as its server SDK reads it: two synced courses (one by grade, one by
#: code), one never synced, one synced for staging only.
CONFIG: dict[str, Any] = {
    "name": "Fractions App",
    "sensor": "https://sensor.fractions.example",
    "courses": [
        {"subject": "Math", "grade": 3, "ids": {"staging": "m3-s", "production": "m3-p"}},
        {"courseCode": "CS-101", "ids": {"staging": "cs-s", "production": "cs-p"}},
        {"subject": "Science", "grade": 7},
        {"subject": "Reading", "grade": 5, "ids": {"staging": "r5-s"}},
    ],
}


@pytest.fixture
async def operator(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=emulator.transport(), base_url="http://emulator"
    ) as client:
        yield client


async def post(emulator: Emulator, course: dict[str, Any]) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=emulator.transport(),
        base_url="http://emulator" + emulator.mount,
        headers={"Authorization": "Bearer tok-ada"},
    ) as client:
        return await client.post(HEARTBEAT, json=window(new_run(), course=course))


def code(response: httpx.Response) -> str | None:
    if not response.content:
        return None
    error = response.json().get("error")
    return error["code"] if error else None


async def test_a_config_dict_is_answered_as_the_vendor_answers_it() -> None:
    with Emulator(students=STUDENTS, config=CONFIG) as emulator:
        assert (await post(emulator, MATH_3)).status_code == 204
        assert (await post(emulator, CS_101)).status_code == 204
        never = await post(emulator, SCIENCE_7)
        assert (never.status_code, code(never)) == (503, "MISSING_SYNCED_COURSE_ID")
        assert never.json()["error"]["message"] == (
            'Course "Science grade 7" is missing a course ID for staging. '
            "Run `timeback resources push` first."
        )
        unknown = await post(emulator, MATH_4)
        assert (unknown.status_code, code(unknown)) == (400, "UNKNOWN_COURSE")
        # The config's name, sensor and synced id reach the Caliper event.
        first = emulator.events()[0].caliper
        assert first["object"]["app"]["name"] == "Fractions App"
        assert first["object"]["id"].startswith("https://sensor.fractions.example/")
        assert first["object"]["course"]["id"].endswith("/courses/m3-s")


async def test_the_environment_picks_the_course_ids(tmp_path: Path) -> None:
    path = tmp_path / "timeback.config.json"
    path.write_text(json.dumps(CONFIG), encoding="utf-8")
    with Emulator(students=STUDENTS, config=path, env="production") as emulator:
        staging_only = await post(emulator, {"subject": "Reading", "grade": 5})
        assert staging_only.status_code == 503
        assert "missing a course ID for production" in staging_only.json()["error"]["message"]
        assert (await post(emulator, MATH_3)).status_code == 204
        assert emulator.events()[0].caliper["object"]["course"]["id"].endswith("/courses/m3-p")


async def test_a_sensor_comes_from_a_launch_url_when_none_is_set() -> None:
    config = {
        "launchUrl": "https://app.example/launch?x=1",
        "courses": [{"subject": "Math", "grade": 3, "ids": {"staging": "m3"}}],
    }
    with Emulator(students=STUDENTS, config=config) as emulator:
        assert (await post(emulator, MATH_3)).status_code == 204
        caliper = emulator.events()[0].caliper
        assert caliper["object"]["id"].startswith("https://app.example/")
        assert caliper["object"]["app"]["name"] == "Timeback App"  # the vendor's default


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"courses": [{"subject": "Math", "grade": 13}]}, "config: courses[0].grade"),
        ({"courses": [{"subject": "Math"}]}, "config: courses[0]"),
        ({"courses": [MATH_3 | {"ids": {}}, MATH_3]}, "repeats Math grade 3"),
        ({"courses": [{"subject": "Art", "courseCode": "A"}]}, "courses[0].subject"),
        ({"courses": [MATH_3]}, "no effective sensor"),
        ({"courses": []}, "config: courses"),
        ({"courses": [MATH_3 | {"ids": "m3"}]}, "courses[0].ids: is a str, not an object"),
        ({"courses": [MATH_3 | {"ids": {"staging": 3}}]}, "courses[0].ids.staging: 3 is not text"),
        ([MATH_3], "config=: a list is neither a path nor the config's JSON"),
        (5, "config=: a int is neither"),
    ],
)
def test_a_config_the_vendor_would_not_start_with_is_refused_naming_the_field(
    config: Any, named: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Emulator(config=config)
    assert named in str(caught.value)


def test_courses_and_a_config_together_are_refused() -> None:
    with pytest.raises(TypeError, match="not both"):
        Emulator(config=CONFIG, courses=[Course(subject="Math", grade=3)])


async def test_put_courses_takes_the_config_file_s_shape(
    emulator: Emulator, operator: httpx.AsyncClient
) -> None:
    put = await operator.put("/_emulator/courses", json=CONFIG)
    assert put.status_code == 200, put.text
    listed = {c["code"] or f"{c['subject']} {c['grade']}": c for c in put.json()["courses"]}
    assert listed["Math 3"]["stagingId"] == "m3-s"
    assert listed["CS-101"]["productionId"] == "cs-p"
    assert (await post(emulator, CS_101)).status_code == 204
    assert (await post(emulator, SCIENCE_7)).status_code == 503
    assert (await post(emulator, MATH_4)).status_code == 400
    assert emulator.events()[0].caliper["object"]["app"]["name"] == "Fractions App"
    # The emulator's own shape still works, and a bad config is one 400 naming the field.
    own = await operator.put("/_emulator/courses", json={"courses": [MATH_3]})
    assert own.status_code == 200
    bad = await operator.put("/_emulator/courses", json={"name": "x", "courses": [{}]})
    assert bad.status_code == 400
    assert "courses[0]" in bad.json()["error"]["message"]


PLUGIN_TEST = """
import pytest

MATH_3 = {"subject": "Math", "grade": 3}


def test_from_the_ini_option(timeback, timeback_emulator, advance):
    assert len(timeback_emulator.courses) == 4
    activity = timeback.activity.start(id="l", name="L", course=MATH_3)
    advance(30)
    activity.end()
    run = timeback_emulator.run(activity.run_id)
    assert run.active_ms == 30_000
    assert run.events[0].caliper["object"]["app"]["name"] == "Fractions App"


@pytest.mark.parametrize("timeback_emulator", [{CONFIG}], indirect=True)
def test_from_the_fixture_parameter(timeback, timeback_emulator, advance):
    assert [c.code for c in timeback_emulator.courses] == ["ONLY"]


@pytest.mark.parametrize("timeback_emulator", ["backend/only.json"], indirect=True)
def test_from_a_path_relative_to_the_ini_file(timeback_emulator):
    assert [c.code for c in timeback_emulator.courses] == ["ONLY"]
"""


def test_the_pytest_plugin_takes_the_config_from_an_ini_option_or_a_parameter(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both paths are relative to the ini file: run from another directory, the suite
    still finds them."""
    (pytester.path / "timeback.config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    pytester.makeini("[pytest]\ntimeback_config = timeback.config.json\n")
    only = {"sensor": "https://s.example", "courses": [{"courseCode": "ONLY"}]}
    (pytester.mkdir("backend") / "only.json").write_text(json.dumps(only), encoding="utf-8")
    pytester.makepyfile(test_app=textwrap.dedent(PLUGIN_TEST).replace("{CONFIG}", repr(only)))
    monkeypatch.chdir(pytester.mkdir("elsewhere"))
    result = pytester.runpytest_inprocess("-p", "no:randomly", str(pytester.path))
    result.assert_outcomes(passed=3)
