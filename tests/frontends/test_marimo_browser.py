"""The marimo lesson in a real ``marimo run`` server, in Debian's headless Chromium.

marimo runs the Jupyter integration's badge (an anywidget widget) itself. A student
opens the lesson, types an answer for longer than ``idle_timeout`` (input counts, so no
idle pause), switches to another tab for a while, comes back, waits until the lesson
pauses itself for idleness, types again (which ends the idle pause), and presses "Finish
lesson". The backend (the emulator in the notebook's kernel) must count the typing as
active and the hidden time as paused, the pause starting within 50 ms of the instant the
page saw itself hidden, and ending within 50 ms of the instant it saw itself shown again.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("marimo", reason="the marimo test needs the 'marimo' extra")
pytest.importorskip("anywidget", reason="the badge needs the 'jupyter' extra")
pytest.importorskip("selenium", reason="the browser test needs selenium (dev group)")
pytest.importorskip("starlette", reason="the lesson's emulator needs the 'emulator' extra")

from selenium.webdriver import ActionChains

from .browser import Page, chromium, marimo_server
from .conftest import ROOT

LESSON = ROOT / "examples" / "marimo_lesson" / "lesson.py"
IDLE_TIMEOUT = 3.0
TOLERANCE_MS = 50
# The badge lives in the shadow root of marimo's anywidget element.
BADGE_TEXT = (
    "(document.querySelector('marimo-anywidget')?.shadowRoot"
    "?.querySelector('.timeback-badge')?.textContent ?? '')"
)
# marimo's controls live in shadow roots too: the first match in the page or any of them.
DEEP_QUERY = """
const [selector, text] = arguments;
const find = (root) => {
  for (const hit of root.querySelectorAll(selector)) {
    if (hit.textContent.includes(text)) return hit;
  }
  for (const host of root.querySelectorAll('*')) {
    const inner = host.shadowRoot && find(host.shadowRoot);
    if (inner) return inner;
  }
  return null;
};
return find(document);
"""
ANSWER = ("input[placeholder='a fraction']", "")
FINISH = ("button", "Finish lesson")
# Where the page records, in epoch ms, each instant it saw itself hidden or shown.
RECORD_VISIBILITY = (
    "window.__visibility = []; document.addEventListener('visibilitychange', () => "
    "window.__visibility.push([document.visibilityState, "
    "performance.timeOrigin + performance.now()]), {capture: true})"
)


def _lesson_copy(workdir: Path) -> Path:
    """The lesson with a short idle timeout, and a last cell that leaves the run's record."""
    source = LESSON.read_text(encoding="utf-8")
    assert "idle_timeout=300" in source
    source = source.replace("idle_timeout=300", f"idle_timeout={IDLE_TIMEOUT}")
    marker = "    run = emulator.run(activity.run_id)  # the backend's record of the run\n"
    assert marker in source
    source = source.replace(
        marker,
        marker + "    __import__('pathlib').Path('run.json').write_text("
        "__import__('json').dumps(run.to_json()))\n",
    )
    copy = workdir / "lesson.py"
    copy.write_text(source, encoding="utf-8")
    return copy


def click_deep(page: Page, target: tuple[str, str]) -> None:
    """A left click in the middle of the first element that matches ``target`` (a
    selector, and a text it contains), in the page or any shadow root."""
    deadline = time.monotonic() + 30
    while (element := page.driver.execute_script(DEEP_QUERY, *target)) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no element matches {target}")
        time.sleep(0.05)
    ActionChains(page.driver).move_to_element(element).click().perform()


def _ms(instant: str) -> float:
    return datetime.fromisoformat(instant.replace("Z", "+00:00")).timestamp() * 1000


@pytest.mark.e2e
def test_marimo_typing_counts_a_hidden_tab_pauses_and_a_key_ends_an_idle_pause(
    tmp_path: Path, artifacts: Path
) -> None:
    workdir, scratch = tmp_path / "lesson", tmp_path / "scratch"
    workdir.mkdir()
    scratch.mkdir()
    notebook = _lesson_copy(workdir)

    with marimo_server(notebook, scratch) as url, chromium(scratch) as page:
        page.on_failure_screenshot = artifacts / "marimo-failure.png"
        page.driver.get(url)
        page.driver.execute_script(RECORD_VISIBILITY)
        page.wait_for(f"{BADGE_TEXT}.includes('Tracking')", timeout=60)
        click_deep(page, ANSWER)
        opened = time.time()

        # Type an answer, one key every 150 ms, for longer than idle_timeout.
        typing_until = time.monotonic() + IDLE_TIMEOUT + 1.0
        while time.monotonic() < typing_until:
            page.keys("1")
            time.sleep(0.15)
        page.keys("\b" * 200, "3/4", "\n")
        page.wait_for("document.body.innerText.includes('Right!')", timeout=10)
        assert "Tracking" in page.evaluate(BADGE_TEXT)
        page.driver.save_screenshot(str(artifacts / "marimo-lesson.png"))

        # Another tab to the front: the lesson's page is hidden; then back.
        page.to_front(page.other_tab)
        assert page.evaluate("document.visibilityState") == "hidden"
        page.wait_for(f"{BADGE_TEXT}.includes('Paused: tab hidden')", timeout=5)
        time.sleep(2.0)
        page.to_front(page.tab)
        assert page.evaluate("document.visibilityState") == "visible"
        page.wait_for(f"{BADGE_TEXT}.includes('Tracking')", timeout=5)

        # Away from the keyboard: idle_timeout pauses; a key press ends the idle pause.
        page.wait_for(f"{BADGE_TEXT}.includes('Paused: idle')", timeout=IDLE_TIMEOUT + 10)
        click_deep(page, ANSWER)
        page.keys(" ")
        page.wait_for(f"{BADGE_TEXT}.includes('Tracking')", timeout=5)

        click_deep(page, FINISH)
        record = workdir / "run.json"
        deadline = time.monotonic() + 30
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert record.exists(), "the lesson's last cell did not run"
        page.wait_for(f"{BADGE_TEXT}.includes('Ended')", timeout=5)
        seen = page.evaluate("window.__visibility")

    (hidden, hidden_at), (shown, shown_at) = seen
    assert (hidden, shown) == ("hidden", "visible")
    run: dict[str, Any] = json.loads(record.read_text())
    windows = sorted(run["windows"], key=lambda w: _ms(w["startedAt"]))
    (artifacts / "marimo-run.json").write_text(json.dumps({"seen": seen, "run": run}))
    assert hidden_at / 1000 - opened > IDLE_TIMEOUT  # typed for longer than idle_timeout
    paused = [w for w in windows if w["pausedMs"] > 0]
    # The hidden tab (no idle pause while typing before it), then the idle pause.
    assert len(paused) == 2, windows
    started = _ms(paused[0]["startedAt"])
    assert 0 <= started - hidden_at <= TOLERANCE_MS, (started, hidden_at)
    resumed = started + paused[0]["pausedMs"]
    assert 0 <= resumed - shown_at <= TOLERANCE_MS, (resumed, shown_at)
    idle = paused[1]  # from idle_timeout after the last input to the key that ended it
    assert idle["pausedMs"] > 0
    assert _ms(idle["startedAt"]) >= resumed
    span = _ms(windows[-1]["endedAt"]) - _ms(windows[0]["startedAt"])
    assert run["activeMs"] == pytest.approx(span - run["inactiveMs"], abs=2)
