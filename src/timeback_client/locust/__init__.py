"""Simulated students as Locust users: load tests on Locust's master and workers.

``pip install 'timeback-client[locust]'``, then in a locustfile::

    from timeback_client.locust import StudentUser

    class Student(StudentUser):
        pass

and run it as any locustfile (``--timeback-tokens``, ``--timeback-courses``,
``--timeback-token``, ``--timeback-course``, ``--timeback-interval`` and
``--timeback-report`` are added to Locust's command line; workers get them from the
master). Importing this package imports Locust, which monkey-patches the process for
gevent: import it only in a locustfile.

Each `StudentUser` is one student of ``timeback-client simulate``: the same plan of steps
(`timeback_client.tools.students.student_plan`: arrive, work, pause, go idle, leave, come
back to the saved runId, sometimes complete through the server's ``record()``), carried
out with the SDK's own `AsyncTimeback` and `AsyncActivity`, so the windows are the SDK's
time accounting and wire bytes, and their delivery (the retry policy, the bounded
sender) is what apps do. Every heartbeat request is a Locust request named
``heartbeat``: its latency, and, when it fails, a `HeartbeatFailed` naming the status and
the backend's error code (``409 USER_RESOLUTION_FAILED``, ``no answer: ConnectTimeout``).

One idea a module: ``_bridge`` (how gevent and anyio meet: the SDK's thread beside
gevent's hub), ``_user`` (the student as a Locust user, and what a process's students
share), ``_report`` (the test's end: the workers' runs, the master's report and verdict),
``_options`` (the ``--timeback-*`` options).

The cost, measured (``benchmarks/run.py --only locust``: 1,000 students at the default
15 s interval; a bare httpx loop, ``simulate``'s engine and a Locust worker side by side at
the same load, on a shared 2-core machine): a worker spends about the CPU per heartbeat of
``simulate`` (0.93 times: 2.86 ms against 3.06 ms), 1.08 times what a bare
``httpx.AsyncClient.post`` loop spends there. One worker process, which is one core, thus
drove about 5,250 students at 15 s with the core fully busy (Locust warns from 90%); the
figure scales with the machine's speed, and a report's ``cpuSeconds`` gives your own.
"""

from __future__ import annotations

from locust import events

from . import _report
from ._options import add_arguments
from ._user import Credentials, HeartbeatFailed, StudentUser

__all__ = ["Credentials", "HeartbeatFailed", "StudentUser"]

_report.listen(events.init_command_line_parser, add_arguments)
_report.listen(events.init, _report.init)
_report.listen(events.test_start, _report.test_start)
_report.listen(events.test_stopping, _report.test_stopping)
_report.listen(events.test_stop, _report.test_stop)
_report.listen(events.quitting, _report.quitting)
_report.listen(events.quit, _report.quit_)
