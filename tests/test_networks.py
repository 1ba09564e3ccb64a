"""The recipes of docs/guides/networks.md, each run against real servers on loopback.

Proxies (``HTTP_PROXY`` and ``HTTPS_PROXY`` from the environment, or one given in code), a
custom CA (trustme makes one, as a school's TLS-inspecting proxy has), the system trust
store (truststore), HTTP/2 (h2, served by hypercorn) and OpenTelemetry (the httpx
instrumentation on the client's connection pool). TLS verification stays on throughout: a
server the client cannot verify is refused with a clear `NetworkError`, and the time waits.
"""

from __future__ import annotations

import os
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import truststore
from opentelemetry.instrumentation.httpx import (
    AsyncOpenTelemetryTransport,
    HTTPXClientInstrumentor,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from network_kit import (
    LOOPBACK,
    LoopbackProxy,
    SilentTlsServer,
    TlsFiles,
    serve_tls_hypercorn,
    serve_tls_uvicorn,
)
from timeback_client import (
    AsyncActivity,
    AsyncTimeback,
    ErrorContext,
    NetworkError,
    Timeback,
    TimebackError,
    TimeOptions,
)
from timeback_client._engine import tls_context
from timeback_client.emulator import Emulator

TOKEN = "network-student-token"
EMAIL = "ada@example.edu"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LESSON: dict[str, Any] = {
    "id": "lesson-1",
    "name": "Fractions",
    "course": {"subject": "Math", "grade": 3},
}
# Several heartbeats within a third of a second, then the end's window.
QUICK = TimeOptions(heartbeat_interval=0.1, flush_timeout=5)
HEARTBEAT_PATH = "/api/timeback/activity/heartbeat"


@pytest.fixture(autouse=True)
def no_ambient_network_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own proxy and CA settings never leak into a recipe's test: each test
    sets exactly what its recipe says."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.upper() in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
            monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return TlsFiles(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    with Emulator(students={TOKEN: EMAIL}) as emulator:
        yield emulator


@pytest.fixture
def https_url(emulator: Emulator, tls: TlsFiles) -> Iterator[str]:
    """The emulator over HTTPS (HTTP/1.1), with a certificate from the school's CA."""
    with serve_tls_uvicorn(emulator.app, tls, mount=emulator.mount) as url:
        yield url


@pytest.fixture
def proxy() -> Iterator[LoopbackProxy]:
    with LoopbackProxy() as proxy:
        yield proxy


def school_ca_context(tls: TlsFiles) -> ssl.SSLContext:
    """The custom-CA recipe: the platform's usual CAs, plus the school's."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=tls.ca_pem)
    return context


async def short_lesson(timeback: AsyncTimeback) -> AsyncActivity:
    activity = timeback.activity.start(**LESSON, time=QUICK)
    await anyio.sleep(0.35)
    await activity.end()
    return activity


def short_blocking_lesson(timeback: Timeback) -> tuple[str, int]:
    activity = timeback.activity.start(**LESSON, time=QUICK)
    time.sleep(0.35)
    activity.end()
    return activity.run_id, activity.elapsed_ms


def assert_all_time_arrived(emulator: Emulator, run_id: str, elapsed_ms: int) -> None:
    run = emulator.run(run_id)
    assert elapsed_ms >= 300
    assert run.active_ms == elapsed_ms
    assert len(run.windows) >= 2  # heartbeats, then the end's window
    assert emulator.problems() == ()


# -- proxies ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_http_proxy_from_the_environment_carries_every_heartbeat(
    emulator: Emulator, proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No code at all: ``HTTP_PROXY`` is honoured (httpx's ``trust_env``), and each
    heartbeat is one request through the proxy."""
    with emulator.serve_in_thread() as url:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        async with AsyncTimeback(url, headers=AUTH, outbox=None) as timeback:
            activity = await short_lesson(timeback)
        assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)
        posts = [target for method, target in proxy.seen if method == "POST"]
        assert posts == [url + "/activity/heartbeat"] * len(emulator.run(activity.run_id).windows)


@pytest.mark.anyio
async def test_https_proxy_and_a_school_ca_from_the_environment(
    emulator: Emulator,
    https_url: str,
    tls: TlsFiles,
    proxy: LoopbackProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No code either: ``HTTPS_PROXY`` tunnels every heartbeat through the proxy
    (``CONNECT``), and ``SSL_CERT_FILE`` names the CA that verifies the server."""
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_pem))
    async with AsyncTimeback(https_url, headers=AUTH, outbox=None) as timeback:
        activity = await short_lesson(timeback)
    assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)
    authority = https_url.split("/")[2]
    assert proxy.seen
    assert set(proxy.seen) == {("CONNECT", authority)}  # nothing bypassed the tunnel


def test_a_proxy_given_in_code_to_the_blocking_client(
    emulator: Emulator, proxy: LoopbackProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``transport=httpx.AsyncHTTPTransport(proxy=...)``: the proxy the app configured,
    whatever the environment says (a transport given in code ignores ``HTTP_PROXY``)."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # a dead end, never used
    with emulator.serve_in_thread() as url:
        transport = httpx.AsyncHTTPTransport(proxy=proxy.url)
        with Timeback(url, headers=AUTH, transport=transport, outbox=None) as timeback:
            run_id, elapsed_ms = short_blocking_lesson(timeback)
        assert_all_time_arrived(emulator, run_id, elapsed_ms)
        assert {method for method, _ in proxy.seen} == {"POST"}
        assert len(proxy.seen) == len(emulator.run(run_id).windows)


# -- a custom CA ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_custom_ca_on_the_async_client(
    emulator: Emulator, https_url: str, tls: TlsFiles
) -> None:
    """``http_client=httpx.AsyncClient(verify=context)`` with the school's CA loaded."""
    async with (
        httpx.AsyncClient(verify=school_ca_context(tls)) as http,
        AsyncTimeback(https_url, headers=AUTH, http_client=http, outbox=None) as timeback,
    ):
        activity = await short_lesson(timeback)
    assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)


def test_a_custom_ca_on_the_blocking_client(
    emulator: Emulator, https_url: str, tls: TlsFiles
) -> None:
    """``transport=httpx.AsyncHTTPTransport(verify=context)``: the client owns and closes
    it, on its own thread."""
    transport = httpx.AsyncHTTPTransport(verify=school_ca_context(tls))
    with Timeback(https_url, headers=AUTH, transport=transport, outbox=None) as timeback:
        run_id, elapsed_ms = short_blocking_lesson(timeback)
    assert_all_time_arrived(emulator, run_id, elapsed_ms)


@pytest.mark.anyio
async def test_without_the_ca_the_server_is_refused_clearly_and_the_time_waits(
    emulator: Emulator, https_url: str, tls: TlsFiles, tmp_path: Path
) -> None:
    """TLS verification stays on: an unknown CA is a `NetworkError` naming the failed
    verification, reported to ``on_error`` and retried; nothing is sent in the clear. The
    windows wait in the outbox, and the next client, given the CA, delivers all of it."""
    outbox = tmp_path / "outbox.sqlite3"
    reports: list[tuple[TimebackError, ErrorContext]] = []
    short = TimeOptions(heartbeat_interval=0.1, flush_timeout=0.5)
    async with AsyncTimeback(https_url, headers=AUTH, outbox=outbox) as timeback:
        activity = timeback.activity.start(
            **LESSON, time=short, on_error=lambda e, c: reports.append((e, c))
        )
        await anyio.sleep(0.35)
        await activity.end()
    assert emulator.runs() == ()  # nothing got through
    network = [(e, c) for e, c in reports if isinstance(e, NetworkError)]
    assert network, reports
    error, context = network[0]
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)
    assert isinstance(error.__cause__, httpx.ConnectError)
    assert error.retryable
    assert not error.maybe_received  # refused before anything was sent
    assert context.operation == "heartbeat"
    assert context.will_retry

    async with (
        httpx.AsyncClient(verify=school_ca_context(tls)) as http,
        AsyncTimeback(https_url, headers=AUTH, http_client=http, outbox=outbox) as timeback,
    ):
        with anyio.fail_after(10):
            while sum(run.active_ms for run in emulator.runs()) < activity.elapsed_ms:  # noqa: ASYNC110 - the server's thread keeps it
                await anyio.sleep(0.02)
    assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)


