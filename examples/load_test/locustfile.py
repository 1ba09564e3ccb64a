"""A school of simulated students on Locust: timeback-client's load test.

Against the emulator (``timeback-client emulator --port 8787 --student TOKEN=ada@example.edu``),
a master and two workers on this machine::

    locust -f examples/load_test/locustfile.py --headless --master --expect-workers 2 \\
        --users 60 --spawn-rate 30 --run-time 30s --host http://127.0.0.1:8787/api/timeback \\
        --timeback-token TOKEN --timeback-interval 1 --timeback-report report.json
    locust -f examples/load_test/locustfile.py --worker        # twice, on any machines

Each student starts a lesson, works, pauses, goes idle, leaves and comes back to its saved
runId, and, against the emulator, sometimes completes through the server's ``record()``.
At the end the master writes ``report.json`` (every run's measured active time) and, against
the emulator, checks every run against what the emulator recorded.

To load-test your own backend, subclass `StudentUser` (see docs/guides/load-testing.md):
one identity per student, your course catalogue, your students' behaviour.
"""

from timeback_client.locust import StudentUser


class Student(StudentUser):
    """A student of the built-in lessons, sending ``--timeback-token``."""
