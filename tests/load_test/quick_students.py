"""A locustfile for the tests: students of the built-in lessons on a fast behaviour mix.

A subclass of `StudentUser`, as a backend team writes one: the same plan, with sessions,
breaks and idling of seconds rather than minutes, so that a ten-second run has students
leave, come back to their saved runId, pause, go idle and complete.
"""

from timeback_client.locust import StudentUser
from timeback_client.tools.students import Behaviour


class QuickStudent(StudentUser):
    """Seconds-long sessions: every step of the plan happens within a short test."""

    behaviour = Behaviour(
        arrival_spread=0.0,
        session_mean=3.0,
        work_mean=1.0,
        touch_every=(0.2, 0.6),
        break_chance=0.25,
        break_length=(0.3, 1.2),
        idle_chance=0.15,
        idle_timeout=0.8,
        idle_extra=(0.1, 0.6),
        away_length=(0.3, 1.5),
        complete_chance=0.3,
        record_after=0.2,
    )
    flush_timeout = 15.0
