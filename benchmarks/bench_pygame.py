"""13. A pygame game's loop, with and without `tracker.process_event` on every event.

A blocking `Timeback` (``outbox=None``) against the emulator in its own process, one
running activity, SDL's dummy video driver. Each frame posts a burst of events into
pygame's queue (a mouse-move storm with key presses among them, and events the tracker
ignores), takes them out with ``pygame.event.get()`` and hands each to the game's own
handler; the *tracked* frames also hand each to ``tracker.process_event``. Frames of the
two kinds alternate in blocks, so a slow moment of the machine hits both alike; the
figure is the difference of their medians per event.

    python benchmarks/bench_pygame.py URL [--frames N] [--events-per-frame K]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import pygame
from _bench import LESSON, TOKEN, emit, quiet_sdk_logs

from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import pygame as timeback_pygame


def burst(size: int) -> list[pygame.event.Event]:
    """A frame's events: 80% pointer motion, 10% key presses, 10% events nobody tracks."""
    events = []
    for i in range(size):
        if i % 10 == 0:
            events.append(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_a, mod=0, unicode="a"))
        elif i % 10 == 5:
            events.append(pygame.event.Event(pygame.USEREVENT, frame=i))
        else:
            events.append(pygame.event.Event(pygame.MOUSEMOTION, pos=(i % 640, 10), rel=(1, 0)))
    return events


class Game:
    """What a game does with each event: look at its type (a quit, a click)."""

    def __init__(self) -> None:
        self.clicks = 0
        self.running = True

    def handle(self, event: pygame.event.Event) -> None:
        if event.type == pygame.QUIT:
            self.running = False
        elif event.type == pygame.MOUSEBUTTONDOWN:
            self.clicks += 1


def frame(events: list[pygame.event.Event], game: Game, tracker: Any) -> float:
    """One turn of the loop; returns its seconds (posting excluded)."""
    for event in events:
        pygame.event.post(event)
    began = time.perf_counter()
    if tracker is None:
        for event in pygame.event.get():
            game.handle(event)
    else:
        for event in pygame.event.get():
            tracker.process_event(event)
            game.handle(event)
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--events-per-frame", type=int, default=100)
    args = parser.parse_args()
    quiet_sdk_logs()
    pygame.display.init()
    pygame.display.set_mode((640, 400))
    pygame.event.clear()
    events = burst(args.events_per_frame)
    game = Game()
    with Timeback(args.url, headers={"Authorization": f"Bearer {TOKEN}"}, outbox=None) as tb:
        activity = tb.activity.start(**LESSON, time=TimeOptions(idle_timeout=60))
        tracker = timeback_pygame.track(activity)
        bare: list[float] = []
        tracked: list[float] = []
        for _ in range(20):  # warm-up
            frame(events, game, None)
            frame(events, game, tracker)
        block = 50
        for start in range(0, args.frames, block):
            for _ in range(min(block, args.frames - start)):
                bare.append(frame(events, game, None))
            for _ in range(min(block, args.frames - start)):
                tracked.append(frame(events, game, tracker))
        still_tracking = tracker.active and not activity.is_paused
        activity.end()
    pygame.display.quit()
    per_event = args.events_per_frame
    bare_ms, tracked_ms = statistics.median(bare) * 1e3, statistics.median(tracked) * 1e3
    emit(
        {
            "pygame": pygame.version.ver,
            "pygame_ce": bool(getattr(pygame, "IS_CE", False)),
            "frames": args.frames,
            "events_per_frame": per_event,
            "bare_frame_ms": bare_ms,
            "tracked_frame_ms": tracked_ms,
            "bare_ns_per_event": bare_ms * 1e6 / per_event,
            "tracked_ns_per_event": tracked_ms * 1e6 / per_event,
            "extra_ns_per_event": (tracked_ms - bare_ms) * 1e6 / per_event,
            "extra_share_of_60fps_frame": (tracked_ms - bare_ms) / (1000 / 60),
            "still_tracking": still_tracking,
        }
    )


if __name__ == "__main__":
    main()