@pytest.mark.anyio
async def test_closing_during_a_tls_handshake_closes_its_connection() -> None:
    """A client closed while a heartbeat's TLS handshake is under way (a slow server, a
    proxy that inspects TLS) closes that connection itself, at once: nothing is left to
    the garbage collector, which an app would see as a ResourceWarning and the server as
    a connection still open. (httpcore closes a connection whose handshake fails, but
    not one whose handshake is cancelled.)"""
    with SilentTlsServer() as server:
        async with AsyncTimeback(server.url, headers=AUTH, outbox=None) as timeback:
            activity = timeback.activity.start(
                **LESSON, time=TimeOptions(heartbeat_interval=0.1, flush_timeout=0.1)
            )
            with anyio.fail_after(10):
                while not server.hello.is_set():  # noqa: ASYNC110 - set by the server's thread
                    await anyio.sleep(0.01)
            await activity.end()  # not delivered: the handshake hangs
        assert await anyio.to_thread.run_sync(server.closed_by_client, 5)


# -- the system trust store -------------------------------------------------------------------


@pytest.mark.anyio
async def test_the_system_trust_store_refuses_a_ca_it_does_not_hold(
    emulator: Emulator, https_url: str
) -> None:
    """``truststore.SSLContext`` verifies with the operating system's store (Windows,
    macOS, or the distribution's on Linux): the SDK takes it as any context, and a
    server whose CA is not in that store is refused, clearly."""
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    reports: list[TimebackError] = []
    async with (
        httpx.AsyncClient(verify=context) as http,
        AsyncTimeback(https_url, headers=AUTH, http_client=http, outbox=None) as timeback,
    ):
        activity = timeback.activity.start(
            **LESSON,
            time=TimeOptions(heartbeat_interval=0.1, flush_timeout=0.3),
            on_error=lambda e, c: reports.append(e),
        )
        await anyio.sleep(0.25)
        await activity.end()
    assert emulator.runs() == ()
    refused = [e for e in reports if isinstance(e, NetworkError)]
    assert refused, reports
    assert "CERTIFICATE_VERIFY_FAILED" in str(refused[0])


