"""Benchmark 3's students on Locust: they arrive and work, heartbeat after heartbeat.

No breaks, no idling, no leaving, no completion: every window but the last is cut by a
heartbeat, so its lateness can be read from what the emulator recorded, as
``bench_punctuality.py`` reads it. Input comes every 3-12 s, as a working student's does.
"""

from timeback_client.locust import StudentUser
from timeback_client.tools.students import Behaviour


class SteadyStudent(StudentUser):
    behaviour = Behaviour(
        arrival_spread=0.0,  # Locust's spawn rate spreads the arrivals
        session_mean=1e9,
        work_mean=1e9,
        break_chance=0.0,
        idle_chance=0.0,
        complete_chance=0.0,
    )
