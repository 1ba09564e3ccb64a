"""One-line time tracking for GUI toolkits and notebooks.

Each toolkit has a module of its own, imported on demand so that one toolkit's absence
never breaks another:

- `timeback_client.integrations.tk`: ``track(activity, root)`` for Tkinter (stdlib).
- `timeback_client.integrations.qt`: ``track(activity, app_or_widget)`` for PySide6
  (``pip install 'timeback-client[qt]'``).
- `timeback_client.integrations.jupyter`: ``track(activity)`` for Jupyter notebooks
  (``pip install 'timeback-client[jupyter]'``).
- `timeback_client.integrations.pygame`: ``track(activity)``, then
  ``tracker.process_event(event)`` in the game's loop, for pygame and pygame-ce
  (``pip install 'timeback-client[pygame]'``).
- `timeback_client.integrations.kivy`: ``track(activity)`` for Kivy apps (window and
  app) on touch screens and kiosks (``pip install 'timeback-client[kivy]'``).
- `timeback_client.integrations.textual`: ``track(activity, app)`` for Textual apps in
  the terminal (``pip install 'timeback-client[textual]'``).

Each turns input (keys, pointer, wheel) into `Activity.touch` (throttled), pauses the
activity while the student is away (the app out of focus, its window hidden or
minimised; in a notebook, the browser's page hidden), resumes it when the student comes
back, and lets go when the activity ends. None ever waits on the network in the GUI
thread or the kernel.
"""

__all__: list[str] = []
