"""How gevent and anyio meet: one asyncio loop in a real thread, beside gevent's hub.

Locust runs users as greenlets on gevent's hub, and monkey-patches the process (sockets,
``select``, ``threading``) so that blocking code yields to the hub. The SDK runs on anyio,
and no anyio backend runs on gevent's hub. So each Locust process (a worker, or a local
run) hosts one asyncio event loop in a real OS thread (started with the thread primitives
gevent saved before patching), holding one `Engine`, one connection pool and every
student's `AsyncTimeback`: exactly what ``simulate`` runs in its one process. Asyncio, not
trio: gevent removes ``select.epoll``, which trio needs. The loop (`_Loop`) runs on the
epoll selector that gevent saved before patching, not on gevent's own (asyncio's default in
a patched process, which starts and stops a libev watcher per socket at every turn and
waits on a second gevent hub of the thread); its name lookups, which asyncio would hand to
an executor whose threads the patch makes greenlets of that idle hub, run in real threads.
The sockets it connects are of the class gevent saved (asyncio would make gevent's, whose
Python wrappers of ``send`` and ``recv`` gain nothing on a non-blocking socket); the pool's
check for a dropped connection polls with the unpatched ``poll`` (`_ReadableStream`), and
the pool verifies servers with the SDK's own TLS context (`pooled_transport`).

The SDK's objects live in that thread only. A greenlet never calls them: it hands work to
the loop (`SdkThread.post`, `call`, `spawn`: a queue, and ``call_soon_threadsafe``). The
alternative, greenlets calling the SDK from the hub's thread as an app's GUI thread does,
would take the SDK's locks from two threads, and gevent makes ``threading.Lock`` a gevent
lock, whose use across threads takes a slower and more intricate path. A greenlet waits
only for what it needs, through an ``AsyncResult`` that the hub sets.

What comes back goes through one queue that the loop thread fills and wakes the hub for
with gevent's thread-safe async watcher (`HubInbox`); the hub empties it, so what Locust
owns is only ever touched on the hub, as Locust expects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import selectors
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
import gevent
import gevent.event
import httpcore
import httpx
from gevent import monkey

from .._engine import DEFAULT_TIMEOUT, Engine, tls_context

__all__ = ["HubInbox", "SdkThread", "pooled_transport", "settle"]

logger = logging.getLogger("timeback_client")
T = TypeVar("T")

# The thread primitives gevent saved before patching: the SDK's loop runs in a real thread.
_start_new_thread: Callable[..., int] = monkey.get_original("_thread", "start_new_thread")
_getaddrinfo: Callable[..., Any] = monkey.get_original("socket", "getaddrinfo")
_Socket: type[socket.socket] = monkey.get_original("socket", "socket")
_EpollSelector: type[selectors.BaseSelector] = monkey.get_original("selectors", "EpollSelector")
_poll: Callable[[], Any] = monkey.get_original("select", "poll")
_POLLIN: int = monkey.get_original("select", "POLLIN")


class _Loop(asyncio.SelectorEventLoop):
    """An asyncio loop on the epoll selector gevent saved, whose name lookups run in real
    threads.

    gevent's own selector (the default in a patched process) starts and stops a libev
    watcher for every socket at each turn of the loop and switches to a hub of this
    thread to wait: per heartbeat, more CPU than the rest of the SDK's thread. On
    epoll, the loop never enters that hub, so nothing may wait on it: asyncio's default
    executor (whose threads the patch makes greenlets of that hub) would never run, and
    the lookups it runs get a real thread each instead (one per connection to a host
    name; a numeric address needs none).
    """

    def __init__(self) -> None:
        super().__init__(_EpollSelector())

    async def getaddrinfo(
        self,
        host: Any,
        port: Any,
        *,
        family: int = 0,
        type: int = 0,  # noqa: A002 (asyncio's name)
        proto: int = 0,
        flags: int = 0,
    ) -> Any:
        found = self.create_future()

        def look_up() -> None:
            try:
                value, ok = _getaddrinfo(host, port, family, type, proto, flags), True
            except BaseException as exc:
                value, ok = exc, False
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                self.call_soon_threadsafe(_settle_future, found, ok, value)

        _start_new_thread(look_up, ())
        return await found

    async def create_connection(  # type: ignore[override]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        **options: Any,
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """asyncio's, on a socket of the class gevent saved before patching.

        The patch makes asyncio's sockets gevent's, whose ``send`` and ``recv`` are
        Python wrappers of the real ones (about a tenth of this thread's time per
        heartbeat); used non-blocking by this loop, they gain nothing. What anyio asks
        for (a host and port, no local address) is connected here; anything else is
        asyncio's.
        """
        asyncio_own: Any = super().create_connection  # typeshed's overloads take no None
        if host is None or port is None or any(value is not None for value in options.values()):
            return await asyncio_own(protocol_factory, host, port, **options)  # type: ignore[no-any-return]
        try:  # a numeric address (anyio's own lookup already ran) needs no lookup
            found = _getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            found = await self.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        errors: list[OSError] = []
        for family, kind, proto, _, address in found:
            sock = _Socket(family, kind, proto)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, address)
                return await asyncio_own(protocol_factory, sock=sock)  # type: ignore[no-any-return]
            except OSError as exc:
                sock.close()
                errors.append(exc)
            except BaseException:
                sock.close()
                raise
        if len(errors) == 1:
            raise errors[0]
        raise OSError(f"could not connect to {host}:{port}: {'; '.join(map(str, errors))}")


def _settle_future(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.done():
        return  # cancelled meanwhile
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


#: httpx's own default limits for a transport's pool, which the worker's pool keeps.
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=5.0)


def pooled_transport() -> httpx.AsyncHTTPTransport:
    """httpx's transport, verifying servers as the SDK's own pool does (`tls_context`:
    the CA bundle, ``SSL_CERT_FILE`` or ``SSL_CERT_DIR``, or the system's store once
    truststore is injected), whose connections the SDK's thread checks for a server's
    hang-up with the unpatched ``poll`` (`_ReadableStream`).

    httpx takes no network backend; its transport's pool is httpcore's, which does. The
    pool is made again with the same TLS context and limits and that backend. Should a
    later httpx hold its pool otherwise, the transport is kept as httpx made it (correct,
    at gevent's cost per request) and a warning says so.
    """
    context = tls_context()
    transport = httpx.AsyncHTTPTransport(verify=context, limits=_LIMITS)
    if type(getattr(transport, "_pool", None)) is not httpcore.AsyncConnectionPool:
        logger.warning(
            "timeback: this httpx (%s) holds its connection pool otherwise; a worker's "
            "connections are checked through gevent, at more CPU per heartbeat",
            httpx.__version__,
        )
        return transport
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=context,
        max_connections=_LIMITS.max_connections,
        max_keepalive_connections=_LIMITS.max_keepalive_connections,
        keepalive_expiry=_LIMITS.keepalive_expiry,
        network_backend=_ReadableBackend(),
    )
    return transport


class _ReadableBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, whose streams are `_ReadableStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _ReadableStream(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _ReadableStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _ReadableStream(httpcore.AsyncNetworkStream):
    """An httpcore stream whose ``is_readable`` (a pooled connection dropped by the
    server?) polls its socket with the poll gevent saved before patching.

    httpcore asks it of every pooled connection before each request. Its own answer,
    in a patched process, builds anyio's socket attributes (a ``getpeername`` call) and
    polls through gevent's ``poll``, which starts watchers on the thread's hub and
    switches to it: most of a worker's CPU beyond ``simulate``'s per heartbeat. A poll
    of no timeout never blocks, so the unpatched one gives the same answer at once.
    """

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: Any = inner.get_extra_info("socket")
        self._poll: Any = None if self._socket is None else _poll()
        if self._poll is not None:
            self._poll.register(self._socket.fileno(), _POLLIN)

    # The signatures are httpcore's, whose stream applies the timeouts.
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        return _ReadableStream(stream)

    def get_extra_info(self, info: str) -> Any:
        if info != "is_readable":
            return self._inner.get_extra_info(info)
        if self._poll is None or self._socket.fileno() < 0:
            return True  # as httpcore: no socket to poll counts as dropped
        return bool(self._poll.poll(0))


class HubInbox:
    """Work for gevent's hub, from any thread: a queue and gevent's thread-safe wake-up.

    The SDK's thread appends and wakes the hub (``async_().send()``, libev's thread-safe
    watcher, which coalesces wake-ups); the hub runs the work in order, never waiting.
    """

    def __init__(self) -> None:
        self._work: deque[tuple[Callable[..., object], tuple[Any, ...]]] = deque()
        self._watcher = gevent.get_hub().loop.async_(ref=False)
        self._watcher.start(self._run)

    def put(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` on the hub soon (safe from any thread)."""
        self._work.append((func, args))
        self._watcher.send()

    def _run(self) -> None:
        work = self._work
        while work:
            func, args = work.popleft()
            try:
                func(*args)
            except Exception:
                logger.exception("timeback: work handed to Locust's hub raised")


