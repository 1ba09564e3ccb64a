"""The kiosk app, driven in a real Tk event loop on a real X server, against the emulator.

One scripted classroom session, start to finish: sign in, open a lesson, work while
heartbeats flow, go idle (the overlay shows), come back with real pointer input, get
minimised and restored, close the lesson, reopen it (same runId), finish it (the
backend's record()), open it again (fresh runId), close the window. The emulator's totals
must match what the app saw, and its problem list must be empty.

Keyboard and pointer input go through the X server with xdotool (Debian ``xdotool``)
when it is installed, else through Tk's ``event_generate``. The lesson screen's
screenshot (ImageMagick's ``import``) goes to ``artifacts/`` and ``docs/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import time
import tkinter as tk
from collections.abc import Callable, Iterator
from pathlib import Path
from tkinter import ttk

import pytest

from timeback_client import TimeOptions

from .conftest import ROOT

pytest.importorskip("starlette", reason="the embedded emulator needs the 'emulator' extra")

from examples.kiosk_app.app import SAMPLE_ROSTER, Kiosk, load_roster
from examples.kiosk_app.backend import EmbeddedEmulator, RemoteBackend
from examples.kiosk_app.progress import ProgressStore

from timeback_client.emulator import Course as ConfiguredCourse
from timeback_client.emulator import Emulator

pytestmark = pytest.mark.skipif(
    sys.platform != "linux", reason="Tk on a private Xvfb X server, input by xdotool: Linux only"
)

LESSON = "fractions-halves-quarters"
ANSWERS = ("3/4", "4", "2/4")
OPTIONS = TimeOptions(heartbeat_interval=0.25, idle_timeout=1.0, flush_timeout=3.0)


class Screen:
    """Drives the kiosk's window: pumps Tk's event loop, finds widgets, sends input."""

    def __init__(self, root: tk.Tk | tk.Toplevel) -> None:
        self.root = root
        self.xdotool = shutil.which("xdotool")

    def run(self, seconds: float) -> None:
        """Run the Tk event loop for a while."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.root.update()
            time.sleep(0.005)

    def run_until(self, condition: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout} s waiting for {condition}")
            self.root.update()
            time.sleep(0.005)

    def button(self, text: str) -> ttk.Button:
        for widget in _descendants(self.root):
            if isinstance(widget, ttk.Button) and widget.cget("text") == text:
                return widget
        raise LookupError(f"no button {text!r} on screen")

    def click(self, text: str) -> None:
        self.button(text).invoke()
        self.run(0.05)

    def move_pointer(self, widget: tk.Misc, x: int, y: int) -> None:
        """Move the pointer over ``widget``: real X input with xdotool."""
        if self.xdotool:
            subprocess.run(
                [self.xdotool, "mousemove", "--window", str(widget.winfo_id()), str(x), str(y)],
                check=True,
            )
        else:
            widget.event_generate("<Motion>", x=x, y=y, warp=True)
        self.run(0.02)

    def type_into(self, entry: ttk.Entry, text: str) -> None:
        """Type ``text`` and Enter into ``entry`` (which has the keyboard focus)."""
        self.root.focus_force()
        entry.focus_set()
        self.run(0.05)
        if self.xdotool:
            subprocess.run([self.xdotool, "type", "--delay", "5", text], check=True)
            subprocess.run([self.xdotool, "key", "Return"], check=True)
        else:
            for char in text:
                entry.event_generate("<KeyPress>", keysym=_KEYSYMS.get(char, char))
            entry.event_generate("<KeyPress>", keysym="Return")
        self.run(0.05)

    def work(self, seconds: float, widget: tk.Misc) -> None:
        """A student busy with the lesson: pointer moves every 0.15 s."""
        deadline = time.monotonic() + seconds
        step = 0
        while time.monotonic() < deadline:
            step += 1
            self.move_pointer(widget, 40 + step * 7 % 300, 60 + step * 3 % 100)
            self.run(0.13)

    def screenshot(self, *paths: Path) -> bool:
        """Save the window as PNG (ImageMagick's ``import``); False when not installed."""
        grab = shutil.which("import")
        if grab is None:
            return False
        self.root.update()
        window = str(int(self.root.wm_frame(), 16))
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([grab, "-window", window, str(path)], check=True, timeout=30)
        return True


