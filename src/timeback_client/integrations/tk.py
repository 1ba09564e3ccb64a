"""Tkinter integration: ``track(activity, root)`` and the activity follows the window.

```python
import tkinter
from timeback_client import Timeback, TimeOptions
from timeback_client.integrations import tk as timeback_tk

root = tkinter.Tk()
with Timeback(BASE_URL, headers=AUTH) as timeback:
    activity = timeback.activity.start(id="lesson-1", name="Fractions",
                                       course={"subject": "Math", "grade": 3},
                                       time=TimeOptions(idle_timeout=60))
    timeback_tk.track(activity, root)   # input touches; focus and minimise pause
    root.mainloop()                     # closing the window ends the activity
```

What the tracker does, all on the Tk thread and without ever waiting on the network:

- key presses, mouse buttons, wheel and pointer motion anywhere in the window call
  `Activity.touch` (at most once per ``touch_interval``), which also ends an idle pause;
- the app losing the focus, or the window being unmapped (minimised, withdrawn), pauses
  the activity, and the focus coming back to the shown window resumes it (a pause made by
  the app itself is left alone);
- destroying the window ends the activity with ``end(wait=False)`` (``end_on_destroy``);
- once the activity has ended, by any means, every binding is removed again.

SDK callbacks (``on_pause``, ``on_error``, ...) still run on the SDK's thread: hand them
to Tk with a `queue.Queue` polled by ``root.after``, never by touching widgets there.
"""

from __future__ import annotations

import contextlib
import tkinter
from collections.abc import Callable
from typing import Final

from .._sync import Activity
from ._presence import DEFAULT_TOUCH_INTERVAL, SETTLE_DELAY_MS, Presence, PresenceTracker

__all__ = ["TkTracker", "track"]

# Bound on the toplevel, which is in the bindtags of every widget inside it, so these
# see input anywhere in the window. <MouseWheel> is Windows and macOS; X11 wheels are
# <ButtonPress> 4 and 5.
INPUT_SEQUENCES: Final = ("<KeyPress>", "<ButtonPress>", "<MouseWheel>", "<Motion>")