@pytest.mark.anyio
async def test_the_system_trust_store_plus_the_school_ca(
    emulator: Emulator, https_url: str, tls: TlsFiles
) -> None:
    """The system's store and one more CA (truststore adds it on every platform)."""
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=tls.ca_pem)
    async with (
        httpx.AsyncClient(verify=context) as http,
        AsyncTimeback(https_url, headers=AUTH, http_client=http, outbox=None) as timeback,
    ):
        activity = await short_lesson(timeback)
    assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)


@pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="on Linux the system store is OpenSSL's default file, which SSL_CERT_FILE can "
    "point at; Windows and macOS stores cannot be changed by a test without admin rights",
)
def test_the_system_trust_store_trusts_a_ca_installed_there(
    emulator: Emulator, https_url: str, tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A school's CA installed in the system store (what its IT does on managed
    machines) is trusted through truststore with no change to the app."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_pem))
    transport = httpx.AsyncHTTPTransport(verify=truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    with Timeback(https_url, headers=AUTH, transport=transport, outbox=None) as timeback:
        run_id, elapsed_ms = short_blocking_lesson(timeback)
    assert_all_time_arrived(emulator, run_id, elapsed_ms)


def test_a_school_network_proxy_and_trust_store_together(
    emulator: Emulator, https_url: str, tls: TlsFiles, proxy: LoopbackProxy
) -> None:
    """The school-network recipe for the blocking client: its proxy, and the system's
    store plus the school's CA, on one transport."""
    context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=tls.ca_pem)
    transport = httpx.AsyncHTTPTransport(proxy=proxy.url, verify=context)
    with Timeback(https_url, headers=AUTH, transport=transport, outbox=None) as timeback:
        run_id, elapsed_ms = short_blocking_lesson(timeback)
    assert_all_time_arrived(emulator, run_id, elapsed_ms)
    assert proxy.seen
    assert set(proxy.seen) == {("CONNECT", https_url.split("/")[2])}


# -- HTTP/2 -----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_http2_on_the_async_client(emulator: Emulator, tls: TlsFiles) -> None:
    """``httpx.AsyncClient(http2=True)`` (the ``h2`` package): every heartbeat goes over
    HTTP/2, multiplexed on one connection."""
    versions: list[str] = []

    async def record(response: httpx.Response) -> None:
        versions.append(response.http_version)

    with serve_tls_hypercorn(emulator.app, tls, mount=emulator.mount) as url:
        async with (
            httpx.AsyncClient(
                http2=True,
                verify=school_ca_context(tls),
                event_hooks={"response": [record]},
            ) as http,
            AsyncTimeback(url, headers=AUTH, http_client=http, outbox=None) as timeback,
        ):
            activity = await short_lesson(timeback)
        assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)
    assert versions
    assert set(versions) == {"HTTP/2"}
    assert len(versions) == len(emulator.run(activity.run_id).windows)


