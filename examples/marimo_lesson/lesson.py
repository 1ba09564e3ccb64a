"""Fractions, a tracked marimo notebook: ``marimo edit examples/marimo_lesson/lesson.py``
(or ``marimo run`` for the app view).

The badge is the Jupyter integration's anywidget widget, which marimo runs as it is:
typing, clicks and scrolling in the page count as activity, and hiding the page
(another tab, a minimised window) pauses the time.
"""

import marimo

__generated_with = "0.25.2"
app = marimo.App(width="medium")


@app.cell
def _():
    import marimo as mo

    from timeback_client import Timeback, TimeOptions
    from timeback_client.emulator import Emulator
    from timeback_client.integrations import jupyter as timeback_jupyter

    # The app's backend: an emulator inside this notebook. For a real one, drop the
    # emulator and the transport, and give the client your backend's mount and credentials.
    TOKEN = "demo-token"
    emulator = Emulator(students={TOKEN: "student@example.edu"})
    timeback = Timeback(
        "https://emulator.local/api/timeback",
        headers={"Authorization": f"Bearer {TOKEN}"},
        transport=emulator.transport(),
        outbox=None,
    )
    activity = timeback.activity.start(
        id="marimo-fractions",
        name="Fractions in marimo",
        course={"subject": "Math", "grade": 5},
        time=TimeOptions(heartbeat_interval=15, idle_timeout=300),
    )
    # The badge: your active time, ticking, in this cell's output.
    timeback_jupyter.track(activity)
    return activity, emulator, mo, timeback


@app.cell
def _(mo):
    mo.md(
        """
        # Fractions: add two of them

        Type your answer as a fraction, like `5/6`. Your time counts while you work in
        this page, and pauses when you switch to another tab.
        """
    )
    return


@app.cell
def _(mo):
    answer = mo.ui.text(label="1/2 + 1/4 =", placeholder="a fraction")
    answer
    return (answer,)


@app.cell
def _(answer, mo):
    from fractions import Fraction

    def feedback(text):
        try:
            given = Fraction(text.strip())
        except (ValueError, ZeroDivisionError):
            return "Type a fraction, like 5/6." if text.strip() else ""
        return "Right!" if given == Fraction(3, 4) else "Not yet: try again."

    mo.md(feedback(answer.value))
    return


@app.cell
def _(mo):
    finish = mo.ui.run_button(label="Finish lesson")
    finish
    return (finish,)


@app.cell
def _(activity, emulator, finish, mo, timeback):
    mo.stop(not finish.value, mo.md("Press **Finish lesson** when you are done."))
    activity.end()
    run = emulator.run(activity.run_id)  # the backend's record of the run
    timeback.close()
    mo.md(
        f"Done: {run.active_ms / 1000:.1f} s active, {run.inactive_ms / 1000:.1f} s paused, "
        f"in {len(run.windows)} window(s)."
    )
    return


if __name__ == "__main__":
    app.run()
