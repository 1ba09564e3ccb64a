"""Jupyter integration: ``track(activity)`` shows a live badge, and the browser drives it.

```python
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import jupyter as timeback_jupyter

timeback = Timeback(BASE_URL, headers=AUTH)
activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                   course={"subject": "Math", "grade": 3},
                                   time=TimeOptions(idle_timeout=300))
timeback_jupyter.track(activity)    # shows the badge in this cell's output
```

The badge (an [anywidget](https://anywidget.dev) widget, ``pip install
'timeback-client[jupyter]'``) shows the lesson's active time, ticking, and its state:
"Tracking", "Paused: tab hidden", "Paused: idle", "Paused" (by the app), "Ended" (or
"Stopped", after `JupyterTracker.stop`), and a delivery problem when there is one
(`Activity.delivery_problem`). Its code in the page reports what the browser sees, as the
browser SDK does for web apps:

- key presses, pointer presses and moves, wheel and scroll anywhere in the page call
  `Activity.touch` (at most once per ``touch_interval``, the last input of a burst
  always), so reading and typing count as activity, and an idle pause ends;
- the page being hidden (another browser tab, a minimised window) pauses the activity,
  and the page being shown again resumes it (a pause made by the app itself is left
  alone). With the notebook open in several tabs, it counts as shown while any is;
- once the activity has ended, by any means, the page stops listening and the badge
  shows the final time.

Running a cell is input too (the key press or click that runs it). Without a page (the
notebook run by ``nbconvert`` or ``nbclient``) nothing reports, and only
``idle_timeout`` applies.

It works with the blocking `Timeback` and with `AsyncTimeback`, in JupyterLab,
Notebook 7 and marimo (which runs anywidget widgets itself: there ``track`` shows the
badge with ``marimo.output.append``, and a cell whose value is the tracker shows it too).
Every call it makes returns at once: the kernel never waits on the network. Messages from
the page reach the kernel between cells, as every widget's do.
"""

from __future__ import annotations

import asyncio
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

try:
    import anywidget
    import traitlets
    from IPython.display import display
except ImportError as exc:  # pragma: no cover - exercised in a venv without anywidget
    raise ImportError(
        "timeback_client.integrations.jupyter needs anywidget: "
        "pip install 'timeback-client[jupyter]' (or pip install anywidget)"
    ) from exc

from .._activity import AsyncActivity
from .._delivery_errors import (
    BackendConfigurationError,
    DeliveryError,
    HoldExpiredError,
    UndeliveredError,
    UserResolutionError,
)
from .._errors import ValidationError
from .._sync import Activity
from .._wire import short_reason
from ._presence import DEFAULT_TOUCH_INTERVAL, Presence, PresenceTracker

__all__ = ["JupyterTracker", "track"]

_HERE: Final = Path(__file__).parent

# A delivery problem is shown on one line of the badge; the whole of it goes to on_error.
_PROBLEM_CHARS: Final = 160

# The page ticks the time itself between the kernel's updates; the kernel sends a new
# figure only when the state changes or the page's reckoning would be off by this much
# (a virtual clock, or a cell that kept the kernel busy).
_DRIFT_MS: Final = 250


class _Badge(anywidget.AnyWidget):
    """The badge's model; its view is ``_jupyter_badge.js``."""

    _esm = _HERE / "_jupyter_badge.js"
    _css = _HERE / "_jupyter_badge.css"

    label = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("tracking").tag(sync=True)
    elapsed_ms = traitlets.Int(0).tag(sync=True)
    problem = traitlets.Unicode("").tag(sync=True)
    generation = traitlets.Int(0).tag(sync=True)
    touch_interval_ms = traitlets.Int(250).tag(sync=True)

    def __repr__(self) -> str:
        # The notebook's text/plain output (nbconvert, a console) where no view renders.
        return f"<Timeback badge {self.label!r}: {self.state}>"


# The tracker of each running activity, so that tracking it again (a re-run cell) shows the
# same badge rather than a second one. Weak: an activity's tracker goes with it.
_trackers: weakref.WeakKeyDictionary[AsyncActivity, JupyterTracker] = weakref.WeakKeyDictionary()


