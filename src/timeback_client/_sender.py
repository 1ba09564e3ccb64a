"""Delivery of windows: a queue per run, a few sender tasks, and the retry policy.

Every window of an `Engine` goes through its one `HeartbeatSender`, however many
activities and clients share the engine. Windows wait in a queue per run; runs that have a
window to send wait in a heap ordered by when they may be tried. A small, bounded set of
sender tasks takes runs from the heap, one at a time, so a run never has two requests in
flight and its windows go out in order, and a thousand activities never mean a thousand
tasks contending for the pool.

Sender tasks are elastic: they are started when windows arrive and end when nothing has
been left to send for a moment (one lingers, so a steady trickle of heartbeats does not
start a task each). They live in the task group of the sender's owner (an `Engine`); when it
closes, an interrupted send counts as unanswered (the same window goes again later, from
the outbox).

A window the backend refuses for a reason its operator can fix (a course not synced, a
student not in the roster: `_wire.Held`) is *held*: its run waits, and its head window is
tried again every few minutes (`HOLD_RETRY`, with jitter); when a window held for a cause
is accepted, every run held for the same cause is tried at once. A held window older than
its client's ``hold_for`` is dropped and reported (`HoldExpiredError`). A 401 holds a run
until the app's new credentials instead.

The sender knows nothing of activities or of the outbox: it tells each window's
`DeliveryListener` (the client's pipeline) what became of it, and that is all that flows
back.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from typing import Any, Final, Protocol

import anyio
import anyio.abc
import attrs
import httpx

from ._clock import Clock
from ._delivery_errors import (
    DeliveryError,
    DuplicateRiskError,
    HoldExpiredError,
    NetworkError,
    ResponseError,
)
from ._models import Window
from ._version import VERSION
from ._wire import MAX_ERROR_BODY, Delivered, Held, Outcome, Rejected, Retry, classify

__all__ = [
    "DEFAULT_HOLD_FOR",
    "HOLD_RETRY",
    "PRODUCT",
    "Backoff",
    "Delivery",
    "DeliveryListener",
    "Endpoint",
    "HeartbeatSender",
    "user_agent",
]

logger = logging.getLogger("timeback_client")

# The SDK's product token (RFC 9110 User-Agent), first in every heartbeat's User-Agent.
PRODUCT: Final = f"timeback-client/{VERSION}"
DEFAULT_SENDER_TASKS: Final = 8
# How long an idle sender task waits for the next window before it ends, in ms.
LINGER_MS: Final = 1_000
# The longest Retry-After honoured; a larger one is read as this.
MAX_RETRY_AFTER: Final = 3600.0
# The real server remembers accepted windows for 5 minutes: a window whose send went
# unanswered is retried within this many seconds, and reported once past the 5 minutes.
UNANSWERED_RETRY_CAP: Final = 5.0
DEDUPE_MEMORY_MS: Final = 5 * 60 * 1000
# A window held for the operator's fix is kept this long (seconds) by default, and tried
# again about every HOLD_RETRY seconds meanwhile (between 0.8 and 1.2 times it).
DEFAULT_HOLD_FOR: Final = 7 * 24 * 3600.0
HOLD_RETRY: Final = 300.0


class DeliveryListener(Protocol):
    """What a sender tells the owner of a window: nothing else flows back."""

    def sending(self, delivery: Delivery) -> None:
        """The first attempt is about to go out: from now on the server may have it."""

    def delivered(self, delivery: Delivery, *, duplicate: bool) -> None:
        """The backend has the window."""

    def failed(self, delivery: Delivery, error: DeliveryError, *, will_retry: bool) -> None:
        """An attempt failed; ``will_retry`` says whether the sender tries again. An
        `UndeliveredError` covers every window in its ``windows``, all dropped."""

    def held(self, delivery: Delivery, error: ResponseError, *, report: bool) -> None:
        """The backend refused the window, and it is kept until what refused it is fixed
        (it does not have it: the refusal was an answer). ``report``: the first refusal of
        this cause for the run, which the app hears of; later ones it does not."""


HeaderPairs = tuple[tuple[str, str], ...]
"""Headers as pairs of text: a tuple of atomic values, which the garbage collector stops
tracking after one pass (an `httpx.Headers` is three tracked objects per client)."""


def header_pairs(headers: httpx.Headers | Mapping[str, str] | HeaderPairs) -> HeaderPairs:
    """``headers`` as (name, value) pairs, in order, repeats kept."""
    if isinstance(headers, tuple):
        return headers
    if not isinstance(headers, httpx.Headers):
        headers = httpx.Headers(headers)
    encoding = headers.encoding
    return tuple((name.decode(encoding), value.decode(encoding)) for name, value in headers.raw)


@attrs.define(eq=False)
class Endpoint:
    """Where, and as whom, one client sends: the heartbeat URL and the app's credentials.

    Credentials are passed through to httpx and are never logged or stored.
    """

    url: str
    headers: HeaderPairs = attrs.field(default=(), converter=header_pairs)
    cookies: httpx.Cookies | None = None  # None: no cookies (a CookieJar costs memory)
    auth: httpx.Auth | None = None
    version: int = 0  # bumped on new credentials, so a late 401 for old ones is not held
    # How long (ms of the window's age) a window held for the operator's fix is kept.
    hold_for_ms: int = round(DEFAULT_HOLD_FOR * 1000)
    # (version, User-Agent, the request's header pairs): atomic values only, untracked.
    _sent_headers: tuple[int, str, HeaderPairs] | None = attrs.field(default=None, repr=False)

    def request_headers(self, user_agent: str) -> HeaderPairs:
        """The headers of a heartbeat request: ``user_agent`` unless the app's headers
        name their own ``User-Agent``, the app's headers, and the JSON content type."""
        cached = self._sent_headers
        if cached is None or cached[0] != self.version or cached[1] != user_agent:
            merged = httpx.Headers({"user-agent": user_agent})
            merged.update(httpx.Headers(self.headers))  # the app's User-Agent replaces ours
            merged["content-type"] = "application/json"
            cached = self._sent_headers = (self.version, user_agent, header_pairs(merged))
        return cached[2]


