"""Fractions: pick the larger of two fractions, by click or by key, against the clock.

The game's loop hands every event to the tracker (``tracker.process_event(event)``), so
keys, clicks and pointer moves count as activity, and the window losing the focus or
being minimised pauses the lesson's time. The header shows the activity's active time.

    python -m examples.pygame_game                            # an in-process emulator
    python -m examples.pygame_game --server URL --token TOKEN  # a real backend
"""

from __future__ import annotations

import argparse
import contextlib
import random
from collections.abc import Iterator
from fractions import Fraction

import pygame

from timeback_client import Activity, Timeback, TimeOptions
from timeback_client.integrations import pygame as timeback_pygame

SIZE = (640, 400)
BACKGROUND = (246, 244, 236)
INK = (40, 44, 52)
CARD = (255, 255, 255)
GOOD = (46, 140, 87)
BAD = (196, 64, 64)
MUTED = (120, 120, 120)
EMULATED_TOKEN = "student-token"  # the in-process emulator's only student


def question(rng: random.Random) -> tuple[Fraction, Fraction]:
    """Two different fractions with denominators up to 12."""
    while True:
        a = Fraction(rng.randint(1, 11), rng.randint(2, 12))
        b = Fraction(rng.randint(1, 11), rng.randint(2, 12))
        if a != b and a < 1 and b < 1:
            return a, b


class FractionsGame:
    """One screen of the game: a question, two cards, the score and the tracked time.

    `frame()` runs one turn of the loop (events, then drawing); `run()` loops at 60 fps.
    """

    def __init__(self, screen: pygame.Surface, activity: Activity, *, seed: int = 3) -> None:
        self.screen = screen
        self.activity = activity
        self.tracker = timeback_pygame.track(activity)
        self.rng = random.Random(seed)
        self.pair = question(self.rng)
        self.score = self.asked = 0
        self.feedback = ""
        self.running = True
        self.title_font = pygame.font.Font(None, 30)
        self.big_font = pygame.font.Font(None, 72)
        self.font = pygame.font.Font(None, 26)
        self.cards = (pygame.Rect(90, 140, 200, 150), pygame.Rect(350, 140, 200, 150))

    def frame(self) -> None:
        for event in pygame.event.get():
            self.tracker.process_event(event)
            self.handle(event)
        self.draw()
        pygame.display.flip()

    def run(self) -> None:
        clock = pygame.time.Clock()
        while self.running:
            self.frame()
            clock.tick(60)

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.KEYDOWN and event.key in (pygame.K_LEFT, pygame.K_1):
            self.answer(0)
        elif event.type == pygame.KEYDOWN and event.key in (pygame.K_RIGHT, pygame.K_2):
            self.answer(1)
        elif event.type == pygame.MOUSEBUTTONDOWN and event.button == 1:
            for index, card in enumerate(self.cards):
                if card.collidepoint(event.pos):
                    self.answer(index)

    def answer(self, index: int) -> None:
        chosen, other = self.pair[index], self.pair[1 - index]
        self.asked += 1
        if chosen > other:
            self.score += 1
            self.feedback = f"Yes: {chosen} > {other}"
        else:
            self.feedback = f"Not quite: {other} > {chosen}"
        self.pair = question(self.rng)

    def draw(self) -> None:
        screen = self.screen
        screen.fill(BACKGROUND)
        self.text(self.title_font, "Which fraction is larger?", (24, 24), INK)
        self.text(self.font, self.status(), (24, 60), MUTED)
        for card, fraction in zip(self.cards, self.pair, strict=True):
            pygame.draw.rect(screen, CARD, card, border_radius=12)
            pygame.draw.rect(screen, INK, card, width=2, border_radius=12)
            label = self.big_font.render(str(fraction), True, INK)
            screen.blit(label, label.get_rect(center=card.center))
        hint = "Click a card, or press 1 / 2 (or the arrow keys)"
        self.text(self.font, hint, (24, 320), MUTED)
        colour = GOOD if self.feedback.startswith("Yes") else BAD
        self.text(self.font, self.feedback, (24, 352), colour)

    def status(self) -> str:
        activity = self.activity
        seconds = activity.elapsed_ms // 1000
        state = "Paused" if activity.is_paused else "Tracking"
        if activity.is_ended:
            state = "Ended"
        return (
            f"{state} · active {seconds // 60}:{seconds % 60:02d} · score {self.score}/{self.asked}"
        )

    def text(self, font: pygame.font.Font, text: str, at: tuple[int, int], colour: object) -> None:
        self.screen.blit(font.render(text, True, colour), at)  # type: ignore[arg-type]


def start(timeback: Timeback) -> Activity:
    return timeback.activity.start(
        id="fractions-compare",
        name="Compare fractions",
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
    pygame.init()
    try:
        screen = pygame.display.set_mode(SIZE)
        pygame.display.set_caption("Fractions")
        with client(args.server, args.token) as timeback:
            activity = start(timeback)
            FractionsGame(screen, activity).run()
            activity.end()
    finally:
        pygame.quit()
    return 0