class TkTracker(PresenceTracker):
    """The bindings `track` made. `stop()` removes them; so does the activity's end.

    Attributes:
        activity: the tracked activity.
        widget: the toplevel whose events are watched.
    """

    def __init__(
        self,
        activity: Activity,
        widget: tkinter.Misc,
        *,
        touch_interval: float = DEFAULT_TOUCH_INTERVAL,
        poll_interval: float = 0.5,
        end_on_destroy: bool = True,
    ) -> None:
        self.activity = activity
        self.widget: tkinter.Misc = widget.winfo_toplevel()
        self._path = str(self.widget)
        self._presence = Presence(activity, on_ended=self.stop, touch_interval=touch_interval)
        self._poll_ms = max(1, round(poll_interval * 1000))
        self._end_on_destroy = end_on_destroy
        self._bindings: list[tuple[str, str]] = []
        self._settle_job: str | None = None
        self._poll_job: str | None = None
        self._stopped = False

        for sequence in INPUT_SEQUENCES:
            self._bind(sequence, self._on_input)
        self._bind("<FocusIn>", self._on_focus_in)
        self._bind("<FocusOut>", self._on_focus_out)
        self._bind("<Map>", self._on_map)
        self._bind("<Unmap>", self._on_unmap)
        self._bind("<Destroy>", self._on_destroy)
        self._poll_job = self.widget.after(self._poll_ms, self._poll)

    def stop(self) -> None:
        """Remove every binding and timer. Idempotent; the activity is left as it is."""
        if self._stopped:
            return
        self._stopped = True
        jobs = [job for job in (self._settle_job, self._poll_job) if job is not None]
        self._settle_job = self._poll_job = None
        bindings, self._bindings = self._bindings, []
        # Tearing down after the window (or the whole interpreter) is gone is no error.
        with contextlib.suppress(tkinter.TclError):
            for job in jobs:
                self.widget.after_cancel(job)
            for sequence, funcid in bindings:
                _unbind(self.widget, sequence, funcid)

    # -- event handlers (Tk thread) ------------------------------------------------------

    def _on_input(self, event: tkinter.Event[tkinter.Misc]) -> None:
        self._presence.input_seen()

    def _on_focus_in(self, event: tkinter.Event[tkinter.Misc]) -> None:
        # Any widget of this window getting the focus means the app has it.
        self._presence.focused = True
        self._settle_soon()

    def _on_focus_out(self, event: tkinter.Event[tkinter.Misc]) -> None:
        # A child losing the focus to a sibling is no news; the toplevel losing it is.
        if self._is_toplevel(event):
            self._presence.focused = False
            self._settle_soon()

    def _on_map(self, event: tkinter.Event[tkinter.Misc]) -> None:
        if self._is_toplevel(event):
            self._presence.visible = True
            self._settle_soon()

    def _on_unmap(self, event: tkinter.Event[tkinter.Misc]) -> None:
        if self._is_toplevel(event):
            self._presence.visible = False
            self._settle_soon()

    def _on_destroy(self, event: tkinter.Event[tkinter.Misc]) -> None:
        if not self._is_toplevel(event):
            return
        if self._end_on_destroy and not self._presence.ended:
            # Never wait in the GUI thread. A RuntimeError: its client is already closed.
            with contextlib.suppress(RuntimeError):
                self.activity.end(wait=False)
        self.stop()

    # -- helpers -------------------------------------------------------------------------

    def _is_toplevel(self, event: tkinter.Event[tkinter.Misc]) -> bool:
        # event.widget is a plain string for widgets tkinter did not create.
        return str(event.widget) == self._path

    def _settle_soon(self) -> None:
        if self._stopped:
            return
        if self._settle_job is not None:
            self.widget.after_cancel(self._settle_job)
        self._settle_job = self.widget.after(SETTLE_DELAY_MS, self._settle)

    def _settle(self) -> None:
        self._settle_job = None
        if not self._stopped:
            self._presence.settle()

    def _poll(self) -> None:
        self._poll_job = None
        if self._stopped or self._presence.check_ended():
            return
        self._poll_job = self.widget.after(self._poll_ms, self._poll)

    def _bind(self, sequence: str, handler: Callable[[tkinter.Event[tkinter.Misc]], None]) -> None:
        funcid = self.widget.bind(sequence, handler, add="+")
        self._bindings.append((sequence, funcid))


def track(
    activity: Activity,
    root: tkinter.Misc,
    *,
    touch_interval: float = DEFAULT_TOUCH_INTERVAL,
    poll_interval: float = 0.5,
    end_on_destroy: bool = True,
) -> TkTracker:
    """Let a Tk window drive an activity: input touches it, focus and visibility pause it.

    Call it on the Tk thread, once the activity has started.

    Args:
        activity: the activity to drive (from ``Timeback.activity.start``).
        root: the window (``Tk`` or ``Toplevel``); for any other widget, its toplevel.
        touch_interval: the least time between two ``touch()`` calls, in seconds.
        poll_interval: how often to look whether the activity has ended, in seconds.
        end_on_destroy: destroying the window ends the activity (``end(wait=False)``).

    Returns:
        The tracker; ``stop()`` removes its bindings (done for you once the activity ends).
    """
    return TkTracker(
        activity,
        root,
        touch_interval=touch_interval,
        poll_interval=poll_interval,
        end_on_destroy=end_on_destroy,
    )


def _unbind(widget: tkinter.Misc, sequence: str, funcid: str) -> None:
    """Remove one handler from a binding, leaving the app's own handlers in place.

    ``Misc.unbind(sequence, funcid)`` removes every handler of the sequence before
    Python 3.13 (gh-75666), so edit the binding script the way 3.13 does.
    """
    prefix = f'if {{"[{funcid} '
    script = widget.bind(sequence)
    kept = "\n".join(line for line in script.split("\n") if not line.startswith(prefix))
    widget.bind(sequence, kept if kept.strip() else "")
    widget.deletecommand(funcid)
