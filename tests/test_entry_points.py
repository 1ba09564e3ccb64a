"""Every public entry point, fed anything: it works, or raises a documented error
(`ValidationError`, `LifecycleError`) naming what to fix, and nothing breaks behind it.

Hypothesis draws the values: text of every kind (lone surrogates, controls, emoji),
numbers of every kind (NaN, infinities, bools), and values of the wrong type.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import h11
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from timeback_client import (
    AsyncTimeback,
    Engine,
    LifecycleError,
    Timeback,
    TimeOptions,
    ValidationError,
)
from timeback_client.emulator import Emulator

BASE = "http://127.0.0.1:9/api/timeback"
EXAMPLES = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(max_size=8),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=8), st.integers(), max_size=3),
)
# Header and cookie text: tokens, spaces, line breaks, non-ASCII, lone surrogates.
field_text = st.one_of(
    st.text(max_size=10),
    st.text(alphabet='abAB-_ ;\r\n\t"\\\x00é€', max_size=6),
    st.sampled_from(["Authorization", "Bearer tok", "X-Thing", "\udcff"]),
)
text_like = st.one_of(st.text(), st.text().map(lambda t: t + "\udcff"), anything)
course_like = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "subject": st.one_of(st.sampled_from(["Math", "Reading", "math", ""]), anything),
            "grade": st.one_of(st.integers(-2, 14), anything),
            "code": text_like,
            "extra": anything,
        },
    ),
    anything,
)
seconds = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 10**6), anything
)


class Broken(logging.Handler):
    """Collects every record the SDK logs at ERROR: a defect behind the app's back."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def sent() -> Iterator[tuple[Timeback, list[bytes], Broken]]:
    bodies: list[bytes] = []
    broken = Broken()
    logger = logging.getLogger("timeback_client")
    logger.addHandler(broken)

    def answer(request: httpx.Request) -> httpx.Response:
        bodies.append(request.content)
        return httpx.Response(204)

    with Timeback(BASE, transport=httpx.MockTransport(answer), outbox=None) as timeback:
        yield timeback, bodies, broken
    logger.removeHandler(broken)


@EXAMPLES
@given(
    id=text_like,
    name=text_like,
    course=course_like,
    run_id=st.one_of(st.none(), st.uuids(), st.uuids().map(str), text_like),
    time=st.one_of(st.booleans(), st.just(TimeOptions(heartbeat_interval=0.05)), anything),
    on_flush=st.one_of(st.none(), st.just(lambda ms: None), anything),
)
def test_start_works_or_names_what_to_fix(
    sent: tuple[Timeback, list[bytes], Broken],
    id: Any,  # noqa: A002 - the argument's own name
    name: Any,
    course: Any,
    run_id: Any,
    time: Any,
    on_flush: Any,
) -> None:
    timeback, _, broken = sent
    try:
        activity = timeback.activity.start(
            id=id, name=name, course=course, run_id=run_id, time=time, on_flush=on_flush
        )
    except ValidationError as exc:
        assert exc.field  # names the argument
        assert exc.fix  # and what to do
        return
    activity.pause()
    activity.resume()
    activity.touch()
    activity.end()
    assert activity.is_ended
    assert broken.records == []


def test_after_all_that_the_client_still_delivers(
    sent: tuple[Timeback, list[bytes], Broken],
) -> None:
    timeback, bodies, broken = sent
    before = len(bodies)
    activity = timeback.activity.start(
        id="lesson-1", name="Fractions", course={"subject": "Math", "grade": 3}
    )
    time.sleep(0.05)
    activity.pause()
    activity.end()
    assert len(bodies) > before
    assert broken.records == []


@EXAMPLES
@given(
    heartbeat_interval=seconds,
    idle_timeout=st.one_of(st.none(), seconds),
    abandon_after=seconds,
    flush_timeout=seconds,
)
def test_time_options_are_valid_or_name_the_option(
    heartbeat_interval: Any, idle_timeout: Any, abandon_after: Any, flush_timeout: Any
) -> None:
    try:
        options = TimeOptions(
            heartbeat_interval=heartbeat_interval,
            idle_timeout=idle_timeout,
            abandon_after=abandon_after,
            flush_timeout=flush_timeout,
        )
    except ValidationError as exc:
        assert exc.field.startswith("time.")
        return
    for value in (options.heartbeat_interval, options.abandon_after, options.flush_timeout):
        assert math.isfinite(value)
        assert value >= 0.001


