"""The kiosk: sign in, pick a lesson, work on it while timeback-client tracks the time.

How tracking fits a Tk app, in the order it happens here:

1. Sign-in makes one `Timeback` client per student, with the student's credentials.
2. Opening a lesson starts an activity, with the saved ``run_id`` if the lesson is in
   progress, and saves the run's id **at once**; ``integrations.tk.track`` lets input,
   focus and minimising drive it. Nothing here waits on the network.
3. A ``root.after`` tick shows ``activity.elapsed_ms`` and the paused/idle state, and
   runs what SDK callbacks (on the SDK's thread) handed over through a queue. While the
   backend refuses the time for a cause its operator must fix (a course not synced, a
   student not in the roster), ``statistics().held`` says so and the badge reads "Not
   saving: <reason>"; the SDK keeps the time and sends it once the backend is fixed.
4. Closing the lesson, or the window, calls ``end(wait=False)``: time flushed, run open.
5. "Finish lesson" is the backend's part: after the last window is delivered, the
   backend records the completion with the same runId; the kiosk forgets the run.
6. Quitting closes every client (``timeback.close()`` waits for delivery, briefly).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import json
import queue
import sys
import threading
import tkinter as tk
import tkinter.font as tkfont
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from tkinter import ttk

from timeback_client import (
    Activity,
    AuthenticationError,
    BackendConfigurationError,
    DeliveryError,
    ErrorContext,
    LifecycleError,
    Timeback,
    TimeOptions,
    UndeliveredError,
    UserResolutionError,
)
from timeback_client.integrations import tk as timeback_tk

from .backend import Backend, EmbeddedEmulator, RemoteBackend
from .lessons import LESSONS, Lesson, lesson_by_id
from .progress import ProgressStore, default_data_dir

SAMPLE_ROSTER = Path(__file__).with_name("roster.json")
# Refusals the SDK holds the time through, until the backend (or the sign-in) is fixed.
HELD_ERRORS = (BackendConfigurationError, UserResolutionError, AuthenticationError)
TICK_MS = 200

# Colours and type: a calm, high-contrast classroom look on ttk's "clam" theme.
BG, CARD, ACCENT, ACCENT_DARK = "#eef2f7", "#ffffff", "#3451b2", "#283f8c"
TEXT, MUTED, LINE = "#1f2937", "#6b7280", "#d7dde8"
GOOD, GOOD_BG, WARN, WARN_BG, IDLE, IDLE_BG = (
    "#177245",
    "#dcfce7",
    "#9a5b00",
    "#fef3c7",
    "#4b5563",
    "#e5e7eb",
)
BAD, BAD_BG = "#b42318", "#fee4e2"
STATE_LABELS = {"new": "New", "in progress": "In progress", "completed": "Completed"}


@dataclass(frozen=True)
class Student:
    """Who is signed in. ``key`` names them in the progress store (never the token)."""

    name: str
    key: str
    token: str


@dataclass
class Metrics:
    """The lesson's result, as the backend's record() wants it."""

    total_questions: int
    correct_questions: int
    xp_earned: int


@dataclass
class LessonSession:
    """One opening of a lesson: the activity, its tracker, and what the student did."""

    lesson: Lesson
    activity: Activity
    tracker: timeback_tk.TkTracker
    resumed: bool
    earlier_ms: int  # active time of this run in earlier sessions
    correct: set[int] = field(default_factory=set)
    undelivered: threading.Event = field(default_factory=threading.Event)
    finishing: bool = False

    def metrics(self) -> Metrics:
        total = len(self.lesson.questions)
        right = len(self.correct)
        return Metrics(total, right, right * self.lesson.xp_per_answer)


class Kiosk:
    """The kiosk's window and its lifecycle. Everything here runs on the Tk thread.

    Args:
        root: the kiosk's window (the Tk root, or a Toplevel).
        backend: where heartbeats go, and who records completions.
        store: the local progress store.
        roster: student name -> token, for the sign-in buttons.
        options: the activities' time options.
    """

    def __init__(
        self,
        root: tk.Tk | tk.Toplevel,
        *,
        backend: Backend,
        store: ProgressStore,
        roster: dict[str, str],
        options: TimeOptions,
    ) -> None:
        self.root = root
        self.backend = backend
        self.store = store
        self.roster = roster
        self.options = options
        self.student: Student | None = None
        self.timeback: Timeback | None = None
        self.session: LessonSession | None = None
        # SDK callbacks and finished jobs run elsewhere; they hand their work to the Tk
        # thread through this queue, which the tick empties.
        self._inbox: queue.SimpleQueue[Callable[[], object]] = queue.SimpleQueue()
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kiosk-job")
        self._closers: list[threading.Thread] = []
        self._closed = False

        self._style()
        root.title("Timeback Kiosk")
        root.geometry("920x600")
        root.minsize(760, 520)
        root.configure(background=BG)
        root.protocol("WM_DELETE_WINDOW", self.quit)
        self._header()
        self.body = ttk.Frame(root, padding=(28, 20))
        self.body.pack(fill="both", expand=True)
        self.footer = ttk.Label(root, style="Footer.TLabel", text=backend.description)
        self.footer.pack(fill="x", side="bottom")
        self.show_sign_in()
        self._tick_job = root.after(TICK_MS, self._tick)

    # -- screens ---------------------------------------------------------------------------

    def show_sign_in(self, error: str = "") -> None:
        self._clear()
        self._who.configure(text="")
        self._sign_out.pack_forget()
        card = ttk.Frame(self.body, style="Card.TFrame", padding=28)
        card.place(relx=0.5, rely=0.45, anchor="center")
        ttk.Label(card, text="Who's learning today?", style="CardTitle.TLabel").pack(anchor="w")
        ttk.Label(card, text="Tap your name to start.", style="CardMuted.TLabel").pack(
            anchor="w", pady=(2, 14)
        )
        for name, token in self.roster.items():
            ttk.Button(
                card,
                text=name,
                style="Student.TButton",
                command=functools.partial(self.sign_in, name, token),
            ).pack(fill="x", pady=3)
        ttk.Separator(card).pack(fill="x", pady=16)
        ttk.Label(card, text="Or sign in with a token", style="CardMuted.TLabel").pack(anchor="w")
        row = ttk.Frame(card, style="Plain.TFrame")
        row.pack(fill="x", pady=(4, 0))
        self.token_entry = ttk.Entry(row, show="•", width=28)
        self.token_entry.pack(side="left", fill="x", expand=True)
        self.token_entry.bind("<Return>", lambda _e: self._sign_in_with_token())
        ttk.Button(
            row, text="Sign in", style="Accent.TButton", command=self._sign_in_with_token
        ).pack(side="left", padx=(8, 0))
        self.sign_in_error = ttk.Label(card, text=error, style="CardError.TLabel")
        self.sign_in_error.pack(anchor="w", pady=(8, 0))

    def show_lessons(self, note: str = "") -> None:
        assert self.student is not None
        self._clear()
        ttk.Label(self.body, text="Your lessons", style="Title.TLabel").pack(anchor="w")
        ttk.Label(
            self.body,
            text="Pick up where you left off, or start something new.",
            style="Muted.TLabel",
        ).pack(anchor="w", pady=(0, 12))
        columns = ("subject", "state", "time")
        tree = ttk.Treeview(self.body, columns=columns, height=6, selectmode="browse")
        tree.heading("#0", text="Lesson", anchor="w")
        tree.heading("subject", text="Subject", anchor="w")
        tree.heading("state", text="State", anchor="w")
        time_heading = "Time (open run)"
        tree.heading("time", text=time_heading, anchor="w")
        tree.column("#0", width=320, stretch=True)
        tree.column("subject", width=170, stretch=False)
        tree.column("state", width=140, stretch=False)
        # As wide as its heading in the heading's bold font, plus the heading's padding.
        tree.column("time", width=self._text_width(time_heading) + 2 * 6 + 8, stretch=False)
        tree.tag_configure("new", foreground=TEXT)
        tree.tag_configure("in progress", foreground=WARN)
        tree.tag_configure("completed", foreground=GOOD)
        for lesson in LESSONS:
            progress = self.store.get(self.student.key, lesson.id)
            tree.insert(
                "",
                "end",
                iid=lesson.id,
                text=lesson.name,
                values=(
                    f"{lesson.subject} · grade {lesson.grade}",
                    STATE_LABELS[progress.state],
                    _clock(progress.active_ms) if progress.run_id else "",
                ),
                tags=(progress.state,),
            )
        tree.pack(fill="x")
        tree.bind("<Double-1>", lambda _e: self._open_selected())
        tree.bind("<Return>", lambda _e: self._open_selected())
        self.lesson_list = tree
        bar = ttk.Frame(self.body)
        bar.pack(fill="x", pady=14)
        self.open_button = ttk.Button(
            bar, text="Open lesson", style="Accent.TButton", command=self._open_selected
        )
        self.open_button.pack(side="right")
        self.lessons_note = ttk.Label(bar, text=note, style="Good.TLabel")
        self.lessons_note.pack(side="left")

    def show_lesson(self, session: LessonSession) -> None:
        self._clear()
        lesson = session.lesson
        frame = ttk.Frame(self.body)
        frame.pack(fill="both", expand=True)
        self.lesson_frame = frame

        top = ttk.Frame(frame)
        top.pack(fill="x")
        ttk.Label(top, text=lesson.name, style="Title.TLabel").pack(side="left")
        self.status_chip = ttk.Label(top, text="", style="Tracking.Chip.TLabel")
        self.status_chip.pack(side="right")
        sub = ttk.Frame(frame)
        sub.pack(fill="x", pady=(2, 14))
        run = session.activity.run_id
        how = "resumed" if session.resumed else "new run"
        ttk.Label(
            sub,
            text=f"{lesson.subject} · grade {lesson.grade} · run {run[:8]} ({how})",
            style="Muted.TLabel",
        ).pack(side="left")
        self.time_label = ttk.Label(sub, text="", style="Time.TLabel")
        self.time_label.pack(side="right")

        card = ttk.Frame(frame, style="Card.TFrame", padding=(22, 16))
        card.pack(fill="both", expand=True)
        card.columnconfigure(0, weight=1)
        self.answer_entries: list[ttk.Entry] = []
        self.check_buttons: list[ttk.Button] = []
        for row, question in enumerate(lesson.questions):
            ttk.Label(card, text=f"{row + 1}.  {question.prompt}", style="Question.TLabel").grid(
                row=row, column=0, sticky="w", pady=7
            )
            entry = ttk.Entry(card, width=16, font=self._fonts["body"])
            entry.grid(row=row, column=1, padx=10)
            result = ttk.Label(card, text="", width=10, style="Card.TLabel")
            result.grid(row=row, column=3, sticky="w")
            button = ttk.Button(
                card,
                text="Check",
                width=7,
                style="Small.TButton",
                command=functools.partial(self._check, session, row, entry, result),
            )
            button.grid(row=row, column=2)
            entry.bind("<Return>", functools.partial(_invoke, button))
            self.answer_entries.append(entry)
            self.check_buttons.append(button)

        ttk.Label(
            card,
            text="Type an answer and press Enter. Finish the lesson when you are done.",
            style="CardMuted.TLabel",
        ).grid(row=len(lesson.questions), column=0, columnspan=4, sticky="w", pady=(18, 0))

        self.banner = ttk.Label(frame, text="", style="Banner.TLabel", wraplength=820)
        self.banner.pack(fill="x", pady=(10, 0))
        bar = ttk.Frame(frame)
        bar.pack(fill="x", pady=(12, 0))
        self.finish_button = ttk.Button(
            bar, text="Finish lesson", style="Accent.TButton", command=self.finish_lesson
        )
        self.finish_button.pack(side="right")
        self.close_button = ttk.Button(bar, text="Close lesson", command=self.close_lesson)
        self.close_button.pack(side="right", padx=(0, 10))

        # Over the exercises while tracking is paused (the chip and time stay in view);
        # input on it resumes, as the tracker sees input anywhere in the window.
        self.overlay = tk.Frame(card, background="#1e2a4a")
        inner = tk.Frame(self.overlay, background="#1e2a4a")
        inner.place(relx=0.5, rely=0.45, anchor="center")
        self.overlay_title = tk.Label(
            inner, text="", background="#1e2a4a", foreground="white", font=self._fonts["title"]
        )
        self.overlay_title.pack()
        self.overlay_text = tk.Label(
            inner,
            text="",
            background="#1e2a4a",
            foreground="#c7d2fe",
            font=self._fonts["body"],
            justify="center",
        )
        self.overlay_text.pack(pady=(10, 0))
        self._refresh_lesson()

    # -- actions ---------------------------------------------------------------------------

    def sign_in(self, name: str, token: str) -> None:
        """Sign a student in: a `Timeback` client with their credentials."""
        if self.backend.knows(token) is False:
            self.show_sign_in(error="That token is not known here. Ask your teacher.")
            return
        key = f"roster:{name}" if name in self.roster else "token:" + _digest(token)
        self.student = Student(name=name, key=key, token=token)
        # identity=: the student, not the token. Tokens expire; a lesson left in the
        # outbox by a crash is replayed to the same identity after the student signs in
        # again with a new one.
        self.timeback = Timeback(
            self.backend.base_url,
            headers={"Authorization": f"Bearer {token}"},
            identity=key,
        )
        self._who.configure(text=name)
        self._sign_out.pack(side="right", padx=(0, 16))
        self.show_lessons()

    def sign_out(self) -> None:
        self.close_lesson(show_list=False)
        client, self.timeback, self.student = self.timeback, None, None
        if client is not None:
            # close() waits (briefly) for delivery: off the Tk thread, joined at quit.
            closer = threading.Thread(target=client.close, name="timeback-close")
            closer.start()
            self._closers.append(closer)
        self.show_sign_in()

    def open_lesson(self, lesson_id: str) -> LessonSession:
        """Start (or resume) tracking a lesson and show it."""
        assert self.student is not None
        assert self.timeback is not None
        lesson = lesson_by_id(lesson_id)
        progress = self.store.get(self.student.key, lesson.id)
        undelivered = threading.Event()

        def on_error(error: DeliveryError, context: ErrorContext) -> None:  # SDK thread
            if isinstance(error, UndeliveredError):
                undelivered.set()  # at once: a finishing job looks right after end()
            self._from_sdk(lambda: self._delivery_problem(error, context))

        activity = self.timeback.activity.start(
            id=lesson.id,
            name=lesson.name,
            course=lesson.course,
            run_id=progress.run_id,  # None (new or completed): a fresh run
            time=self.options,
            on_error=on_error,
        )
        # Saved before anything else can go wrong: the next opening resumes this run.
        self.store.run_started(self.student.key, lesson.id, activity.run_id)
        session = LessonSession(
            lesson=lesson,
            activity=activity,
            tracker=timeback_tk.track(activity, self.root),
            resumed=progress.run_id is not None,
            earlier_ms=progress.active_ms if progress.run_id else 0,
            undelivered=undelivered,
        )
        self.session = session
        self.show_lesson(session)
        return session

    def close_lesson(self, *, show_list: bool = True) -> None:
        """Stop tracking: the time so far is flushed, the run stays open for next time."""
        session, self.session = self.session, None
        if session is None or self.student is None:
            return
        session.tracker.stop()
        if not session.finishing:
            session.activity.end(wait=False)  # never wait in the Tk thread
            self.store.add_time(
                self.student.key,
                session.lesson.id,
                session.activity.run_id,
                session.activity.elapsed_ms,
            )
        if show_list:
            self.show_lessons()

    def finish_lesson(self) -> None:
        """The backend's part: record the run's completion, after its last window."""
        session, student = self.session, self.student
        if session is None or student is None or session.finishing:
            return
        if self.backend.completion_note is not None:
            self._say(self.backend.completion_note)
            return
        session.finishing = True
        for widget in (self.finish_button, self.close_button, *self.check_buttons):
            widget.state(["disabled"])
        self._say("Saving your time and recording the lesson as complete…")
        session.tracker.stop()
        # Pausing stops the clock at the click (and flushes the time so far); end() in
        # the job then waits for delivery, so that the completion comes after the time.
        session.activity.pause()
        active_ms = session.activity.elapsed_ms
        metrics = session.metrics()

        def record() -> None:  # on a worker thread
            session.activity.end()
            if session.undelivered.is_set():
                raise OSError("some of your time could not be delivered yet")
            self.backend.record_completion(
                student.token, session.lesson, session.activity.run_id, metrics
            )

        job = self._jobs.submit(record)
        job.add_done_callback(
            lambda done: self._from_sdk(lambda: self._finished(session, student, active_ms, done))
        )

    def quit(self) -> None:
        """The window's close button: end the lesson (without waiting), close the window."""
        self.close_lesson(show_list=False)
        self.root.after_cancel(self._tick_job)
        self.root.destroy()

    def close(self) -> None:
        """After the main loop: close the clients (waiting for delivery), then the rest."""
        if self._closed:
            return
        self._closed = True
        if self.timeback is not None:
            self.timeback.close()
        for closer in self._closers:
            closer.join()
        self._jobs.shutdown(wait=True)
        self._run_inbox()  # a finish that completed during shutdown still updates progress
        self.store.close()

    # -- the tick and the SDK's thread ---------------------------------------------------

    def _from_sdk(self, work: Callable[[], object]) -> None:
        """Hand work from another thread (SDK callbacks, jobs) to the Tk thread."""
        self._inbox.put(work)

    def _run_inbox(self) -> None:
        while True:
            try:
                work = self._inbox.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(tk.TclError):  # the window went away meanwhile
                work()

    def _tick(self) -> None:
        self._run_inbox()
        if self.session is not None and not self.session.finishing:
            self._refresh_lesson()
        self._tick_job = self.root.after(TICK_MS, self._tick)

    def _refresh_lesson(self) -> None:
        session = self.session
        if session is None:
            return
        activity = session.activity
        elapsed = activity.elapsed_ms
        self.time_label.configure(
            text=f"Active {_clock(elapsed)} this session · {_clock(session.earlier_ms + elapsed)}"
            " in this run"
        )
        if activity.is_idle:
            self.status_chip.configure(text="  ◌  Idle - paused  ", style="Idle.Chip.TLabel")
            self._show_overlay(
                "Are you still there?",
                "Tracking paused after a while without input.\n"
                "Move the mouse or press any key to carry on.",
            )
        elif activity.is_paused:
            self.status_chip.configure(text="  ‖  Paused  ", style="Paused.Chip.TLabel")
            self._show_overlay(
                "Paused",
                "The kiosk is in the background, so your time is not counting.\n"
                "Come back to the window to carry on.",
            )
        elif held := self._held_reason():
            # Time counts and is kept, but the backend refuses it until it is fixed.
            self.status_chip.configure(
                text=f"  ▲  Not saving: {held}  ", style="NotSaving.Chip.TLabel"
            )
            self.overlay.place_forget()
        else:
            self.status_chip.configure(text="  ●  Tracking  ", style="Tracking.Chip.TLabel")
            self.overlay.place_forget()

    def _held_reason(self) -> str:
        """Why the backend refuses this student's time now ("" while it accepts it)."""
        timeback = self.timeback
        if timeback is None:
            return ""
        with contextlib.suppress(LifecycleError):
            held = timeback.statistics().held
            if held:
                return held[0].reason
        return ""

    def _show_overlay(self, title: str, text: str) -> None:
        self.overlay_title.configure(text=title)
        self.overlay_text.configure(text=text)
        if not self.overlay.winfo_ismapped():
            self.overlay.place(x=0, y=0, relwidth=1, relheight=1)
            self.overlay.lift()

    def _delivery_problem(self, error: DeliveryError, context: ErrorContext) -> None:
        session = self.session
        if session is None or session.activity.run_id != context.run_id:
            return
        # The backend's own words, which often end a sentence of their own.
        said = str(error).rstrip(". ")
        if context.will_retry and isinstance(error, HELD_ERRORS):
            self._say(
                f"The server refuses your time for now: {said}. It is kept, and sent once "
                "the server is fixed.",
                error=True,
            )
            return
        retry = " Trying again…" if context.will_retry else ""
        self._say(f"Could not save time to the server: {said}.{retry}", error=True)

    def _finished(
        self, session: LessonSession, student: Student, active_ms: int, job: Future[None]
    ) -> None:
        lesson_id, run_id = session.lesson.id, session.activity.run_id
        self.store.add_time(student.key, lesson_id, run_id, active_ms)
        error = job.exception()
        if error is None:
            self.store.completed(student.key, lesson_id, run_id)
        if self.session is not session or self.student != student:
            return  # signed out or quit meanwhile; the store is up to date
        self.session = None
        if error is None:
            metrics = session.metrics()
            self.show_lessons(
                note=f"“{session.lesson.name}” complete: {metrics.correct_questions}/"
                f"{metrics.total_questions} right, +{metrics.xp_earned} XP."
            )
        else:
            self.show_lessons(
                note=f"Your time is saved, but the lesson could not be completed ({error}). "
                "Open it to try again."
            )
            self.lessons_note.configure(style="Error.TLabel")

    # -- helpers ---------------------------------------------------------------------------

    def _check(
        self, session: LessonSession, index: int, entry: ttk.Entry, result: ttk.Label
    ) -> None:
        if session.lesson.questions[index].check(entry.get()):
            session.correct.add(index)
            result.configure(text="✓ right", style="GoodCard.TLabel")
        else:
            session.correct.discard(index)
            result.configure(text="✗ try again", style="BadCard.TLabel")

    def _open_selected(self) -> None:
        selected = self.lesson_list.selection()
        if selected:
            self.open_lesson(selected[0])

    def _sign_in_with_token(self) -> None:
        token = self.token_entry.get().strip()
        if not token:
            self.sign_in_error.configure(text="Type your token first.")
            return
        names = {t: n for n, t in self.roster.items()}
        self.sign_in(names.get(token, "Student"), token)

    def _say(self, text: str, *, error: bool = False) -> None:
        self.banner.configure(text=text, style="BannerError.TLabel" if error else "Banner.TLabel")

    def _text_width(self, text: str) -> int:
        """Pixels ``text`` takes in the bold font (asked of Tk: no Font object, which
        could be deleted on another thread)."""
        return int(self.root.tk.call("font", "measure", self._fonts["bold"], text))

    def _clear(self) -> None:
        for child in self.body.winfo_children():
            child.destroy()

    def _header(self) -> None:
        bar = ttk.Frame(self.root, style="Header.TFrame", padding=(20, 12))
        bar.pack(fill="x")
        ttk.Label(bar, text="Timeback Kiosk", style="HeaderTitle.TLabel").pack(side="left")
        self._sign_out = ttk.Button(
            bar, text="Sign out", style="Header.TButton", command=self.sign_out
        )
        self._who = ttk.Label(bar, text="", style="Header.TLabel")
        self._who.pack(side="right")

    def _style(self) -> None:
        default = tkfont.nametofont("TkDefaultFont")
        default.configure(size=11)
        family = default.actual("family")
        # Font descriptions, not tkfont.Font objects: a Font deletes itself in __del__,
        # which may run on whichever thread collects it (the SDK's, for one), and Tk
        # must only be called from its own thread.
        self._fonts: dict[str, tuple[str, int, str]] = {
            "title": (family, 20, "bold"),
            "header": (family, 15, "bold"),
            "body": (family, 12, "normal"),
            "bold": (family, 11, "bold"),
        }
        style = ttk.Style(self.root)
        style.theme_use("clam")
        style.configure(".", background=BG, foreground=TEXT, font=default)
        style.configure("TFrame", background=BG)
        style.configure(
            "Card.TFrame",
            background=CARD,
            relief="solid",
            borderwidth=1,
            bordercolor=LINE,
            lightcolor=LINE,
            darkcolor=LINE,
        )
        style.configure("Plain.TFrame", background=CARD)
        style.configure("Header.TFrame", background=ACCENT)
        style.configure("TLabel", background=BG, foreground=TEXT)
        style.configure("Title.TLabel", font=self._fonts["title"])
        style.configure("Muted.TLabel", foreground=MUTED)
        style.configure("Good.TLabel", foreground=GOOD, font=self._fonts["bold"])
        style.configure("Error.TLabel", foreground="#b42318", font=self._fonts["bold"])
        style.configure("Time.TLabel", foreground=TEXT, font=self._fonts["bold"])
        style.configure("Card.TLabel", background=CARD)
        style.configure("CardTitle.TLabel", background=CARD, font=self._fonts["title"])
        style.configure("CardMuted.TLabel", background=CARD, foreground=MUTED)
        style.configure("CardError.TLabel", background=CARD, foreground="#b42318")
        style.configure("Question.TLabel", background=CARD, font=self._fonts["body"])
        style.configure("GoodCard.TLabel", background=CARD, foreground=GOOD)
        style.configure("BadCard.TLabel", background=CARD, foreground="#b42318")
        style.configure("Banner.TLabel", foreground=ACCENT_DARK)
        style.configure("BannerError.TLabel", foreground="#b42318")
        style.configure("Footer.TLabel", background=LINE, foreground=MUTED, padding=(12, 4))
        style.configure("Header.TLabel", background=ACCENT, foreground="white")
        style.configure(
            "HeaderTitle.TLabel", background=ACCENT, foreground="white", font=self._fonts["header"]
        )
        for name, fg, bg in (
            ("Tracking", GOOD, GOOD_BG),
            ("Paused", WARN, WARN_BG),
            ("Idle", IDLE, IDLE_BG),
            ("NotSaving", BAD, BAD_BG),
        ):
            style.configure(
                f"{name}.Chip.TLabel",
                background=bg,
                foreground=fg,
                font=self._fonts["bold"],
                padding=(6, 4),
            )
        style.configure("TButton", padding=(14, 7))
        style.configure(
            "Accent.TButton", background=ACCENT, foreground="white", bordercolor=ACCENT_DARK
        )
        style.map(
            "Accent.TButton",
            background=[("disabled", "#9aa7d6"), ("active", ACCENT_DARK)],
            foreground=[("disabled", "#eef0fa")],
        )
        style.configure("Small.TButton", padding=(10, 3))
        style.configure("Student.TButton", font=self._fonts["body"], padding=(18, 10))
        style.configure(
            "Header.TButton", background=ACCENT_DARK, foreground="white", bordercolor=ACCENT_DARK
        )
        style.map("Header.TButton", background=[("active", "#1d2f6b")])
        style.configure(
            "Treeview",
            rowheight=30,
            fieldbackground=CARD,
            background=CARD,
            bordercolor=LINE,
            lightcolor=LINE,
            darkcolor=LINE,
        )
        style.configure("TEntry", bordercolor="#b8c2d6", lightcolor=CARD, padding=(6, 3))
        style.configure("Treeview.Heading", font=self._fonts["bold"], padding=(6, 5))