_KEYSYMS = {"/": "slash", " ": "space"}


def _descendants(widget: tk.Misc) -> Iterator[tk.Misc]:
    for child in widget.winfo_children():
        yield child
        yield from _descendants(child)


@pytest.fixture
def kiosk(
    tk_root: tk.Tk, tk_errors: list[BaseException], tmp_path: Path
) -> Iterator[tuple[Kiosk, EmbeddedEmulator]]:
    roster = load_roster(SAMPLE_ROSTER)
    backend = EmbeddedEmulator(roster, port=0)  # on a loopback thread, as by default
    store = ProgressStore(tmp_path / "data" / "progress.sqlite3")
    root = tk.Toplevel(tk_root)  # the kiosk's window; see conftest for why not a Tk
    root.geometry("920x600+0+0")
    app = Kiosk(root, backend=backend, store=store, roster=roster, options=OPTIONS)
    try:
        yield app, backend
    finally:
        app.close()
        with contextlib.suppress(tk.TclError):  # the test closed the window already
            root.destroy()
        backend.close()
    assert tk_errors == []


def test_a_scripted_classroom_session(
    kiosk: tuple[Kiosk, EmbeddedEmulator], artifacts: Path
) -> None:
    app, backend = kiosk
    screen = Screen(app.root)
    emulator = backend.emulator
    screen.run(0.2)

    # Sign in from the roster; the store file is the owner's alone.
    screen.click("Ada Lovelace")
    assert app.student is not None
    student = app.student.key
    assert stat.S_IMODE(os.stat(app.store.path).st_mode) == 0o600

    # Open a new lesson: a fresh run, saved at once.
    app.lesson_list.selection_set(LESSON)
    screen.click("Open lesson")
    session = app.session
    assert session is not None
    run_1 = session.activity.run_id
    assert app.store.get(student, LESSON).run_id == run_1
    assert not session.resumed

    # Work: type an answer, move the pointer; heartbeats flow, the chip says Tracking.
    screen.type_into(app.answer_entries[0], ANSWERS[0])
    assert session.correct == {0}
    screen.work(1.2, app.lesson_frame)
    assert not session.activity.is_paused
    assert "Tracking" in app.status_chip.cget("text")
    screen.run_until(lambda: len(emulator.run(run_1).windows) >= 3)
    screen.type_into(app.answer_entries[1], "5")  # a wrong answer shows too
    screen.run(0.3)
    shot = screen.screenshot(artifacts / "kiosk-lesson.png", *_docs_copy())

    # No input for the idle timeout: tracking pauses and the overlay covers the lesson.
    screen.run_until(lambda: session.activity.is_idle, timeout=3.0)
    screen.run(0.3)
    assert app.overlay.winfo_ismapped()
    assert "Idle" in app.status_chip.cget("text")
    if shot:
        screen.screenshot(artifacts / "kiosk-idle.png")
    screen.run(0.3)

    # The student comes back: pointer input resumes tracking, the overlay goes.
    screen.move_pointer(app.lesson_frame, 200, 120)
    screen.run_until(lambda: not session.activity.is_paused)
    screen.run(0.3)
    assert not app.overlay.winfo_ismapped()

    # Minimised (the window unmapped, the focus lost): paused; restored: tracking again.
    app.root.withdraw()
    screen.run_until(lambda: session.activity.is_paused)
    screen.run(0.4)
    app.root.deiconify()
    app.root.focus_force()
    screen.run_until(lambda: not session.activity.is_paused)
    screen.work(0.4, app.lesson_frame)

    # Close the lesson: time flushed, the run stays open.
    screen.click("Close lesson")
    assert app.session is None
    assert session.activity.is_ended
    progress = app.store.get(student, LESSON)
    assert (progress.state, progress.run_id) == ("in progress", run_1)
    assert app.lesson_list.set(LESSON, "state") == "In progress"

    # Reopen: the same run resumes.
    app.lesson_list.selection_set(LESSON)
    screen.click("Open lesson")
    again = app.session
    assert again is not None
    assert again.activity.run_id == run_1
    assert again.resumed
    screen.work(0.5, app.lesson_frame)
    for index, answer in enumerate(ANSWERS):  # answers belong to a sitting
        screen.type_into(app.answer_entries[index], answer)
    screen.work(0.4, app.lesson_frame)

    # Finish: the backend records the completion with that run; the kiosk forgets it.
    screen.click("Finish lesson")
    screen.run_until(lambda: app.store.get(student, LESSON).state == "completed")
    screen.run(0.1)
    assert app.session is None
    assert "3/3 right" in app.lessons_note.cget("text")
    finished = app.store.get(student, LESSON)
    assert finished.run_id is None
    run_1_stored_ms = finished.active_ms  # both sittings, as the app measured them

    # A new attempt gets a fresh run.
    app.lesson_list.selection_set(LESSON)
    screen.click("Open lesson")
    third = app.session
    assert third is not None
    run_2 = third.activity.run_id
    assert run_2 != run_1
    assert not third.resumed
    screen.work(0.5, app.lesson_frame)

    # Closing the window ends the activity without waiting; shutdown closes the client.
    app.root.tk.call(app.root.protocol("WM_DELETE_WINDOW"))
    assert third.activity.is_ended
    app.close()

    first, second = emulator.run(run_1), emulator.run(run_2)
    assert first.completed
    assert first.sessions == 2
    assert first.students == ("ada.lovelace@kiosk.example",)
    assert first.inactive_ms >= 600  # idle (>= 0.6 s) and minimised (>= 0.4 s), as paused
    assert not second.completed
    assert second.sessions == 1
    assert emulator.problems() == ()

    # What the app stored from elapsed_ms is what the backend counted, to the
    # millisecond (give or take one per sitting closed with end(wait=False): the app
    # reads elapsed_ms just after, and it keeps counting after end() for now).
    assert abs(first.active_ms - run_1_stored_ms) <= 1
    assert abs(second.active_ms - _stored_active_ms(app.store.path, student, LESSON)) <= 1
    summary = {
        run.run_id: {
            "active_ms": run.active_ms,
            "inactive_ms": run.inactive_ms,
            "windows": len(run.windows),
            "sessions": run.sessions,
            "completed": run.completed,
        }
        for run in (first, second)
    }
    (artifacts / "kiosk-session.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("kiosk session totals:", json.dumps(summary))


def test_the_badge_says_not_saving_while_the_backend_refuses_and_the_time_survives(
    kiosk: tuple[Kiosk, EmbeddedEmulator],
) -> None:
    """A course not synced yet: the badge says "Not saving: course not synced" (not
    "Tracking"), the banner gives the backend's own fix; the time is kept. Once the
    operator syncs the course, the next sign-in sends it, and the badge says "Tracking"."""
    app, backend = kiosk
    screen = Screen(app.root)
    emulator = backend.emulator
    emulator.set_courses(
        [
            ConfiguredCourse(subject="Math", grade=3),  # not synced
            ConfiguredCourse(subject="Reading", grade=3, staging_id="r3", production_id="r3"),
            ConfiguredCourse(subject="Science", grade=4, staging_id="s4", production_id="s4"),
        ]
    )
    screen.click("Ada Lovelace")
    assert app.student is not None
    student = app.student.key
    app.lesson_list.selection_set(LESSON)
    screen.click("Open lesson")
    session = app.session
    assert session is not None
    run_id = session.activity.run_id
    screen.work(0.8, app.lesson_frame)
    screen.run_until(lambda: "Not saving: course not synced" in app.status_chip.cget("text"))
    banner = app.banner.cget("text")
    assert "Run `timeback resources push` first. It is kept" in banner
    assert ".." not in banner
    screen.work(0.6, app.lesson_frame)
    assert "Not saving" in app.status_chip.cget("text")
    screen.click("Close lesson")
    assert app.store.get(student, LESSON).active_ms > 0
    assert not emulator.runs()  # nothing recorded: refused, and kept

    emulator.sync_course(subject="Math", grade=3)  # the operator's fix
    screen.click("Sign out")
    screen.run_until(lambda: not any(closer.is_alive() for closer in app._closers))
    screen.click("Ada Lovelace")  # a new client: what was held goes at once
    screen.run_until(lambda: emulator.runs() != ())
    app.lesson_list.selection_set(LESSON)
    screen.click("Open lesson")
    screen.work(0.6, app.lesson_frame)
    assert "Tracking" in app.status_chip.cget("text")
    screen.click("Close lesson")
    app.close()
    run = emulator.run(run_id)
    # Two sittings, each read just after end(wait=False): within a ms each.
    assert abs(run.active_ms - _stored_active_ms(app.store.path, student, LESSON)) <= 2
    starts = [window.started_at for window in run.windows]
    assert len(starts) == len(set(starts))  # each window once
    assert emulator.problems() == ()


def test_the_time_column_header_is_not_cut_off(kiosk: tuple[Kiosk, EmbeddedEmulator]) -> None:
    app, _ = kiosk
    screen = Screen(app.root)
    screen.click("Ada Lovelace")
    screen.run(0.1)
    tree = app.lesson_list
    needed = int(tree.tk.call("font", "measure", app._fonts["bold"], "Time (open run)"))
    # The heading's padding (6 px each side), its borders and the column separator:
    # at 150 px (the text plus the padding alone) the heading was cut off.
    assert int(tree.column("time", "width")) >= needed + 2 * 6 + 8


def test_against_a_real_backend_finish_leaves_completion_to_it(
    tk_root: tk.Tk, tk_errors: list[BaseException], tmp_path: Path
) -> None:
    with (
        Emulator(students={"t0ken": "grace@school.example"}) as emulator,  # standing in for one
        emulator.serve_in_thread() as base_url,
    ):
        store = ProgressStore(tmp_path / "progress.sqlite3")
        root = tk.Toplevel(tk_root)
        root.geometry("920x600+0+0")
        app = Kiosk(root, backend=RemoteBackend(base_url), store=store, roster={}, options=OPTIONS)
        screen = Screen(root)
        try:
            screen.type_into(app.token_entry, "t0ken")  # sign in with a token
            assert app.student is not None
            app.lesson_list.selection_set(LESSON)
            screen.click("Open lesson")
            session = app.session
            assert session is not None
            screen.work(0.6, app.lesson_frame)

            screen.click("Finish lesson")
            assert "record()" in app.banner.cget("text")
            assert app.session is session  # still open: the kiosk cannot finish it
            screen.click("Close lesson")
            assert app.store.get(app.student.key, LESSON).state == "in progress"
        finally:
            app.quit()
            app.close()
        run = emulator.run(session.activity.run_id)
    assert run.active_ms > 0
    assert not run.completed
    assert tk_errors == []


def _docs_copy() -> list[Path]:
    """docs/kiosk-lesson.png, the README's picture: made when missing, or on request
    (TIMEBACK_UPDATE_SCREENSHOTS=1), so that a test run leaves the work tree clean."""
    path = ROOT / "docs" / "kiosk-lesson.png"
    return [path] if os.environ.get("TIMEBACK_UPDATE_SCREENSHOTS") or not path.exists() else []


def _stored_active_ms(path: Path, student: str, lesson: str) -> int:
    store = ProgressStore(path)
    try:
        return store.get(student, lesson).active_ms
    finally:
        store.close()
