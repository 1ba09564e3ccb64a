"""Real servers on the loopback interface for the network recipes: the emulator over TLS
(uvicorn, HTTP/1.1; hypercorn, HTTP/2 by ALPN) and a small forwarding proxy.

Everything binds 127.0.0.1 and connects nowhere else: the proxy refuses any other target.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import trustme
import uvicorn
from starlette.types import ASGIApp

from timeback_client.emulator._serve import ClosingServer

LOOPBACK = "127.0.0.1"
_LOOPBACK_HOSTS = frozenset({LOOPBACK, "localhost"})


class TlsFiles:
    """A test CA (a school's, say) and a certificate it issued for 127.0.0.1 and localhost.

    Attributes:
        ca_pem: the CA's certificate, as a school hands it out (``school-ca.pem``).
        server_pem: the server's key and certificate chain, for the server to load.
    """

    def __init__(self, directory: Path) -> None:
        ca = trustme.CA(organization_name="Example School District")
        server = ca.issue_cert(LOOPBACK, "localhost")
        self.ca_pem = directory / "school-ca.pem"
        self.server_pem = directory / "server.pem"
        ca.cert_pem.write_to_path(str(self.ca_pem))
        server.private_key_and_cert_chain_pem.write_to_path(str(self.server_pem))


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind((LOOPBACK, 0))
        # Listening now: early clients wait in the backlog while the server starts.
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    return sock


@contextlib.contextmanager
def serve_tls_uvicorn(app: ASGIApp, tls: TlsFiles, *, mount: str) -> Iterator[str]:
    """Serve ``app`` over HTTPS (HTTP/1.1) with uvicorn in a thread; yields the base URL."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app,
        host=LOOPBACK,
        port=port,
        ssl_certfile=str(tls.server_pem),
        ssl_keyfile=str(tls.server_pem),
        lifespan="off",
        ws="none",
        log_config=None,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    server = ClosingServer(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="tls emulator", daemon=True
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the TLS emulator did not start")
            time.sleep(0.005)
        yield f"https://{LOOPBACK}:{port}{mount}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@contextlib.contextmanager
def serve_tls_hypercorn(app: ASGIApp, tls: TlsFiles, *, mount: str) -> Iterator[str]:
    """Serve ``app`` over HTTPS with hypercorn in a thread, offering h2 then http/1.1 by
    ALPN (uvicorn has no HTTP/2); yields the base URL."""
    from hypercorn.asyncio import serve
    from hypercorn.config import Config

    sock = _listening_socket()
    port = sock.getsockname()[1]
    config = Config()
    config.certfile = str(tls.server_pem)
    config.keyfile = str(tls.server_pem)
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn owns (and closes) the socket now
    config.accesslog = None
    config.errorlog = None
    config.graceful_timeout = 1

    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="h2 emulator", daemon=True)
    thread.start()
    try:
        yield f"https://{LOOPBACK}:{port}{mount}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(10)


class SilentTlsServer:
    """A server on 127.0.0.1 that takes one connection and reads the client's TLS hello,
    but never answers it: the client's handshake stays under way until it gives up.

    ``hello`` is set once the hello has arrived; `closed_by_client` then says whether the
    client closed that connection itself (the server reads end-of-file).
    """

    def __init__(self) -> None:
        self._listener = _listening_socket()
        self.url = f"https://{LOOPBACK}:{self._listener.getsockname()[1]}"
        self.hello = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="silent TLS", daemon=True)

    def __enter__(self) -> SilentTlsServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._listener.close()  # ends a wait in accept() if no client came
        self._thread.join(15)

    def closed_by_client(self, timeout: float) -> bool:
        """Whether the client closes the connection within ``timeout`` seconds."""
        return self._closed.wait(timeout)

    def _serve(self) -> None:
        try:
            conn, _ = self._listener.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            try:
                if conn.recv(65536):
                    self.hello.set()
                while conn.recv(65536):
                    pass
            except ConnectionResetError:
                pass  # closed by the client too, abruptly
            except OSError:
                return  # not closed within 10 s (a timeout): `_closed` stays unset
            self._closed.set()


class LoopbackProxy:
    """An HTTP proxy on 127.0.0.1, as a school's or office's: ``CONNECT`` tunnels (for
    https) and absolute-form requests (for plain http), to loopback targets only.

    ``seen`` lists each request line's method and target, in arrival order, so a test can
    tell that traffic really went through it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: list[tuple[str, str]] = []
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._run, name="loopback proxy", daemon=True)
        self.url = ""

    @property
    def seen(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._seen)

    def __enter__(self) -> LoopbackProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._loop is not None
        assert self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        server = await asyncio.start_server(self._handle, LOOPBACK, 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://{LOOPBACK}:{port}"
        self._ready.set()
        async with server:
            await self._stop.wait()
        # No connection outlives the proxy: not one still piping, nor one accepted a moment
        # ago whose handler has not run yet (cancelling that task would skip its cleanup).
        await asyncio.sleep(0.01)
        for writer in list(self._writers):
            writer.close()
        for task in asyncio.all_tasks() - {asyncio.current_task()}:
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream: asyncio.StreamWriter | None = None
        self._writers.add(writer)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *header_lines = head.decode("latin-1").split("\r\n")
            method, target, version = request_line.split(" ")
            with self._lock:
                self._seen.append((method, target))
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                up_reader, upstream = await self._connect(host, int(port))
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
                await asyncio.gather(_pipe(reader, upstream), _pipe(up_reader, writer))
                return
            url = urlsplit(target)
            up_reader, upstream = await self._connect(url.hostname or "", url.port or 80)
            # One request per connection: the origin answers with Connection: close, and
            # the client opens a new connection (through us) for the next one.
            headers = [
                line
                for line in header_lines
                if line and not line.lower().startswith(("proxy-", "connection:"))
            ]
            length = next(
                (
                    int(h.split(":", 1)[1])
                    for h in headers
                    if h.lower().startswith("content-length:")
                ),
                0,
            )
            path = url.path + (f"?{url.query}" if url.query else "")
            lines = [f"{method} {path} {version}", *headers, "Connection: close", "", ""]
            upstream.write("\r\n".join(lines).encode("latin-1"))
            upstream.write(await reader.readexactly(length))
            await upstream.drain()
            await _pipe(up_reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass  # the client went away, or spoke something else: drop the connection
        finally:
            for stream in (upstream, writer):
                if stream is not None:
                    stream.close()
                    self._writers.discard(stream)
                    with contextlib.suppress(Exception):
                        await stream.wait_closed()

    async def _connect(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if host not in _LOOPBACK_HOSTS:
            raise ValueError(f"this proxy forwards to the loopback interface only, not {host}")
        reader, writer = await asyncio.open_connection(host, port)
        self._writers.add(writer)
        return reader, writer


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        if sink.can_write_eof():
            with contextlib.suppress(OSError):
                sink.write_eof()
