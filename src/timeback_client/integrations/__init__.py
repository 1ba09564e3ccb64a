"""One-line time tracking for GUI toolkits.

Each toolkit has a module of its own, imported on demand so that one toolkit's absence
never breaks another:

- `timeback_client.integrations.tk`: ``track(activity, root)`` for Tkinter (stdlib).
- `timeback_client.integrations.qt`: ``track(activity, app_or_widget)`` for PySide6
  (``pip install 'timeback-client[qt]'``).

Both bind the toolkit's input events to `Activity.touch` (throttled), pause the activity
while the app is out of focus or its window is hidden or minimised, resume it when the
student comes back, and let go when the activity ends. Neither ever waits on the network
in the GUI thread.
"""

__all__: list[str] = []