def settle(result: Any, ok: bool, value: Any) -> None:
    if ok:
        result.set(value)
    else:
        result.set_exception(value)


class SdkThread:
    """One asyncio loop in a real OS thread: the `Engine` every student of the process shares.

    Greenlets hand it work (`post`, `call`, `spawn`): a queue, and a wake-up of the loop
    (``call_soon_threadsafe``); one task of the loop runs what arrives, in order, inside
    the loop's task group (anyio can only start tasks from a task). Results come back
    through the hub's inbox. Created and used on the hub only.
    """

    def __init__(self, inbox: HubInbox, transport: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self.inbox = inbox
        self._transport = transport
        self.engine: Engine | None = None
        self.hook: httpx.AsyncClient | None = None  # the server-side record() hook
        self._loop: asyncio.AbstractEventLoop | None = None
        self._arrived: asyncio.Event | None = None
        self._work: deque[Work] = deque()
        self._stopping = False
        self._woken = False  # a wake-up is on its way to the loop
        self._jobs = 0
        self._idle: anyio.Event | None = None
        self.finished = gevent.event.AsyncResult()

    def start(self, timeout: float = 30.0) -> None:
        """Start the thread and wait (cooperatively) until its loop runs."""
        # Imported here, on the hub's thread: imports inside the SDK's thread would run
        # gevent's patched subprocess (trio, which httpcore imports, looks for libpthread)
        # on a hub that cannot watch children.
        import anyio._backends._asyncio  # noqa: F401
        import httpcore  # noqa: F401

        ready = gevent.event.AsyncResult()
        _start_new_thread(self._thread, (ready,))
        ready.get(timeout=timeout)

    def _thread(self, ready: Any) -> None:
        try:
            # anyio's run, which also tells sniffio the loop is asyncio's: without that,
            # anyio asks sniffio at nearly every call, which looks for the current task.
            anyio.run(self._main, ready, backend="asyncio", backend_options={"loop_factory": _Loop})
        except BaseException as exc:
            self.inbox.put(settle, ready, False, exc)
            self.inbox.put(settle, self.finished, False, exc)
        else:
            self.inbox.put(settle, self.finished, True, None)

    async def _main(self, ready: Any) -> None:
        transport = self._transport()
        self._arrived = asyncio.Event()
        async with (
            httpx.AsyncClient(transport=transport, timeout=DEFAULT_TIMEOUT) as http,
            httpx.AsyncClient(timeout=60.0) as hook,
            Engine(http_client=http) as engine,
            anyio.create_task_group() as task_group,
        ):
            self.engine, self.hook = engine, hook
            self._loop = asyncio.get_running_loop()
            self.inbox.put(settle, ready, True, None)
            await self._dispatch(task_group)
            task_group.cancel_scope.cancel()

    # -- from greenlets ---------------------------------------------------------------

    def post(self, func: Callable[..., object], *args: Any) -> None:
        """Run ``func(*args)`` in the loop; nothing comes back (a raise is logged)."""
        self._hand_over(Work(func, args, None, run=True))

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func(*args)`` in the loop and wait (cooperatively) for its result."""
        result = gevent.event.AsyncResult()
        self._hand_over(Work(func, args, result, run=True))
        value: T = result.get()
        return value

    def spawn(self, func: Callable[..., Awaitable[T]], *args: Any) -> Any:
        """Run ``await func(*args)`` as a task of the loop; an ``AsyncResult`` of its end.

        The task goes on if the greenlet stops waiting (a student stopped by Locust):
        `idle` waits for it.
        """
        result = gevent.event.AsyncResult()
        self._hand_over(Work(func, args, result, counted=True))
        return result

    def call_async(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """``spawn`` and wait (cooperatively) for the result."""
        value: T = self.spawn(func, *args).get()
        return value

    def idle(self) -> None:
        """Wait (cooperatively) until every spawned task has finished."""
        result = gevent.event.AsyncResult()
        self._hand_over(Work(self._wait_idle, (), result))
        result.get()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop (its tasks are cancelled) and wait for the thread to end."""
        if self._loop is None:
            return
        self._stopping = True
        with contextlib.suppress(RuntimeError):  # the loop has ended already
            self._wake()
        with contextlib.suppress(Exception):
            self.finished.get(timeout=timeout)

    def _hand_over(self, work: Work) -> None:
        assert self._loop is not None, "the SDK's thread has not started"
        self._work.append(work)
        # One wake-up (a handle and a write to the loop's self-pipe) for a burst of work:
        # the loop clears the flag before it empties the queue, so work appended after
        # that wakes it again, and work appended before is emptied with the rest.
        if not self._woken:
            self._woken = True
            self._wake()

    def _wake(self) -> None:
        assert self._loop is not None
        assert self._arrived is not None
        self._loop.call_soon_threadsafe(self._arrived.set)

    # -- in the loop ------------------------------------------------------------------

    async def _dispatch(self, task_group: anyio.abc.TaskGroup) -> None:
        assert self._arrived is not None
        work = self._work
        while not self._stopping:
            await self._arrived.wait()
            self._arrived.clear()
            self._woken = False
            while work:
                item = work.popleft()
                if item.run:
                    self._run(item)
                    continue
                if item.counted:
                    if self._jobs == 0:
                        self._idle = anyio.Event()
                    self._jobs += 1
                task_group.start_soon(self._job, item)

    def _run(self, item: Work) -> None:
        try:
            value = item.func(*item.args)
        except Exception as exc:
            if item.result is None:
                logger.exception("timeback: a student's step raised")
            else:
                self.inbox.put(settle, item.result, False, exc)
        else:
            if item.result is not None:
                self.inbox.put(settle, item.result, True, value)

    async def _job(self, item: Work) -> None:
        try:
            value = await item.func(*item.args)
        except Exception as exc:
            self.inbox.put(settle, item.result, False, exc)
        else:
            self.inbox.put(settle, item.result, True, value)
        finally:
            if item.counted:
                self._jobs -= 1
                if self._jobs == 0 and self._idle is not None:
                    self._idle.set()

    async def _wait_idle(self) -> None:
        if self._jobs and self._idle is not None:
            await self._idle.wait()


@attrs.frozen
class Work:
    """A greenlet's work for the SDK's thread: run now (``run``) or as a task."""

    func: Callable[..., Any]
    args: tuple[Any, ...]
    result: Any  # an AsyncResult the hub sets, or None
    run: bool = False
    counted: bool = False  # a task that `idle` waits for
