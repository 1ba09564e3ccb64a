"""`integrations.pygame` in pygame's real event loop: SDL's dummy video driver, events posted
into pygame's queue and taken out by ``pygame.event.get()``, the tracker fed as a game
feeds it. Time is the pytest plugin's virtual clock, so the totals the emulator records are
exact: paused time starts at the very event that left, with no delay at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
pygame = pytest.importorskip("pygame", reason="pygame is not installed (extra 'pygame')")

from timeback_client import Activity, Timeback, TimeOptions  # noqa: E402
from timeback_client.emulator import Emulator  # noqa: E402
from timeback_client.integrations import pygame as timeback_pygame  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
COURSE = {"subject": "Math", "grade": 3}


@pytest.fixture
def screen(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    # SDL's dummy video driver: a real display and event queue, no window on any screen.
    # Set only while pygame opens it (SDL reads it then), for the other SDL users of
    # the process (Kivy's tests open a real X window).
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    pygame.display.init()
    pygame.font.init()
    surface = pygame.display.set_mode((640, 400))
    pygame.event.clear()
    yield surface
    pygame.display.quit()


def start(timeback: Timeback, *, idle_timeout: float | None = None) -> Activity:
    return timeback.activity.start(
        id="lesson-1",
        name="Fractions",
        course=COURSE,
        time=TimeOptions(heartbeat_interval=30, idle_timeout=idle_timeout),
    )


def post(kind: int, **attributes: object) -> None:
    pygame.event.post(pygame.event.Event(kind, attributes))


def pump(tracker: timeback_pygame.PygameTracker) -> list[int]:
    """One turn of a game's loop: every queued event through the tracker."""
    kinds = []
    for event in pygame.event.get():
        assert tracker.process_event(event) is False  # never consumed
        kinds.append(event.type)
    return kinds


LEAVE_AND_COME_BACK = {
    "focus": ([(pygame.WINDOWFOCUSLOST, {})], [(pygame.WINDOWFOCUSGAINED, {})]),
    "minimise": ([(pygame.WINDOWMINIMIZED, {})], [(pygame.WINDOWRESTORED, {})]),
    "minimise, as SDL sends it": (
        [(pygame.WINDOWFOCUSLOST, {}), (pygame.WINDOWMINIMIZED, {})],
        [(pygame.WINDOWRESTORED, {}), (pygame.WINDOWFOCUSGAINED, {})],
    ),
    "old ACTIVEEVENT focus": (
        [(pygame.ACTIVEEVENT, {"gain": 0, "state": 2})],
        [(pygame.ACTIVEEVENT, {"gain": 1, "state": 2})],
    ),
    "old ACTIVEEVENT iconified": (
        [(pygame.ACTIVEEVENT, {"gain": 0, "state": 4})],
        [(pygame.ACTIVEEVENT, {"gain": 1, "state": 4})],
    ),
}


