"""`Engine`: what runs activities in one event loop, for as many clients as share it.

An engine owns, in a task group of its own:

- one **scheduler** task, which drives every activity's deadlines (heartbeats, idle
  timeouts) from one heap, and runs the work that app threads hand to the loop;
- one **sender**, which delivers every window through one connection pool with a few
  elastic tasks and the retry policy.

Outbox files are written by one writer thread per file per process (`_writer`), whatever
the engine. Each `AsyncTimeback` makes an engine of its own unless it is given one: an app
with one client never sees this class; a process that runs many students (a load test, a
classroom server) makes one engine and passes it to every client, which then costs a few
objects and no task at all.
"""

from __future__ import annotations

import functools
import math
import os
import ssl
from types import TracebackType
from typing import Final

import anyio
import anyio.abc
import attrs
import httpx

from ._clock import Clock, system_clock
from ._errors import LifecycleError, ValidationError
from ._scheduler import Scheduler
from ._sender import DEFAULT_SENDER_TASKS, HeartbeatSender

__all__ = ["DEFAULT_TIMEOUT", "Engine", "EngineStatistics", "tls_context"]

DEFAULT_TIMEOUT: Final = httpx.Timeout(10.0, connect=5.0)


def tls_context() -> ssl.SSLContext:
    """The TLS settings of an engine's own connection pool: httpx's defaults (certificates
    verified against its CA bundle, or the ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` the
    environment names when the engine is made, or the system's store once truststore is
    injected), made once per process for each such choice. Loading a CA bundle takes
    10-30 ms, which every client's start used to pay (a kiosk's sign-in, on its GUI
    thread); a context is safe to share between connections and threads once made."""
    # What httpx reads to make a default context is the key: the environment's CA
    # choice, and the class ssl.SSLContext is now (truststore.inject_into_ssl() swaps it).
    return _tls_context(
        os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"), ssl.SSLContext
    )


@functools.cache
def _tls_context(cert_file: str | None, cert_dir: str | None, kind: type) -> ssl.SSLContext:
    return httpx.create_ssl_context()


@attrs.frozen(kw_only=True)
class EngineStatistics:
    """A snapshot of an engine.

    Attributes:
        activities: deadlines in the scheduler's heap (about one per running activity).
        queued: windows waiting to be delivered, held ones included.
        in_flight: heartbeat requests on the wire now.
        sender_tasks: sender tasks running now (at most ``max_sender_tasks``).
        max_sender_tasks: the engine's bound on requests in flight.
        attempts: heartbeat requests made so far, retries included.
        retries: of those, attempts after the first for a window.
    """

    activities: int
    queued: int
    in_flight: int
    sender_tasks: int
    max_sender_tasks: int
    attempts: int
    retries: int


class Engine:
    """Runs the activities of one or many clients in one event loop.

    Use it as ``async with Engine(...) as engine:`` and pass ``engine=engine`` to each
    `AsyncTimeback` that should share it; close the clients before the engine.

    Args:
        http_client: a caller-owned ``httpx.AsyncClient`` (not closed here).
        transport: an httpx async transport for the engine's own connection pool.
        timeout: the httpx timeout of the engine's own connection pool.
        clock: where time comes from (a `VirtualClock` in tests).
        sender_tasks: the most heartbeats in flight at once.
    """

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: httpx.Timeout | float | None = None,
        clock: Clock | None = None,
        sender_tasks: int | None = None,
    ) -> None:
        if http_client is not None and (transport is not None or timeout is not None):
            field = "transport" if transport is not None else "timeout"
            raise ValidationError(
                field,
                "cannot be combined with http_client",
                f"Set the {field} on your httpx.AsyncClient, or leave http_client out.",
            )
        if (
            timeout is not None
            and not isinstance(timeout, httpx.Timeout)
            and (
                isinstance(timeout, bool)
                or not isinstance(timeout, int | float)
                or not math.isfinite(timeout)
                or timeout <= 0
            )
        ):
            raise ValidationError(
                "timeout",
                f"{timeout!r} is not a positive number of seconds",
                "Pass e.g. 10.0, or an httpx.Timeout.",
            )
        if sender_tasks is None:
            sender_tasks = DEFAULT_SENDER_TASKS
        if isinstance(sender_tasks, bool) or not isinstance(sender_tasks, int) or sender_tasks < 1:
            raise ValidationError("sender_tasks", f"{sender_tasks!r} is not >= 1", "Pass e.g. 8.")
        self._http_client = http_client
        self._transport = transport
        self._timeout = DEFAULT_TIMEOUT if timeout is None else timeout
        self._max_sender_tasks = sender_tasks
        self.clock: Clock = clock or system_clock()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._own_http: httpx.AsyncClient | None = None
        self._scheduler: Scheduler | None = None
        self._sender: HeartbeatSender | None = None
        self._state = "new"

    @property
    def is_running(self) -> bool:
        """Whether the engine is open (between ``__aenter__`` and ``__aexit__``)."""
        return self._state == "running"

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler of the engine's loop."""
        self._check_running()
        assert self._scheduler is not None
        return self._scheduler

    @property
    def sender(self) -> HeartbeatSender:
        """The engine's sender."""
        self._check_running()
        assert self._sender is not None
        return self._sender

    @property
    def task_group(self) -> anyio.abc.TaskGroup:
        """Where the engine's background tasks run."""
        self._check_running()
        assert self._task_group is not None
        return self._task_group

    def _check_running(self) -> None:
        if self._state == "new":
            raise LifecycleError("this Engine is not open: use `async with Engine() as engine:`")
        if self._state == "closed":
            raise LifecycleError("this Engine is closed; make a new one")

    def statistics(self) -> EngineStatistics:
        """A snapshot of the engine's queues and work so far."""
        sender, scheduler = self.sender, self.scheduler
        return EngineStatistics(
            activities=scheduler.scheduled,
            queued=sender.queued,
            in_flight=sender.in_flight,
            sender_tasks=sender.tasks,
            max_sender_tasks=sender.max_tasks,
            attempts=sender.attempts,
            retries=sender.retries,
        )

    async def __aenter__(self) -> Engine:
        if self._state != "new":
            raise LifecycleError("an Engine can be opened only once")
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            http = self._http_client
            if http is None:
                http = self._own_http = httpx.AsyncClient(
                    transport=self._transport, timeout=self._timeout, verify=tls_context()
                )
            self._scheduler = Scheduler(self.clock)
            await task_group.start(self._scheduler.run, name="timeback scheduler")
            self._sender = HeartbeatSender(
                http, self.clock, task_group=task_group, tasks=self._max_sender_tasks
            )
        except BaseException as exc:
            task_group.cancel_scope.cancel()
            await task_group.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._task_group = task_group
        self._state = "running"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the scheduler and the sender (an unanswered request goes again from the
        outbox), and close the engine's own connection pool. Idempotent."""
        if self._state != "running":
            self._state = "closed"
            return
        self._state = "closed"
        task_group = self._task_group
        assert task_group is not None
        assert self._sender is not None
        self._sender.close()
        task_group.cancel_scope.cancel()
        try:
            await task_group.__aexit__(None, None, None)
        finally:
            if self._own_http is not None:
                with anyio.CancelScope(shield=True):
                    await self._own_http.aclose()