# A plain-http URL to another host works, with a TimebackWarning (tested on its own).
@pytest.mark.filterwarnings("ignore::timeback_client.TimebackWarning")
@EXAMPLES
@given(
    base_url=st.one_of(
        st.sampled_from(
            ["https://app.example/api/timeback", "http://localhost:8/x", "http://app.example/x"]
        ),
        text_like,
    ),
    headers=st.one_of(st.none(), st.dictionaries(field_text, field_text, max_size=3), anything),
    cookies=st.one_of(st.none(), st.dictionaries(field_text, field_text, max_size=3), anything),
    timeout=st.one_of(st.none(), seconds),
    sender_tasks=st.one_of(st.none(), st.integers(-3, 20), anything),
    identity=st.one_of(st.none(), text_like),
)
def test_client_arguments_are_taken_or_name_what_to_fix(
    base_url: Any, headers: Any, cookies: Any, timeout: Any, sender_tasks: Any, identity: Any
) -> None:
    try:
        timeback = AsyncTimeback(
            base_url,
            headers=headers,
            cookies=cookies,
            timeout=timeout,
            sender_tasks=sender_tasks,
            identity=identity,
            outbox=None,
        )
    except ValidationError as exc:
        assert exc.field
        assert exc.fix
        return
    # Taken, so sendable: the request httpx makes with them is one HTTP/1.1 can carry
    # (found here, not by a heartbeat failing in the background).
    request = httpx.Request("POST", timeback.base_url, headers=headers, cookies=cookies)
    h11.Request(method="POST", target="/", headers=request.headers.raw)


@EXAMPLES
@given(sender_tasks=st.one_of(st.none(), st.integers(-3, 20), anything), timeout=seconds)
def test_engine_arguments_are_taken_or_name_what_to_fix(sender_tasks: Any, timeout: Any) -> None:
    try:
        Engine(sender_tasks=sender_tasks, timeout=timeout)
    except ValidationError as exc:
        assert exc.field in ("sender_tasks", "timeout")


def test_a_client_used_before_it_is_open_says_so() -> None:
    timeback = AsyncTimeback(BASE, outbox=None)
    with pytest.raises(LifecycleError, match="not open"):
        timeback.activity.start(id="lesson-1", name="Fractions", course={"code": "CS-101"})


# -- the emulator's HTTP API -----------------------------------------------------------------------


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=12,
)
heartbeat_like = st.fixed_dictionaries(
    {},
    optional={
        "id": json_values,
        "name": json_values,
        "course": st.one_of(json_values, st.just({"subject": "Math", "grade": 3})),
        "runId": st.one_of(json_values, st.uuids().map(str)),
        "startedAt": st.one_of(json_values, st.just("2026-11-25T10:00:00.000Z")),
        "endedAt": st.one_of(json_values, st.just("2026-11-25T10:00:15.000Z")),
        "elapsedMs": st.one_of(json_values, st.integers(-5, 10**6)),
        "pausedMs": st.one_of(json_values, st.integers(-5, 10**6)),
    },
)


@pytest.fixture(scope="module")
def emulator_http() -> Iterator[httpx.Client]:
    with (
        Emulator(students={"tok": "ada@example.edu"}) as emulator,
        emulator.serve_in_thread() as url,
        httpx.Client(
            base_url=url.rsplit("/api/timeback", 1)[0],
            headers={"Authorization": "Bearer tok"},
            timeout=10,
        ) as http,
    ):
        yield http


def _json(body: Any) -> bytes:
    """JSON as Python writes it: NaN and Infinity included, as a careless client sends."""
    return json.dumps(body).encode()


def _answer_is_documented(response: httpx.Response) -> None:
    """2xx, or an error body of the contract's shape: never the server's own crash page."""
    if response.status_code < 300:
        return
    body = response.json()
    assert isinstance(body, dict)
    assert isinstance(body["error"]["code"], str), body


@EXAMPLES
@given(body=st.one_of(heartbeat_like, json_values))
def test_the_emulator_answers_any_heartbeat_body_as_the_contract_says(
    emulator_http: httpx.Client, body: Any
) -> None:
    response = emulator_http.post("/api/timeback/activity/heartbeat", content=_json(body))
    assert response.status_code in (200, 204, 400, 401, 404, 409, 500, 502, 503)
    _answer_is_documented(response)


@EXAMPLES
@given(body=json_values)
def test_the_emulator_answers_any_record_body_with_an_error_it_names(
    emulator_http: httpx.Client, body: Any
) -> None:
    response = emulator_http.post("/_emulator/record", content=_json(body))
    assert response.status_code in (200, 400, 404, 409, 422)
    _answer_is_documented(response)


@EXAMPLES
# "." and ".." are dot-segments, which the client removes from the path before it is
# sent (RFC 3986, 5.2.4): /_emulator/runs/. is the list of runs, not a run named ".".
@given(
    run_id=st.text(min_size=1, max_size=40).filter(
        lambda t: "/" not in t and t.strip() and t not in (".", "..")
    )
)
def test_the_emulator_says_404_for_a_run_it_never_saw(
    emulator_http: httpx.Client, run_id: str
) -> None:
    response = emulator_http.get(f"/_emulator/runs/{urllib.parse.quote(run_id, safe='')}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "UNKNOWN_RUN"
