"""The Jupyter lesson in a real JupyterLab and Notebook 7, in headless Chromium.

In each front end, a student runs the lesson's cells, then types in a cell for longer
than ``idle_timeout`` without running anything, switches to another browser tab for a
while, comes back and runs the last cell. The page drives the time: the backend (the
emulator in the kernel) must count the typing as active and the hidden time as paused,
within 100 ms of the instants the test drove.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("jupyterlab", reason="the browser test needs jupyterlab (dev group)")
pytest.importorskip("anywidget", reason="the badge needs the 'jupyter' extra")
pytest.importorskip("notebook", reason="the browser test needs notebook 7 (dev group)")
pytest.importorskip("selenium", reason="the browser test needs selenium (dev group)")
pytest.importorskip("starlette", reason="the lesson's emulator needs the 'emulator' extra")

from selenium.webdriver import Keys

from .browser import APP_NAME, FRONT_ENDS, chromium, jupyter_server
from .conftest import ROOT

LESSON = ROOT / "examples" / "jupyter_lesson" / "lesson.ipynb"
IDLE_TIMEOUT = 3.0
TOLERANCE_MS = 100
BADGE = ".timeback-badge"
KERNEL_IDLE = (
    "fetch('/api/kernels').then(r => r.json())"
    ".then(ks => ks.length > 0 && ks.every(k => k.execution_state === 'idle'))"
)
BADGE_TEXT = "(document.querySelector('.timeback-badge')?.textContent ?? '')"
ACTIVE_CELL_TEXT = (
    "(document.querySelector('.jp-Cell.jp-mod-active .cm-content')?.textContent ?? '')"
)


def _lesson_copy(workdir: Path) -> None:
    """The lesson with a short idle timeout, and a last cell that leaves the run's record."""
    book = json.loads(LESSON.read_text(encoding="utf-8"))
    first = "".join(book["cells"][1]["source"])
    assert "idle_timeout=300" in first
    book["cells"][1]["source"] = first.replace("idle_timeout=300", f"idle_timeout={IDLE_TIMEOUT}")
    last = book["cells"][-1]
    last["source"] = "".join(last["source"]) + (
        "\nPath('run.json').write_text(json.dumps(run.to_json()))"
    )
    (workdir / "lesson.ipynb").write_text(json.dumps(book), encoding="utf-8")


def _ms(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp() * 1000


@pytest.mark.e2e
@pytest.mark.parametrize("front_end", FRONT_ENDS)
def test_typing_counts_as_active_and_a_hidden_tab_as_paused(
    front_end: str, tmp_path: Path, artifacts: Path
) -> None:
    workdir, scratch = tmp_path / "lesson", tmp_path / "scratch"
    workdir.mkdir()
    scratch.mkdir()
    _lesson_copy(workdir)

    with jupyter_server(front_end, workdir, scratch) as url, chromium(scratch) as page:
        page.on_failure_screenshot = artifacts / f"{front_end}-failure.png"
        page.driver.get(url.format(path="lesson.ipynb"))
        assert page.evaluate(APP_NAME) == FRONT_ENDS[front_end][2]
        page.wait_for(KERNEL_IDLE, timeout=60)
        # Run the cells as a student does: Shift+Enter from the top, to exercise 3.
        page.click(".jp-Notebook .jp-Cell .jp-InputPrompt")
        for _ in range(8):
            page.keys(Keys.ENTER, shift=True)
        page.wait_for(f"{BADGE_TEXT}.includes('Tracking')", timeout=60)
        page.wait_for("document.body.innerText.includes('bigger: right!')", timeout=30)
        last_run = time.time()  # the last cell has run (a moment ago)

        # Type in exercise 3's cell, one key every 150 ms, for longer than idle_timeout.
        page.keys("k", Keys.ENTER)
        typing_until, typed = time.monotonic() + IDLE_TIMEOUT + 1.0, 0
        while time.monotonic() < typing_until:
            page.keys("x")
            typed += 1
            time.sleep(0.15)
        assert "x" * typed in page.evaluate(ACTIVE_CELL_TEXT)  # the keys went into the cell
        assert "Tracking" in page.evaluate(BADGE_TEXT)
        page.screenshot(
            f".jp-Cell:has({BADGE}) .jp-OutputArea", artifacts / f"{front_end}-badge.png"
        )

        # Another tab to the front: the lesson's page is hidden; then back.
        before = time.time()
        page.to_front(page.other_tab)
        hidden_at = (before + time.time()) / 2 * 1000
        assert page.evaluate("document.visibilityState") == "hidden"
        page.wait_for(f"{BADGE_TEXT}.includes('Paused: tab hidden')", timeout=5)
        time.sleep(2.0)
        before = time.time()
        page.to_front(page.tab)
        shown_at = (before + time.time()) / 2 * 1000
        assert page.evaluate("document.visibilityState") == "visible"
        page.wait_for(f"{BADGE_TEXT}.includes('Tracking')", timeout=5)

        # Down to the last cell, and run it: it ends the activity.
        page.keys(Keys.ESCAPE, "j", "j", "j")
        page.keys(Keys.ENTER, shift=True)
        record = workdir / "run.json"
        deadline = time.monotonic() + 30
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert record.exists(), "the lesson's last cell did not run"
        page.wait_for(f"{BADGE_TEXT}.includes('Ended')", timeout=5)

    run: dict[str, Any] = json.loads(record.read_text())
    windows = sorted(run["windows"], key=lambda w: _ms(w["startedAt"]))
    driven = {"hidden_at_ms": hidden_at, "shown_at_ms": shown_at, "last_run_s": last_run}
    (artifacts / f"{front_end}-run.json").write_text(json.dumps({"driven": driven, "run": run}))
    assert hidden_at / 1000 - last_run > IDLE_TIMEOUT  # typed longer than idle_timeout
    paused = [w for w in windows if w["pausedMs"] > 0]
    assert len(paused) == 1, windows  # the hidden tab, and no idle pause while typing
    hidden = paused[0]
    started = _ms(hidden["startedAt"])
    assert abs(started - hidden_at) <= TOLERANCE_MS, (started, hidden_at)
    assert abs(started + hidden["pausedMs"] - shown_at) <= TOLERANCE_MS
    assert abs(run["inactiveMs"] - (shown_at - hidden_at)) <= TOLERANCE_MS
    span = _ms(windows[-1]["endedAt"]) - _ms(windows[0]["startedAt"])
    assert run["activeMs"] == pytest.approx(span - run["inactiveMs"], abs=2)