class JupyterTracker(PresenceTracker):
    """The badge `track` showed, and what it does for the activity.

    `stop()` lets go; so does the activity's end.

    Attributes:
        activity: the tracked activity.
        widget: the badge (an ``anywidget.AnyWidget``); display it with `show`.
    """

    def __init__(
        self,
        activity: Activity | AsyncActivity,
        *,
        touch_interval: float,
        poll_interval: float,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.activity = activity
        # The page throttles input; every message that arrives is a touch.
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=0)
        self._loop = loop
        self._poll_interval = _positive_poll_interval(poll_interval)
        self._poll_job: asyncio.TimerHandle | None = None
        self._views: dict[str, bool] = {}
        self._stopped = False
        self._sent_ms = 0
        self._sent_at = time.monotonic()
        self.widget: Any = _Badge(label=activity.name)
        self.touch_interval = touch_interval
        self.widget.on_msg(self._on_message)
        self._refresh()
        if not self._presence.check_ended():  # else it has stopped already
            self._poll_job = loop.call_later(poll_interval, self._poll)

    @property
    def touch_interval(self) -> float:
        """The least time between two ``touch()`` calls from the page, in seconds."""
        return self.widget.touch_interval_ms / 1000  # type: ignore[no-any-return]

    @touch_interval.setter
    def touch_interval(self, seconds: float) -> None:
        if seconds < 0:
            raise ValidationError("touch_interval", f"{seconds!r} is negative", "Pass e.g. 0.25.")
        self.widget.touch_interval_ms = round(seconds * 1000)

    @property
    def page_visible(self) -> bool:
        """Whether a page showing the badge is visible (True while no page has reported)."""
        return self._presence.visible

    def show(self) -> None:
        """Display the badge in the current cell's output; an earlier one steps aside."""
        self.widget.generation += 1
        marimo = _running_marimo()
        if marimo is not None:
            marimo.output.append(self.widget)
        else:
            display(self.widget)  # type: ignore[no-untyped-call]

    def _ipython_display_(self) -> None:
        self.show()

    def _display_(self) -> Any:
        """marimo's display hook: the tracker as a cell's value shows its badge there."""
        self.widget.generation += 1
        return self.widget

    def stop(self) -> None:
        """Stop following the activity: the page stops listening, and the badge shows its
        last state. Idempotent; the activity is left as it is."""
        if self._stopped:
            return
        self._stopped = True
        if self._poll_job is not None:
            self._poll_job.cancel()
            self._poll_job = None
        self.widget.on_msg(self._on_message, remove=True)
        core = _core(self.activity)
        if _trackers.get(core) is self:
            del _trackers[core]
        self._refresh()
        if self.widget.state != "ended":
            # Let go while the activity runs on: the badge says it no longer follows it.
            self.widget.state = "stopped"

    def __repr__(self) -> str:
        state = "active" if self.active else "stopped"
        return f"<JupyterTracker {self.activity.id!r} {state} state={self.widget.state!r}>"

    # -- what the page tells (kernel thread, between cells) --------------------------------

    def _on_message(self, widget: object, content: object, buffers: Sequence[bytes]) -> None:
        if self._stopped or not isinstance(content, Mapping):
            return
        event, view = content.get("event"), str(content.get("view", ""))
        if event == "input":
            self._presence.input_seen()
        elif event == "visibility":
            self._views[view] = bool(content.get("visible"))
            self._settle()
        elif event == "closed":
            self._views.pop(view, None)
            self._settle()
        if not self._stopped:
            self._refresh()

    def _settle(self) -> None:
        # No page left (every output cleared) says nothing about the student: counted as
        # shown, and idle_timeout decides.
        self._presence.visible = any(self._views.values()) if self._views else True
        self._presence.settle()

    # -- what the kernel shows ----------------------------------------------------------

    def _poll(self) -> None:
        self._poll_job = None
        if self._stopped or self._presence.check_ended():
            return
        self._refresh()
        self._poll_job = self._loop.call_later(self._poll_interval, self._poll)

    def _refresh(self) -> None:
        """Bring the badge's state, time and problem up to date (only what changed is sent)."""
        activity, widget = self.activity, self.widget
        try:
            state = self._state()
            elapsed = activity.elapsed_ms
            problem = activity.delivery_problem
        except RuntimeError:  # its client was closed
            return
        now = time.monotonic()
        expected = self._sent_ms
        if widget.state == "tracking":
            expected += round((now - self._sent_at) * 1000)
        if state != widget.state or abs(elapsed - expected) >= _DRIFT_MS:
            with widget.hold_sync():
                widget.elapsed_ms = elapsed
                widget.state = state
            self._sent_ms, self._sent_at = elapsed, now
        text = "" if problem is None else _shorten(_problem_text(problem))
        if text != widget.problem:
            widget.problem = text

    def _state(self) -> str:
        activity = self.activity
        if activity.is_ended:
            return "ended"
        if activity.is_idle:
            return "idle"
        if activity.is_paused:
            return "hidden" if self._presence.paused_here else "paused"
        return "tracking"


