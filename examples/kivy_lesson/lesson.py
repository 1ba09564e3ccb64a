"""Fraction bars, by touch: tap the bar that shows the fraction asked for.

Made for a tablet or a touch kiosk. The app calls ``timeback_kivy.track(activity,
app=self)`` in ``on_start``: touches and keys count as activity, and the window losing the
focus, being minimised, or the app being paused by the system pauses the lesson's time.
The top line shows the activity's active time.

    python -m examples.kivy_lesson                            # an in-process emulator
    python -m examples.kivy_lesson --server URL --token TOKEN  # a real backend
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

# Kivy reads the command line itself unless told not to; this script has its own options.
os.environ.setdefault("KIVY_NO_ARGS", "1")

from kivy.app import App
from kivy.clock import Clock
from kivy.graphics import Color, Line, Rectangle
from kivy.uix.boxlayout import BoxLayout
from kivy.uix.button import Button
from kivy.uix.label import Label

from timeback_client import Activity, Timeback, TimeOptions
from timeback_client.integrations import kivy as timeback_kivy

EMULATED_TOKEN = "student-token"  # the in-process emulator's only student
SHADED = (0.18, 0.55, 0.34, 1)
EMPTY = (1, 1, 1, 1)


class FractionBar(Button):
    """A bar cut in ``parts``, ``shaded`` of them coloured: a tappable fraction."""

    def __init__(self, shaded: int, parts: int, **kwargs: Any) -> None:
        super().__init__(background_color=(0, 0, 0, 0), **kwargs)
        self.fraction = Fraction(shaded, parts)
        self.shaded, self.parts = shaded, parts
        self.bind(pos=self.redraw, size=self.redraw)

    def redraw(self, *args: object) -> None:
        self.canvas.after.clear()
        x, y = self.x + 10, self.y + 10
        width, height = self.width - 20, self.height - 20
        part = width / self.parts
        with self.canvas.after:
            for i in range(self.parts):
                Color(*(SHADED if i < self.shaded else EMPTY))
                Rectangle(pos=(x + i * part, y), size=(part, height))
                Color(0.16, 0.17, 0.2, 1)
                Line(rectangle=(x + i * part, y, part, height), width=1.5)


class LessonScreen(BoxLayout):
    """The question, three bars to tap, and the tracked time."""

    def __init__(self, activity: Activity, *, seed: int = 5, **kwargs: Any) -> None:
        super().__init__(orientation="vertical", padding=24, spacing=16, **kwargs)
        self.activity = activity
        self.rng = random.Random(seed)
        self.score = self.asked = 0
        self.status = Label(font_size=20, size_hint_y=None, height=30, color=(0.4, 0.4, 0.4, 1))
        self.prompt = Label(font_size=34, size_hint_y=None, height=60, color=(0.1, 0.1, 0.1, 1))
        self.feedback = Label(font_size=22, size_hint_y=None, height=40, color=SHADED)
        self.bars = BoxLayout(orientation="vertical", spacing=14)
        for widget in (self.status, self.prompt, self.bars, self.feedback):
            self.add_widget(widget)
        self.target = Fraction(0)
        self.new_question()
        self.refresh_status()

    def new_question(self) -> None:
        parts = self.rng.choice((3, 4, 5, 6, 8))
        choices = self.rng.sample(range(1, parts), k=min(3, parts - 1))
        self.target = Fraction(choices[0], parts)
        self.prompt.text = f"Tap the bar that shows {choices[0]}/{parts}"
        self.bars.clear_widgets()
        for shaded in sorted(choices):
            bar = FractionBar(shaded, parts)
            bar.bind(on_release=self.answer)
            self.bars.add_widget(bar)

    def answer(self, bar: FractionBar) -> None:
        self.asked += 1
        if bar.fraction == self.target:
            self.score += 1
            self.feedback.text, self.feedback.color = f"Yes: {self.target}", SHADED
        else:
            self.feedback.text = f"That one is {bar.shaded}/{bar.parts}"
            self.feedback.color = (0.77, 0.25, 0.25, 1)
        self.new_question()
        self.refresh_status()

    def refresh_status(self, *args: object) -> None:
        activity = self.activity
        seconds = activity.elapsed_ms // 1000
        state = "Ended" if activity.is_ended else "Paused" if activity.is_paused else "Tracking"
        self.status.text = (
            f"{state} · active {seconds // 60}:{seconds % 60:02d} · "
            f"{self.score}/{self.asked} correct"
        )


class FractionBarsApp(App):  # type: ignore[misc]
    title = "Fraction bars"

    def __init__(self, activity: Activity, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.activity = activity

    def build(self) -> LessonScreen:
        from kivy.core.window import Window

        Window.clearcolor = (0.965, 0.957, 0.925, 1)
        screen = LessonScreen(self.activity)
        Clock.schedule_interval(screen.refresh_status, 0.5)
        return screen

    def on_start(self) -> None:
        timeback_kivy.track(self.activity, app=self)

    def on_pause(self) -> bool:
        return True  # on a tablet: keep the lesson, the tracker pauses its time


def start(timeback: Timeback) -> Activity:
    return timeback.activity.start(
        id="fraction-bars",
        name="Fraction bars",
        course={"subject": "Math", "grade": 3},
        time=TimeOptions(idle_timeout=60),
    )


@contextlib.contextmanager
def client(server: str | None, token: str | None) -> Iterator[Timeback]:
    """A client for the given backend, or for an emulator in this process."""
    if server is not None:
        with Timeback(server, headers={"Authorization": f"Bearer {token}"}) as timeback:
            yield timeback
        return
    from timeback_client.emulator import Emulator

    with (
        Emulator(students={EMULATED_TOKEN: "student@example.edu"}) as emulator,
        Timeback(
            "http://emulator.localhost/api/timeback",
            headers={"Authorization": f"Bearer {EMULATED_TOKEN}"},
            transport=emulator.transport(),
            outbox=None,
        ) as timeback,
    ):
        yield timeback
        print(f"The emulator recorded: {emulator.runs()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", help="the backend's Timeback base URL")
    parser.add_argument("--token", help="the student's bearer token (with --server)")
    args = parser.parse_args(argv)
    if args.server and not args.token:
        parser.error("--server needs --token")
    with client(args.server, args.token) as timeback:
        activity = start(timeback)
        FractionBarsApp(activity).run()
        activity.end()
    return 0
