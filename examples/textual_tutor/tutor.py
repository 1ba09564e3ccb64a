"""Equivalent fractions, in the terminal: fill in the missing number, press Enter.

The app calls ``timeback_textual.track(activity, self)`` in ``on_mount``: keys and the
mouse count as activity, and the terminal losing the focus (where it reports focus)
pauses the lesson's time. The status line shows the activity's active time.

    python -m examples.textual_tutor                            # an in-process emulator
    python -m examples.textual_tutor --server URL --token TOKEN  # a real backend
"""

from __future__ import annotations

import argparse
import contextlib
import random
from collections.abc import Iterator

from textual.app import App, ComposeResult
from textual.containers import Vertical
from textual.widgets import Footer, Header, Input, Static

from timeback_client import Activity, AsyncActivity, Timeback, TimeOptions
from timeback_client.integrations import textual as timeback_textual

EMULATED_TOKEN = "student-token"  # the in-process emulator's only student


class Question:
    """``a/b = ?/d``: the missing numerator of an equivalent fraction."""

    def __init__(self, rng: random.Random) -> None:
        self.denominator = rng.randint(2, 9)
        self.numerator = rng.randint(1, self.denominator - 1)
        self.factor = rng.randint(2, 5)

    @property
    def answer(self) -> int:
        return self.numerator * self.factor

    def __str__(self) -> str:
        return f"{self.numerator}/{self.denominator} = ?/{self.denominator * self.factor}"

    def solved(self) -> str:
        return str(self).replace("?", str(self.answer))


class Tutor(App[None]):
    """The lesson: one question at a time, the answer typed into a field."""

    TITLE = "Equivalent fractions"
    CSS = """
    #lesson { padding: 1 2; }
    #question { text-style: bold; margin: 1 0; }
    #feedback { margin-top: 1; }
    .good { color: $success; }
    .bad { color: $error; }
    """

    def __init__(self, activity: Activity | AsyncActivity, *, seed: int = 7) -> None:
        super().__init__()
        self.activity = activity
        self.rng = random.Random(seed)
        self.question = Question(self.rng)
        self.score = self.asked = 0
        self.tracker: timeback_textual.TextualTracker | None = None
        self.status_line = Static(self.status(), id="status")

    def compose(self) -> ComposeResult:
        yield Header()
        with Vertical(id="lesson"):
            yield self.status_line
            yield Static(str(self.question), id="question")
            yield Input(placeholder="the missing number, then Enter", id="answer")
            yield Static("", id="feedback")
        yield Footer()

    def on_mount(self) -> None:
        self.tracker = timeback_textual.track(self.activity, self)
        # The status line's own timer: it stops when the line goes, as the app closes.
        self.status_line.set_interval(0.5, self.refresh_status)
        self.query_one("#answer", Input).focus()

    def on_input_submitted(self, message: Input.Submitted) -> None:
        feedback = self.query_one("#feedback", Static)
        try:
            given = int(message.value.strip())
        except ValueError:
            feedback.update("Type a whole number.")
            return
        self.asked += 1
        if given == self.question.answer:
            self.score += 1
            feedback.update(f"Yes: {self.question.solved()}")
            feedback.set_classes("good")
        else:
            feedback.update(f"Not quite: {self.question.solved()}")
            feedback.set_classes("bad")
        self.question = Question(self.rng)
        self.query_one("#question", Static).update(str(self.question))
        message.input.clear()
        self.refresh_status()

    def refresh_status(self) -> None:
        self.status_line.update(self.status())

    def status(self) -> str:
        activity = self.activity
        seconds = activity.elapsed_ms // 1000
        state = "Ended" if activity.is_ended else "Paused" if activity.is_paused else "Tracking"
        return (
            f"{state} · active {seconds // 60}:{seconds % 60:02d} · "
            f"{self.score}/{self.asked} correct"
        )


def start(timeback: Timeback) -> Activity:
    return timeback.activity.start(
        id="fractions-equivalent",
        name="Equivalent fractions",
        course={"subject": "Math", "grade": 4},
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
        Tutor(activity).run()
        activity.end()
    return 0