@attrs.define(eq=False, slots=True)
class Delivery:
    """One window on its way: its exact bytes, where it goes, and whom to tell."""

    window: Window
    endpoint: Endpoint
    listener: DeliveryListener
    body: bytes = attrs.field()
    attempts: int = 0
    # Since when an attempt is without an answer (the server may have it), on the timeline.
    unanswered_since_ms: int | None = None
    stale_reported: bool = False
    sent_version: int = 0
    # Refused (held) since its last attempt: the next one is a first again for the outbox.
    refused: bool = False

    @body.default
    def _encode(self) -> bytes:
        return self.window.to_bytes()


@attrs.frozen(kw_only=True)
class Backoff:
    """Exponential backoff with jitter and a cap, in seconds."""

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0

    def delay(self, attempts: int, rng: random.Random) -> float:
        """The wait before attempt ``attempts + 1``: half fixed, half random ("equal jitter")."""
        ceiling = min(self.cap, self.initial * self.factor ** max(0, attempts - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@attrs.define(eq=False)
class _Hold:
    """Why a run's head window is held, and since when."""

    cause: str  # the backend's code
    url: str  # where it was refused: a cause is one backend's
    error: ResponseError  # the latest refusal (its message carries the backend's fix)
    since_ms: int  # timeline
    credentials: bool = False  # a 401: waits for update_credentials(), not tried on its own


@attrs.define(eq=False)
class _Run:
    """The windows of one run still to deliver, oldest first."""

    run_id: str
    pending: deque[Delivery] = attrs.field(factory=deque)
    busy: bool = False  # a sender task is sending its head window
    scheduled: bool = False  # it has a live entry in the ready heap
    not_before: int = 0  # that entry's instant
    generation: int = 0  # entries of earlier generations were superseded
    hold: _Hold | None = None  # why its head is held, if it is
    hurried: bool = False  # a held head tried now for flush(): not settled until answered
    # Made only when someone waits (end(), close()): most runs never need one.
    waiter: anyio.Event | None = None

    @property
    def waits_for_credentials(self) -> bool:
        return self.hold is not None and self.hold.credentials

    @property
    def is_settled(self) -> bool:
        """Nothing left to do until something changes: empty, or held (and not being
        tried now for a flush)."""
        return (not self.pending and not self.busy) or (self.hold is not None and not self.hurried)


class HeartbeatSender:
    """Sends windows for every client of one `Engine`, through one connection pool.

    Args:
        http: the connection pool.
        clock: the clock that backoff waits are measured on.
        task_group: where sender tasks run (the owner's).
        tasks: at most this many requests in flight at once.
        backoff: the retry waits.
        rng: randomness for jitter (seeded in tests).
    """

    def __init__(
        self,
        http: httpx.AsyncClient,
        clock: Clock,
        *,
        task_group: anyio.abc.TaskGroup,
        tasks: int = DEFAULT_SENDER_TASKS,
        backoff: Backoff | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.http = http
        self.clock = clock
        self.max_tasks = tasks
        self._task_group = task_group
        self._backoff = backoff or Backoff()
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._runs: dict[str, _Run] = {}
        # (not before, order, generation, run): a run scheduled earlier than its entry
        # (a held run released) gets a new entry, and the old one is skipped.
        self._ready: list[tuple[int, int, int, _Run]] = []
        self._order = itertools.count()
        self._tasks = 0
        self._in_flight = 0
        self._waiters: set[anyio.CancelScope] = set()
        self._closed = False
        self.attempts = 0
        self.retries = 0

    def close(self) -> None:
        """Start no more sender tasks: the owner is closing its task group."""
        self._closed = True

    @property
    def queued(self) -> int:
        """Windows waiting to be delivered (held ones included).

        ``list()`` of the runs is one step (in C), so the blocking client may read this from
        the app's thread while the loop adds and removes runs.
        """
        return sum(len(run.pending) for run in list(self._runs.values()))

    def held(self, run_ids: Iterable[str]) -> list[tuple[_Hold, tuple[Window, ...]]]:
        """The held runs among these, each with its hold and its windows (a copy, safe to
        take from any thread)."""
        found = []
        for run_id in list(run_ids):
            run = self._runs.get(run_id)
            hold = None if run is None else run.hold
            if run is not None and hold is not None:
                found.append((hold, tuple(d.window for d in tuple(run.pending))))
        return found

    @property
    def in_flight(self) -> int:
        """Requests on the wire now."""
        return self._in_flight

    @property
    def tasks(self) -> int:
        """Sender tasks running now."""
        return self._tasks

    # -- the queue ------------------------------------------------------------------

    def submit(self, delivery: Delivery) -> None:
        """Queue a window behind the earlier windows of its run."""
        run = self._runs.get(delivery.window.run_id)
        if run is None:
            run = self._runs[delivery.window.run_id] = _Run(delivery.window.run_id)
        run.pending.append(delivery)
        self._schedule(run, self.clock.read().timeline_ms)

    def retry_held(self, endpoint: Endpoint) -> None:
        """The app asks for delivery now (``flush()``): each run of ``endpoint`` held for
        the backend's fix tries its head window at once rather than at its next slow
        retry (the operator may have fixed the cause since). Runs waiting for new
        credentials keep waiting: the same ones would be refused again."""
        now = self.clock.read().timeline_ms
        for run in list(self._runs.values()):
            if (
                run.hold is not None
                and not run.waits_for_credentials
                and run.pending
                and run.pending[0].endpoint is endpoint
            ):
                run.hurried = True
                self._schedule(run, now, sooner=True)

    def release_held(self, endpoint: Endpoint) -> None:
        """New credentials: send again the windows a 401 held back for ``endpoint``."""
        now = self.clock.read().timeline_ms
        for run in self._runs.values():
            if run.waits_for_credentials and run.pending and run.pending[0].endpoint is endpoint:
                run.hold = None
                self._schedule(run, now)

    def undelivered(self, run_ids: Iterable[str]) -> list[Delivery]:
        """The windows of these runs that the backend does not have yet.

        Each run's queue is copied in one step (``tuple()`` of a deque, in C), so another
        thread may take this snapshot while the loop changes the queues.
        """
        return [d for r in run_ids if (run := self._runs.get(r)) for d in tuple(run.pending)]

    async def settle(self, run_ids: Iterable[str]) -> None:
        """Wait until every window of these runs is delivered, failed for good, or held."""
        for run_id in list(run_ids):
            while (run := self._runs.get(run_id)) is not None and not run.is_settled:
                if run.waiter is None:
                    run.waiter = anyio.Event()
                await run.waiter.wait()

    def discard(self, run_ids: Iterable[str]) -> list[Delivery]:
        """Give up on these runs' windows (the client is closing); return what is dropped."""
        dropped: list[Delivery] = []
        for run_id in run_ids:
            run = self._runs.pop(run_id, None)
            if run is not None:
                dropped.extend(run.pending)
                run.pending.clear()
                self._wake_waiters(run)
        return dropped

    # -- scheduling -----------------------------------------------------------------

    def _schedule(self, run: _Run, not_before_ms: int, *, sooner: bool = False) -> None:
        """Put the run in the ready heap for ``not_before_ms``. A run already there keeps
        its turn (a window queued during a backoff waits it out), unless ``sooner``
        brings it forward (a held run whose cause may be fixed)."""
        if run.busy or run.waits_for_credentials or not run.pending:
            return
        if run.scheduled and (not sooner or run.not_before <= not_before_ms):
            return
        run.scheduled, run.not_before = True, not_before_ms
        run.generation += 1
        heapq.heappush(self._ready, (not_before_ms, next(self._order), run.generation, run))
        self._start_tasks()
        for scope in self._waiters:
            scope.cancel()

    def _start_tasks(self) -> None:
        wanted = min(self.max_tasks, len(self._ready))
        while self._tasks < wanted and not self._closed:
            self._tasks += 1
            self._task_group.start_soon(self._work, name="timeback heartbeat sender")

    def _settle_if_done(self, run: _Run) -> None:
        if run.is_settled:
            self._wake_waiters(run)
            if not run.pending:
                self._runs.pop(run.run_id, None)

    @staticmethod
    def _wake_waiters(run: _Run) -> None:
        # Waiters look again once woken; the next wait makes a new event.
        if run.waiter is not None:
            run.waiter.set()
            run.waiter = None

    async def _work(self) -> None:
        replace = True
        try:
            linger_until: int | None = None
            while True:
                now = self.clock.read().timeline_ms
                if self._ready:
                    not_before, _, generation, run = self._ready[0]
                    if generation != run.generation:
                        heapq.heappop(self._ready)  # superseded by an earlier entry
                        continue
                    if not_before <= now:
                        heapq.heappop(self._ready)
                        run.scheduled = False
                        if (
                            run.busy
                            or run.waits_for_credentials
                            or not run.pending
                            or run.run_id not in self._runs
                        ):
                            continue
                        await self._send_head(run)
                        linger_until = None
                        continue
                    wait_until = not_before
                else:
                    # Nothing to send: linger a moment for the next window rather than
                    # end, since a task per heartbeat costs more than sending it.
                    if linger_until is None:
                        linger_until = now + LINGER_MS
                    if now >= linger_until:
                        return
                    wait_until = linger_until
                if self._waiters:
                    # One waiting task is enough. Replacing this one would start another
                    # that ends here too: a busy loop for as long as two runs wait out a
                    # backoff (a server outage).
                    replace = False
                    return
                await self._wait_until(wait_until)
                self._start_tasks()  # several runs may have come due at once
        finally:
            self._tasks -= 1
            if replace:
                self._start_tasks()

    async def _wait_until(self, timeline_ms: int) -> None:
        with anyio.CancelScope() as scope:
            self._waiters.add(scope)
            try:
                await self.clock.sleep_until(timeline_ms)
            finally:
                self._waiters.discard(scope)

    async def _send_head(self, run: _Run) -> None:
        delivery = run.pending[0]
        run.busy = True
        delivery.attempts += 1
        self.attempts += 1
        if delivery.attempts > 1:
            self.retries += 1
        if delivery.attempts == 1 or delivery.refused:
            # From now on the server may have it (again, after a refusal).
            delivery.refused = False
            delivery.listener.sending(delivery)
        self._in_flight += 1
        started = time.perf_counter()
        try:
            outcome, status = await self._post(delivery)
        except BaseException:
            # Interrupted (the owner is closing): unanswered, so it goes again.
            run.busy = False
            now = self.clock.read().timeline_ms
            if delivery.unanswered_since_ms is None:
                delivery.unanswered_since_ms = now
            self._schedule(run, now)
            raise
        finally:
            self._in_flight -= 1
        run.busy = False
        if logger.isEnabledFor(logging.DEBUG):
            _log_answer(delivery, status, outcome, time.perf_counter() - started)
        try:
            self._apply(run, delivery, outcome)
        except Exception:
            # A defect in what the outcome is handed to must not end this task (and with
            # it the engine's task group, which is the app's): log it, and go on.
            logger.exception("timeback: handling a heartbeat's answer raised; tracking goes on")
            self._schedule(run, self.clock.read().timeline_ms)

    async def _post(self, delivery: Delivery) -> tuple[Outcome, int | None]:
        """Send one attempt: what its answer means, and its HTTP status (None: no answer)."""
        endpoint = delivery.endpoint
        delivery.sent_version = endpoint.version
        opening = _OpeningConnection()
        try:
            request = self.http.build_request(
                "POST",
                endpoint.url,
                content=delivery.body,
                headers=endpoint.request_headers(user_agent(self.http)),
                cookies=endpoint.cookies or None,
                extensions={"trace": opening.trace},
            )
            auth = httpx.USE_CLIENT_DEFAULT if endpoint.auth is None else endpoint.auth
            try:
                response = await self.http.send(request, auth=auth, stream=True)
            finally:
                await opening.close_if_left()
            try:
                body = await _read_at_most(response, MAX_ERROR_BODY + 1)
            except httpx.DecodingError:
                # A garbled body (a proxy's bad Content-Encoding) is no reason to crash the
                # client's task group: the status alone still classifies the answer.
                body = b""
            finally:
                await response.aclose()
        except (httpx.TransportError, httpx.DecodingError) as exc:
            # A transport that decodes eagerly (httpx.MockTransport) raises DecodingError here.
            return Retry(_no_answer(exc)), None
        except Exception as exc:
            # An app's own transport or httpx.Auth flow failed, or the request could not be
            # built: never let it take the client's task group (and the app) down; keep
            # the window and try again. The error (its cause attached) is reported like any
            # other; the traceback is here for whoever follows the windows at DEBUG.
            logger.debug("timeback heartbeat: the transport or auth flow raised", exc_info=True)
            return Retry(_no_answer(exc)), None
        return classify(response.status_code, response.headers, body), response.status_code

    def _apply(self, run: _Run, delivery: Delivery, outcome: Outcome) -> None:
        if self._runs.get(run.run_id) is not run:
            return  # discarded while the request was in flight
        window = delivery.window
        now = self.clock.read().timeline_ms
        match outcome:
            case Delivered(duplicate=duplicate):
                run.pending.popleft()
                hold, run.hold = run.hold, None
                if hold is not None:
                    self._release(hold, now)
                if not duplicate:
                    # Accepted only now, more than 5 minutes after a send that got no
                    # answer: the server may have counted that one, forgotten it since,
                    # and counted this one too.
                    self._warn_if_stale(delivery, now, will_retry=False)
                delivery.listener.delivered(delivery, duplicate=duplicate)
                self._schedule(run, now)
            case Retry(error=error, after=after, max_attempts=limit, then_hold=cause):
                error.window = window
                if limit is not None and delivery.attempts >= limit and cause is not None:
                    assert isinstance(error, ResponseError)
                    self._hold(run, delivery, error, cause, now)
                elif limit is not None and delivery.attempts >= limit:
                    run.pending.popleft()
                    error.retryable = False
                    delivery.listener.failed(delivery, error, will_retry=False)
                    self._schedule(run, now)
                else:
                    wait = self._backoff.delay(delivery.attempts, self._rng)
                    if isinstance(error, NetworkError) and error.maybe_received:
                        # The server may have it: retry well within its 5-minute memory.
                        if delivery.unanswered_since_ms is None:
                            delivery.unanswered_since_ms = now
                        wait = min(wait, UNANSWERED_RETRY_CAP)
                    if after is not None:
                        wait = max(wait, min(after, MAX_RETRY_AFTER))
                    # Schedule before telling the listener: a callback that queues a window
                    # (on_error -> pause()) would otherwise schedule the run for right now.
                    self._schedule(run, now + round(wait * 1000))
                    if cause is None:
                        delivery.listener.failed(delivery, error, will_retry=True)
                    # else a quick retry before a hold: the app hears of the cause once,
                    # when the window is held (or never, if a retry is accepted).
                    self._warn_if_stale(delivery, now, will_retry=True)
            case Rejected(error=error):
                error.window = window
                run.pending.popleft()
                delivery.listener.failed(delivery, error, will_retry=False)
                self._schedule(run, now)
            case Held(error=error, cause=cause, credentials=True):
                error.window = window
                delivery.refused, delivery.unanswered_since_ms = True, None
                if delivery.sent_version != delivery.endpoint.version:
                    # Sent with credentials replaced since: try the new ones at once.
                    self._schedule(run, now)
                else:
                    url = delivery.endpoint.url
                    run.hold = _Hold(cause, url, error, now, credentials=True)
                delivery.listener.held(delivery, error, report=True)
            case Held(error=error, cause=cause):
                self._hold(run, delivery, error, cause, now)
        run.hurried = False
        self._settle_if_done(run)

    def _hold(
        self, run: _Run, delivery: Delivery, error: ResponseError, cause: str, now: int
    ) -> None:
        """The backend's operator must fix something first: keep the window, try it again
        every few minutes, and drop (and report) what is held past its ``hold_for``."""
        error.window = delivery.window
        error.retryable = True
        # An answer: the server does not have it, whatever an earlier attempt left open.
        delivery.refused, delivery.unanswered_since_ms = True, None
        first = run.hold is None or run.hold.cause != cause
        if run.hold is None or first:
            run.hold = _Hold(cause, delivery.endpoint.url, error, now)
        else:
            run.hold.error = error  # the latest words of the backend
        expired = self._expire(run, now)
        wait = HOLD_RETRY * self._rng.uniform(0.8, 1.2)
        self._schedule(run, now + round(wait * 1000))
        if expired:
            self._report_expired(expired, cause)
        if not run.pending:
            run.hold = None
            return
        head = run.pending[0]
        if head is delivery or first:
            # A first refusal whose window expired at once is told with the next window.
            error.window = head.window
            head.listener.held(head, error, report=first)

    def _expire(self, run: _Run, now: int) -> list[Delivery]:
        """Drop the run's oldest windows that are older than their client's ``hold_for``."""
        wall_now = self.clock.wall_ms(now)
        expired: list[Delivery] = []
        while run.pending and not run.busy:
            head = run.pending[0]
            if wall_now - head.window.ended_at_ms <= head.endpoint.hold_for_ms:
                break
            expired.append(run.pending.popleft())
        return expired

    @staticmethod
    def _report_expired(expired: list[Delivery], cause: str) -> None:
        windows = tuple(d.window for d in expired)
        active = sum(w.elapsed_ms for w in windows)
        paused = sum(w.paused_ms for w in windows)
        days = expired[0].endpoint.hold_for_ms / 86_400_000
        error = HoldExpiredError(
            f"dropped {len(windows)} window(s) of run {windows[0].run_id} held for {cause} "
            f"longer than hold_for ({days:g} days): {active} active ms and {paused} paused "
            "ms are lost",
            windows=windows,
            cause=cause,
        )
        error.window = windows[0]
        expired[0].listener.failed(expired[0], error, will_retry=False)

    def _release(self, hold: _Hold, now: int) -> None:
        """A window held for ``hold``'s cause was accepted: what the others of that cause
        wait for may be fixed too, so each is tried at once."""
        for other in list(self._runs.values()):
            held = other.hold
            if held is not None and held.cause == hold.cause and held.url == hold.url:
                self._schedule(other, now, sooner=True)

    @staticmethod
    def _warn_if_stale(delivery: Delivery, now: int, *, will_retry: bool) -> None:
        since = delivery.unanswered_since_ms
        if since is None or delivery.stale_reported or now - since <= DEDUPE_MEMORY_MS:
            return
        delivery.stale_reported = True
        error = DuplicateRiskError(
            f"window of run {delivery.window.run_id} starting {delivery.window.started_at} "
            f"has been without an answer for {(now - since) // 1000} s; the server remembers "
            "accepted windows for 5 minutes, so it may count this one twice",
            window=delivery.window,
            retryable=will_retry,
        )
        delivery.listener.failed(delivery, error, will_retry=will_retry)


def user_agent(http: httpx.AsyncClient) -> str:
    """``timeback-client/<version>`` followed by what the pool would send by itself: httpx's
    own (``python-httpx/<version>``), or the ``User-Agent`` set on a caller-owned client."""
    underlying = http.headers.get("user-agent")
    return f"{PRODUCT} {underlying}" if underlying else PRODUCT


def _log_answer(delivery: Delivery, status: int | None, outcome: Outcome, latency: float) -> None:
    """One DEBUG line per attempt: which window, how it went, how long it took. It names
    the run and the window's time, never the request's headers, cookies or auth."""
    if not logger.isEnabledFor(logging.DEBUG):
        return  # every heartbeat passes here: build nothing for a line nobody reads
    window = delivery.window
    match outcome:
        case Delivered(duplicate=duplicate):
            result = "duplicate (the backend had it)" if duplicate else "accepted"
        case Retry(error=error, max_attempts=limit, then_hold=cause):
            final = limit is not None and delivery.attempts >= limit
            if final and cause is not None:
                result = f"held for the backend's fix of {cause}: {type(error).__name__}"
            else:
                result = f"{'given up' if final else 'to retry'}: {type(error).__name__}"
        case Rejected(error=error):
            result = f"refused: {type(error).__name__}"
        case Held(error=error, credentials=True):
            result = f"held until update_credentials(): {type(error).__name__}"
        case Held(error=error, cause=cause):
            result = f"held for the backend's fix of {cause}: {type(error).__name__}"
    logger.debug(
        "timeback heartbeat run=%s window=%s elapsed_ms=%d paused_ms=%d attempt=%d "
        "status=%s latency_ms=%d: %s",
        window.run_id,
        window.started_at,
        window.elapsed_ms,
        window.paused_ms,
        delivery.attempts,
        "none" if status is None else status,
        round(latency * 1000),
        result,
    )


class _NetworkStream(Protocol):
    """What httpcore hands a ``trace`` callback for a new connection (its network stream)."""

    async def aclose(self) -> None: ...


class _OpeningConnection:
    """The connection a request is opening, until a connection of the pool takes it.

    httpcore closes a new connection whose TLS handshake fails, but not one whose
    handshake is cancelled (the owner closing the engine mid-handshake): that socket would
    be left open for the garbage collector, which an app sees as a ``ResourceWarning``.
    The request's ``trace`` extension (httpcore's, passed through by httpx) names the
    stream as it is connected; ``close_if_left`` closes it if the request ended before the
    pool took it. A transport that is not httpcore's ignores the extension.
    """

    def __init__(self) -> None:
        self._stream: _NetworkStream | None = None

    async def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event == "connection.connect_tcp.complete":
            self._stream = info.get("return_value")
        elif event == "connection.start_tls.complete" or not event.startswith("connection."):
            # TLS is up (the pool takes the new stream at once), or the request is on a
            # connection's protocol: either way the pool owns the stream now.
            self._stream = None

    async def close_if_left(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            # Shielded, since the request was most likely cancelled; a TCP close is quick.
            with anyio.CancelScope(shield=True):
                await stream.aclose()


_SILENT_ERRORS: Final[dict[type[Exception], str]] = {
    httpx.ReadTimeout: "no answer within the read timeout",
    httpx.WriteTimeout: "the request could not be written within the write timeout",
    httpx.ConnectTimeout: "no connection within the connect timeout",
    httpx.PoolTimeout: "no free connection in the pool within the pool timeout",
}


def _no_answer(exc: Exception) -> NetworkError:
    # No connection means the request never left; anything later, and the server may have it.
    never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    # httpx's timeouts often carry no message: say what happened rather than nothing.
    detail = (
        str(exc) or _SILENT_ERRORS.get(type(exc)) or _os_error_message(exc) or "no detail given"
    )
    error = NetworkError(
        f"no answer from the backend: {type(exc).__name__}: {detail}", maybe_received=not never_sent
    )
    error.__cause__ = exc
    return error


def _os_error_message(exc: BaseException) -> str:
    """The message of the first `OSError` down an exception's chain of causes, if any.

    On trio a failed TLS handshake reaches httpx as a ``ConnectError`` with no message:
    the reason (``CERTIFICATE_VERIFY_FAILED`` ...) is on the `ssl.SSLError` it wraps.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError) and str(current):
            return str(current)
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return ""


async def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    """Read a response body, stopping past ``limit`` bytes (a hostile server can't flood us)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) >= limit:
        # Too long to be an answer we read: not read at all, the connection is closed.
        # Stopping midway through httpx's chain of async generators (below) would leave
        # them to the garbage collector, which trio reports as a ResourceWarning
        # (encode/httpx#3686); that remains only for an unbounded chunked body.
        return b""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)