def track(
    activity: Activity | AsyncActivity,
    *,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
    show: bool = True,
) -> JupyterTracker:
    """Show a live badge for an activity, and let the browser's page drive it.

    Call it in a notebook cell, once the activity has started. Tracking the same activity
    again (a re-run cell) returns the same tracker, with these settings, and moves its
    badge to this cell's output: there is one badge per activity.

    Args:
        activity: the activity to drive (from ``Timeback.activity.start`` or
            ``AsyncTimeback.activity.start``).
        touch_interval: the least time between two ``touch()`` calls from the page, in
            seconds.
        poll_interval: how often the kernel brings the badge up to date and looks whether
            the activity has ended, in seconds.
        show: display the badge in this cell's output (else `JupyterTracker.show` does).

    Returns:
        The tracker; ``stop()`` lets go of the activity (done for you once it ends).

    Raises:
        ValidationError: ``activity`` is not an activity, or an interval is not positive.
        RuntimeError: called outside a running asyncio loop (a Jupyter kernel has one).
    """
    if not isinstance(activity, (Activity, AsyncActivity)):
        raise ValidationError(
            "activity",
            f"is a {type(activity).__name__}, not an activity",
            "Pass what timeback.activity.start(...) returned.",
        )
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "track() runs in a Jupyter kernel, whose asyncio loop is running; call it in "
            "a notebook cell"
        ) from None
    core = _core(activity)
    tracker = _trackers.get(core)
    if tracker is None:
        tracker = JupyterTracker(
            activity, touch_interval=touch_interval, poll_interval=poll_interval, loop=loop
        )
        if tracker.active:  # else the activity had ended already
            _trackers[core] = tracker
    else:
        tracker.touch_interval = touch_interval
        tracker._poll_interval = _positive_poll_interval(poll_interval)
    if show:
        tracker.show()
    return tracker


def _running_marimo() -> Any:
    """The ``marimo`` module when a marimo notebook runs this code, else None."""
    marimo = sys.modules.get("marimo")
    if marimo is None:  # never imported: not in marimo (and no import cost here)
        return None
    try:
        return marimo if marimo.running_in_notebook() else None
    except Exception:  # an old or odd marimo: take the IPython path
        return None


def _positive_poll_interval(seconds: float) -> float:
    if not seconds > 0:
        raise ValidationError("poll_interval", f"{seconds!r} is not positive", "Pass e.g. 0.5.")
    return seconds


def _core(activity: Activity | AsyncActivity) -> AsyncActivity:
    """The running activity itself: a blocking `Activity` wraps one (and several wrappers,
    say from ``timeback.activity.current``, may wrap the same)."""
    return activity._activity if isinstance(activity, Activity) else activity


def _problem_text(problem: DeliveryError) -> str:
    """A delivery problem in a student's words: the cause of held windows, not the
    operator's fix (which `on_error` and ``statistics().held`` carry whole)."""
    if isinstance(problem, HoldExpiredError):
        return f"{problem.active_ms / 1000:.0f} s dropped ({short_reason(problem.cause)})"
    if isinstance(problem, UndeliveredError) and problem.retryable:
        return "kept, and sent once the backend takes it"
    if (
        isinstance(problem, (BackendConfigurationError, UserResolutionError))
        and problem.retryable
        and problem.code
    ):
        return f"{short_reason(problem.code)}; kept until the backend is fixed"
    return str(problem)


def _shorten(text: str) -> str:
    return text if len(text) <= _PROBLEM_CHARS else text[: _PROBLEM_CHARS - 1] + "\u2026"