class _VersionLog(httpx.AsyncBaseTransport):
    """Wraps a transport and notes each response's HTTP version."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.versions: list[str] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        self.versions.append(response.extensions["http_version"].decode())
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def test_http2_on_the_blocking_client(emulator: Emulator, tls: TlsFiles) -> None:
    """``transport=httpx.AsyncHTTPTransport(http2=True)`` for the blocking client."""
    log = _VersionLog(httpx.AsyncHTTPTransport(http2=True, verify=school_ca_context(tls)))
    with serve_tls_hypercorn(emulator.app, tls, mount=emulator.mount) as url:
        with Timeback(url, headers=AUTH, transport=log, outbox=None) as timeback:
            run_id, elapsed_ms = short_blocking_lesson(timeback)
        assert_all_time_arrived(emulator, run_id, elapsed_ms)
    assert log.versions
    assert set(log.versions) == {"HTTP/2"}


# -- OpenTelemetry ----------------------------------------------------------------------------


class Traces:
    """A tracer provider whose finished spans stay in memory, for a test to read."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))

    def heartbeat_spans(self) -> list[ReadableSpan]:
        return [
            span
            for span in self.exporter.get_finished_spans()
            if str(_attribute(span, "url.full", "http.url")).endswith(HEARTBEAT_PATH)
        ]


def _attribute(span: ReadableSpan, stable: str, old: str) -> object:
    """An attribute by its stable semantic-conventions name or the older one (the httpx
    instrumentation writes the older unless ``OTEL_SEMCONV_STABILITY_OPT_IN`` says)."""
    attributes = span.attributes or {}
    return attributes.get(stable, attributes.get(old))


def _assert_no_credentials(spans: list[ReadableSpan]) -> None:
    for span in spans:
        text = span.to_json()
        assert TOKEN not in text
        assert "Bearer" not in text
        assert "timeback_session" not in text


@pytest.fixture
def traces() -> Iterator[Traces]:
    traces = Traces()
    yield traces
    traces.provider.shutdown()


@pytest.mark.anyio
async def test_opentelemetry_a_span_per_heartbeat_and_no_credentials(
    emulator: Emulator, traces: Traces
) -> None:
    """``HTTPXClientInstrumentor().instrument_client(http)`` on the ``http_client=``: one
    client span per heartbeat request, with method, URL and status, and never the
    student's token or cookie."""
    with emulator.serve_in_thread() as url:
        async with httpx.AsyncClient() as http:
            HTTPXClientInstrumentor().instrument_client(http, tracer_provider=traces.provider)
            async with AsyncTimeback(
                url,
                headers=AUTH,
                cookies={"timeback_session": TOKEN},
                http_client=http,
                outbox=None,
            ) as timeback:
                activity = await short_lesson(timeback)
                attempts = timeback.statistics().engine.attempts
            HTTPXClientInstrumentor.uninstrument_client(http)
        assert_all_time_arrived(emulator, activity.run_id, activity.elapsed_ms)
    spans = traces.heartbeat_spans()
    assert len(spans) == attempts == len(emulator.run(activity.run_id).windows)
    for span in spans:
        assert span.name == "POST"
        assert _attribute(span, "http.response.status_code", "http.status_code") == 204
    _assert_no_credentials(spans)


def test_opentelemetry_on_the_blocking_client(emulator: Emulator, traces: Traces) -> None:
    """The blocking client's recipe: ``AsyncOpenTelemetryTransport`` around its
    transport, which the client owns and closes."""
    with emulator.serve_in_thread() as url:
        transport = AsyncOpenTelemetryTransport(
            httpx.AsyncHTTPTransport(), tracer_provider=traces.provider
        )
        with Timeback(url, headers=AUTH, transport=transport, outbox=None) as timeback:
            run_id, elapsed_ms = short_blocking_lesson(timeback)
        assert_all_time_arrived(emulator, run_id, elapsed_ms)
    spans = traces.heartbeat_spans()
    assert len(spans) == len(emulator.run(run_id).windows)
    _assert_no_credentials(spans)


def test_the_loopback_proxy_refuses_other_hosts() -> None:
    """The test proxy itself: it never forwards off this machine."""
    with LoopbackProxy() as proxy, httpx.Client(proxy=proxy.url, timeout=5) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("http://example.invalid/")
        assert proxy.seen == [("GET", "http://example.invalid/")]
    assert LOOPBACK in proxy.url


def test_clients_share_one_tls_context_that_follows_the_environment(
    tls: TlsFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading a CA bundle is what a client's start cost most: clients share the context
    made once, but a CA that the environment names later, or truststore injected later,
    is what the next client verifies with."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    shared = tls_context()
    assert tls_context() is shared
    assert shared.verify_mode == ssl.CERT_REQUIRED
    assert shared.check_hostname
    monkeypatch.setenv("SSL_CERT_FILE", str(tls.ca_pem))
    assert tls_context() is not shared
    monkeypatch.delenv("SSL_CERT_FILE")
    truststore.inject_into_ssl()
    try:
        assert isinstance(tls_context(), truststore.SSLContext)
    finally:
        truststore.extract_from_ssl()
    assert tls_context() is shared
