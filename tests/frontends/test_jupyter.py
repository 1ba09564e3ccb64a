"""The Jupyter badge's kernel side: what the page's messages do to a real activity.

The messages go in where a kernel delivers them (the widget's custom-message dispatch),
in an asyncio loop, as a Jupyter kernel's is (so these tests run on asyncio only); the
browser's side is tested in a real JupyterLab by test_jupyter_browser.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

pytest.importorskip("anywidget", reason="the badge needs the 'jupyter' extra")

from timeback_client import AsyncTimeback, Timeback, TimeOptions, ValidationError
from timeback_client.integrations import jupyter as timeback_jupyter

from .conftest import Recorder

URL = "http://backend.localhost/api/timeback"
COURSE = {"subject": "Math", "grade": 5}
OPTIONS = TimeOptions(heartbeat_interval=30, idle_timeout=None, flush_timeout=2)


def page_says(tracker: timeback_jupyter.JupyterTracker, **message: Any) -> None:
    """A custom message from the badge's view, delivered as the kernel delivers it."""
    tracker.widget._handle_custom_msg(message, [])


async def until(condition: Callable[[], bool], within: float = 3.0) -> None:
    async with asyncio.timeout(within):
        # The state polled belongs to the SDK's thread and the tracker: no event to wait on.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def test_the_page_hidden_pauses_and_shown_resumes_a_blocking_activity(
    recorder: Recorder,
) -> None:
    async def lesson() -> None:
        with Timeback(URL, transport=recorder.transport) as timeback:
            activity = timeback.activity.start(
                id="py-fractions", name="Fractions", course=COURSE, time=OPTIONS
            )
            tracker = timeback_jupyter.track(activity, show=False, poll_interval=0.05)
            assert tracker.widget.label == "Fractions"
            assert tracker.widget.state == "tracking"

            await asyncio.sleep(0.1)
            page_says(tracker, event="visibility", view="tab-1", visible=False)
            assert activity.is_paused  # at once, on the kernel's thread
            assert tracker.widget.state == "hidden"
            await asyncio.sleep(0.1)
            page_says(tracker, event="visibility", view="tab-1", visible=True)
            assert not activity.is_paused
            assert tracker.widget.state == "tracking"

            activity.end()
            await until(lambda: not tracker.active)
            assert tracker.widget.state == "ended"
            # The page may still speak once the lesson is over: nothing happens.
            page_says(tracker, event="visibility", view="tab-1", visible=False)
            page_says(tracker, event="input", view="tab-1")

    asyncio.run(lesson())
    windows = recorder.windows
    assert [w["pausedMs"] >= 90 for w in windows] == [False, True], windows
    assert windows[0]["elapsedMs"] >= 90


def test_input_from_the_page_ends_an_idle_pause_of_an_async_activity(
    recorder: Recorder,
) -> None:
    async def lesson() -> None:
        async with AsyncTimeback(URL, transport=recorder.transport) as timeback:
            options = TimeOptions(heartbeat_interval=30, idle_timeout=0.2, flush_timeout=2)
            activity = timeback.activity.start(
                id="py-fractions", name="Fractions", course=COURSE, time=options
            )
            tracker = timeback_jupyter.track(activity, show=False, poll_interval=0.05)
            await until(lambda: activity.is_idle)
            await until(lambda: tracker.widget.state == "idle")  # the poll saw it

            page_says(tracker, event="input", view="tab-1")
            assert not activity.is_paused
            await until(lambda: tracker.widget.state == "tracking")

            # Hidden while idle: paused for the tab now, and the student's return resumes.
            await until(lambda: activity.is_idle)
            page_says(tracker, event="visibility", view="tab-1", visible=False)
            assert tracker.widget.state == "hidden"
            page_says(tracker, event="visibility", view="tab-1", visible=True)
            assert not activity.is_paused
            await activity.end()
            await until(lambda: not tracker.active)

    asyncio.run(lesson())