def _invoke(button: ttk.Button, _event: object) -> None:
    button.invoke()


def _clock(ms: int) -> str:
    seconds = ms // 1000
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def load_roster(path: Path) -> dict[str, str]:
    """A roster file: a JSON object mapping each student's name to their token."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and v for k, v in data.items()
    ):
        raise SystemExit(f"{path}: a roster is a JSON object of name -> token strings")
    return data


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.kiosk_app",
        description="A classroom kiosk that tracks lesson time with timeback-client. By "
        "default it runs against an embedded emulator with a demo roster.",
    )
    parser.add_argument("--roster", type=Path, default=SAMPLE_ROSTER, help="name -> token JSON")
    parser.add_argument("--data-dir", type=Path, default=None, help="where progress is kept")
    parser.add_argument("--server", metavar="URL", help="a real backend's Timeback mount")
    parser.add_argument("--token", help="sign in with this bearer token straight away")
    parser.add_argument("--port", type=int, default=0, help="the embedded emulator's port")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="seconds per window")
    parser.add_argument(
        "--idle-timeout", type=float, default=60.0, help="seconds without input before pausing"
    )
    return parser.parse_args(argv)


def build_backend(args: argparse.Namespace, roster: dict[str, str], data_dir: Path) -> Backend:
    if args.server:
        return RemoteBackend(args.server)
    return EmbeddedEmulator(roster, db=data_dir / "emulator.sqlite3", port=args.port)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    roster = load_roster(args.roster) if args.roster else {}
    data_dir: Path = args.data_dir or default_data_dir()
    store = ProgressStore(data_dir / "progress.sqlite3")
    backend = build_backend(args, roster, data_dir)
    print(f"Timeback kiosk: {backend.description}; progress in {store.path}", flush=True)
    try:
        root = tk.Tk()
        kiosk = Kiosk(
            root,
            backend=backend,
            store=store,
            roster=roster,
            options=TimeOptions(heartbeat_interval=args.heartbeat, idle_timeout=args.idle_timeout),
        )
        if args.token:
            names = {t: n for n, t in roster.items()}
            kiosk.sign_in(names.get(args.token, "Student"), args.token)
        try:
            root.mainloop()
        finally:
            kiosk.close()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