@pytest.mark.parametrize("case", LEAVE_AND_COME_BACK)
def test_leaving_the_window_is_paused_time_from_that_very_event(
    case: str,
    screen: Any,
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    leave, back = LEAVE_AND_COME_BACK[case]
    activity = start(timeback)
    tracker = timeback_pygame.track(activity)
    advance(10)
    for kind, attributes in leave:
        post(kind, **attributes)
    assert pump(tracker) == [kind for kind, _ in leave]
    assert activity.is_paused
    assert not tracker.in_foreground
    advance(4)
    for kind, attributes in back:
        post(kind, **attributes)
    pump(tracker)
    assert not activity.is_paused
    advance(6)
    activity.end()

    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (16_000, 4_000)


def test_the_mouse_leaving_the_window_is_no_pause(screen: Any, timeback: Timeback) -> None:
    activity = start(timeback)
    tracker = timeback_pygame.track(activity)
    post(pygame.ACTIVEEVENT, gain=0, state=1)  # SDL_APPMOUSEFOCUS
    post(pygame.WINDOWLEAVE)
    pump(tracker)
    assert not activity.is_paused


INPUTS = {
    "key": (pygame.KEYDOWN, {"key": pygame.K_a, "mod": 0, "unicode": "a", "scancode": 4}),
    "mouse button": (pygame.MOUSEBUTTONDOWN, {"pos": (5, 5), "button": 1}),
    "mouse motion": (pygame.MOUSEMOTION, {"pos": (5, 5), "rel": (1, 0), "buttons": (0, 0, 0)}),
    "wheel": (pygame.MOUSEWHEEL, {"x": 0, "y": 1, "flipped": False}),
    "finger": (pygame.FINGERDOWN, {"touch_id": 1, "finger_id": 1, "x": 0.5, "y": 0.5}),
    "joystick button": (pygame.JOYBUTTONDOWN, {"joy": 0, "instance_id": 0, "button": 0}),
    "controller button": (pygame.CONTROLLERBUTTONDOWN, {"instance_id": 0, "button": 0}),
}


@pytest.mark.parametrize("case", INPUTS)
def test_input_ends_an_idle_pause(
    case: str,
    screen: Any,
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    kind, attributes = INPUTS[case]
    activity = start(timeback, idle_timeout=5)
    tracker = timeback_pygame.track(activity, touch_interval=0)
    advance(8)
    assert activity.is_idle
    post(kind, **attributes)
    pump(tracker)
    assert not activity.is_paused
    advance(2)
    activity.end()

    run = timeback_emulator.run(activity.run_id)
    # Active until the idle timeout, idle for the rest, active again after the input.
    assert (run.active_ms, run.inactive_ms) == (7_000, 3_000)


def test_leaving_while_idle_stays_paused_until_the_student_is_back(
    screen: Any, timeback: Timeback, advance: Callable[[float], None]
) -> None:
    activity = start(timeback, idle_timeout=5)
    tracker = timeback_pygame.track(activity, touch_interval=0)
    advance(8)
    post(pygame.WINDOWFOCUSLOST)
    post(pygame.MOUSEMOTION, pos=(1, 1), rel=(1, 1), buttons=(0, 0, 0))  # a pointer crossing
    pump(tracker)
    assert activity.is_paused
    post(pygame.WINDOWFOCUSGAINED)
    pump(tracker)
    assert not activity.is_paused


def test_a_pause_made_by_the_game_is_not_undone(screen: Any, timeback: Timeback) -> None:
    activity = start(timeback)
    tracker = timeback_pygame.track(activity)
    activity.pause()  # the game's own pause menu
    post(pygame.WINDOWFOCUSLOST)
    post(pygame.WINDOWFOCUSGAINED)
    post(pygame.KEYDOWN, key=pygame.K_a, mod=0, unicode="a", scancode=4)
    pump(tracker)
    assert activity.is_paused


def test_stop_and_the_activitys_end_let_go(screen: Any, timeback: Timeback) -> None:
    activity = start(timeback)
    tracker = timeback_pygame.track(activity, poll_interval=1e-6)
    tracker.stop()
    tracker.stop()  # idempotent
    post(pygame.WINDOWFOCUSLOST)
    pump(tracker)
    assert not activity.is_paused
    assert not tracker.active

    tracker = timeback_pygame.track(activity, poll_interval=1e-6)
    activity.end(wait=False)
    post(pygame.WINDOWFOCUSLOST)  # after the end: never raises into the game's loop
    post(pygame.KEYDOWN, key=pygame.K_a, mod=0, unicode="a", scancode=4)
    pump(tracker)
    assert not tracker.active


def test_the_fractions_game_counts_the_time_played(
    screen: Any,
    timeback: Timeback,
    advance: Callable[[float], None],
    timeback_emulator: Emulator,
) -> None:
    """The example game, played: 30 s of answers, 20 s in another window, 10 s more."""
    from examples.pygame_game.game import FractionsGame

    activity = start(timeback, idle_timeout=60)
    game = FractionsGame(screen, activity)
    for _ in range(3):
        advance(10)
        left, right = game.pair
        post(pygame.KEYDOWN, key=pygame.K_1 if left > right else pygame.K_2, mod=0, unicode="")
        game.frame()
    post(pygame.WINDOWFOCUSLOST)
    game.frame()
    advance(20)
    post(pygame.WINDOWFOCUSGAINED)
    game.frame()
    advance(5)
    post(pygame.MOUSEBUTTONDOWN, pos=game.cards[0].center, button=1)
    game.frame()
    advance(5)
    game.frame()
    assert game.asked == 4
    assert game.score >= 3
    assert game.status().startswith("Tracking · active 0:40")
    if os.environ.get("TIMEBACK_SCREENSHOTS"):  # docs/images/pygame-game.png, on demand
        pygame.image.save(screen, str(ROOT / "docs" / "images" / "pygame-game.png"))
    activity.end()

    run = timeback_emulator.run(activity.run_id)
    assert (run.active_ms, run.inactive_ms) == (40_000, 20_000)


def test_importing_without_pygame_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['pygame'] = None\n"
        "try:\n"
        "    import timeback_client.integrations.pygame\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert "pip install 'timeback-client[pygame]'" in out