def test_tracking_again_keeps_one_badge_and_a_pause_of_the_app_stays(
    recorder: Recorder,
) -> None:
    async def lesson() -> None:
        async with AsyncTimeback(URL, transport=recorder.transport) as timeback:
            activity = timeback.activity.start(
                id="py-fractions", name="Fractions", course=COURSE, time=OPTIONS
            )
            first = timeback_jupyter.track(activity, show=False)
            again = timeback_jupyter.track(activity, show=False, touch_interval=1.0)
            assert again is first  # a re-run cell: the same badge, with the new settings
            assert first.touch_interval == 1.0
            generation = first.widget.generation
            first.show()  # shown again (outside a kernel, display prints its repr)
            assert first.widget.generation == generation + 1  # the older view steps aside

            activity.pause()  # the app's own pause
            page_says(first, event="visibility", view="tab-1", visible=False)
            page_says(first, event="visibility", view="tab-1", visible=True)
            assert activity.is_paused
            assert first.widget.state == "paused"

            # Two tabs: shown while any is; a closed view no longer counts.
            activity.resume()
            page_says(first, event="visibility", view="tab-1", visible=True)
            page_says(first, event="visibility", view="tab-2", visible=False)
            assert not activity.is_paused
            page_says(first, event="closed", view="tab-1")
            assert activity.is_paused
            page_says(first, event="closed", view="tab-2")  # no page left: idle_timeout decides
            assert not activity.is_paused

            first.stop()
            assert first.widget.state == "stopped"  # the page stops listening
            page_says(first, event="visibility", view="tab-1", visible=False)
            assert not activity.is_paused
            assert timeback_jupyter.track(activity, show=False) is not first
            await activity.end()

    asyncio.run(lesson())


def test_a_delivery_problem_shows_on_the_badge_until_a_window_is_delivered() -> None:
    failing = True

    def backend(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400 if failing else 204, json={"error": "bad window"})

    async def lesson() -> None:
        nonlocal failing
        async with AsyncTimeback(URL, transport=httpx.MockTransport(backend)) as timeback:
            activity = timeback.activity.start(
                id="py-fractions",
                name="Fractions",
                course=COURSE,
                time=OPTIONS,
                on_error=lambda error, context: None,
            )
            tracker = timeback_jupyter.track(activity, show=False, poll_interval=0.05)
            await asyncio.sleep(0.05)
            activity.pause()  # the time so far goes now, and is refused
            await until(lambda: tracker.widget.problem != "")
            assert activity.delivery_problem is not None
            assert str(activity.delivery_problem)[:40] in tracker.widget.problem

            failing = False
            activity.resume()
            await asyncio.sleep(0.05)
            activity.pause()
            await until(lambda: tracker.widget.problem == "")
            assert activity.delivery_problem is None
            await activity.end()

    asyncio.run(lesson())


def test_track_outside_a_kernels_loop_says_where_to_call_it(recorder: Recorder) -> None:
    with Timeback(URL, transport=recorder.transport) as timeback:
        activity = timeback.activity.start(
            id="py-fractions", name="Fractions", course=COURSE, time=OPTIONS
        )
        with pytest.raises(RuntimeError, match="notebook cell"):
            timeback_jupyter.track(activity)
        activity.end()


def test_a_held_refusal_shows_the_cause_in_a_students_words_not_the_operators_fix() -> None:
    def backend(request: httpx.Request) -> httpx.Response:
        message = (
            'Course "Math grade 3" is missing a course ID for staging. Run '
            "`timeback resources push` first."
        )
        body = {"error": {"code": "MISSING_SYNCED_COURSE_ID", "message": message}}
        return httpx.Response(503, json=body)

    async def lesson() -> None:
        async with AsyncTimeback(URL, transport=httpx.MockTransport(backend)) as timeback:
            activity = timeback.activity.start(
                id="py-fractions",
                name="Fractions",
                course=COURSE,
                time=OPTIONS,
                on_error=lambda error, context: None,
            )
            tracker = timeback_jupyter.track(activity, show=False, poll_interval=0.05)
            await asyncio.sleep(0.05)
            activity.pause()  # the time so far goes now, and is held
            await until(lambda: tracker.widget.problem != "")
            assert tracker.widget.problem == "course not synced; kept until the backend is fixed"
            assert "resources push" in str(activity.delivery_problem)  # on_error's, whole
            await activity.end()

    asyncio.run(lesson())


@pytest.mark.parametrize("wrong", ["run-id", None, object()])
def test_track_of_something_else_than_an_activity_names_the_argument(wrong: object) -> None:
    async def cell() -> None:
        with pytest.raises(ValidationError, match=r"activity: is a .*not an activity"):
            timeback_jupyter.track(wrong, show=False)  # type: ignore[arg-type]

    asyncio.run(cell())


def test_a_poll_interval_that_is_not_positive_is_refused(recorder: Recorder) -> None:
    async def cell() -> None:
        async with AsyncTimeback(URL, transport=recorder.transport) as timeback:
            activity = timeback.activity.start(
                id="py-fractions", name="Fractions", course=COURSE, time=OPTIONS
            )
            with pytest.raises(ValidationError, match="poll_interval"):
                timeback_jupyter.track(activity, show=False, poll_interval=0)
            await activity.end()

    asyncio.run(cell())
