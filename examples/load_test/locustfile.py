"""A school of simulated students on Locust: timeback-client's load test.

Against the emulator (``.venv/bin/timeback-client emulator --port 8787 --student
TOKEN=ada@example.edu``), a master and two workers on this machine, from the README's venv::

    .venv/bin/locust -f examples/load_test/locustfile.py --headless --master \\
        --expect-workers 2 --users 60 --spawn-rate 30 --run-time 30s \\
        --host http://127.0.0.1:8787/api/timeback \\
        --timeback-token TOKEN --timeback-interval 1 --timeback-report report.json
    .venv/bin/locust -f examples/load_test/locustfile.py --worker    # twice, on any machines

Against your own deployment, ``--timeback-tokens students.txt`` (a token or a session
cookie a line) and ``--timeback-courses timeback.config.json`` (the backend's own courses)
instead of ``--timeback-token``.

Each student starts a lesson, works, pauses, goes idle, leaves and comes back to its saved
runId, and, against the emulator, sometimes completes through the server's ``record()``.
At the end the master writes ``report.json`` (every run's measured active time) and, against
the emulator, checks every run against what the emulator recorded.

Subclass `StudentUser` for more (see docs/guides/load-testing.md): a login per student,
your students' behaviour.
"""

from timeback_client.locust import StudentUser


class Student(StudentUser):
    """A student of ``--timeback-courses`` (else the built-in lessons), sending its line
    of ``--timeback-tokens`` (or ``--timeback-token``)."""
