"""The emulator's inspector page in Debian's headless Chromium, while a real client runs.

The page at ``/_emulator/`` is opened once and never reloaded. A blocking `Timeback`
client, on a clock ten times faster than real time, sends its heartbeats to the emulator
over a loopback socket: each accepted window must be on the page within 2 s. Then the
app's server records a completion, and the app makes the classic mistake of starting a
new attempt on the completed runId: the problem must show, in red, with its rule and fix.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("selenium", reason="the browser test needs selenium (dev group)")
pytest.importorskip("starlette", reason="the inspector needs the 'emulator' extra")

from timeback_client import Timeback
from timeback_client._clock import ScaledClock
from timeback_client.emulator import Emulator

from .browser import chromium

TOKEN, EMAIL = "tok-ada", "ada@example.edu"
MATH_3 = {"subject": "Math", "grade": 3}
SPEED = 10.0  # a 15 s heartbeat every 1.5 s
WITHIN_S = 2.0
RED = "rgb(201, 42, 42)"  # --problem in inspector.css


def run_row(run_id: str) -> str:
    return f"document.querySelector('tr[data-run-id=\"{run_id}\"]')"


@pytest.mark.e2e
def test_heartbeats_appear_live_and_a_reused_run_shows_in_red(
    tmp_path: Path, artifacts: Path
) -> None:
    accepted: list[tuple[float, int]] = []  # (monotonic instant, active ms) per window
    flushed = threading.Condition()

    def on_flush(elapsed_ms: int) -> None:
        with flushed:
            accepted.append((time.monotonic(), elapsed_ms))
            flushed.notify_all()

    clock = ScaledClock(SPEED)

    def lesson_now() -> datetime:
        # The emulator's "now" (a completion's time) in the lesson time the windows carry.
        return datetime.fromtimestamp(clock.wall_ms(clock.read().timeline_ms) / 1000, UTC)

    with (
        Emulator(students={TOKEN: EMAIL}, clock=lesson_now) as emulator,
        emulator.serve_in_thread() as base_url,
        chromium(tmp_path) as page,
        Timeback(
            base_url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            clock=clock,
            outbox=None,
            enabled=True,
        ) as timeback,
    ):
        page.on_failure_screenshot = artifacts / "inspector-failure.png"
        page.driver.get(base_url.removesuffix(emulator.mount) + "/_emulator/")
        page.wait_for(
            "document.getElementById('no-runs') && !document.getElementById('no-runs').hidden"
        )
        page.evaluate("(window.__sameDocument = 'yes')")  # gone if the page ever reloads

        activity = timeback.activity.start(
            id="fractions-1", name="Fractions", course=MATH_3, on_flush=on_flush
        )
        # Three windows: each on the page, totals and all, within 2 s of its acceptance.
        for count in (1, 2, 3):
            with flushed:
                assert flushed.wait_for(lambda n=count: len(accepted) >= n, timeout=30)
                at, _ = accepted[count - 1]
            active_ms = emulator.run(activity.run_id).active_ms
            shown = (
                f"{run_row(activity.run_id)}?.children[6].textContent === '{count}'"
                f" && document.querySelectorAll('#windows li[data-seq]').length === {count}"
            )
            page.wait_for(shown, timeout=10)
            assert time.monotonic() - at < WITHIN_S, f"window {count} took too long to appear"
            assert active_ms > 0
        # A break: the next window carries paused time, drawn as its grey share.
        activity.pause()
        time.sleep(0.8)
        activity.resume()
        with flushed:
            assert flushed.wait_for(lambda: len(accepted) >= 4, timeout=30)
        activity.end()
        run_id = activity.run_id
        assert page.evaluate("window.__sameDocument") == "yes"

        # The app's server records the completion; then the app reuses the runId.
        emulator.record(
            {
                "user": {"email": EMAIL},
                "activity": {"id": "fractions-1", "name": "Fractions", "course": MATH_3},
                "metrics": {"xp_earned": 10, "total_questions": 10, "correct_questions": 9},
                "run_id": run_id,
            }
        )
        page.wait_for(f"{run_row(run_id)}?.children[8].textContent.startsWith('yes')", timeout=10)
        before = len(accepted)
        again = timeback.activity.start(
            id="fractions-1", name="Fractions", course=MATH_3, run_id=run_id, on_flush=on_flush
        )
        with flushed:
            assert flushed.wait_for(lambda: len(accepted) > before, timeout=30)
            at, _ = accepted[before]
        problem = ".problem[data-rule='heartbeat-after-completion']"
        page.wait_for(f'document.querySelector("{problem}")', timeout=10)
        assert time.monotonic() - at < WITHIN_S, "the problem took too long to appear"
        again.end()
        assert page.evaluate(f'getComputedStyle(document.querySelector("{problem}")).color') == RED
        text = page.evaluate(f'document.querySelector("{problem}").innerText')
        assert "heartbeat-after-completion" in text
        assert "Fix: Start a new activity, with a fresh runId" in text
        assert "1 window(s) start after the run was completed" in text
        assert page.evaluate(f"{run_row(run_id)}.classList.contains('has-problem')")
        red_windows = "document.querySelectorAll('#windows li.in-problem').length"
        page.wait_for(f"{red_windows} >= 1", timeout=10)
        assert page.evaluate("document.querySelector('#windows li.marker.completion')") is not None
        assert page.evaluate("window.__sameDocument") == "yes"
        time.sleep(0.6)  # the last poll's redraw is on screen
        # The docs' picture of the page (docs/images/emulator-inspector.png) is this one.
        page.driver.set_window_size(1280, 1280)
        time.sleep(0.3)
        page.driver.save_screenshot(str(artifacts / "emulator-inspector.png"))


def heartbeat(
    run_id: str, start: str, end: str, elapsed_ms: int, paused_ms: int, **changes: Any
) -> dict[str, Any]:
    """A heartbeat body for 2026-11-25 at the given UTC times of day."""
    return {
        "id": "lesson-1",
        "name": "Fractions",
        "course": MATH_3,
        "runId": run_id,
        "startedAt": f"2026-11-25T{start}Z",
        "endedAt": f"2026-11-25T{end}Z",
        "elapsedMs": elapsed_ms,
        "pausedMs": paused_ms,
        **changes,
    }


@pytest.mark.e2e
def test_long_names_short_gaps_and_paused_only_windows_stay_readable(tmp_path: Path) -> None:
    """What a client may send, drawn without breaking the page: an activity id as long as
    a sentence keeps every column of the runs in view, a 40 ms gap reads as 40 ms (not
    "0.0 s"), a paused-only window's minute of pause fits its column, and behind a list
    of many runs the picked run is still in view."""
    long_id = "a-lesson-identifier-as-long-as-a-sentence-" * 4
    named, paused = str(uuid.uuid4()), str(uuid.uuid4())
    with (
        Emulator(students={TOKEN: EMAIL}) as emulator,
        emulator.serve_in_thread() as base_url,
        httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}) as http,
        chromium(tmp_path) as page,
    ):
        sent = [
            heartbeat(named, "10:00:00.000", "10:00:15.000", 15000, 0, id=long_id),
            heartbeat(paused, "10:00:00.000", "10:00:15.000", 15000, 0, course={"code": "CS-101"}),
            heartbeat(paused, "10:00:15.040", "10:01:15.040", 0, 60000, course={"code": "CS-101"}),
        ]
        # Many runs: the list scrolls in its own box, and the picked run stays in view.
        sent += [
            heartbeat(str(uuid.uuid4()), "09:00:00.000", "09:00:15.000", 15000, 0)
            for _ in range(60)
        ]
        for body in sent:
            assert http.post(f"{base_url}/activity/heartbeat", json=body).status_code == 204
        page.driver.get(f"{base_url.removesuffix(emulator.mount)}/_emulator/#run={paused}")
        page.wait_for("document.querySelectorAll('#windows li[data-seq]').length === 2")
        section = "document.getElementById('runs-section')"
        assert page.evaluate(f"{section}.scrollWidth <= {section}.clientWidth")
        assert page.evaluate(f"{run_row(named)}.children[2].title") == long_id
        gap = "document.querySelector('#windows li.marker.gap').textContent"
        assert page.evaluate(gap) == "gap of 40 ms"
        cells = "[...document.querySelectorAll('#windows li[data-seq] > span')]"
        assert page.evaluate(f"{cells}.every((cell) => cell.scrollWidth <= cell.clientWidth)")
        assert "1 min 00 s paused" in page.evaluate(
            "document.querySelector('#windows li[data-seq=\"3\"]').textContent"
        )
        in_view = "document.getElementById('run-facts').getBoundingClientRect().top < innerHeight"
        assert page.evaluate(in_view)
        facts = page.evaluate("document.getElementById('run-facts').innerText")
        assert "course\nCS-101" in facts
